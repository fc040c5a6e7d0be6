"""The ops views over a real run: ``orders show`` (read model + timeline from the topics), ``stock show``,
and ``baton demo`` end to end."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from baton.demo import demo_command
from baton.orders_cli import orders_app
from baton.scenario.generate import generated_orders
from baton.scenario.model import Scenario, parse_scenario
from baton.scenario.runner import RunOptions, run_scenario
from baton.stock_cli import stock_app
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e

INITIAL = {"TEE-M": 40, "MUG-1": 30}
SMALL = {
    "name": "cli-views-five-orders",
    "locations": [{"id": "WH-PAR", "kind": "warehouse", "lat": 48.86, "lon": 2.35, "capabilities": ["ship"]}],
    "skus": [{"sku": "TEE-M", "price": 19.9}, {"sku": "MUG-1", "price": 9.5}],
    "stock": [{"location": "WH-PAR", "sku": sku, "qty": qty} for sku, qty in INITIAL.items()],
    "generate": {"orders": 5, "seed": 11, "delivery": {"mode": "ship"}},
}
# The order's story, in causal order (other events interleave: status changes, availability, movements).
STORY = [
    "order.placed",
    "order.accepted",
    "inventory.reserve_stock",
    "inventory.stock_reserved",
    "order.allocated",
    "wms.fulfil_order",
    "wms.fulfilment_accepted",
    "wms.task_created",
    "wms.confirm_task",
    "wms.items_picked",
    "wms.parcel_shipped",
    "order.shipped",
]
runner = CliRunner()


def _play_small(settings: Settings) -> Scenario:
    scenario = parse_scenario(SMALL)
    outcome = run_scenario(scenario, settings, RunOptions(timeout_s=120, namespace=settings.namespace))
    assert outcome.exit_code == 0, outcome.result
    assert {o["status"] for o in outcome.result["orders"].values()} == {"shipped"}
    return scenario


def _json(args: list[str], app: typer.Typer) -> dict[str, Any]:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = orjson.loads(result.stdout)
    return document


def _base_type(event_type: str) -> str:
    return event_type.rsplit(".v", 1)[0]


def _is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(any(s == w for s in remaining) for w in wanted)


def test_orders_show_tells_the_story_of_an_order_from_the_topics(settings: Settings) -> None:
    scenario = _play_small(settings)
    order_id = generated_orders(scenario)[0].order.order_id
    doc = _json(["show", order_id, "--namespace", settings.namespace, "--json"], orders_app)

    view = doc["view"]
    assert view["status"] == "shipped"
    assert view["shipments"] and all(s["tracking"] and s["location"] == "WH-PAR" for s in view["shipments"])
    timeline = doc["timeline"]
    types = [_base_type(e["type"]) for e in timeline]
    assert _is_subsequence(STORY, types), types
    shipped_at = types.index("wms.parcel_shipped")
    statuses = [e["data"]["status"] for e in timeline[shipped_at:] if e["type"] == "order.status_changed.v1"]
    assert statuses[-1:] == ["shipped"], statuses
    assert types[0] == "order.placed" and timeline[0]["causationid"] is None
    seen: dict[str, str] = {}
    for entry in timeline:
        if entry is not timeline[0]:
            assert entry["causationid"] in seen, f"{entry['type']}: its cause is not earlier in the story"
            assert entry["cause_type"] == seen[entry["causationid"]]
        seen[entry["id"]] = entry["type"]

    text = runner.invoke(orders_app, ["show", order_id, "--namespace", settings.namespace])
    assert text.exit_code == 0, text.output
    assert "Timeline of" in text.stdout and "shipped" in text.stdout
    assert view["shipments"][0]["tracking"] in text.stdout


def test_stock_show_totals_match_the_expected_on_hand(settings: Settings) -> None:
    scenario = _play_small(settings)
    ordered: Counter[str] = Counter()
    for step in generated_orders(scenario):
        for line in step.order.lines:
            ordered[line.sku] += line.qty
    for sku, initial in INITIAL.items():
        doc = _json(["show", sku, "--namespace", settings.namespace, "--json"], stock_app)
        assert set(doc["locations"]) == {"WH-PAR"}
        assert doc["total"]["on_hand"] == initial - ordered[sku], doc
        assert doc["total"]["reserved"] == 0
        assert doc["total"]["available"] == initial - ordered[sku]
    text = runner.invoke(stock_app, ["show", "TEE-M", "--namespace", settings.namespace])
    assert text.exit_code == 0, text.output
    assert "total" in text.stdout and str(INITIAL["TEE-M"] - ordered["TEE-M"]) in text.stdout


def test_unknown_order_and_sku_exit_1_with_a_message(settings: Settings) -> None:
    order = runner.invoke(orders_app, ["show", "O-nowhere", "--namespace", settings.namespace])
    assert order.exit_code == 1
    assert "unknown order" in order.stderr and "O-nowhere" in order.stderr
    sku = runner.invoke(stock_app, ["show", "SKU-nowhere", "--namespace", settings.namespace, "--json"])
    assert sku.exit_code == 1
    assert "unknown SKU" in sku.stderr and sku.stdout == ""


def test_demo_with_20_orders_ships_every_order(stack_settings: Settings) -> None:
    app = typer.Typer()
    app.command("demo")(demo_command)
    app.command("noop")(lambda: None)  # two commands: invoked as "demo ...", as under the baton root
    result = runner.invoke(app, ["demo", "--orders", "20", "--json", "--timeout", "150"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    summary = doc["summary"]
    assert "orders" not in doc, "the per-order detail is left out"
    assert summary["orders"] == 20 and summary["by_status"] == {"shipped": 20} and summary["all_shipped"]
    assert doc["completed"] and doc["invariants"]["ok"] and doc["dead_letters"] == 0
    assert set(summary["shipments_per_location"]) <= {"WH-PAR", "WH-LYO", "WH-LIL"}
    assert sum(summary["shipments_per_location"].values()) >= 20
    assert summary["orders_per_s"] and summary["orders_per_s"] > 0
