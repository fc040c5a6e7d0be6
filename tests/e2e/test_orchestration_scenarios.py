"""Scenario files on real services: every delivery mode, sourcing rules, cancellation, explanations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from baton.cli import app
from baton.scenario.model import load_scenario
from baton.scenario.runner import RunOptions, run_scenario
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _play(settings: Settings, name: str) -> dict[str, Any]:
    outcome = run_scenario(load_scenario(SCENARIOS / name), settings, RunOptions(namespace=settings.namespace,
                                                                                 timeout_s=90))
    result = outcome.result
    assert outcome.exit_code == 0 and result["completed"], result
    assert result["dead_letters"] == 0
    assert result["invariants"] == {"ok": True, "violations": []}
    return result


def _shipped_from(order: dict[str, Any]) -> list[str]:
    return sorted(s["location"] for s in order["shipments"])


def test_every_delivery_mode(settings: Settings) -> None:
    result = _play(settings, "omnichannel.yaml")
    orders = result["orders"]
    status = {oid: o["status"] for oid, o in orders.items()}
    assert status == {
        "O-WHOLE": "shipped",
        "O-SPLIT": "shipped",
        "O-BOPIS": "collected",
        "O-S2S": "ready_for_pickup",
        "O-ROPIS": "collected",
        "O-ROPIS-LAPSED": "expired",
        "O-AISLE": "shipped",
        "O-INVALID": "rejected",
        "O-LATE": "shipped",
    }
    # one location could serve it whole: never split; the duplicate placement changed nothing
    assert _shipped_from(orders["O-WHOLE"]) == ["WH-PAR"]
    assert [ln["ordered"] for ln in orders["O-WHOLE"]["lines"]] == [2, 1]
    # only a split could serve it
    assert _shipped_from(orders["O-SPLIT"]) == ["ST-PAR", "WH-LYO"]
    # BOPIS at a store without the item: shipped there from a warehouse
    assert _shipped_from(orders["O-S2S"]) == ["WH-LYO"]
    # endless aisle: ordered in a store that lacks it and does not ship
    assert _shipped_from(orders["O-AISLE"]) != ["ST-LYO"] and orders["O-AISLE"]["shipments"]
    assert "ST-NOWHERE" in orders["O-INVALID"]["reason"]
    # the lapsed hold gave its unit back; the collected ones left the store
    assert result["stock"]["ST-PAR"]["TEE-M"]["on_hand"] == 4
    assert result["stock"]["ST-PAR"]["TEE-M"]["reserved"] == 0
    assert result["stock"]["ST-PAR"]["LAMP-2"]["on_hand"] == 0
    assert all(ln["open"] == 0 for ln in orders["O-ROPIS-LAPSED"]["lines"])


def test_sourcing_rules_decide_and_explain(settings: Settings) -> None:
    orders = _play(settings, "rules.yaml")["orders"]
    assert orders["O-B2B"]["status"] == "shipped" and _shipped_from(orders["O-B2B"]) == ["WH-LYO"]
    assert orders["O-WEB"]["status"] == "shipped" and _shipped_from(orders["O-WEB"]) == ["WH-PAR"]
    assert orders["O-NOSPLIT"]["status"] == "rejected"
    assert orders["O-MARKET"]["status"] == "shipped" and _shipped_from(orders["O-MARKET"]) == ["WH-LYO", "WH-PAR"]

    explained = CliRunner().invoke(app, ["orders", "explain", "O-B2B", "-n", settings.namespace, "--json"])
    assert explained.exit_code == 0, explained.output
    decision = next(d for d in orjson.loads(explained.stdout)["decisions"] if d["type"] == "order.allocated.v1")
    assert decision["rule_set"] == "retail" and decision["rule_set_version"] == 7
    assert decision["rule"].startswith("b2b-from-lyon")
    by_location = {c["location"]: c for c in decision["candidates"]}
    assert decision["chosen"] == ["WH-LYO"]
    assert by_location["WH-PAR"]["eligible"] and by_location["WH-PAR"]["reason"] == "ranked lower"
    assert not by_location["ST-PAR"]["eligible"] and "excludes stores" in by_location["ST-PAR"]["reason"]
