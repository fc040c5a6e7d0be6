"""A scenario's ``service.killed`` steps: each service killed with SIGKILL mid-flow, restarted at once.

Every order must still settle and every invariant hold (checked from the topics and the read model).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.scenario.model import load_scenario
from baton.scenario.runner import RunOptions, run_scenario
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"


def test_orders_settle_when_every_service_is_killed_mid_flow(settings: Settings) -> None:
    scenario = load_scenario(SCENARIOS / "kill_mid_flow.yaml")
    outcome = run_scenario(scenario, settings, RunOptions(namespace=settings.namespace, timeout_s=150))
    result = outcome.result
    assert [k["service"] for k in result["kills"]] == ["orchestrator", "inventory", "wms:WH-PAR"]
    assert [k["at_s"] >= at for k, at in zip(result["kills"], (1.0, 2.0, 3.0), strict=True)] == [True] * 3
    assert all(k["back_after_s"] is not None and k["back_after_s"] > 0 for k in result["kills"]), result["kills"]
    stuck = {oid: o["status"] for oid, o in result["orders"].items()
             if o["status"] not in ("shipped", "ready_for_pickup")}
    assert stuck == {}, result["invariants"]
    assert outcome.exit_code == 0 and result["completed"]
    assert result["invariants"] == {"ok": True, "violations": []}
    assert len(result["orders"]) == 40
    assert result["dead_letters"] == 0
