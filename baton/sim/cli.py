"""``baton sim``: hunt for seeds that break an invariant, or replay one seed with its trace.

    baton sim --seeds 2000                  # seeds 0..1999, a progress bar with seeds/s; failures shrunk
    baton sim --seeds 500 --from-seed 7000  # another range
    baton sim --seed 42 --trace             # one seed: its workload, every step, the invariants
    baton sim --seed 42 --keep 0,3,5 --trace  # only those events of its timeline (what a shrink printed)
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from baton.sim.seeds import DEFAULT_SIZE, run_seed
from baton.sim.shrink import shrink
from baton.sim.workload import Size, generate
from baton.sim.world import SimConfig, SimResult

out = Console(soft_wrap=True)
err = Console(stderr=True)


def sim_command(
    seeds: int = typer.Option(0, "--seeds", help="How many seeds to run (from --from-seed)."),
    from_seed: int = typer.Option(0, "--from-seed", help="The first seed of the range."),
    seed: int | None = typer.Option(None, "--seed", help="Run this one seed (with --trace: every step)."),
    keep: str | None = typer.Option(None, "--keep", help="With --seed: only these timeline events (0,3,5)."),
    trace: bool = typer.Option(False, "--trace", help="With --seed: print the workload and every step."),
    orders: int = typer.Option(DEFAULT_SIZE.orders, "--orders", help="At most this many orders per seed."),
    skus: int = typer.Option(DEFAULT_SIZE.skus, "--skus", help="At most this many SKUs per seed."),
    no_faults: bool = typer.Option(False, "--no-faults", help="No crashes nor stalls in the timelines."),
    no_shrink: bool = typer.Option(False, "--no-shrink", help="Report failing seeds without shrinking them."),
    show: int = typer.Option(3, "--show", help="Shrink and print at most this many failing seeds."),
    ignore: list[str] = typer.Option([], "--ignore", help="Set aside failures starting with this text (a known "
                                     "open bug), to hunt for others; repeatable."),
    duplicate_internal: float = typer.Option(
        0.0, "--duplicate-internal", help="Also deliver this share of the services' own records twice (never "
        "happens under the transactions: tests the handlers' idempotency)."),
) -> None:
    """Run the whole network in one process under simulated time, seed by seed, checking every invariant."""
    size = Size(orders=orders, skus=skus, horizon_s=DEFAULT_SIZE.horizon_s, faults=not no_faults)
    config = SimConfig(internal_duplicate_p=duplicate_internal)
    if seed is not None:
        kept = [int(i) for i in keep.split(",") if i.strip()] if keep is not None else None
        raise typer.Exit(replay(seed, size, kept, trace, config, shrink_it=not no_shrink))
    if seeds <= 0:
        err.print("give --seeds N (a range to hunt) or --seed S (one seed)")
        raise typer.Exit(2)
    failed = hunt(range(from_seed, from_seed + seeds), size, config, tuple(ignore))
    kinds = Counter(r.kind for r in failed)
    out.print(f"{len(failed)} of {seeds} seeds failed" + (f": {dict(kinds)}" if kinds else ""))
    if failed:
        out.print("failing seeds: " + " ".join(str(r.seed) for r in failed))
        for result in failed[:show]:
            report_failure(result, size, config, shrink_it=not no_shrink)
    raise typer.Exit(1 if failed else 0)


def hunt(seeds: range, size: Size, config: SimConfig, ignore: tuple[str, ...] = ()) -> list[SimResult]:
    columns = (TextColumn("seeds"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn())
    failed: list[SimResult] = []
    started = time.monotonic()
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("seeds", total=len(seeds), rate="", failed=0)
        for done, seed in enumerate(seeds, start=1):
            result = run_seed(seed, size, config)
            if not all(f.startswith(ignore) for f in result.failures) if ignore else not result.ok:
                failed.append(result)
            rate = done / max(time.monotonic() - started, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:.1f} seeds/s", failed=len(failed))
    elapsed = time.monotonic() - started
    out.print(f"{len(seeds)} seeds in {elapsed:.1f} s: {len(seeds) / max(elapsed, 1e-9):.1f} seeds/s")
    return failed


def replay(seed: int, size: Size, keep: list[int] | None, trace: bool, config: SimConfig, *, shrink_it: bool) -> int:
    workload = generate(seed, size)
    shown = workload.with_events(keep) if keep is not None else workload
    result = run_seed(seed, size, dataclasses.replace(config, trace=trace), keep)
    if trace:
        out.print(f"[bold]seed {seed}[/bold]" + (f" events {keep}" if keep is not None else ""))
        for line in shown.describe():
            out.print("  " + line, highlight=False, markup=False)
        for line in result.log:
            out.print("  " + line, highlight=False, markup=False)
    print_result(result)
    if not result.ok and shrink_it and keep is None:
        report_failure(result, size, config, shrink_it=True)
    return 0 if result.ok else 1


def print_result(result: SimResult) -> None:
    status = "[green]ok[/green]" if result.ok else "[red]FAILED[/red]"
    out.print(f"seed {result.seed}: {status} after {result.steps} steps, {result.sim_seconds} s simulated, "
              f"digest {result.digest}")
    for failure in result.failures[:10]:
        out.print(f"  {failure}", highlight=False, markup=False)


def report_failure(result: SimResult, size: Size, config: SimConfig, *, shrink_it: bool) -> None:
    out.rule(f"seed {result.seed}: {result.kind}")
    for failure in result.failures[:5]:
        out.print(f"  {failure}", highlight=False, markup=False)
    if not shrink_it:
        return
    workload = generate(result.seed, size)
    shrunk = shrink(workload, result.seed, result.kind, config)
    kept = ",".join(map(str, shrunk.keep)) or '""'
    options = f" --duplicate-internal {config.internal_duplicate_p}" if config.internal_duplicate_p else ""
    options += f" --orders {size.orders}" if size.orders != DEFAULT_SIZE.orders else ""
    options += f" --skus {size.skus}" if size.skus != DEFAULT_SIZE.skus else ""
    options += " --no-faults" if not size.faults else ""
    out.print(f"  shrunk from {len(workload.events)} to {len(shrunk.keep)} events in {shrunk.runs} runs; "
              f"replay: baton sim --seed {result.seed} --keep {kept}{options} --trace", highlight=False, markup=False)
    for line in workload.with_events(shrunk.keep).describe():
        out.print("    " + line, highlight=False, markup=False)
    for failure in shrunk.result.failures[:3]:
        out.print(f"    -> {failure}", highlight=False, markup=False)


__all__ = ["sim_command"]
