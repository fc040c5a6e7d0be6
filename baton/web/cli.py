"""``baton web``: serve the ops console (``/``) and the worker app (``/worker/LOCATION``) for a namespace."""

from __future__ import annotations

import typer

from services.runtime.settings import Settings

DEFAULT_PORT = 8080


def web_command(
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="The port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to serve on."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="The namespace to look at."),
) -> None:
    """The ops console and the worker app in a browser (read model, topics, the services' metrics)."""
    from baton.web.server import serve

    settings = Settings().model_copy(update={"namespace": namespace} if namespace else {})
    typer.echo(f"ops console: http://{host}:{port}/   worker app: http://{host}:{port}/worker/LOCATION")
    serve(settings, host, port)
