"""``baton orders explain ID``: why every candidate location won or lost each sourcing decision of an order."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from baton.orders_cli import TimelineEntry, read_timeline
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

console = Console()
err = Console(stderr=True)
DECISIONS = ("order.allocated.v1", "order.rejected.v1", "order.cancel_refused.v1")


def explain_command(
    order_id: str = typer.Argument(..., help="The order id."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """Every sourcing decision of the order: rule set and version, the rule that decided, each candidate's
    score (share of the order it could serve), distance and cost, or the reason it was excluded."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    view, timeline = asyncio.run(_gather(settings, order_id))
    if view is None and not timeline:
        err.print(f"[red]unknown order[/red] {order_id!r} in namespace {settings.namespace!r}")
        raise typer.Exit(1)
    decisions = [_decision(e) for e in timeline if e.type in DECISIONS]
    latest = (view or {}).get("decision") or {}
    if as_json:
        document = {"order_id": order_id, "status": (view or {}).get("status"), "decisions": decisions,
                    "latest_plan": latest}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    console.print(f"[bold]{order_id}[/bold]: {(view or {}).get('status', '?')}")
    for decision in decisions:
        _print_decision(decision)
    if latest and not any(d["type"] == "order.allocated.v1" for d in decisions):
        _print_decision({"type": "latest plan", **latest, "chosen": [a["location"] for a in latest["assignments"]]})


async def _gather(settings: Settings, order_id: str) -> tuple[dict[str, Any] | None, list[TimelineEntry]]:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        return await asyncio.gather(read_model.read_order(order_id), read_timeline(settings, order_id))
    finally:
        await read_model.close()


def _decision(entry: TimelineEntry) -> dict[str, Any]:
    data = entry.data
    chosen = sorted({a["location"] for a in data.get("allocations", [])})
    return {"type": entry.type, "time": entry.time.isoformat(), "chosen": chosen, **data}


def _print_decision(decision: dict[str, Any]) -> None:
    kind = decision["type"]
    if kind == "order.rejected.v1":
        console.print(f"[red]rejected[/red]: {decision['reason']}")
        return
    if kind == "order.cancel_refused.v1":
        console.print(f"[yellow]cancel refused[/yellow]: {decision['reason']}")
        return
    header = (f"{kind} — rule set {decision.get('rule_set', '?')} v{decision.get('rule_set_version', '?')}, "
              f"rule: {decision.get('rule', '?')}, attempt {decision.get('attempt', '?')}")
    table = Table("location", "outcome", "serves", "distance km", "cost", "why", title=header, title_justify="left")
    chosen = set(decision.get("chosen", []))
    for c in decision.get("candidates", []):
        outcome = "[green]chosen[/green]" if c["location"] in chosen else ("lost" if c["eligible"] else "excluded")
        serves = f"{c['score']:.0%}" if c.get("score") is not None else "-"
        distance = f"{c['distance_km']:.1f}" if c.get("distance_km") is not None else "-"
        cost = f"{c['cost']:.2f}" if c.get("cost") is not None else "-"
        table.add_row(c["location"], outcome, serves, distance, cost, c.get("reason") or "")
    console.print(table)
