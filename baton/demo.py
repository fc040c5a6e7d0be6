"""``baton demo``: the built-in scenario (three French warehouses, hundreds of orders) played end to end.

It plays ``baton/scenario/builtin/demo.yaml`` through the scenario runner, exactly like
``baton scenario run``, in a fresh namespace that is purged at the end unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton.scenario.model import Scenario, parse_scenario
from baton.scenario.runner import EXIT_COMPLETED, RunOptions, RunOutcome, run_scenario
from services.runtime.admin import purge_namespace
from services.runtime.settings import Settings

DEMO_RESOURCE = "builtin/demo.yaml"
EXIT_NOT_ALL_SHIPPED = 1
console = Console()
err = Console(stderr=True)


def demo_command(
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
    orders: int = typer.Option(300, "--orders", min=1, max=100_000, help="How many orders to generate."),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds to wait for every order to settle."),
    keep: bool = typer.Option(False, "--keep", help="Keep the services and the namespace for inspection."),
    web: bool = typer.Option(False, "--web", help="Serve the ops console and the worker app (port 8080) during "
                             "the demo and after it, with the services, until Ctrl-C."),
) -> None:
    """Three warehouses in France, ORDERS web orders: source, split, pick, pack, ship; then the figures."""
    scenario = demo_scenario(orders)
    clock = FlowClock()
    namespace = f"demo-{uuid.uuid4().hex[:6]}" if web else None
    pages = start_pages(namespace, [loc.id for loc in scenario.locations]) if namespace else None
    outcome = play(scenario, RunOptions(timeout_s=timeout, keep=keep or web, purge=not keep, namespace=namespace),
                   clock)
    summary = summarize(outcome.result, clock)
    if as_json:
        document = {k: v for k, v in outcome.result.items() if k != "orders"} | {"summary": summary}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_demo_summary(outcome.result, summary, keep)
    if pages is not None:
        serve_pages_until_interrupted(pages)
        if not keep:  # the services and the namespace were kept for the pages only
            end_demo(outcome)
    raise typer.Exit(exit_code(outcome, summary))


def start_pages(namespace: str, locations: list[str], port: int = 8080) -> subprocess.Popen[bytes]:
    """``baton web`` for the demo's namespace, in its own process; the addresses printed on stderr."""
    pages = subprocess.Popen([sys.executable, "-m", "baton", "web", "--namespace", namespace, "--port", str(port)],
                             stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    err.print(f"ops console: http://127.0.0.1:{port}/")
    for location in locations:
        err.print(f"worker app of {location}: http://127.0.0.1:{port}/worker/{location}")
    return pages


def serve_pages_until_interrupted(pages: subprocess.Popen[bytes]) -> None:
    err.print("the pages stay up with the services: Ctrl-C to stop them")
    try:
        pages.wait()
    except KeyboardInterrupt:
        pages.terminate()
        pages.wait(timeout=10)


def end_demo(outcome: RunOutcome) -> None:
    """What the run leaves without --keep: its services stopped, its namespace purged."""
    if outcome.services is None:
        return
    outcome.services.stop()
    settings = outcome.services.settings

    asyncio.run(purge_namespace(settings))


demo = demo_command


def demo_scenario(orders: int) -> Scenario:
    """The built-in file with ``generate.orders`` set; stock scaled up for more orders than it plans for."""
    document = yaml.safe_load(resources.files("baton.scenario").joinpath(DEMO_RESOURCE).read_text())
    planned = int(document["generate"]["orders"])
    document["generate"]["orders"] = orders
    factor = math.ceil(orders / planned)
    if factor > 1:
        document["stock"] = [{**row, "qty": row["qty"] * factor} for row in document["stock"]]
    return parse_scenario(document, f"baton.scenario/{DEMO_RESOURCE}")


@dataclass
class FlowClock:
    """When the first order went out (the initial stock was loaded) and when every order had settled."""

    started: float | None = None
    settled: float | None = None

    def observe(self, phase: str, done: int, total: int) -> None:
        if done < total:
            return
        if phase == "loading stock" and self.started is None:
            self.started = time.monotonic()
        elif phase == "settling" and self.settled is None:
            self.settled = time.monotonic()

    @property
    def flow_s(self) -> float | None:
        if self.started is None or self.settled is None:
            return None
        return self.settled - self.started


def play(scenario: Scenario, options: RunOptions, clock: FlowClock) -> RunOutcome:
    """Run the scenario with a progress bar per phase on stderr, timing the order flow."""
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            clock.observe(phase, done, total)
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=max(total, 1))
            bar.update(tasks[phase], completed=done, total=max(total, 1))

        options.progress = report
        return run_scenario(scenario, Settings(), options)


def summarize(result: dict[str, Any], clock: FlowClock) -> dict[str, Any]:
    orders = result["orders"]
    split = sorted(oid for oid, o in orders.items() if len({s["location"] for s in o["shipments"]}) > 1)
    by_status = Counter(o["status"] for o in orders.values())
    flow_s = clock.flow_s
    return {
        "orders": len(orders),
        "by_status": dict(sorted(by_status.items())),
        "all_shipped": by_status.get("shipped", 0) == len(orders),
        "shipments_per_location": dict(sorted(Counter(
            s["location"] for o in orders.values() for s in o["shipments"]).items())),
        "units_per_location": _units_per_location(orders),
        "split_orders": len(split),
        "example_split_order": split[0] if split else None,
        "elapsed_s": result["elapsed_s"],
        "flow_s": round(flow_s, 2) if flow_s is not None else None,
        "orders_per_s": round(len(orders) / flow_s, 1) if flow_s else None,
        "orders_per_s_overall": round(len(orders) / result["elapsed_s"], 1) if result["elapsed_s"] else None,
    }


def _units_per_location(orders: dict[str, Any]) -> dict[str, int]:
    units: Counter[str] = Counter()
    for order in orders.values():
        for shipment in order["shipments"]:
            units[shipment["location"]] += sum(line["qty"] for line in shipment["lines"])
    return dict(sorted(units.items()))


def exit_code(outcome: RunOutcome, summary: dict[str, Any]) -> int:
    if outcome.exit_code != EXIT_COMPLETED:
        return outcome.exit_code
    if not summary["all_shipped"] or not outcome.result["invariants"]["ok"]:
        return EXIT_NOT_ALL_SHIPPED
    return EXIT_COMPLETED


def print_demo_summary(result: dict[str, Any], summary: dict[str, Any], keep: bool) -> None:
    state = "completed" if result["completed"] else "[red]TIMED OUT[/red]"
    console.print(f"[bold]{result['scenario']}[/bold] in namespace {result['namespace']}: {state}")
    statuses = Table("status", "orders", title="Orders by status")
    for status, count in summary["by_status"].items():
        statuses.add_row(status, str(count), style=None if status == "shipped" else "red")
    console.print(statuses)
    shipments = Table("location", "shipments", "units", title="Shipments per location")
    for location, count in summary["shipments_per_location"].items():
        shipments.add_row(location, str(count), str(summary["units_per_location"].get(location, 0)))
    console.print(shipments)
    console.print(_figures(result, summary))
    if keep and summary["example_split_order"]:
        ns = result["namespace"]
        console.print(f"explore: baton orders show {summary['example_split_order']} --namespace {ns}")
    if keep:
        console.print(f"pages: baton web --namespace {result['namespace']}, then the console at http://127.0.0.1:8080/"
                      " and a location's worker app at http://127.0.0.1:8080/worker/LOCATION")


def _figures(result: dict[str, Any], summary: dict[str, Any]) -> Table:
    inv = result["invariants"]
    figures = Table("figure", "value", title="Run", show_header=False)
    figures.add_row("orders", str(summary["orders"]))
    figures.add_row("split orders", str(summary["split_orders"]))
    figures.add_row("elapsed (with start-up)", f"{summary['elapsed_s']} s")
    figures.add_row("order flow (first order out → all settled)", f"{summary['flow_s']} s")
    figures.add_row("orders / second (order flow)", str(summary["orders_per_s"]))
    figures.add_row("dead letters", str(result["dead_letters"]))
    invariants = "[green]ok[/green]" if inv["ok"] else "[red]" + "; ".join(inv["violations"])
    figures.add_row("invariants", invariants)
    return figures
