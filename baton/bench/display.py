"""The bench on screen: a live line while it runs (placed / allocated / shipped, current rates), a final report."""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.table import Table
from rich.text import Text

from baton.bench.run import Live

RATE_SPAN_S = 3.0  # the current rate is taken over the last few seconds


class LiveProgress(Live):
    """A rich live line on stderr (stdout stays clean for ``--json``)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.text = "starting"
        self.total = 0
        self.history: deque[tuple[float, int, int, int]] = deque()
        self.live = RichLive(console=console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        self.live.update(self._render())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.live.__exit__(kind, error, trace)

    def phase(self, text: str) -> None:
        self.text = text
        self.live.update(self._render())

    def counts(self, placed: int, allocated: int, shipped: int, total: int) -> None:
        now = time.monotonic()
        self.history.append((now, placed, allocated, shipped))
        while len(self.history) > 2 and now - self.history[0][0] > RATE_SPAN_S:
            self.history.popleft()
        self.total = total
        self.live.update(self._render())

    def _render(self) -> Group:
        elapsed = time.monotonic() - self.started
        lines = [Text(f"[{elapsed:6.1f} s] {self.text}", style="bold")]
        if self.history:
            (t0, *first), (t1, *last) = self.history[0], self.history[-1]
            span = max(t1 - t0, 1e-6)
            rates = [(b - a) / span for a, b in zip(first, last, strict=True)]
            cells = [f"{name} {count:>6}/{self.total} ({rate:6.1f}/s)"
                     for name, count, rate in zip(("placed", "allocated", "shipped"), last, rates, strict=True)]
            lines.append(Text("   ".join(cells)))
        return Group(*lines)


def _num(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def print_report(document: dict[str, Any], console: Console) -> None:
    bench, figures = document["bench"], document["figures"]
    state = "completed" if document["completed"] else (
        "[red]STUCK: no order moved for minutes[/red]" if document.get("stalled") else "[red]TIMED OUT[/red]")
    console.print(f"[bold]baton bench[/bold] {bench['network']}: {bench['orders']} orders, {bench['mode']}"
                  f"{'' if bench['workers'] else ', no workers'}, namespace {bench['namespace']}, code {bench['code']}:"
                  f" {state} in {document['elapsed_s']:.1f} s")
    console.print(_orders_table(figures))
    console.print(_throughput_table(document))
    console.print(_records_table(figures))
    console.print(_baseline_table(document))
    console.print(_resources_table(figures))
    if document.get("chaos"):
        console.print(_chaos_table(document["chaos"]))
    if document.get("returns"):
        console.print(_returns_table(document["returns"]))
    console.print(_invariants_table(document["invariants"]))
    if document.get("files"):
        console.print(f"written: {document['files']['json']}  {document['files'].get('png', '')}")


def _orders_table(figures: dict[str, Any]) -> Table:
    table = Table("orders", "count", title="Orders (from the topics)")
    for name, count in figures["orders"].items():
        table.add_row(name.replace("_", " "), _num(count))
    table.add_row("final statuses", ", ".join(f"{k} {v}" for k, v in figures["statuses"].items()))
    return table


def _throughput_table(document: dict[str, Any]) -> Table:
    figures, load = document["figures"], document["load"]
    table = Table("figure", "value", title="Throughput (steady part: 10th to 90th percentile) and latency")
    for name in ("placed", "allocated", "shipped"):
        window = figures["throughput"][name]
        span = "" if window["from"] is None else f" (from {window['from']:.1f} s to {window['to']:.1f} s)"
        table.add_row(f"orders/s {name}", _num(window["per_s"]) + span)
    if load["mode"] == "open_loop":
        behind = "[red]fell behind[/red]" if load["fell_behind"] else "on schedule"
        table.add_row("producer schedule", f"{behind}: {load['late_orders']} late orders, "
                      f"worst {_ms(load['behind_max_s'])}, p99 {_ms(load['behind_p99_s'])}")
    for name, summary in figures["latency"].items():
        table.add_row(name.replace("_", " "), "  ".join(
            f"{p} {_ms(summary[f'{p}_s'])}" for p in ("p50", "p95", "p99", "max")) + f"  ({summary['count']} orders)")
    return table


def _records_table(figures: dict[str, Any]) -> Table:
    records = figures["records"]
    table = Table("topic", "records", "records/order", "bytes/order", title="Kafka records written per order")
    for part in ("total", "events", "internal"):
        row = records[part]
        table.add_row(f"[bold]{part}[/bold]", _num(row["records"]), _num(row["records_per_order"]),
                      _num(row["bytes_per_order"], 0))
    for topic, row in records["per_topic"].items():
        if row["records"]:
            table.add_row(("  (internal) " if row["internal"] else "  ") + topic, _num(row["records"]),
                          _num(row["records_per_order"], 2), _num(row["bytes_per_order"], 0))
    return table


def _baseline_table(document: dict[str, Any]) -> Table:
    pipeline, baseline = document["figures"]["pipeline"], document["baseline"]
    raw, perf = baseline["raw_aiokafka"], baseline["producer_performance"]
    table = Table("figure", "records/s", title="Pipeline beside raw Kafka (same broker, same run)")
    table.add_row("pipeline (every topic, steady part)", _num(pipeline["records"]["per_s"], 0))
    table.add_row(f"raw aiokafka produce + consume ({raw['records']:,} x {raw['record_bytes']} B)",
                  _num(raw["records_per_s"], 0))
    table.add_row("pipeline share of raw", "-" if pipeline["share_of_raw"] is None
                  else f"{pipeline['share_of_raw'] * 100:.1f} %")
    table.add_row("Kafka ProducerPerformance (acks=all)", perf.get("error") or _num(perf["per_s"], 0))
    return table


def _resources_table(figures: dict[str, Any]) -> Table:
    resources = figures["resources"]
    table = Table("process", "CPU s", "CPU s / 1,000 orders", "peak RSS MB", title="Resources")
    for name, cpu in resources["cpu_seconds"].items():
        table.add_row(name, _num(cpu), _num(resources["cpu_seconds_per_1000_orders"].get(name)),
                      _num(resources["peak_rss_mb"].get(name), 0))
    table.add_row("[bold]total[/bold]", _num(sum(resources["cpu_seconds"].values())),
                  _num(resources["cpu_seconds_per_1000_orders"].get("total")), "")
    return table


def _chaos_table(chaos: dict[str, Any]) -> Table:
    table = Table("service", "killed at", "back after", "measured by", title=f"Chaos: {' '.join(chaos['kills'])}")
    for restart in chaos["restarts"]:
        back = "[red]not back[/red]" if restart["seconds"] is None else f"{restart['seconds']:.2f} s"
        killed = time.strftime("%H:%M:%S", time.localtime(restart["killed_at"]))
        table.add_row(restart["service"], killed, back, restart["measured_by"])
    for name in chaos["skipped"]:
        table.add_row(name, "skipped: the load was over", "", "")
    return table


def _returns_table(returns: dict[str, Any]) -> Table:
    def spread(counts: dict[str, int]) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))

    table = Table("returns", "", title="Returns and refunds")
    table.add_row("returns sent (orders shipped)", f"{returns['sent']} of {returns['planned']} planned"
                  + (f", {returns['not_shipped']} never shipped" if returns["not_shipped"] else ""))
    table.add_row("requests published", f"{returns['requests_published']} ({returns['sent_twice']} sent twice)")
    table.add_row("method / condition", f"{spread(returns['by_method'])} / {spread(returns['by_condition'])}")
    table.add_row("partial returns", str(returns["partial"]))
    settled = returns["settled"] == returns["sent"]
    table.add_row("settled", f"{returns['settled']} of {returns['sent']}" if settled
                  else f"[red]{returns['settled']} of {returns['sent']}[/red]")
    table.add_row("status / disposition", f"{spread(returns['by_status'])} / {spread(returns['by_disposition'])}")
    table.add_row("refunds paid (one per key)", f"{returns['refunds_paid']}: {returns['refunded_amount']:.2f}")
    table.add_row("refund requests / retries / failed",
                  f"{returns['refund_requests']} / {returns['refund_retries']} / {returns['refunds_failed']}")
    table.add_row("keys / repeated answers", f"{returns['refund_keys']} / {returns['repeated_answers']}")
    if returns.get("kills_during_refunds"):
        table.add_row("killed while refunds were asked", ", ".join(returns["kills_during_refunds"]))
    return table


def _invariants_table(invariants: dict[str, Any]) -> Table:
    table = Table("invariant", "held", "broken by", title="Invariants")
    for check in invariants.get("checks", []):
        culprits = ", ".join(check["culprits"][:8]) + (" ..." if len(check["culprits"]) > 8 else "")
        table.add_row(check["title"], "[green]yes[/green]" if check["held"] else "[red]NO[/red]", culprits)
    return table


def print_restart_report(document: dict[str, Any], console: Console) -> None:
    """``--restart-after``: each service's kill -9 to back processing, beside what its restore read."""
    bench, placing = document["bench"], document["placing"]
    verdict = "[green]all within[/green]" if document["ok"] else "[red]NOT all within[/red]"
    console.print(f"[bold]baton bench --restart-after[/bold] {bench['orders']:,} orders in state "
                  f"({placing['orders_per_s']} orders/s placed → allocated, "
                  f"{', '.join(f'{k} {v}' for k, v in placing['statuses'].items())}), namespace {bench['namespace']}, "
                  f"code {bench['code']}: {verdict} {document['target_s']:.0f} s")
    console.print(restart_table(document))
    if document.get("files"):
        console.print(f"written: {document['files']['json']}")


def restart_table(document: dict[str, Any]) -> Table:
    table = Table("service", "kill → back (offsets move)", "kill → first new order allocated",
                  "restore read: records", "bytes", title="Restart to processing (kill -9, restarted at once)")
    for row in document["restarts"]:
        read = row["restore_read"]
        table.add_row(row["service"], _seconds(row["back_s"]) + ("" if row["back_measured_by"] == "offsets"
                                                                  else f" ({row['back_measured_by']})"),
                      _seconds(row["first_allocated_s"]), _num(read["records"]), _num(read["bytes"], 0))
    return table


def _seconds(value: float | None) -> str:
    return "[red]not back[/red]" if value is None else f"{value:.2f} s"
