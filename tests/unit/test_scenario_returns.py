"""Scenario files and returns: payments behaviour, return steps, returns generated into a load."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.scenario.generate import generated_orders, generated_returns
from baton.scenario.model import ReturnStep, ScenarioError, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_the_returns_scenarios_parse_with_their_payments_behaviour() -> None:
    assert load_scenario(SCENARIOS / "returns.yaml").payments.fail_first == 1
    assert load_scenario(SCENARIOS / "returns_kills.yaml").payments.fail_first == 2
    steps = [s for s in load_scenario(SCENARIOS / "returns.yaml").events if isinstance(s, ReturnStep)]
    assert all(s.after_settled for s in steps)
    assert next(s.exchange for s in steps if s.exchange)[0].sku == "TEE-L"


def test_a_negative_failure_count_names_the_field() -> None:
    document = {"name": "x", "locations": [{"id": "A", "kind": "warehouse", "lat": 0, "lon": 0}],
                "skus": [{"sku": "X"}], "payments": {"fail_first": -1}}
    with pytest.raises(ScenarioError, match=r"payments\.fail_first"):
        parse_scenario(document)


def test_generated_returns_are_a_share_of_the_orders_each_sent_twice_and_reproducible() -> None:
    scenario = load_scenario(SCENARIOS / "returns_chaos.yaml")
    orders = generated_orders(scenario)
    returns = generated_returns(scenario, orders)
    assert returns == generated_returns(scenario, generated_orders(scenario))
    ids = [step.return_id for step in returns]
    assert len(ids) == 2 * len(set(ids)) and 30 <= len(set(ids)) <= 70  # about a third of 150
    by_id = {step.order.order_id: step.order for step in orders}
    for step in returns:
        first = by_id[step.order_id].lines[0]
        assert [(ln.sku, ln.qty) for ln in step.lines] == [(first.sku, first.qty)]
        assert step.method == "mail" and step.reason == "changed_mind"
    times = sorted({step.at_s for step in returns})
    assert times[0] == 2 and times[1] == pytest.approx(2.1)
    without = scenario.model_copy(update={"generate": scenario.generate.model_copy(update={"returns": 0.0})})  # type: ignore[union-attr]
    assert generated_returns(without, orders) == [] and generated_orders(without) == orders
