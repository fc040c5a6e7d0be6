"""Running seeds: one seed (optionally only some of its timeline's events), or a range of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from baton.sim.workload import Size, generate
from baton.sim.world import SimConfig, SimResult, run_world

# The suite's and ``make sim``'s workload: a few orders on two SKUs over half a minute (a bug needs few orders;
# small seeds are cheap, so many of them explore more interleavings than a few large ones).
DEFAULT_SIZE = Size(orders=4, skus=2, horizon_s=30.0)


def run_seed(seed: int, size: Size = DEFAULT_SIZE, config: SimConfig = SimConfig(),
             keep: list[int] | None = None) -> SimResult:
    workload = generate(seed, size)
    if keep is not None:
        workload = workload.with_events(keep)
    return run_world(workload, seed, config)


def run_seeds(seeds: Iterable[int], size: Size = DEFAULT_SIZE, config: SimConfig = SimConfig(),
              each: Callable[[SimResult], None] | None = None) -> list[SimResult]:
    """Every seed run; the failing ones returned (``each`` sees every result, for progress)."""
    failed = []
    for seed in seeds:
        result = run_seed(seed, size, config)
        if each is not None:
            each(result)
        if not result.ok:
            failed.append(result)
    return failed


__all__ = ["DEFAULT_SIZE", "run_seed", "run_seeds"]
