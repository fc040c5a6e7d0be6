"""The deterministic simulator (issue 10): the whole network in one process, seed by seed.

The suite runs ``SUITE_SEEDS`` seeds (every invariant after each commit and at quiescence), shows that a seed
replays identically, that a deliberately broken core (a ledger that never refuses a reservation) is caught within
the suite's seeds and shrunk to a short replayable trace, and keeps every seed that once found a bug.
"""

from __future__ import annotations

import os

import pytest

from baton.sim.seeds import DEFAULT_SIZE, run_seed, run_seeds
from baton.sim.shrink import shrink
from baton.sim.workload import PlaceOrder, Size, generate
from baton.sim.world import SimConfig
from services.inventory.domain.ledger import Position

# 800 fresh seeds keep the suite under its 15 minutes (about 40 s on a quiet machine); `make sim` hunts wider
SUITE_SEEDS = int(os.environ.get("BATON_SIM_SEEDS", "800"))

# Seeds that found a bug: seed -> (the events of its shrunk trace, None: the whole timeline; what it found). Each
# must hold every invariant for good (the findings: docs/decisions/0005-simulator.md).
REGRESSION_SEEDS: dict[int, tuple[list[int] | None, str]] = {
    2: ([2, 4], "a pick short of every unit at the only location left the order in_fulfilment"),
    56: ([1, 3, 5, 6], "a short pick on one order of several at a location left another order in_fulfilment"),
    216: ([4], "a request rejected by the only location holding the SKU left the order allocated"),
    271: (None, "a location that rejected the order was chosen again as a backorder source, for ever"),
    78: ([0, 2, 3, 4, 5, 6, 7], "a count confirmed after a receipt lowered a hold being picked"),
    369: ([0, 2], "a partly shipped order waiting on supply was taken for a stuck one (the settled check)"),
    # first found as 5966, 6183, 1589, 1635, 764, 3238, 7321 (the schedules moved since)
    1382: ([1, 2], "a cancel racing the ship confirmation: the parcel shipped but the order stayed cancelled"),
    3: ([3], "a claim that lapses: the node's TaskUpdated named its timer tick, never in the log, as its cause"),
}
# The same, found with bigger workloads (``baton sim --orders 10 --skus 3``).
BIG = Size(orders=10, skus=3, horizon_s=DEFAULT_SIZE.horizon_s)
BIG_REGRESSION_SEEDS: dict[int, tuple[list[int] | None, str]] = {
    7053: ([0, 3], "a partly shipped order holding a line until its backorder lands was taken for a stuck one"),
    7423: (None, "the same, seen by baton audit's use of the settled check"),
}

# The same, found with every record of a service's transaction appended twice (``--duplicate-internal 0.2``).
DUPLICATING = SimConfig(internal_duplicate_p=0.2)
DUPLICATE_REGRESSION_SEEDS: dict[int, str] = {
    30031: "a refund command delivered twice was answered with a failure, then a success, under one event id",
}

def test_a_seed_replays_identically() -> None:
    first, again = run_seed(7), run_seed(7)
    assert first.digest == again.digest
    assert (first.steps, first.sim_seconds, first.failures) == (again.steps, again.sim_seconds, again.failures)


def test_seeds_differ_in_workload_and_schedule() -> None:
    assert len({run_seed(seed).digest for seed in range(5)}) == 5


@pytest.mark.parametrize("seed", sorted(REGRESSION_SEEDS))
def test_a_seed_that_found_a_bug_holds_every_invariant(seed: int) -> None:
    keep, found = REGRESSION_SEEDS[seed]
    for events in ([keep, None] if keep is not None else [None]):
        result = run_seed(seed, keep=events)
        assert result.ok, f"seed {seed} ({found}), events {events}: {result.failures[:3]}"


@pytest.mark.parametrize("seed", sorted(BIG_REGRESSION_SEEDS))
def test_a_bigger_seed_that_found_a_bug_holds_every_invariant(seed: int) -> None:
    keep, found = BIG_REGRESSION_SEEDS[seed]
    for events in ([keep, None] if keep is not None else [None]):
        result = run_seed(seed, BIG, keep=events)
        assert result.ok, f"seed {seed} ({found}), events {events}: {result.failures[:3]}"


@pytest.mark.parametrize("seed", sorted(DUPLICATE_REGRESSION_SEEDS))
def test_a_seed_that_found_a_bug_under_duplicated_records_holds_every_invariant(seed: int) -> None:
    result = run_seed(seed, config=DUPLICATING)
    assert result.ok, f"seed {seed} ({DUPLICATE_REGRESSION_SEEDS[seed]}): {result.failures[:3]}"


def test_the_suite_seeds_hold_every_invariant() -> None:
    failed = [r for r in run_seeds(range(1000, 1000 + SUITE_SEEDS)) if not r.ok]
    assert not failed, "\n".join(f"seed {r.seed}: {r.failures[0]}" for r in failed[:10])


def test_a_ledger_that_never_refuses_is_caught_and_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Position, "available", property(lambda self: 1_000_000))  # every reservation fits
    caught = next((r for seed in range(1000, 1000 + SUITE_SEEDS)
                   if not (r := run_seed(seed)).ok), None)
    assert caught is not None, "a ledger that never refuses went unnoticed"
    assert caught.kind in ("no oversell", "holds")
    shrunk = shrink(generate(caught.seed), caught.seed, caught.kind)
    assert shrunk.result.kind == caught.kind
    assert len(shrunk.keep) <= len(generate(caught.seed).events)
    assert any(isinstance(generate(caught.seed).events[i], PlaceOrder) for i in shrunk.keep)
    replayed = run_seed(caught.seed, keep=shrunk.keep)
    assert (replayed.kind, replayed.digest) == (caught.kind, shrunk.result.digest)


def test_a_trace_names_every_step() -> None:
    result = run_seed(3, config=SimConfig(trace=True))
    assert any("timeline:" in line for line in result.log)
    assert any("committed" in line for line in result.log)
