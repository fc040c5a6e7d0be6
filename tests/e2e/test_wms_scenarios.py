"""Scenario files on real services, for the WMS node: receiving a short and damaged delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.scenario.model import load_scenario
from baton.scenario.runner import RunOptions, run_scenario
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"


def test_a_short_delivery_is_received_and_only_its_good_units_become_stock(settings: Settings) -> None:
    outcome = run_scenario(load_scenario(SCENARIOS / "wms_short_delivery.yaml"), settings,
                           RunOptions(namespace=settings.namespace, timeout_s=90))
    result = outcome.result
    assert outcome.exit_code == 0 and result["completed"], result
    assert result["dead_letters"] == 0 and result["invariants"]["ok"], result
    orders = result["orders"]
    assert {oid: o["status"] for oid, o in orders.items()} == {"O-NOW": "shipped", "O-LATER": "shipped",
                                                                "O-LAMPS": "shipped"}
    assert [s["location"] for s in orders["O-LATER"]["shipments"]] == ["WH-PAR"]
    tee = result["stock"]["WH-PAR"]["TEE-M"]
    # 2 on hand, 10 announced: 7 arrived, 1 of them damaged; 2 + 5 shipped
    assert (tee["on_hand"], tee["reserved"], tee["incoming"]) == (2 + 6 - 2 - 5, 0, 0)
    [lamps] = orders["O-LAMPS"]["shipments"]
    assert lamps["carrier"] == "baton-express" and lamps["tracking"].startswith("BT")  # 12 kg in two cartons
