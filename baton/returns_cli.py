"""``baton returns show RETURN_ID``: a return's state from the read model and its story from the topics.

A return lives on its order (the orchestrator keeps it there); ``--order`` names that order, otherwise the
namespace's order views are searched for the return id. The story is the order's timeline (see
``baton orders show``) cut to the events that name the return: its request, authorisation or rejection, the
WMS node's receipt and inspection, the restock, the refund requests and the payment adapter's answers.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from baton.orders_cli import TimelineEntry, read_timeline, timeline_table
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

returns_app = typer.Typer(help="Returns and refunds: where a return is, and what was refunded.",
                          no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT_UNKNOWN = 1
SEARCH_CHUNK = 500


@returns_app.callback()
def _returns() -> None:
    """Returns: state from the Redis read model, story from the topics."""


@returns_app.command("show")
def show(
    return_id: str = typer.Argument(..., help="The return id, e.g. R-1."),
    order_id: str | None = typer.Option(None, "--order", "-o", help="Its order (else every order is searched)."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """The return's status, destination, label, inspection and refund, then its timeline."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    found = asyncio.run(_gather(settings, return_id, order_id))
    if found is None:
        err.print(f"[red]unknown return[/red] {return_id!r} in namespace {settings.namespace!r}"
                  + (f" on order {order_id!r}" if order_id else ""))
        raise typer.Exit(EXIT_UNKNOWN)
    owner, case, timeline = found
    if as_json:
        document = {"return_id": return_id, "order_id": owner, "namespace": settings.namespace, "return": case,
                    "timeline": [e.as_json() for e in timeline]}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    print_return(owner, case)
    console.print(timeline_table(f"return {return_id}", timeline))


async def _gather(
    settings: Settings, return_id: str, order_id: str | None
) -> tuple[str, dict[str, Any], list[TimelineEntry]] | None:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        owner, case = await find_return(read_model, return_id, order_id)
    finally:
        await read_model.close()
    if owner is None or case is None:
        return None
    timeline = await read_timeline(settings, owner)
    return owner, case, [e for e in timeline if names_return(e.data, return_id)]


def names_return(data: dict[str, Any], return_id: str) -> bool:
    """An event about the return: it names it, or one of its tasks (``R-1/receive_return``) or receipts
    (``ST-PAR:R-1:SKU``)."""
    for value in data.values():
        if isinstance(value, str) and (value == return_id or value.startswith(f"{return_id}/")
                                       or f":{return_id}:" in value):
            return True
    return False


async def find_return(
    read_model: ReadModel, return_id: str, order_id: str | None
) -> tuple[str | None, dict[str, Any] | None]:
    """The order holding the return, and the return as its view shows it."""
    candidates = [order_id] if order_id else await read_model.order_ids()
    for start in range(0, len(candidates), SEARCH_CHUNK):
        views = await read_model.read_orders(candidates[start:start + SEARCH_CHUNK])
        for owner, view in views.items():
            for case in (view or {}).get("returns", []):
                if case.get("return_id") == return_id:
                    return owner, case
    return None, None


def print_return(order_id: str, case: dict[str, Any]) -> None:
    console.print(f"[bold]{case['return_id']}[/bold] of order {order_id}  status [bold cyan]{case['status']}"
                  f"[/bold cyan]  {case.get('method', '')} to {case.get('destination') or '-'}"
                  + (f"  reason {case['reason']}" if case.get("reason") else ""))
    if case.get("label"):
        console.print(f"label: {case['label'].get('carrier')} {case['label'].get('tracking')}")
    table = Table("sku", "asked", "received", "condition", "disposition", title="Lines")
    received: dict[str, list[dict[str, Any]]] = {ln["sku"]: [] for ln in case.get("lines", [])}
    for line in case.get("received", []):
        received.setdefault(line["sku"], []).append(line)
    asked = {ln["sku"]: ln["qty"] for ln in case.get("lines", [])}
    for sku, lines in received.items():
        for i, line in enumerate(lines or [{}]):
            table.add_row(sku, str(asked.get(sku, 0)) if i == 0 else "", str(line.get("qty", "-")),
                          line.get("condition", "-"), line.get("disposition", "-"))
    console.print(table)
    refund = case.get("refund")
    if refund:
        console.print(f"refund: {refund['amount']:.2f} {refund.get('currency', '')}  {refund['status']}"
                      f"  attempts {refund.get('attempts', 1)}  key {refund['idempotency_key']}"
                      + (f"  ({refund['reason']})" if refund.get("reason") else ""))
    if case.get("exchange_order_id"):
        console.print(f"exchange: replacement order {case['exchange_order_id']}")
