"""``baton run SERVICE``: each service is its own process, consumer group and state."""

from __future__ import annotations

import typer

from services.runtime.settings import Settings

run_app = typer.Typer(help="Run one service in this process (until Ctrl-C / SIGTERM).", no_args_is_help=True)
NamespaceOpt = typer.Option(None, "--namespace", "-n", help="Topic prefix, consumer groups, Redis prefix.")


def _settings(namespace: str | None, web_port: int | None = None) -> Settings:
    updates: dict[str, object] = {}
    if namespace:
        updates["namespace"] = namespace
    if web_port is not None:
        updates["web_port"] = web_port
    return Settings().model_copy(update=updates)


@run_app.command("orchestrator")
def run_orchestrator(
    namespace: str | None = NamespaceOpt,
    web_port: int | None = typer.Option(None, help="Serve order status over HTTP on this port."),
    instance: str | None = typer.Option(
        None, help="Name this instance when several share the work (its heartbeat is orchestrator-NAME)."
    ),
) -> None:
    """The OMS: intake, order saga, sourcing, status out (instances of one namespace share its tasks)."""
    from services.orchestrator.app import build
    from services.runtime.runner import run_service

    settings = _settings(namespace, web_port)
    service, web = build(settings, web_port)
    heartbeat = f"orchestrator-{instance}" if instance else "orchestrator"
    run_service(service, settings, web=web, port=web_port or 0, heartbeat_name=heartbeat)


@run_app.command("inventory")
def run_inventory(
    namespace: str | None = NamespaceOpt,
    web_port: int | None = typer.Option(None, help="Serve stock and ATP over HTTP on this port (GET /stock/SKU)."),
) -> None:
    """The stock ledger: the only writer of stock and reservations."""
    from services.inventory.app import build
    from services.runtime.runner import run_service

    settings = _settings(namespace, web_port)
    service, web = build(settings, web_port)
    run_service(service, settings, web=web, port=web_port or 0)


@run_app.command("wms")
def run_wms(
    location: str = typer.Option(..., "--location", "-l", help="The location this node runs."),
    auto: bool = typer.Option(False, "--auto", help="Simulated workers confirm every task."),
    namespace: str | None = NamespaceOpt,
    web_port: int | None = typer.Option(None, help="Serve the task queue over HTTP on this port (GET /wms/tasks)."),
) -> None:
    """A WMS node for one warehouse or store."""
    from services.runtime.runner import run_service
    from services.wms_node.app import build

    settings = _settings(namespace)
    node = build(settings, location, auto)
    # the task API always (on any free port without --web-port, named in the heartbeat): the worker app uses it
    run_service(node.service, settings, web=node.web(), port=web_port or 0, locations=[location])


@run_app.command("payments")
def run_payments(
    namespace: str | None = NamespaceOpt,
    fail_first: int = typer.Option(0, "--fail-first", min=0, help="The first N refund requests fail (retries)."),
) -> None:
    """The simulated payment adapter: answers refund requests, once per idempotency key."""
    from services.payments.app import build
    from services.runtime.runner import run_service

    settings = _settings(namespace)
    run_service(build(settings, fail_first), settings)
