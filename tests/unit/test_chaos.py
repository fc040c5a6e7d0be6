"""Chaos plans: ``--kill SERVICE:N`` parsing, which processes a plan may kill, and when the kills happen."""

from __future__ import annotations

import itertools

import pytest

from baton.bench.chaos import KillPlan, KillPlanError, Restart, schedule

NAMES = ["orchestrator", "inventory", "wms-WH-PAR", "wms-WH-LYO", "wms-ST-LYO"]


@pytest.mark.parametrize(
    ("text", "service", "times"),
    [("orchestrator:3", "orchestrator", 3), ("inventory:2", "inventory", 2), ("wms:2", "wms", 2),
     ("wms:WH-PAR:2", "wms:WH-PAR", 2), (" orchestrator:1 ", "orchestrator", 1), ("broker:2", "broker", 2),
     ("broker-3:1", "broker-3", 1), ("redis:2", "redis", 2)],
)
def test_kill_plans_parse(text: str, service: str, times: int) -> None:
    assert KillPlan.parse(text) == KillPlan(service, times)


@pytest.mark.parametrize(
    "text", ["orchestrator", "orchestrator:0", "orchestrator:-1", "orchestrator:x", "inventory:WH:2",
             "wms::2", ":3", "", "broker-:1", "broker-x:1", "broker:WH:1", "redis-1:1"],
)
def test_bad_kill_plans_are_refused_with_the_value(text: str) -> None:
    with pytest.raises(KillPlanError, match="--kill"):
        KillPlan.parse(text)


def test_a_plan_names_the_processes_it_may_kill() -> None:
    assert KillPlan("orchestrator", 1).candidates(NAMES) == ["orchestrator"]
    assert KillPlan("wms", 1).candidates(NAMES) == ["wms-ST-LYO", "wms-WH-LYO", "wms-WH-PAR"]
    assert KillPlan("wms:WH-LYO", 1).candidates(NAMES) == ["wms-WH-LYO"]
    assert KillPlan("wms:NOWHERE", 1).candidates(NAMES) == []
    stack = [*NAMES, "broker-1", "broker-2", "broker-3", "redis"]
    assert KillPlan("broker", 1).candidates(stack) == ["broker-1", "broker-2", "broker-3"]
    assert KillPlan("broker-2", 1).candidates(stack) == ["broker-2"]
    assert KillPlan("redis", 1).candidates(stack) == ["redis"]
    assert KillPlan("broker", 1).stack_part and not KillPlan("wms", 1).stack_part


def test_kills_are_spread_over_the_load_and_reproducible() -> None:
    plans = [KillPlan("orchestrator", 3), KillPlan("inventory", 2), KillPlan("wms", 4)]
    moments = schedule(plans, NAMES, duration_s=60, seed=7)
    assert moments == schedule(plans, NAMES, duration_s=60, seed=7)
    assert moments != schedule(plans, NAMES, duration_s=60, seed=8)
    assert len(moments) == 9 and moments == sorted(moments)
    assert all(at >= 6 for at, _ in moments)
    assert sum(1 for _, name in moments if name == "orchestrator") == 3
    assert all(name.startswith("wms-") for _, name in moments if name not in ("orchestrator", "inventory"))


def test_two_kills_of_one_service_are_at_least_the_gap_apart() -> None:
    moments = schedule([KillPlan("orchestrator", 5)], NAMES, duration_s=3, seed=1, min_gap_s=2)
    times = [at for at, _ in moments]
    assert all(b - a >= 2 - 1e-3 for a, b in itertools.pairwise(times))


def test_a_plan_for_a_missing_service_is_refused() -> None:
    with pytest.raises(KillPlanError, match="no such service"):
        schedule([KillPlan("wms:NOWHERE", 1)], NAMES, duration_s=10, seed=0)


def test_a_restart_reports_its_seconds_back() -> None:
    assert Restart("inventory", 100.0, 103.25).seconds == 3.25
    assert Restart("inventory", 100.0, None).as_json()["seconds"] is None
