"""Returns and refunds on the real services (issue 11): one scenario, each case its own order.

BORIS of a sellable unit (the store's stock grows), a mail return found damaged (refunded, not available), a
partial return of 1 of 2, a return of more than was shipped (rejected), the same return twice (one refund), a
return received short (refund for what came), an exchange (a replacement shipped, nothing refunded), and a
payment adapter whose first answer is a failure (retried with the same key: one refund in the end); then the
same under kill -9 of every service, and returns mixed into a load of 150 orders under kills.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from baton.returns_cli import returns_app
from baton.scenario.generate import generated_orders, generated_returns
from baton.scenario.model import load_scenario
from baton.scenario.runner import RunOptions, run_scenario
from schemas.topics import PAYMENTS_COMMANDS, PAYMENTS_EVENTS
from services.runtime.replay import read_topic
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _one_return(order: dict[str, Any]) -> dict[str, Any]:
    [case] = order["returns"]
    return case


def test_returns_are_authorised_routed_received_and_refunded_once(settings: Settings) -> None:
    outcome = run_scenario(load_scenario(SCENARIOS / "returns.yaml"), settings,
                           RunOptions(namespace=settings.namespace, timeout_s=150))
    result = outcome.result
    assert outcome.exit_code == 0 and result["completed"], result
    assert result["dead_letters"] == 0 and result["invariants"]["ok"], result["invariants"]
    orders = result["orders"]
    refunds = {oid: [(r["return_id"], r["amount"], r["status"]) for r in o["refunds"]] for oid, o in orders.items()}

    boris = _one_return(orders["O-BORIS"])
    assert (boris["status"], boris["destination"], boris["disposition"]) == ("refunded", "ST-PAR", "restock")
    assert refunds["O-BORIS"] == [("R-BORIS", 24.80, "succeeded")]  # the unit and, every unit back, the shipping

    damaged = _one_return(orders["O-DAMAGED"])
    assert (damaged["status"], damaged["destination"], damaged["disposition"]) == ("refunded", "WH-RET", "refurbish")
    assert damaged["label"]["carrier"] == "returns-post" and damaged["label"]["tracking"].startswith("RT")
    assert [(ln["condition"], ln["qty"]) for ln in damaged["received"]] == [("damaged", 1)]
    assert refunds["O-DAMAGED"] == [("R-DAMAGED", 9.50, "succeeded")]  # damaged units are refunded in full

    assert _one_return(orders["O-PARTIAL"])["status"] == "refunded"
    assert refunds["O-PARTIAL"] == [("R-PARTIAL", 19.90, "succeeded")]  # 1 of 2: no shipping back

    too_many = _one_return(orders["O-TOO-MANY"])
    assert too_many["status"] == "rejected" and "2 asked, 1 returnable" in too_many["reason"]
    assert refunds["O-TOO-MANY"] == []

    assert _one_return(orders["O-TWICE"])["status"] == "refunded"
    assert refunds["O-TWICE"] == [("R-TWICE", 19.90, "succeeded")]

    short = _one_return(orders["O-SHORT"])
    assert short["status"] == "refunded" and sum(ln["qty"] for ln in short["received"]) == 2
    assert refunds["O-SHORT"] == [("R-SHORT", 24.00, "succeeded")]  # 3 asked, 2 came

    exchange = _one_return(orders["O-EXCHANGE"])
    assert exchange["status"] == "received" and refunds["O-EXCHANGE"] == []
    replacement = orders[exchange["exchange_order_id"]]
    assert replacement["status"] == "shipped"
    assert [ln["sku"] for ln in replacement["lines"]] == ["TEE-L"]  # another SKU of the same catalog price

    attempts = sorted(r["attempts"] for o in orders.values() for r in o["refunds"])
    assert attempts == [1, 1, 1, 1, 2]  # the first request failed and was retried with its key, once

    stock = result["stock"]
    assert stock["ST-PAR"]["TEE-M"]["on_hand"] == 4  # BORIS, partial, twice (once), exchange: restocked here
    assert stock["ST-PAR"]["TEE-M"]["available"] == 4
    assert stock["WH-RET"]["MUG-1"]["on_hand"] == 0 and stock["WH-RET"]["MUG-1"]["available"] == 0  # quarantined
    assert stock["WH-RET"]["CAP-1"]["on_hand"] == 2
    assert stock["WH-PAR"]["TEE-M"]["on_hand"] == 20 - 6  # six units sold
    assert stock["WH-PAR"]["TEE-L"]["on_hand"] == 10 - 1  # the replacement

    shown = CliRunner().invoke(returns_app, ["show", "R-BORIS", "--namespace", settings.namespace, "--json"])
    assert shown.exit_code == 0, shown.output
    document = orjson.loads(shown.stdout)
    assert document["order_id"] == "O-BORIS" and document["return"]["status"] == "refunded"
    story = [entry["type"] for entry in document["timeline"]]
    for step in ("return.requested.v1", "return.authorized.v1", "wms.receive_return.v1", "wms.return_received.v1",
                 "payments.refund_requested.v1", "payments.refund_succeeded.v1", "return.refunded.v1"):
        assert step in story, (step, story)
    assert story.index("return.requested.v1") < story.index("return.refunded.v1")


def test_returns_refunded_once_with_one_key_while_services_are_killed(settings: Settings) -> None:
    outcome = run_scenario(load_scenario(SCENARIOS / "returns_kills.yaml"), settings,
                           RunOptions(namespace=settings.namespace, timeout_s=240))
    result = outcome.result
    assert outcome.exit_code == 0 and result["completed"], result
    assert result["dead_letters"] == 0 and result["invariants"]["ok"], result["invariants"]
    assert [k["service"] for k in result["kills"]] == ["orchestrator", "payments", "wms:ST-PAR", "inventory"]
    full = {"R-K3", "R-K6"}  # every unit back: the shipping too
    for i in range(1, 9):
        order = result["orders"][f"O-K{i}"]
        case = _one_return(order)
        assert case["status"] == "refunded", (i, case)
        expected = 2 * 19.90 + 9.50 + 3.00 if case["return_id"] in full else 19.90
        assert [(r["return_id"], r["amount"], r["status"]) for r in order["refunds"]] == [
            (f"R-K{i}", round(expected, 2), "succeeded")]

    requests, answers = asyncio.run(_payments_log(settings))
    keys_per_return: dict[str, set[str]] = defaultdict(set)
    for data in requests:
        keys_per_return[data["return_id"]].add(data["idempotency_key"])
    assert all(len(keys) == 1 for keys in keys_per_return.values()), keys_per_return  # never a new key
    paid_out = Counter(d["idempotency_key"] for t, d in answers if "succeeded" in t and not d["duplicate"])
    assert sorted(paid_out.values()) == [1] * 8  # each return's key paid exactly once
    assert sum(1 for t, _ in answers if "failed" in t) == 2


async def _payments_log(settings: Settings) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    commands = await read_topic(settings, full_topic_name(settings, PAYMENTS_COMMANDS))
    events = await read_topic(settings, full_topic_name(settings, PAYMENTS_EVENTS))
    return ([env.data for env, _ in commands if env is not None],
            [(env.type, env.data) for env, _ in events if env is not None])


@pytest.mark.long  # the kills during returns stay in `make test` (returns_kills.yaml); this load is half a minute more
def test_returns_in_a_load_under_kills_never_refund_beyond_paid_nor_twice(settings: Settings) -> None:
    scenario = load_scenario(SCENARIOS / "returns_chaos.yaml")
    outcome = run_scenario(scenario, settings, RunOptions(namespace=settings.namespace, timeout_s=300))
    result = outcome.result
    assert outcome.exit_code == 0 and result["completed"], result["invariants"]
    assert result["dead_letters"] == 0 and result["invariants"]["ok"], result["invariants"]
    assert len(result["kills"]) == 5
    orders = generated_orders(scenario)
    asked = {step.return_id for step in generated_returns(scenario, orders)}
    paid = {step.order.order_id: sum(ln.qty * ln.unit_price for ln in step.order.lines) for step in orders}
    refunded = {r["return_id"]: (oid, r) for oid, o in result["orders"].items() for r in o["refunds"]}
    assert set(refunded) == asked  # every return refunded, none of an order not returned
    for return_id, (order_id, refund) in refunded.items():
        assert refund["status"] == "succeeded", refund
        assert refund["amount"] <= paid[order_id] + 0.005
        assert [c["status"] for c in result["orders"][order_id]["returns"]] == ["refunded"], return_id

    requests, answers = asyncio.run(_payments_log(settings))
    keys_per_return: dict[str, set[str]] = defaultdict(set)
    for data in requests:
        keys_per_return[data["return_id"]].add(data["idempotency_key"])
    assert set(keys_per_return) == asked and all(len(keys) == 1 for keys in keys_per_return.values())
    paid_out = Counter(d["idempotency_key"] for t, d in answers if "succeeded" in t and not d["duplicate"])
    assert len(paid_out) == len(asked) and set(paid_out.values()) == {1}
