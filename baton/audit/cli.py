"""``baton audit``: read a namespace's whole log and verify it; each violation named by topic, partition, offset."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton.audit.checks import AuditReport, Window, audit_records
from baton.audit.decisions import REPLAY_TOPICS, DecisionReplayer, OrderReplay, describe
from baton.audit.export import FORMATS, ExportError, rows, select, write
from baton.audit.log import LogRecord, parse_time, read_log
from baton.audit.plot import plot_whatif
from baton.audit.whatif import METRICS, WHATIF_TOPICS, WhatIf, what_if
from baton.audit.whatif import describe as _sourcing_text
from services.orchestrator.domain.rules import RuleSetError, parse_rule_set
from services.runtime.settings import Settings

console = Console()
err = Console(stderr=True)
EXIT_VIOLATIONS = 1
EXIT_BAD_INPUT = 2
EXIT_UNKNOWN = 3
SHOWN = 50


def settings_for(namespace: str | None) -> Settings:
    return Settings() if namespace is None else Settings().with_namespace(namespace)


def time_option(value: str | None, name: str) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError as exc:
        err.print(f"[red]{name}[/red]: not an ISO 8601 time: {value!r}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc


def read_with_progress(settings: Settings, until: datetime | None, quiet: bool,
                       topics: list[str] | None = None) -> tuple[list[LogRecord], float]:
    """The namespace's log with a progress bar on stderr; (records, seconds spent reading)."""
    started = time.perf_counter()
    if quiet:
        records = asyncio.run(read_log(settings, until=until, topics=topics))
        return records, time.perf_counter() - started
    columns = (TextColumn("reading {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(settings.namespace, total=None)
        records = asyncio.run(read_log(
            settings, until=until, topics=topics,
            on_total=lambda total: progress.update(task, total=total),
            on_progress=lambda n: progress.advance(task, n),
        ))
    return records, time.perf_counter() - started


def audit_command(
    start: str | None = typer.Option(None, "--from", help="Report violations of records stamped from this time."),
    end: str | None = typer.Option(None, "--to", help="Read the log up to this time (default: its end now)."),
    in_flight: float = typer.Option(120.0, "--in-flight", help="An open order that moved this many seconds before "
                                    "the end of the log (or --to) is in flight, not stuck."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """Verify the whole log: every cause present, each order's story whole, the ledger balanced, holds ended
    once, nothing negative or over-shipped, refunds within paid, and the invariants. Exit 1 on any violation."""
    settings = settings_for(namespace)
    since, until = time_option(start, "--from"), time_option(end, "--to")
    records, read_s = read_with_progress(settings, until, quiet=as_json)
    started = time.perf_counter()
    window = Window(int(since.timestamp() * 1000) if since else None, int(until.timestamp() * 1000) if until else None,
                    int(in_flight * 1000))
    report = audit_records(records, window)
    check_s = time.perf_counter() - started
    speed = {"read_s": round(read_s, 3), "check_s": round(check_s, 3),
             "events_per_s": round(len(records) / max(read_s + check_s, 1e-9))}
    if as_json:
        document = {"namespace": settings.namespace, **report.as_json(), **speed}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        _print_report(settings, report, speed)
    if not report.ok:
        raise typer.Exit(EXIT_VIOLATIONS)


def _print_report(settings: Settings, report: AuditReport, speed: dict[str, Any]) -> None:
    console.print(f"[bold]{settings.namespace}[/bold]: {report.records:,} records, {report.orders:,} orders "
                  f"({report.open_orders:,} still open, {report.in_flight:,} of them in flight), read and checked "
                  f"in {speed['read_s'] + speed['check_s']:.2f} s"
                  f" ({speed['events_per_s']:,} events/s)")
    invariants = Table("invariant", "held", title="Invariants (baton.invariants)")
    for check in report.invariants:
        held = "[green]yes[/green]" if check.held else f"[red]no ({len(check.violations)})[/red]"
        invariants.add_row(check.title, held)
    console.print(invariants)
    if report.ok:
        console.print("[green]audit clean[/green]: no violation")
        return
    counts = Counter(v.check for v in report.violations)
    console.print(f"[red]{len(report.violations)} violation(s)[/red]: "
                  + ", ".join(f"{name} {n}" for name, n in counts.most_common()))
    table = Table("check", "topic", "partition", "offset", "what")
    for violation in report.violations[:SHOWN]:
        table.add_row(violation.check, violation.topic, str(violation.partition), str(violation.offset),
                      violation.message)
    console.print(table)
    if len(report.violations) > SHOWN:
        console.print(f"... and {len(report.violations) - SHOWN} more (--json lists them all)")


def export_command(
    order_id: str | None = typer.Option(None, "--order", help="The events of this order."),
    start: str | None = typer.Option(None, "--from", help="The events stamped from this time."),
    end: str | None = typer.Option(None, "--to", help="The events stamped up to this time."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | csv | parquet (parquet needs pyarrow)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file (default: stdout)."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
) -> None:
    """The events of one order, or of a period, with their causation (id, cause id and cause type), one row
    each, for auditors' own tools."""
    if order_id is None and start is None and end is None:
        err.print("[red]say what to export[/red]: --order ID, or --from TIME / --to TIME")
        raise typer.Exit(EXIT_BAD_INPUT)
    if fmt not in FORMATS:
        err.print(f"[red]--format[/red]: one of {', '.join(FORMATS)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if fmt == "parquet" and out is None:
        err.print("[red]--format parquet[/red] needs --out FILE")
        raise typer.Exit(EXIT_BAD_INPUT)
    settings = settings_for(namespace)
    since, until = time_option(start, "--from"), time_option(end, "--to")
    records, _ = read_with_progress(settings, until, quiet=out is None)
    chosen = select(records, order_id=order_id, since=since, until=until)
    try:
        write(rows(chosen, records), fmt, out if out is not None else sys.stdout.buffer)
    except ExportError as exc:
        err.print(f"[red]export[/red]: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    if out is not None:
        err.print(f"{len(chosen):,} events written to {out}")


replay_app = typer.Typer(help="Re-make recorded decisions offline and compare.", no_args_is_help=True)


@replay_app.command("decision")
def replay_decision(
    order_id: str | None = typer.Argument(None, help="The order id (omit with --all)."),
    every: bool = typer.Option(False, "--all", help="Replay every order of the namespace; list the disagreements."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """Rebuild what the orchestrator knew when it decided for ORDER_ID (network and rule set versions in force,
    availability as its view held it), re-run the pure sourcing, and show recorded and replayed side by side.
    Exit 1 when they disagree, 3 when the order is unknown."""
    if order_id is None and not every:
        err.print("[red]give an ORDER_ID, or --all[/red]")
        raise typer.Exit(EXIT_BAD_INPUT)
    settings = settings_for(namespace)
    records, _ = read_with_progress(settings, None, quiet=as_json, topics=list(REPLAY_TOPICS))
    replayer = DecisionReplayer(records)
    replays = [replayer.replay(oid) for oid in (replayer.order_ids() if every else [str(order_id)])]
    if not every and not replays[0].found:
        err.print(f"[red]unknown order[/red] {order_id!r} in namespace {settings.namespace!r}")
        raise typer.Exit(EXIT_UNKNOWN)
    if as_json:
        document: dict[str, Any] = replays[0].as_json() if not every else {
            "orders": len(replays), "agree": sum(r.agree for r in replays),
            "disagree": [r.as_json() for r in replays if not r.agree]}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    elif every:
        console.print(f"{sum(r.agree for r in replays)} of {len(replays)} orders: every decision replayed agrees")
        for replay in replays:
            if not replay.agree:
                _print_replay(replay)
    else:
        _print_replay(replays[0])
    if not all(r.agree for r in replays):
        raise typer.Exit(EXIT_VIOLATIONS)


def _print_replay(replay: OrderReplay) -> None:
    verdict = "[green]agree[/green]" if replay.agree else "[red]DISAGREE[/red]"
    console.print(f"[bold]{replay.order_id}[/bold]: {len(replay.decisions)} decision(s), "
                  f"recorded and replayed {verdict}")
    for step in replay.decisions:
        rules = f"{step.rule_set} v{step.rule_set_version}" if step.rule_set_version is not None else \
            f"{step.rule_set} (default, none published)"
        head = f"on {step.input.type} at {step.input.where} ({step.input.time:%H:%M:%S.%f}"[:-3] + ")"
        console.print(f"\n{head}: rule set {rules}, network v{step.network_version}")
        if step.planned:
            stock = "; ".join(f"{sku}: " + ", ".join(f"{loc} {qty}" for loc, qty in sorted(by_loc.items()))
                              for sku, by_loc in sorted(step.availability.items()))
            console.print(f"  availability as published by {step.as_json()['view_at']} ({step.view_behind_ms} ms "
                          f"before the decision was written): {stock or 'none'}")
        table = Table("recorded", "replayed", "same")
        recorded, replayed = sorted(step.recorded), sorted(step.replayed)
        for i in range(max(len(recorded), len(replayed))):
            left = describe(recorded[i]) if i < len(recorded) else ""
            right = describe(replayed[i]) if i < len(replayed) else ""
            table.add_row(left, right, "[green]yes[/green]" if left == right else "[red]no[/red]")
        console.print(table)


def whatif_command(
    rules_file: Path = typer.Option(..., "--rules", help="The rule set to try (YAML or JSON, `baton rules` format)."),
    start: str | None = typer.Option(None, "--from", help="The orders placed from this time."),
    end: str | None = typer.Option(None, "--to", help="The orders placed up to this time."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw the differences into this PNG file."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """Source the recorded orders of a period again under another rule set, offline (nothing is written to
    Kafka), against the recorded stock; compare with the rules that were in force: cost, split orders,
    distance, shipments per location, backorders and rejections."""
    try:
        rules = parse_rule_set(yaml.safe_load(rules_file.read_text()), str(rules_file))
    except (OSError, yaml.YAMLError, RuleSetError) as exc:
        err.print(f"[red]--rules[/red]: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    settings = settings_for(namespace)
    since, until = time_option(start, "--from"), time_option(end, "--to")
    records, _ = read_with_progress(settings, None, quiet=as_json, topics=list(WHATIF_TOPICS))
    result = what_if(records, rules, int(since.timestamp() * 1000) if since else None,
                     int(until.timestamp() * 1000) if until else None)
    if plot is not None:
        plot_whatif(result, plot)
    if as_json:
        document = {**result.as_json(), "plot": str(plot) if plot else None}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    _print_whatif(result)
    if plot is not None:
        console.print(f"plot: {plot}")


def _print_whatif(result: WhatIf) -> None:
    orders = int(result.baseline.metrics["orders"])
    console.print(f"{orders} recorded orders; the rules in force, replayed, reproduce {result.baseline_agrees} "
                  f"of the recorded decisions")
    table = Table("figure", "recorded", "rules in force (replayed)", result.candidate_rules.name, "difference",
                  title=f"What if: {result.candidate_rules.name} v{result.candidate_rules.version}")
    differences = result.differences()
    for metric in METRICS:
        table.add_row(metric, f"{result.recorded.metrics[metric]:,.2f}", f"{result.baseline.metrics[metric]:,.2f}",
                      f"{result.candidate.metrics[metric]:,.2f}", _signed(differences[metric]))
    for location, change in result.location_differences().items():
        table.add_row(f"shipments from {location}", str(result.recorded.shipments_per_location[location]),
                      str(result.baseline.shipments_per_location[location]),
                      str(result.candidate.shipments_per_location[location]), _signed(change))
    console.print(table)
    changed = result.changed_orders()
    if not changed:
        console.print("[green]zero difference[/green]: every order sourced the same way")
        return
    orders_table = Table("order", "rules in force", result.candidate_rules.name,
                         title=f"{len(changed)} order(s) sourced differently")
    for order_id, base, other in changed[:SHOWN]:
        orders_table.add_row(order_id, _sourcing_text(base), _sourcing_text(other))
    console.print(orders_table)


def _signed(value: float) -> str:
    if not value:
        return "0"
    return f"[green]{value:+,.2f}[/green]" if value < 0 else f"[red]{value:+,.2f}[/red]"
