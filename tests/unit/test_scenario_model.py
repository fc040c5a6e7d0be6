"""Scenario files: parsing with errors that name the field, and generated orders."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.scenario.generate import generated_orders
from baton.scenario.model import (
    CancelStep,
    OrderPlacedStep,
    ReturnStep,
    Scenario,
    ScenarioError,
    ServiceKilledStep,
    load_scenario,
    parse_scenario,
)
from schemas.orders import PickupAt, ShipTo

BASE: dict[str, Any] = {
    "name": "two-warehouses-and-a-store",
    "locations": [
        {
            "id": "WH-PAR",
            "kind": "warehouse",
            "lat": 48.86,
            "lon": 2.35,
            "capabilities": ["ship", "returns"],
            "handling_cost": 1.2,
            "daily_capacity": 5000,
        },
        {
            "id": "ST-LYO",
            "kind": "store",
            "lat": 45.76,
            "lon": 4.83,
            "capabilities": ["ship", "pickup", "reserve", "returns"],
        },
    ],
    "skus": [{"sku": "TEE-M", "price": 19.9, "weight_g": 200, "volume_cm3": 900}, {"sku": "MUG-1"}],
    "stock": [{"location": "WH-PAR", "sku": "TEE-M", "qty": 10}],
    "safety_stock": [{"location": "ST-LYO", "sku": "TEE-M", "qty": 1}],
    "supply": [
        {
            "id": "ASN-1",
            "location": "WH-PAR",
            "sku": "TEE-M",
            "qty": 20,
            "eta": "2026-12-01T00:00:00Z",
            "arrive_after_s": 5,
        }
    ],
    "workers": [{"location": "WH-PAR", "short_pick": [{"sku": "TEE-M", "qty": 2}], "reject_all": False}],
    "events": [
        {
            "at_s": 0,
            "type": "order.placed",
            "order": {
                "order_id": "O-1",
                "channel": "web",
                "customer_id": "C-1",
                "lines": [{"sku": "TEE-M", "qty": 2, "unit_price": 19.9}],
                "delivery": {"mode": "ship", "lat": 48.8, "lon": 2.3},
            },
        },
        {
            "at_s": 0,
            "type": "order.placed",
            "order": {
                "order_id": "O-2",
                "lines": [{"sku": "MUG-1", "qty": 1}],
                "delivery": {"mode": "pickup", "location": "ST-LYO"},
            },
        },
        {"at_s": 1, "type": "order.cancel_requested", "order_id": "O-1"},
        {"at_s": 2, "type": "pickup.collected", "order_id": "O-2"},
        {
            "at_s": 3,
            "type": "return.requested",
            "order_id": "O-2",
            "return_id": "R-1",
            "lines": [{"sku": "MUG-1", "qty": 1}],
            "method": "in_store",
            "location": "ST-LYO",
            "reason": "too_small",
            "condition": "sellable",
        },
    ],
}


def doc(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


# ---------------------------------------------------------------- parsing


def test_the_documented_example_parses() -> None:
    scenario = parse_scenario(doc())
    assert scenario.name == "two-warehouses-and-a-store"
    assert [loc.id for loc in scenario.locations] == ["WH-PAR", "ST-LYO"]
    assert scenario.locations[1].capabilities == ["ship", "pickup", "reserve", "returns"]
    assert scenario.skus[1].price == 10.0  # default
    placed = scenario.events[0]
    assert isinstance(placed, OrderPlacedStep) and isinstance(placed.order.delivery, ShipTo)
    second = scenario.events[1]
    assert isinstance(second, OrderPlacedStep) and second.order.channel == "web"
    assert isinstance(second.order.delivery, PickupAt) and second.order.delivery.location == "ST-LYO"
    assert isinstance(scenario.events[2], CancelStep)
    ret = scenario.events[4]
    assert isinstance(ret, ReturnStep) and ret.method == "in_store" and ret.condition == "sellable"
    assert scenario.generate is None and scenario.rules == {}


def test_minimal_scenario_parses_with_defaults() -> None:
    scenario = parse_scenario(
        {"name": "n", "locations": [{"id": "L", "kind": "store", "lat": 0, "lon": 0}], "skus": [{"sku": "S"}]}
    )
    assert scenario.stock == [] and scenario.events == [] and scenario.workers == []
    assert scenario.locations[0].capabilities == ["ship"] and scenario.locations[0].handling_cost == 1.0


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"stock": [{"location": "WH-NOPE", "sku": "TEE-M", "qty": 1}]}, "stock[0].location", "WH-NOPE"),
        (
            {
                "stock": [
                    {"location": "WH-PAR", "sku": "TEE-M", "qty": 1},
                    {"location": "WH-PAR", "sku": "HAT", "qty": 1},
                ]
            },
            "stock[1].sku",
            "HAT",
        ),
        ({"safety_stock": [{"location": "XX", "sku": "TEE-M", "qty": 1}]}, "safety_stock[0].location", "XX"),
        (
            {"supply": [{"id": "A", "location": "WH-PAR", "sku": "NOPE", "qty": 1, "eta": "x"}]},
            "supply[0].sku",
            "NOPE",
        ),
        ({"workers": [{"location": "ST-NICE"}]}, "workers[0].location", "ST-NICE"),
    ],
)
def test_unknown_references_name_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc(**changes), "file.yaml")
    message = str(err.value)
    assert message.startswith("file.yaml: ")
    assert field in message and words in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"locations": [{"id": "L", "kind": "depot", "lat": 0, "lon": 0}]}, "locations.0.kind"),
        ({"locations": [{"id": "L", "kind": "store", "lat": 91, "lon": 0}]}, "locations.0.lat"),
        (
            {"locations": [{"id": "L", "kind": "store", "lat": 0, "lon": 0, "capabilities": ["fly"]}]},
            "locations.0.capabilities.0",
        ),
        ({"locations": []}, "locations"),
        ({"skus": [{"sku": "bad sku!"}]}, "skus.0.sku"),
        ({"stock": [{"location": "WH-PAR", "sku": "TEE-M", "qty": -1}]}, "stock.0.qty"),
        ({"events": [{"type": "order.exploded", "order_id": "O"}]}, "events.0"),
        ({"events": [{"type": "order.cancel_requested"}]}, "events.0.order.cancel_requested.order_id"),
        (
            {
                "events": [
                    {
                        "type": "order.placed",
                        "order": {
                            "order_id": "O",
                            "lines": [],
                            "delivery": {"mode": "ship", "lat": 0, "lon": 0},
                        },
                    }
                ]
            },
            "events.0.order.placed.order.lines",
        ),
        (
            {
                "events": [
                    {
                        "type": "order.placed",
                        "order": {
                            "order_id": "O",
                            "lines": [{"sku": "TEE-M", "qty": 0}],
                            "delivery": {"mode": "ship", "lat": 0, "lon": 0},
                        },
                    }
                ]
            },
            "events.0.order.placed.order.lines.0.qty",
        ),
        (
            {
                "events": [
                    {
                        "type": "order.placed",
                        "order": {
                            "order_id": "O",
                            "lines": [{"sku": "TEE-M", "qty": 1}],
                            "delivery": {"mode": "teleport"},
                        },
                    }
                ]
            },
            "events.0.order.placed.order.delivery",
        ),
        ({"generate": {"orders": 0}}, "generate.orders"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc(**changes))
    assert f"{field}:" in str(err.value)


def test_missing_name_is_named() -> None:
    document = doc()
    del document["name"]
    with pytest.raises(ScenarioError, match=r"name: Field required"):
        parse_scenario(document)


def test_duplicate_location_ids_are_refused() -> None:
    locations = [*BASE["locations"], {"id": "WH-PAR", "kind": "store", "lat": 0, "lon": 0}]
    with pytest.raises(ScenarioError, match="locations: ids must be unique"):
        parse_scenario(doc(locations=locations))


@pytest.mark.parametrize("document", [[], "name: x", None, 3])
def test_a_document_that_is_not_a_mapping_is_refused(document: Any) -> None:
    with pytest.raises(ScenarioError, match="must hold a mapping"):
        parse_scenario(document, "f.yaml")


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    import yaml

    as_yaml = tmp_path / "s.yaml"
    as_yaml.write_text(yaml.safe_dump(BASE))
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(BASE))
    assert load_scenario(as_yaml) == load_scenario(as_json) == parse_scenario(doc())


def test_load_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(bad_json)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad_yaml)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("name: x\nlocations: []\nskus: []\n")
    with pytest.raises(ScenarioError, match=r"invalid\.yaml: locations"):
        load_scenario(invalid)


# ---------------------------------------------------------------- generate


def generating(orders: int = 50, seed: int = 7, **extra: Any) -> Scenario:
    return parse_scenario(doc(generate={"orders": orders, "seed": seed, **extra}))


def test_no_generate_section_generates_nothing() -> None:
    assert generated_orders(parse_scenario(doc())) == []


def test_same_seed_same_orders() -> None:
    assert generated_orders(generating(seed=7)) == generated_orders(generating(seed=7))


def test_different_seed_different_orders() -> None:
    a, b = generated_orders(generating(seed=7)), generated_orders(generating(seed=8))
    assert [s.order.lines for s in a] != [s.order.lines for s in b]
    assert {s.order.order_id for s in a}.isdisjoint({s.order.order_id for s in b})


def test_generated_orders_follow_the_contract() -> None:
    skus = [{"sku": f"SKU-{n}", "price": float(n)} for n in range(6)]
    scenario = parse_scenario(
        doc(
            skus=skus,
            stock=[],
            safety_stock=[],
            supply=[],
            workers=[],
            events=[],
            generate={"orders": 300, "seed": 3},
        )
    )
    steps = generated_orders(scenario)
    assert len(steps) == 300
    assert len({s.order.order_id for s in steps}) == 300
    assert steps[0].order.order_id == "G-3-00001"
    lats = [loc.lat for loc in scenario.locations]
    lons = [loc.lon for loc in scenario.locations]
    prices = {s["sku"]: s["price"] for s in skus}
    line_counts = set()
    for step in steps:
        assert step.type == "order.placed" and step.at_s == 0
        order = step.order
        line_counts.add(len(order.lines))
        assert 1 <= len(order.lines) <= 3
        assert len({ln.sku for ln in order.lines}) == len(order.lines)
        for ln in order.lines:
            assert ln.qty in (1, 2) and ln.unit_price == prices[ln.sku]
        assert isinstance(order.delivery, ShipTo)
        assert min(lats) <= order.delivery.lat <= max(lats)
        assert min(lons) <= order.delivery.lon <= max(lons)
    assert line_counts == {1, 2, 3}
    assert {ln.qty for s in steps for ln in s.order.lines} == {1, 2}


def test_generated_orders_with_a_single_sku_have_one_line() -> None:
    scenario = parse_scenario(doc(skus=[{"sku": "TEE-M"}], generate={"orders": 20, "seed": 1}))
    assert {len(s.order.lines) for s in generated_orders(scenario)} == {1}


def test_generated_pickup_orders_keep_their_store() -> None:
    steps = generated_orders(
        generating(orders=10, delivery={"mode": "pickup", "location": "ST-LYO"}, channel="store")
    )
    assert all(
        isinstance(s.order.delivery, PickupAt) and s.order.delivery.location == "ST-LYO" for s in steps
    )
    assert all(s.order.channel == "store" for s in steps)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), orders=st.integers(1, 40))
def test_generation_is_reproducible_for_any_seed(seed: int, orders: int) -> None:
    first = generated_orders(generating(orders=orders, seed=seed))
    assert first == generated_orders(generating(orders=orders, seed=seed))
    assert len(first) == orders


# ---------------------------------------------------------------- service.killed


def killing(*services: str) -> dict[str, Any]:
    return doc(events=[{"at_s": n + 1, "type": "service.killed", "service": s} for n, s in enumerate(services)])


def test_service_killed_steps_name_the_process_to_kill() -> None:
    scenario = parse_scenario(killing("orchestrator", "inventory", "wms:ST-LYO"))
    steps = [s for s in scenario.events if isinstance(s, ServiceKilledStep)]
    assert [(s.at_s, s.process) for s in steps] == [(1, "orchestrator"), (2, "inventory"), (3, "wms-ST-LYO")]
    assert steps[2].location == "ST-LYO" and steps[0].location is None


@pytest.mark.parametrize("service", ["redis", "wms", "wms:", "WMS:WH-PAR", ""])
def test_an_unknown_service_is_an_invalid_file_naming_the_field(service: str) -> None:
    with pytest.raises(ScenarioError, match=r"events\.0\.service\.killed\.service: .*unknown service"):
        parse_scenario(killing(service))


def test_killing_the_node_of_an_unknown_location_is_an_invalid_file() -> None:
    with pytest.raises(ScenarioError, match=r"events\[1\]\.service: unknown location 'WH-NOWHERE'"):
        parse_scenario(killing("inventory", "wms:WH-NOWHERE"))


def test_a_service_killed_step_takes_no_other_field() -> None:
    document = doc(events=[{"at_s": 1, "type": "service.killed", "service": "inventory", "signal": "TERM"}])
    with pytest.raises(ScenarioError, match="signal"):
        parse_scenario(document)


def test_the_kill_scenario_file_is_valid() -> None:
    scenario = load_scenario(Path(__file__).parents[1] / "scenarios" / "kill_mid_flow.yaml")
    killed = [s.service for s in scenario.events if isinstance(s, ServiceKilledStep)]
    assert killed == ["orchestrator", "inventory", "wms:WH-PAR"]
