"""Shrinking a failing seed: the fewest timeline events (orders, faults...) that still fail the same way.

Delta debugging (Zeller's ddmin) over the indices of the workload's events: try halves, then complements, with a
finer split when neither fails. The schedule stays drawn from the same seed, so every candidate is a
deterministic run, and the result replays identically from ``(seed, kept indices)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from baton.sim.workload import Workload
from baton.sim.world import SimConfig, SimResult, run_world


@dataclass
class Shrunk:
    seed: int
    keep: list[int]  # indices of the generated workload's events still in the failing trace
    result: SimResult
    runs: int


def shrink(workload: Workload, seed: int, kind: str, config: SimConfig = SimConfig(),
           max_runs: int = 400) -> Shrunk:
    """The smallest subset of ``workload``'s events (1-minimal) whose run still fails with ``kind``."""
    runs = 0
    last: dict[tuple[int, ...], SimResult] = {}

    def fails(keep: list[int]) -> bool:
        nonlocal runs
        runs += 1
        result = run_world(workload.with_events(keep), seed, config)
        last[tuple(keep)] = result
        return result.kind == kind

    keep = ddmin(list(range(len(workload.events))), fails, lambda: runs >= max_runs)
    result = last.get(tuple(keep)) or run_world(workload.with_events(keep), seed, config)
    return Shrunk(seed, keep, result, runs)


def ddmin(items: list[int], fails: Callable[[list[int]], bool], exhausted: Callable[[], bool]) -> list[int]:
    if not items:
        return items
    if fails([]):
        return []
    granularity = 2
    while len(items) >= 2 and not exhausted():
        size = -(-len(items) // granularity)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        reduced = next((c for c in chunks if fails(c)), None)
        if reduced is not None:
            items, granularity = reduced, 2
            continue
        if granularity > 2 or len(chunks) > 2:
            complement = next((rest for c in chunks if fails(rest := [i for i in items if i not in c])), None)
        else:
            complement = None
        if complement is not None:
            items, granularity = complement, max(granularity - 1, 2)
            continue
        if granularity >= len(items):
            break
        granularity = min(len(items), granularity * 2)
    return items


__all__ = ["Shrunk", "ddmin", "shrink"]
