"""``baton stack up | down | status``: the local Kafka (KRaft) and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from baton.stack import security
from baton.stack.local import LocalStack, StackError, StackStatus
from services.runtime.settings import get_settings

stack_app = typer.Typer(
    help="The local stack: Kafka (KRaft, from its jars; one node or a three-node cluster), Redis, optionally secured.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _say(message: str) -> None:
    err.print(f"[dim]{message}[/dim]")


def _stack(
    timeout: float = 90.0,
    brokers: int | None = None,
    secure: bool | None = None,
    locations: tuple[str, ...] = (),
    tls: bool | None = None,
) -> LocalStack:
    return LocalStack(
        get_settings(), timeout=timeout, echo=_say, brokers=brokers, secure=secure, locations=locations, tls=tls
    )


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
    brokers: int | None = typer.Option(
        None, "--brokers", min=1, max=3, help="1 (the default), or 3 for a cluster (replication 3, min ISR 2)."
    ),
    secure: bool = typer.Option(False, "--secure", help="SASL/SCRAM-SHA-512, ACLs per principal, Redis users."),
    locations: str = typer.Option("", help="Secured: the WMS locations that get a principal, e.g. WH-A,WH-B."),
    tls: bool = typer.Option(False, "--tls", help="Secured: TLS (SASL_SSL) on the client listener, a CA made here."),
) -> None:
    """Start whatever of Kafka and Redis does not answer yet (idempotent)."""
    began = time.monotonic()
    wanted = tuple(loc.strip() for loc in locations.split(",") if loc.strip())
    # Options not given keep the shape recorded in this home (``up`` after ``down`` restarts the same stack).
    stack = _stack(timeout, brokers, True if secure or tls else None, wanted, True if tls else None)
    status = _run(lambda: stack.up(fresh=fresh))
    out.print(_table(status))
    out.print(f"ready in {time.monotonic() - began:.1f} s")
    if stack.layout.brokers > 1 or stack.layout.secure:
        out.print("clients of this stack take (passwords stay in their files, never printed):")
        for line in client_environment(stack):
            out.print(f"  export {line}", highlight=False, markup=False)


def client_environment(stack: LocalStack) -> list[str]:
    """The BATON_* settings that point the CLI and the services at this stack, as the operator."""
    lines = [f"BATON_KAFKA_BOOTSTRAP={stack.bootstrap}"]
    if stack.layout.brokers > 1:
        lines.append(f"BATON_REPLICATION_FACTOR={stack.layout.brokers}")
    if stack.layout.secure:
        lines += [
            f"BATON_KAFKA_SECURITY_PROTOCOL={'SASL_SSL' if stack.layout.tls else 'SASL_PLAINTEXT'}",
            *([f"BATON_KAFKA_CA_FILE={stack.ca_file}"] if stack.layout.tls else []),
            f"BATON_KAFKA_CREDENTIALS_DIR={stack.credentials_dir}",
            f"BATON_KAFKA_CREDENTIALS_FILE={stack.credentials_dir / 'admin.properties'}",
            "BATON_REDIS_URL=redis://admin:<password in admin.properties>@" + str(stack.redis_ep) + "/0",
        ]
    return lines


@stack_app.command()
def acls(
    locations: str = typer.Option("", help="The WMS locations whose principals get rights, e.g. WH-A,WH-B."),
    script: bool = typer.Option(False, "--script", help="Print them as kafka-acls.sh commands instead."),
) -> None:
    """Grant the namespace's principals their ACLs on the local secured stack (or print them as a script)."""
    wanted = tuple(loc.strip() for loc in locations.split(",") if loc.strip())
    settings = get_settings()
    if script:
        print(security.acl_script(security.namespace_acls(settings, wanted)), end="")
        return
    stack = _stack(locations=wanted)
    if not stack.layout.secure:
        err.print("the local stack is not secured (baton stack up --secure)")
        raise typer.Exit(1)
    count = security.apply_acls(stack.admin_settings(), stack.layout.locations or wanted)
    out.print(f"granted {count} ACLs in namespace {settings.namespace}")


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
