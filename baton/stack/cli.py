"""``baton stack up | down | status``: the local Kafka (KRaft) and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from baton.stack.local import LocalStack, StackError, StackStatus
from services.runtime.settings import get_settings

stack_app = typer.Typer(
    help="The local stack: a single-node Kafka (KRaft, from its jars) and Redis.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _say(message: str) -> None:
    err.print(f"[dim]{message}[/dim]")


def _stack(timeout: float = 90.0) -> LocalStack:
    return LocalStack(get_settings(), timeout=timeout, echo=_say)


def _run(action: Callable[[], StackStatus]) -> StackStatus:
    try:
        return action()
    except StackError as exc:
        err.print("[bold red]stack error:[/bold red]", end=" ")
        err.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(1) from exc


def _table(status: StackStatus) -> Table:
    table = Table(title="baton local stack")
    for column in ("service", "address", "answering", "owner", "log"):
        table.add_column(column, overflow="fold")
    for service in status.services:
        answering = "[green]yes[/green]" if service.answering else "[red]no[/red]"
        table.add_row(service.name, service.address, answering, service.owner, service.log or "")
    return table


@stack_app.command()
def up(
    fresh: bool = typer.Option(False, "--fresh", help="Wipe the local Kafka data first."),
    timeout: float = typer.Option(90.0, help="Seconds to wait for each part to answer."),
) -> None:
    """Start whatever of Kafka and Redis does not answer yet (idempotent)."""
    began = time.monotonic()
    status = _run(lambda: _stack(timeout).up(fresh=fresh))
    out.print(_table(status))
    out.print(f"ready in {time.monotonic() - began:.1f} s")


@stack_app.command()
def down(wipe: bool = typer.Option(False, "--wipe", help="Also delete the local Kafka data.")) -> None:
    """Stop only what baton started (by PID file); external Kafka or Redis is left alone."""
    out.print(_table(_run(lambda: _stack().down(wipe=wipe))))


@stack_app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show whether Kafka and Redis answer and who started them; exit 1 unless both answer."""
    current = _run(_stack().status)
    if as_json:
        print(json.dumps(current.to_dict(), indent=2))
    else:
        out.print(_table(current))
    if not current.healthy:
        raise typer.Exit(1)
