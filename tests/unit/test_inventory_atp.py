"""Available-to-promise over the positions the ledger publishes: per location, by date, network-wide, per
delivery mode, the promise date of a quantity, and the stock document of the CLI and HTTP view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.inventory import AvailabilityChanged, CountStock, ReceiveStock, RecordSupply, ReserveStock
from schemas.network import Location
from services.inventory.domain.ledger import SkuLedger
from services.runtime.atp import (
    atp,
    atp_by_mode,
    atp_network,
    parse_near,
    parse_time,
    position_of,
    promise_date,
    stock_document,
)

SKU = "TEE-M"
NOW = datetime(2026, 11, 26, tzinfo=UTC)
D1, D2, D3 = (NOW + timedelta(days=d) for d in (5, 10, 20))


def ledger_with_supply() -> SkuLedger:
    """WH-A: 4 on hand, 3 held; ASN-1 3 units on D1 (2 promised to R3); PO-2 5 units on D2 (all to R2)."""
    ledger = SkuLedger(sku=SKU)
    commands = [
        CountStock(count_id="c", sku=SKU, location="WH-A", qty=4),
        RecordSupply(supply_id="ASN-1", sku=SKU, location="WH-A", qty=3, eta=D1),
        RecordSupply(supply_id="PO-2", sku=SKU, location="WH-A", qty=5, eta=D2, kind="purchase_order"),
        ReserveStock(reservation_id="R1", order_id="O1", sku=SKU, location="WH-A", qty=3),
        ReserveStock(reservation_id="R2", order_id="O2", sku=SKU, location="WH-A", qty=5, backorder=True),
        ReserveStock(reservation_id="R3", order_id="O3", sku=SKU, location="WH-A", qty=2, backorder=True),
    ]
    for n, command in enumerate(commands):
        ledger.apply(command, f"m{n}")
    return ledger


def test_atp_by_date_counts_the_unclaimed_supply_landing_by_then() -> None:
    position = ledger_with_supply().availability("WH-A")
    # R2 (5) does not fit the ASN (3): it waits on the PO; R3 (2) fits the ASN
    assert (position.available, position.incoming, position.backordered) == (1, 8, 7)
    assert atp(position) == 1
    assert atp(position, NOW) == 1
    assert atp(position, D1) == 1 + 1  # the ASN's 3, 2 of them promised to R3
    assert atp(position, D2) == 1 + 1 + 0  # the PO's 5 are all promised to R2
    assert atp(position, D3) == 2


def test_backorders_waiting_without_supply_take_the_next_units_that_land() -> None:
    position = AvailabilityChanged.model_validate({
        "sku": SKU, "location": "WH-A", "on_hand": 0, "reserved": 0, "safety_stock": 0, "available": 0,
        "backordered": 4, "backordered_unsupplied": 4, "incoming": 6, "incoming_unreserved": 2,
        "supplies": [{"supply_id": "S", "eta": D1, "outstanding": 6, "unreserved": 6}],
    })
    assert atp(position, D1) == 2
    assert promise_date(position, 2, NOW) == D1
    assert promise_date(position, 3, NOW) is None


def test_promise_date_is_now_when_stock_covers_it_else_the_eta_that_does_or_never() -> None:
    position = ledger_with_supply().availability("WH-A")
    assert promise_date(position, 1, NOW) == NOW
    assert promise_date(position, 2, NOW) == D1
    assert promise_date(position, 3, NOW) is None


def test_network_and_delivery_modes() -> None:
    ledger = ledger_with_supply()
    ledger.apply(CountStock(count_id="s", sku=SKU, location="ST-LYO", qty=2), "s1")
    ledger.apply(CountStock(count_id="x", sku=SKU, location="ST-SHUT", qty=9), "s2")
    positions = {loc: ledger.availability(loc) for loc in ledger.locations()}
    locations = {
        "WH-A": Location(id="WH-A", kind="warehouse", lat=48.8, lon=2.3, capabilities=["ship"]),
        "ST-LYO": Location(id="ST-LYO", kind="store", lat=45.7, lon=4.8, capabilities=["pickup", "reserve"]),
        "ST-SHUT": Location(id="ST-SHUT", kind="store", lat=45.0, lon=4.0, capabilities=["ship", "pickup"],
                            open=False),
    }
    assert atp_network(positions) == 1 + 2 + 9
    modes = atp_by_mode(positions, locations)
    assert modes == {"ship": 1, "pickup": {"ST-LYO": 2}, "reserve": {"ST-LYO": 2}}  # a closed store serves nothing
    assert atp_by_mode(positions, locations, D1)["ship"] == 2


def test_stock_document_orders_by_distance_and_adds_up() -> None:
    ledger = ledger_with_supply()
    ledger.apply(CountStock(count_id="s", sku=SKU, location="ST-LYO", qty=2), "s1")
    ledger.apply(ReceiveStock(receipt_id="r", sku=SKU, location="ST-LYO", qty=1), "s2")
    positions = {loc: ledger.availability(loc) for loc in ledger.locations()}
    locations = {
        "WH-A": Location(id="WH-A", kind="warehouse", lat=48.86, lon=2.35),
        "ST-LYO": Location(id="ST-LYO", kind="store", lat=45.76, lon=4.83, capabilities=["pickup"]),
    }
    doc = stock_document(SKU, positions, locations, near=(45.7, 4.8), by=D1)
    assert list(doc["locations"]) == ["ST-LYO", "WH-A"]
    assert doc["locations"]["ST-LYO"]["distance_km"] < 10 < doc["locations"]["WH-A"]["distance_km"]
    assert doc["total"]["on_hand"] == 4 + 3 and doc["total"]["available"] == 1 + 3
    assert doc["atp"] == {"network": 4, "network_by": 5,
                          "by_mode": {"ship": 1, "pickup": {"ST-LYO": 3}, "reserve": {}},
                          "by_mode_by": {"ship": 2, "pickup": {"ST-LYO": 3}, "reserve": {}}}
    assert doc["locations"]["WH-A"]["supplies"][0] == {"supply_id": "ASN-1", "eta": "2026-12-01T00:00:00Z",
                                                       "outstanding": 3, "unreserved": 1}
    assert doc["total"]["next_eta"] == "2026-12-01T00:00:00Z" and doc["by"] == "2026-12-01T00:00:00Z"
    plain = stock_document(SKU, positions)
    assert list(plain["locations"]) == ["ST-LYO", "WH-A"] and "by_mode" not in plain["atp"]


def test_a_read_model_document_is_a_position() -> None:
    position = ledger_with_supply().availability("WH-A")

    stored = orjson.loads(orjson.dumps(position.model_dump()))  # as Redis holds it
    assert position_of(stored) == position
    old = {k: stored[k] for k in ("sku", "location", "on_hand", "reserved", "safety_stock", "available")}
    assert atp(position_of(old), D3) == position.available  # documents written before supply existed still read


def test_parsing_of_the_query_options() -> None:
    assert parse_near("45.76,4.83") == (45.76, 4.83)
    assert parse_near(None) is None
    with pytest.raises(ValueError, match="LAT,LON"):
        parse_near("lyon")
    with pytest.raises(ValueError, match="not a point"):
        parse_near("95,0")
    assert parse_time("2026-12-01T00:00:00Z") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_time("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("tomorrow")


@given(
    on_hand=st.integers(0, 20),
    reserves=st.lists(st.tuples(st.integers(1, 5), st.booleans()), max_size=8),
    supplies=st.lists(st.tuples(st.integers(1, 8), st.sampled_from([D1, D2, D3])), max_size=3),
)
def test_atp_by_date_never_decreases_and_a_backorder_within_one_supply_is_accepted(
    on_hand: int, reserves: list[tuple[int, bool]], supplies: list[tuple[int, datetime]]
) -> None:
    ledger = SkuLedger(sku=SKU)
    ledger.apply(CountStock(count_id="c", sku=SKU, location="WH-A", qty=on_hand), "c")
    for n, (qty, eta) in enumerate(supplies):
        ledger.apply(RecordSupply(supply_id=f"S{n}", sku=SKU, location="WH-A", qty=qty, eta=eta), f"s{n}")
    for n, (qty, backorder) in enumerate(reserves):
        ledger.apply(ReserveStock(reservation_id=f"R{n}", order_id="O", sku=SKU, location="WH-A", qty=qty,
                                  backorder=backorder), f"r{n}")
    position = ledger.availability("WH-A")
    series = [atp(position, when) for when in (None, NOW, D1, D2, D3)]
    assert series == sorted(series)
    assert series[-1] == position.available + position.incoming_unreserved
    one_supply = max((s.unreserved for s in position.supplies), default=0)
    if one_supply and one_supply > position.available:
        decision = ledger.apply(ReserveStock(reservation_id="RX", order_id="O", sku=SKU, location="WH-A",
                                             qty=one_supply, backorder=True), "rx")[0].message
        assert decision.against_supply is not None  # type: ignore[attr-defined]
