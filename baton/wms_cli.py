"""``baton wms``: work a location's queue from a terminal (list, claim, confirm, release), look at its bins and
the slotting proposal, ask for a cycle count, announce a delivery at the dock.

Claims and confirmations are commands on the location's inbox, exactly like any worker's: the node decides,
and this command waits for its decision (read back from the node's views in Redis).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import time
import uuid
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from baton.publish import Publisher
from schemas.base import Message
from schemas.topics import WMS_COMMANDS
from schemas.wms import CountedLine, ExpectedLine, RequestCount, SupplyArrived
from services.runtime.settings import Settings
from services.wms_node.commands import claim_command, confirm_command, parse_pairs, release_command
from services.wms_node.domain.layout import LayoutSpec, layout_for
from services.wms_node.domain.model import SkuStock
from services.wms_node.domain.slotting import propose
from services.wms_node.views import NodeViews

wms_app = typer.Typer(help="A location's WMS node: its task queue, bins, slotting, counts.", no_args_is_help=True)
tasks_app = typer.Typer(help="The location's task queue: list, claim, confirm, release.", no_args_is_help=True)
wms_app.add_typer(tasks_app, name="tasks")
console = Console()
err = Console(stderr=True)
EXIT_REFUSED, EXIT_INVALID, EXIT_NO_ANSWER = 1, 2, 3

LocationOpt = typer.Option(..., "--location", "-l", help="The location (warehouse or store) id.")
NamespaceOpt = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE.")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON document on stdout.")
WorkerOpt = typer.Option(None, "--worker", "-w", help="Who you are (default: your login name).")
TimeoutOpt = typer.Option(15.0, "--timeout", help="Seconds to wait for the node's decision.")


def _settings(namespace: str | None) -> Settings:
    return Settings() if namespace is None else Settings().with_namespace(namespace)


def _views(settings: Settings, location: str) -> NodeViews:
    return NodeViews(settings.redis_url, settings.namespace, location)


def _print_json(document: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


# ---------------------------------------------------------------- tasks


@tasks_app.command("list")
def list_tasks(
    location: str = LocationOpt,
    namespace: str | None = NamespaceOpt,
    done: int = typer.Option(0, "--done", help="Also show this many of the latest finished tasks."),
    as_json: bool = JsonOpt,
) -> None:
    """Open and claimed tasks, oldest first (with their lines in pick-path order)."""
    settings = _settings(namespace)

    async def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        views = _views(settings, location)
        try:
            return await views.tasks(), (await views.done(done) if done else [])
        finally:
            await views.close()

    open_tasks, finished = asyncio.run(read())
    if as_json:
        _print_json({"location": location, "namespace": settings.namespace, "tasks": open_tasks, "done": finished})
        return
    table = Table(title=f"Tasks at {location} ({len(open_tasks)} open)")
    widest = max((len(t["task_id"]) for t in [*open_tasks, *finished]), default=4)
    table.add_column("task", no_wrap=True, min_width=widest)  # whole: it is what `claim` and `confirm` take
    for name in ("kind", "for", "status", "worker"):
        table.add_column(name)
    table.add_column("lines (sku x qty @ bin)", overflow="fold")
    table.add_column("wave")
    for task in [*open_tasks, *finished]:
        table.add_row(task["task_id"], task["kind"], task["subject"], _status(task), task.get("worker") or
                      task.get("done_by") or "", _lines(task), task.get("wave_id") or "")
    console.print(table)


def _status(task: dict[str, Any]) -> str:
    if task["status"] == "claimed" and task.get("claimed_until"):
        return f"claimed until {task['claimed_until'][11:19]}"
    return str(task["status"])


def _lines(task: dict[str, Any]) -> str:
    return "\n".join(f"{ln['sku']} x{ln['qty']} @ {ln.get('bin') or '-'}" for ln in task["lines"])


@tasks_app.command("claim")
def claim(
    task_id: str = typer.Argument(..., help="The task id, as `tasks list` shows it."),
    location: str = LocationOpt,
    worker: str | None = WorkerOpt,
    ttl: float = typer.Option(300.0, "--ttl", help="Seconds before an abandoned claim lapses."),
    namespace: str | None = NamespaceOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Take a task: nobody else can claim or confirm it until you confirm or release it, or the claim lapses."""
    settings = _settings(namespace)
    task = _open_task(settings, location, task_id)
    _decide(settings, location, claim_command(task, location, worker or getpass.getuser(), ttl), timeout, as_json)


@tasks_app.command("release")
def release(
    task_id: str = typer.Argument(..., help="The task id."),
    location: str = LocationOpt,
    worker: str | None = WorkerOpt,
    namespace: str | None = NamespaceOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Give a task you claimed back to the queue."""
    settings = _settings(namespace)
    task = _open_task(settings, location, task_id)
    _decide(settings, location, release_command(task, location, worker or getpass.getuser()), timeout, as_json)


@tasks_app.command("confirm")
def confirm(
    task_id: str = typer.Argument(..., help="The task id."),
    location: str = LocationOpt,
    worker: str | None = WorkerOpt,
    missing: list[str] = typer.Option([], "--missing", help="Pick: SKU=N units you could not find (repeatable)."),
    counted: list[str] = typer.Option([], "--counted", help="Receive: SKU=N received; count: SKU@BIN=N found."),
    damaged: list[str] = typer.Option([], "--damaged", help="Receive: SKU=N of the received units are damaged."),
    defective: list[str] = typer.Option([], "--defective", help="Return: SKU=N of the returned units are defective."),
    namespace: str | None = NamespaceOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Confirm a task as done: as listed, or with what you really found (short picks, counts)."""
    settings = _settings(namespace)
    task = _open_task(settings, location, task_id)
    try:
        short = {sku: n for sku, _, n in parse_pairs(missing, "--missing")}
        lines = _counted_lines(task, parse_pairs(counted, "--counted"), parse_pairs(damaged, "--damaged"),
                               parse_pairs(defective, "--defective"))
        command = confirm_command(task, location, worker or getpass.getuser(), missing=short, counted=lines)
    except ValueError as exc:
        err.print(f"[red]invalid[/red]: {exc}")
        raise typer.Exit(EXIT_INVALID) from exc
    _decide(settings, location, command, timeout, as_json)


def _counted_lines(task: dict[str, Any], counted: list[tuple[str, str, int]], damaged: list[tuple[str, str, int]],
                   defective: list[tuple[str, str, int]]) -> list[CountedLine]:
    found: dict[tuple[str, str], list[int]] = {}
    for sku, bin_id, n in counted:
        found.setdefault((sku, bin_id), [0, 0, 0])[0] += n
    for column, faults in ((1, damaged), (2, defective)):
        for sku, bin_id, n in faults:
            row = found.get((sku, bin_id))
            if row is None:  # damaged or defective without a count: the rest arrived as announced
                announced = sum(ln["qty"] for ln in task["lines"] if ln["sku"] == sku)
                row = found.setdefault((sku, bin_id), [announced, 0, 0])
            row[column] += n
    return [CountedLine(sku=sku, bin=bin_id, qty=q, damaged=d, defective=x)
            for (sku, bin_id), (q, d, x) in found.items()]


def _open_task(settings: Settings, location: str, task_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any] | None:
        views = _views(settings, location)
        try:
            return await views.task(task_id)
        finally:
            await views.close()

    task = asyncio.run(read())
    if task is None:
        err.print(f"[red]no open task[/red] {task_id!r} at {location} (namespace {settings.namespace!r}); "
                  f"see `baton wms tasks list -l {location}`")
        raise typer.Exit(EXIT_INVALID)
    return task


def _decide(settings: Settings, location: str, command: Message, timeout: float, as_json: bool) -> None:
    reply = asyncio.run(send_and_wait(settings, location, command, timeout))
    if reply is None:
        err.print(f"[red]no answer[/red] from the node of {location} within {timeout:.0f} s: is it running "
                  f"(`baton run wms --location {location}`)?")
        raise typer.Exit(EXIT_NO_ANSWER)
    if as_json:
        _print_json(reply)
    elif reply.get("refused"):
        err.print(f"[red]refused[/red]: {reply['refused']}")
    else:
        who = f" by {reply['worker']}" if reply.get("worker") else ""
        until = f" until {reply['claimed_until'][11:19]}" if reply.get("claimed_until") else ""
        console.print(f"{reply['task_id']}: [green]{reply['status']}[/green]{who}{until}")
    if reply.get("refused"):
        raise typer.Exit(EXIT_REFUSED)


async def send_and_wait(settings: Settings, location: str, command: Message, timeout: float) -> dict[str, Any] | None:
    """Publish a worker's command on the location's inbox; return the node's decision (None: no answer)."""
    command_id = str(uuid.uuid4())
    async with Publisher(settings, source=f"baton/cli/{getpass.getuser()}") as publisher:
        await publisher.publish(WMS_COMMANDS, command.subject(), command, location=location, event_id=command_id,
                                wait=True)
    views = _views(settings, location)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = await views.reply(command_id)
            if reply is not None:
                return reply
            await asyncio.sleep(0.1)
        return None
    finally:
        await views.close()


# ---------------------------------------------------------------- bins, slotting, counts, deliveries


async def _site_and_skus(settings: Settings, location: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    views = _views(settings, location)
    try:
        return await views.site(), await views.skus()
    finally:
        await views.close()


@wms_app.command("bins")
def bins(
    location: str = LocationOpt,
    sku: str | None = typer.Option(None, "--sku", help="Only this SKU."),
    namespace: str | None = NamespaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Stock per bin, as the node's books have it: home bin, units per bin, allocated to open picks, damaged."""
    settings = _settings(namespace)
    _, skus = asyncio.run(_site_and_skus(settings, location))
    rows = {k: v for k, v in sorted(skus.items()) if sku is None or k == sku}
    if as_json:
        _print_json({"location": location, "skus": rows})
        return
    table = Table("sku", "home", "units per bin", "allocated", "damaged", "picks", title=f"Bins at {location}")
    for name, doc in rows.items():
        table.add_row(name, doc.get("home") or "", _per_bin(doc["bins"]), _per_bin(doc.get("allocated", {})),
                      _per_bin(doc.get("damaged", {})), str(doc.get("picks", 0)))
    console.print(table)


def _per_bin(counts: dict[str, int]) -> str:
    return ", ".join(f"{b}: {n}" for b, n in sorted(counts.items()))


@wms_app.command("slotting")
def slotting(location: str = LocationOpt, namespace: str | None = NamespaceOpt, as_json: bool = JsonOpt) -> None:
    """Demand-aware slotting: the busiest SKUs proposed for the bins nearest the dock, and the walking saved."""
    settings = _settings(namespace)
    site, skus = asyncio.run(_site_and_skus(settings, location))
    if site is None:
        err.print(f"[red]no node state[/red] for {location} in namespace {settings.namespace!r} (has it run?)")
        raise typer.Exit(EXIT_INVALID)
    layout = layout_for(LayoutSpec.model_validate(site["layout"]))
    proposal = propose([SkuStock.model_validate(doc) for doc in skus.values()], layout)
    if as_json:
        _print_json(proposal.document(location))
        return
    table = Table("sku", "picks", "from bin", "m", "to bin", "m", "walk saved (m)",
                  title=f"Slotting proposal for {location}")
    for move in proposal.moves:
        table.add_row(move.sku, str(move.picks), move.from_bin or "-", f"{move.from_m:.1f}", move.to_bin,
                      f"{move.to_m:.1f}", f"{move.saved_m:.1f}")
    console.print(table)
    console.print(f"{proposal.skus} SKUs with demand; walking for the same picks: {proposal.walk_now_m:.0f} m now, "
                  f"{proposal.walk_after_m:.0f} m after: [bold]{proposal.saved_m:.0f} m saved "
                  f"({proposal.saved_pct:.1f} %)[/bold]")


@wms_app.command("count")
def count(
    location: str = LocationOpt,
    sku: list[str] = typer.Option([], "--sku", help="Count every bin of this SKU (repeatable)."),
    bin_id: list[str] = typer.Option([], "--bin", help="Count this bin (repeatable)."),
    namespace: str | None = NamespaceOpt,
) -> None:
    """Ask for a cycle count: the node puts a count task on the queue."""
    if not sku and not bin_id:
        err.print("[red]invalid[/red]: name at least one --sku or --bin")
        raise typer.Exit(EXIT_INVALID)
    count_id = f"C-{uuid.uuid4().hex[:8]}"
    request = RequestCount(count_id=count_id, location=location, skus=sku, bins=bin_id)
    asyncio.run(_publish(_settings(namespace), location, request))
    console.print(f"count task [bold]count/{count_id}[/bold] requested at {location}")


@wms_app.command("arrive")
def arrive(
    supply_id: str = typer.Argument(..., help="The delivery's id (ASN, purchase order, transfer)."),
    lines: list[str] = typer.Argument(..., help="What was announced: SKU=N ..."),
    location: str = LocationOpt,
    namespace: str | None = NamespaceOpt,
) -> None:
    """A delivery is at the dock: the node puts a receive task on the queue."""
    try:
        expected = [ExpectedLine(sku=s, qty=n) for s, _, n in parse_pairs(lines, "lines")]
    except ValueError as exc:
        err.print(f"[red]invalid[/red]: {exc}")
        raise typer.Exit(EXIT_INVALID) from exc
    asyncio.run(_publish(_settings(namespace), location,
                         SupplyArrived(supply_id=supply_id, location=location, lines=expected)))
    console.print(f"delivery [bold]{supply_id}[/bold] announced at {location}: receive task {supply_id}/receive")


async def _publish(settings: Settings, location: str, message: Message) -> None:
    async with Publisher(settings, source=f"baton/cli/{getpass.getuser()}") as publisher:
        await publisher.publish(WMS_COMMANDS, message.subject(), message, location=location, wait=True)
