"""``baton scenario run FILE``: the black-box interface of ``../shared/SCENARIOS.md``."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton.scenario.model import ScenarioError, load_scenario
from baton.scenario.runner import RunOptions, RunOutcome, run_scenario
from services.runtime.settings import Settings

scenario_app = typer.Typer(help="Play scenario files against the real services.", no_args_is_help=True)
err = Console(stderr=True)
EXIT_INVALID = 2


@scenario_app.command("run")
def run(
    file: Path = typer.Argument(..., help="A scenario file (YAML or JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for every order to settle."),
    namespace: str | None = typer.Option(None, "--namespace", help="Run in this namespace (default: a fresh one)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the services (and stack) running for inspection."),
    purge: bool = typer.Option(False, "--purge", help="Delete the run's topics, groups and Redis keys at the end."),
) -> None:
    """Bring up what is missing, play FILE, wait until it settles, print the result."""
    try:
        scenario = load_scenario(file)
    except ScenarioError as exc:
        err.print(f"[red]invalid scenario[/red]: {exc}")
        raise typer.Exit(EXIT_INVALID) from exc
    outcome = play_with_progress(scenario, RunOptions(timeout_s=timeout, namespace=namespace, keep=keep, purge=purge))
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(outcome.result, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_summary(outcome.result)
    raise typer.Exit(outcome.exit_code)


def play_with_progress(scenario: Any, options: RunOptions) -> RunOutcome:
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=max(total, 1))
            bar.update(tasks[phase], completed=done, total=max(total, 1))

        options.progress = report
        return run_scenario(scenario, Settings(), options)


def print_summary(result: dict[str, Any]) -> None:
    console = Console()
    status = "completed" if result["completed"] else "[red]TIMED OUT[/red]"
    console.print(f"[bold]{result['scenario']}[/bold] in namespace {result['namespace']}: {status} "
                  f"in {result['elapsed_s']} s")
    by_status = Counter(o["status"] for o in result["orders"].values())
    table = Table("status", "orders", title="Orders")
    for name, count in sorted(by_status.items()):
        table.add_row(name, str(count))
    console.print(table)
    shipments: Counter[str] = Counter(s["location"] for o in result["orders"].values() for s in o["shipments"])
    if shipments:
        per_location = Table("location", "shipments", title="Shipments")
        for location, count in sorted(shipments.items()):
            per_location.add_row(location, str(count))
        console.print(per_location)
    _print_returns(console, result)
    stock = Table("location", "sku", "on hand", "reserved", "available", "incoming", title="Stock")
    for location, skus in sorted(result["stock"].items()):
        for sku, pos in sorted(skus.items()):
            stock.add_row(location, sku, *(str(pos[k]) for k in ("on_hand", "reserved", "available", "incoming")))
    console.print(stock)
    inv = result["invariants"]
    console.print(f"dead letters: {result['dead_letters']}   invariants: "
                  + ("[green]ok[/green]" if inv["ok"] else "[red]" + "; ".join(inv["violations"]) + "[/red]"))


def _print_returns(console: Console, result: dict[str, Any]) -> None:
    """Each return: where it went, what became of it, and the refund paid for it."""
    rows = []
    for order_id, order in sorted(result["orders"].items()):
        paid = {r["return_id"]: r for r in order.get("refunds", [])}
        for case in order.get("returns", []):
            refund = paid.get(case["return_id"])
            rows.append((case["return_id"], order_id, case["status"], case.get("destination") or "-",
                         case.get("disposition") or "-",
                         f"{refund['amount']:.2f} ({refund['status']})" if refund else "-"))
    if rows:
        table = Table("return", "order", "status", "destination", "disposition", "refund", title="Returns")
        for row in rows:
            table.add_row(*row)
        console.print(table)
