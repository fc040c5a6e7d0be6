"""Scenario files on real services: a backorder released by arriving supply; a short pick re-sourced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton.scenario.model import load_scenario
from baton.scenario.runner import RunOptions, run_scenario
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _play(settings: Settings, name: str) -> dict[str, Any]:
    outcome = run_scenario(load_scenario(SCENARIOS / name), settings,
                           RunOptions(namespace=settings.namespace, timeout_s=90))
    result = outcome.result
    assert outcome.exit_code == 0 and result["completed"], result
    assert result["dead_letters"] == 0, result
    assert result["invariants"] == {"ok": True, "violations": []}
    return result


def test_backorder_ships_when_supply_lands_and_cancels_before_and_after_shipment(settings: Settings) -> None:
    result = _play(settings, "backorder.yaml")
    orders = result["orders"]
    assert orders["O-NOW"]["status"] == "shipped"
    assert orders["O-LATER"]["status"] == "shipped"
    assert orders["O-LATER"]["promised_date"].startswith("2026-12-02")
    assert orders["O-TOO-MANY"]["status"] == "rejected"
    assert orders["O-CANCEL-EARLY"]["status"] == "cancelled"
    assert orders["O-CANCEL-EARLY"]["lines"][0]["cancelled"] == 1
    position = result["stock"]["WH-A"]["TEE-M"]
    assert (position["on_hand"], position["reserved"], position["incoming"]) == (2 - 2 + 10 - 3, 0, 0)


def test_a_short_pick_is_resourced_and_shipped_from_elsewhere(settings: Settings) -> None:
    result = _play(settings, "short_pick.yaml")
    order = result["orders"]["O-SHORT"]
    assert order["status"] == "shipped"
    shipped = {s["location"]: sum(ln["qty"] for ln in s["lines"]) for s in order["shipments"]}
    assert shipped == {"WH-PAR": 1, "WH-LYO": 2}
    assert all(s["tracking"] for s in order["shipments"])
    # the short location's ledger was corrected by the missing units; the other gave what it shipped
    assert result["stock"]["WH-PAR"]["TEE-M"]["on_hand"] == 5 - 1 - 2
    assert result["stock"]["WH-LYO"]["TEE-M"]["on_hand"] == 5 - 2
