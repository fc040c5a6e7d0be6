"""``docs/benchmarks.md`` from the recorded runs (``docs/benchmarks/<label>.json``, what ``baton bench --json`` wrote).

``python -m baton.bench.docs [--record FILE --label LABEL]`` copies a fresh run in under its label (with its
PNG), then rewrites the page: one column per recorded run, the exact commands, the machines and the dates.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import typer

from services.runtime.settings import project_root

DOCS = project_root() / "docs"
RUNS_DIR = DOCS / "benchmarks"
RESTART_DIR = RUNS_DIR / "restart"  # ``baton bench --restart-after`` runs: their own section, not columns
RETURNS_DIR = RUNS_DIR / "returns"  # ``baton bench --returns`` runs under kills: their own section
SECTIONS_DIR = RUNS_DIR / "sections"  # other benchmarks (the audit's read speed): written by hand, kept as they are
PAGE = DOCS / "benchmarks.md"
Run = dict[str, Any]
Row = tuple[str, Callable[[Run], str]]


def _get(run: Run, *path: str) -> Any:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _n(value: Any, digits: int = 0, scale: float = 1.0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value * scale:,.{digits}f}{unit}"


def _latency(stage: str) -> Callable[[Run], str]:
    def cell(run: Run) -> str:
        summary = _get(run, "figures", "latency", stage) or {}
        return " / ".join(_n(summary.get(k), 0, 1000) for k in ("p50_s", "p95_s", "p99_s", "max_s")) + " ms"
    return cell


def _parts(run: Run, figure: str, digits: int) -> str:
    total, events, internal = (_n(_get(run, "figures", "records", part, figure), digits)
                               for part in ("total", "events", "internal"))
    return f"{total} ({events} + {internal})"


def _busiest(run: Run) -> str:
    per_1000 = dict(_get(run, "figures", "resources", "cpu_seconds_per_1000_orders") or {})
    per_1000.pop("total", None)
    top = sorted(((v, k) for k, v in per_1000.items() if v is not None), reverse=True)[:3]
    return ", ".join(f"{name} {value:,.0f}" for value, name in top) or "-"


def _rss(run: Run) -> str:
    peaks = _get(run, "figures", "resources", "peak_rss_mb") or {}
    services = [v for k, v in peaks.items() if k not in ("kafka", "redis", "bench")]
    return (f"services ≤ {_n(max(services, default=None))} MB, broker {_n(peaks.get('kafka'))} MB, "
            f"Redis {_n(peaks.get('redis'))} MB")


def _restarts(run: Run) -> str:
    chaos = run.get("chaos")
    if not chaos:
        return "-"
    seconds = [r["seconds"] for r in chaos["restarts"] if r["seconds"] is not None]
    lost = sum(1 for r in chaos["restarts"] if r["seconds"] is None)
    worst = f"worst {max(seconds):.1f} s" if seconds else ""
    return f"{' '.join(chaos['kills'])}: {len(chaos['restarts'])} restarts, {worst}" + (f", {lost} not back" if lost
                                                                                           else "")


def _invariants(run: Run) -> str:
    checks = _get(run, "invariants", "checks") or []
    broken = [c for c in checks if not c["held"]]
    if not broken:
        return f"all {len(checks)} held"
    return "; ".join(f"**broken**: {c['title']} ({len(c['culprits'])})" for c in broken)


ROWS: list[Row] = [
    ("load", lambda r: f"{r['bench']['orders']:,} orders, {r['bench']['mode'].replace('_', ' ')}"
     + (f" at {r['bench']['rate']:g}/s" if r["bench"]["rate"] else "")
     + ("" if r["bench"]["workers"] else ", no workers")),
    ("settled", lambda r: f"{'yes' if r['completed'] else 'NO (stuck)' if r.get('stalled') else 'NO (timed out)'}; "
     + ", ".join(f"{k} {v}" for k, v in r["figures"]["statuses"].items())),
    ("orders/s placed → allocated (steady)", lambda r: _n(_get(r, "figures", "throughput", "allocated", "per_s"), 1)),
    ("orders/s placed → shipped (steady)", lambda r: _n(_get(r, "figures", "throughput", "shipped", "per_s"), 1)),
    ("latency placed → allocated p50 / p95 / p99 / max", _latency("placed_to_allocated")),
    ("latency placed → shipped p50 / p95 / p99 / max", _latency("placed_to_shipped")),
    ("producer behind schedule (open loop)", lambda r: "-" if r["load"]["mode"] == "burst" else
     f"{r['load']['late_orders']} late, worst {_n(r['load']['behind_max_s'], 0, 1000)} ms"),
    ("Kafka records per order: total (events + internal)", lambda r: _parts(r, "records_per_order", 1)),
    ("bytes per order: total (events + internal)", lambda r: _parts(r, "bytes_per_order", 0)),
    ("pipeline records/s (steady)", lambda r: _n(_get(r, "figures", "pipeline", "records", "per_s"))),
    ("raw aiokafka records/s, same size, same run", lambda r: _n(_get(r, "baseline", "raw_aiokafka", "records_per_s"))
     + f" ({_n(_get(r, 'baseline', 'raw_aiokafka', 'record_bytes'))} B)"),
    ("**pipeline share of raw**", lambda r: _n(_get(r, "figures", "pipeline", "share_of_raw"), 1, 100, " %")),
    ("Kafka ProducerPerformance records/s", lambda r: _n(_get(r, "baseline", "producer_performance", "per_s"))
     if _get(r, "baseline", "producer_performance", "per_s") else str(_get(r, "baseline", "producer_performance",
                                                                          "error"))),
    ("CPU s per 1,000 orders (all processes)", lambda r: _n(_get(
        r, "figures", "resources", "cpu_seconds_per_1000_orders", "total"))),
    ("… the busiest processes", _busiest),
    ("peak RSS", _rss),
    ("chaos restarts (kill → first message handled)", _restarts),
    ("invariants", _invariants),
    ("dead letters", lambda r: str(r["dead_letters"])),
    ("code, date", lambda r: f"`{r['bench']['code']}`, {r['bench']['started_at'][:16].replace('T', ' ')} UTC"),
    ("machine", lambda r: "{cores} cores, {memory_gb} GB, Python {python}".format(**r["bench"]["machine"])),
    ("load average (1 min) at start / end", lambda r: "{start} / {end}".format(**r["bench"]["load_average_1m"])),
]

HEADER = """# Benchmarks

Every figure here comes from `baton bench` (see the README's *Benchmarks* section for what each one
means and how it is computed): orders placed on the public inbound topic like any outside producer,
every figure read back from the topics afterwards (event times and record counts), never from the
services' logs. The raw baseline is taken in the same run, through the same broker, so the **share of
raw** is the figure that carries from one machine to the next; absolute rates do not. The broker,
Redis and every service share the same two cores (and, on the machine below, other sessions' tests
shared them too, so the absolute figures are noisy).

Columns named `before-*` were measured on commit `8993270`, the faust-streaming services as they were
before issue 9's processing rewrite, from a git worktree of that commit with the bench package copied in.

Regenerate with `make bench` (a default run, recorded as `current`), or record any run with
`python -m baton.bench.docs --record DIR/bench.json --label NAME`. The raw JSON and the PNG of each
run are in `docs/benchmarks/`.
"""


def render(runs: dict[str, Run]) -> str:
    labels = list(runs)
    lines = [HEADER, "## Figures", "", "| figure | " + " | ".join(f"`{label}`" for label in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for title, cell in ROWS:
        lines.append(f"| {title} | " + " | ".join(_safe(cell, runs[label]) for label in labels) + " |")
    lines += restart_section(load_runs(RESTART_DIR))
    lines += returns_section(load_runs(RETURNS_DIR))
    lines += other_sections()
    lines += ["", "## The runs", ""]
    for label, run in runs.items():
        lines += [f"### `{label}`", "", "```", run["bench"]["command"], "```", ""]
        if run.get("note"):
            lines += [run["note"], ""]
        lines += [f"![{label}](benchmarks/{label}.png)", ""]
        lines += _per_topic(run)
    return "\n".join(lines).rstrip() + "\n"


def other_sections() -> list[str]:
    """Hand-written sections of other measurements (``docs/benchmarks/sections/*.md``), kept on every rewrite."""
    return [line for path in sorted(SECTIONS_DIR.glob("*.md")) for line in ["", *path.read_text().rstrip().split("\n")]]


def restart_section(runs: dict[str, Run]) -> list[str]:
    """Issue 9's figure: each service's kill -9 to processing again, with N orders in its state."""
    if not runs:
        return []
    lines = ["", "## Restart with 100,000 orders in state", "",
             "`baton bench --restart-after N` places N orders with nobody working the WMS tasks (so every order "
             "stays in the orchestrator's state, its reservations in the inventory's ledgers, its tasks in the WMS "
             "nodes' entities), waits until they are allocated, then kills each of the orchestrator, the inventory "
             "and one WMS node with SIGKILL, restarts it at once and places a trickle of new orders (one every "
             "0.2 s). **back** is when the service's consumer group committed offsets past where the kill left them "
             "(read on Kafka, never from its log); **first allocated** is the first new order's `allocated` status "
             "on the public status topic; **restore read** is what its changelog topics held (committed records, "
             "key + value bytes) just before the kill. Target: 10 s. `make bench-restart` records a run here.", "",
             "| run | service | kill → back | kill → first new order allocated | restore read: records | bytes |",
             "|---|---|---|---|---|---|"]
    for label, run in runs.items():
        for row in run["restarts"]:
            read = row["restore_read"]
            lines.append(f"| `{label}` | {row['service']} | {_n(row['back_s'], 2, unit=' s')} | "
                         f"{_n(row['first_allocated_s'], 2, unit=' s')} | {_n(read['records'])} | "
                         f"{_n(read['bytes'])} |")
    lines.append("")
    for label, run in runs.items():
        bench, placing = run["bench"], run["placing"]
        load = bench["load_average_1m"]
        machine = bench["machine"]
        statuses = ", ".join(f"{k} {v:,}" for k, v in placing["statuses"].items())
        lines += [f"### `{label}`", "", "```", bench["command"], "```", "",
                  f"{bench['orders']:,} orders placed in {placing['send_s']:,.0f} s, as far as they go after "
                  f"{placing['allocated_s']:,.0f} s ({placing['orders_per_s']} orders/s; {statuses}). Code "
                  f"`{bench['code']}`, {bench['started_at'][:16].replace('T', ' ')} UTC, {machine['cores']} cores, "
                  f"{machine['memory_gb']} GB, Python {machine['python']}; load average (1 min) "
                  f"{load['start']} at the start, {load['end']} at the end.", ""]
        if run.get("note"):
            lines += [run["note"], ""]
    return lines


def returns_section(runs: dict[str, Run]) -> list[str]:
    """Issue 11's figure: returns and refunds mixed into a load while every service is killed -9."""
    if not runs:
        return []
    lines = ["", "## Chaos with returns", "",
             "`baton bench --returns 0.3 --kill SERVICE:N ...` returns a share of the orders shipped to a customer "
             "once each has shipped (by mail or in the store that takes returns; declared sellable, damaged or "
             "defective; some partial; some requests published twice), as an outside producer would, and waits "
             "until every return is refunded, rejected or received with nothing to pay. Half of each service's "
             "kills land while the orders flow, the other half (an odd one too) from the first refund on. "
             "**refunds** are read back from the payments topics: requests (retries: attempt > 1), the provider's "
             "failures, the refunds paid (one per idempotency key) and their sum; **killed among refunds** are the "
             "kills that landed between the first and the last refund request. The invariants include *no order "
             "refunded beyond what was paid* and *each return's refund requested under one key, paid at most "
             "once*.", "",
             "| run | orders settled | returns sent (twice / partial / in store) | returns settled | "
             "refunds paid / keys / requests / retries / failed | refunded | kills: restarts, worst | "
             "killed among refunds | invariants |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, run in runs.items():
        ret, chaos = run["returns"], run.get("chaos") or {"kills": [], "restarts": [], "skipped": []}
        seconds = [r["seconds"] for r in chaos["restarts"] if r["seconds"] is not None]
        lines.append(
            f"| `{label}` | {'yes' if run['completed'] else 'NO'}, {run['bench']['orders']:,} | {ret['sent']} "
            f"({ret['sent_twice']} / {ret['partial']} / {ret['by_method'].get('in_store', 0)}) | "
            f"{ret['settled']}: " + ", ".join(f"{k} {v}" for k, v in sorted(ret["by_status"].items())) + " | "
            f"{ret['refunds_paid']} / {ret['refund_keys']} / {ret['refund_requests']} / {ret['refund_retries']} / "
            f"{ret['refunds_failed']} | {ret['refunded_amount']:,.2f} | {len(chaos['restarts'])}"
            + (f" ({len(chaos['skipped'])} skipped)" if chaos["skipped"] else "")
            + (f", {max(seconds):.1f} s" if seconds else "")
            + (f", **{len(chaos['restarts']) - len(seconds)} not back**" if len(seconds) < len(chaos["restarts"])
               else "") + f" | {', '.join(ret.get('kills_during_refunds', []))}"
            f" | {_invariants(run)} |")
    lines.append("")
    for label, run in runs.items():
        bench = run["bench"]
        lines += [f"### `{label}`", "", "```", bench["command"], "```", "",
                  f"Code `{bench['code']}`, {bench['started_at'][:16].replace('T', ' ')} UTC, "
                  f"{run['elapsed_s']:,.0f} s; load average (1 min) {bench['load_average_1m']['start']} at the start, "
                  f"{bench['load_average_1m']['end']} at the end.", ""]
        if run.get("note"):
            lines += [run["note"], ""]
        if (RETURNS_DIR / f"{label}.png").exists():
            lines += [f"![{label}](benchmarks/returns/{label}.png)", ""]
    return lines


def _safe(cell: Callable[[Run], str], run: Run) -> str:
    try:
        return cell(run)
    except (KeyError, TypeError, ValueError):
        return "-"


def _per_topic(run: Run) -> list[str]:
    rows = ["| topic | internal | records / order | bytes / order |", "|---|---|---|---|"]
    namespace = run["bench"]["namespace"]
    for topic, row in run["figures"]["records"]["per_topic"].items():
        if row["records"]:
            name = topic.replace(namespace, "…", 1)
            rows.append(f"| `{name}` | {'yes' if row['internal'] else ''} | {row['records_per_order']:.2f} "
                        f"| {row['bytes_per_order']:,.0f} |")
    return ["<details><summary>records per topic</summary>", "", *rows, "", "</details>", ""]


def load_runs(directory: Path = RUNS_DIR) -> dict[str, Run]:
    """Recorded runs, the ``before-*`` ones first, each kind in name order."""
    paths = sorted(directory.glob("*.json"), key=lambda p: (not p.stem.startswith("before"), p.stem))
    return {p.stem: orjson.loads(p.read_bytes()) for p in paths}


def record(source: Path, label: str, directory: Path = RUNS_DIR, note: str | None = None) -> None:
    """Copy a run (and its PNG) in under ``label``, with what the person who recorded it saw, if anything."""
    directory.mkdir(parents=True, exist_ok=True)
    run = orjson.loads(source.read_bytes())
    if note:
        run["note"] = note
    (directory / f"{label}.json").write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2) + b"\n")
    png = source.with_suffix(".png")
    if png.exists():
        shutil.copyfile(png, directory / f"{label}.png")


def main(
    record_file: Path | None = typer.Option(None, "--record", help="A bench.json to record first."),
    record_restart: Path | None = typer.Option(None, "--record-restart",
                                               help="A restart.json (baton bench --restart-after) to record first."),
    record_returns: Path | None = typer.Option(None, "--record-returns",
                                               help="A bench.json of a run with --returns to record first."),
    label: str = typer.Option("current", "--label", help="The name it is recorded under."),
    note: str | None = typer.Option(None, "--note", help="What the figures alone do not say (shown with the run)."),
) -> None:
    """Record a run (optional), then rewrite docs/benchmarks.md from every recorded run."""
    if record_file:
        record(record_file, label, note=note)
    if record_restart:
        record(record_restart, label, RESTART_DIR, note=note)
    if record_returns:
        record(record_returns, label, RETURNS_DIR, note=note)
    PAGE.write_text(render(load_runs()))
    typer.echo(f"wrote {PAGE}")


if __name__ == "__main__":
    typer.run(main)
