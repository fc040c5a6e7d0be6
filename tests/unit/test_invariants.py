"""The brief's invariants (baton.invariants): each check holds on a consistent run and breaks on a bad one."""

from __future__ import annotations

from typing import Any

from baton.invariants import (
    Expected,
    Facts,
    InvariantReport,
    check_invariants,
    latest_positions,
    open_holds,
    read_stock,
)
from baton.scenario.model import parse_scenario
from schemas.base import Message
from schemas.inventory import (
    AvailabilityChanged,
    BackorderFilled,
    ReservationConsumed,
    ReservationExpired,
    ReservationReleased,
    StockMoved,
    StockReserved,
)

EXPECTED = Expected(order_ids=("O-1",), skus=("TEE-M",), initial_stock={("WH-PAR", "TEE-M"): 10},
                    initial_cause_prefix="ns:initial:")


def position(on_hand: int, reserved: int = 0, safety: int = 0) -> dict[str, int]:
    return {"on_hand": on_hand, "reserved": reserved, "safety_stock": safety, "available": 0}


def shipped_order(qty: int = 2, status: str = "shipped", location: str = "WH-PAR") -> dict[str, Any]:
    return {
        "status": status,
        "lines": [{"sku": "TEE-M", "ordered": qty, "shipped": qty, "cancelled": 0, "open": 0}],
        "shipments": [{"location": location, "lines": [{"sku": "TEE-M", "qty": qty}], "tracking": "T"}],
    }


def moved(cause: str, delta: int, after: int, kind: str = "shipped", location: str = "WH-PAR") -> StockMoved:
    return StockMoved(movement_id=f"{cause}:{kind}:{location}", sku="TEE-M", location=location, kind=kind,  # type: ignore[arg-type]
                      delta=delta, on_hand_after=after, cause_id=cause)


def reserved(rid: str, qty: int, supply: str | None = None, order: str = "O-1") -> StockReserved:
    return StockReserved(reservation_id=rid, order_id=order, sku="TEE-M", location="WH-PAR", qty=qty,
                         against_supply=supply)


def check(orders: dict[str, Any], stock: dict[str, Any], events: list[Message] | None = None,
          movements: list[StockMoved] | None = None, expected: Expected = EXPECTED) -> InvariantReport:
    return check_invariants(Facts(orders, stock, events, movements), expected)


def broken(report: InvariantReport) -> dict[str, tuple[str, ...]]:
    return {c.name: c.culprits for c in report.checks if not c.held}


# ---------------------------------------------------------------- a consistent run


def test_a_consistent_run_holds_every_invariant() -> None:
    events: list[Message] = [
        reserved("R-1", 2),
        ReservationConsumed(reservation_id="R-1", order_id="O-1", sku="TEE-M", location="WH-PAR", qty=2,
                            shipment_id="S-1"),
        reserved("R-2", 2, order="O-2"),
    ]
    movements = [moved("ns:initial:WH-PAR:TEE-M", 10, 10, kind="counted"), moved("R-1", -2, 8)]
    orders = {"O-1": shipped_order(2), "O-2": {"status": "reserved", "lines": [], "shipments": []}}
    report = check(orders, {"WH-PAR": {"TEE-M": position(8, reserved=2, safety=2)}}, events, movements)
    assert report.ok, report.violations
    assert report.summary() == {"ok": True, "violations": []}
    assert {c["name"] for c in report.as_json()["checks"]} >= {
        "settled", "no_oversell", "no_overship", "reserved_matches_holds", "shipped_once", "conservation"}


# ---------------------------------------------------------------- settled


def test_orders_left_unsettled_are_listed_with_their_status() -> None:
    orders = {"O-1": shipped_order(2), "O-2": {"status": "allocated", "lines": []},
              "O-3": {"status": "unknown", "lines": []}}
    report = check(orders, {"WH-PAR": {"TEE-M": position(8)}})
    assert broken(report)["settled"] == ("O-2", "O-3")
    assert "settled: O-2 is still allocated" in report.violations


def test_waiting_on_the_outside_counts_as_settled() -> None:
    orders = {"O-1": {"status": "backordered", "lines": []}, "O-2": {"status": "ready_for_pickup", "lines": []}}
    assert "settled" not in broken(check(orders, {"WH-PAR": {"TEE-M": position(10)}}))


# ---------------------------------------------------------------- oversell


def test_negative_on_hand_is_an_oversell() -> None:
    report = check({}, {"WH-PAR": {"TEE-M": position(-1)}})
    assert broken(report)["no_oversell"] == ("TEE-M@WH-PAR",)
    assert "no oversell: TEE-M@WH-PAR on hand -1 < 0" in report.violations


def test_reserving_into_safety_stock_is_an_oversell() -> None:
    report = check({"O-1": {"status": "allocated", "lines": []}}, {"WH-PAR": {"TEE-M": position(10, 9, safety=2)}})
    assert report.violations == ["settled: O-1 is still allocated",
                                 "no oversell: TEE-M@WH-PAR reserved 9 > on hand - safety"]


def test_safety_stock_above_on_hand_with_nothing_reserved_is_not_an_oversell() -> None:
    stock = {"WH-PAR": {"TEE-M": position(8)}, "ST-LYO": {"TEE-M": position(0, safety=1)}}
    assert check({"O-1": shipped_order(2)}, stock).ok


# ---------------------------------------------------------------- lines


def test_a_line_shipped_beyond_its_order_is_reported() -> None:
    order = shipped_order(2)
    order["lines"][0]["ordered"] = 1
    order["lines"][0]["cancelled"] = -1  # keeps the accounting balanced: only the overshipment shows
    report = check({"O-1": order}, {"WH-PAR": {"TEE-M": position(8)}})
    assert broken(report) == {"no_overship": ("O-1",)}
    assert any("shipments carry 2 of 1 ordered" in v for v in report.violations)


def test_shipments_beyond_the_order_are_reported_even_when_the_line_says_otherwise() -> None:
    order = shipped_order(2)
    order["shipments"].append({"location": "WH-PAR", "lines": [{"sku": "TEE-M", "qty": 1}], "tracking": "T2"})
    report = check({"O-1": order}, {"WH-PAR": {"TEE-M": position(7)}})
    assert broken(report)["no_overship"] == ("O-1",)


def test_unaccounted_line_is_reported() -> None:
    order = shipped_order(2)
    order["lines"][0]["shipped"] = 1
    report = check({"O-1": order}, {"WH-PAR": {"TEE-M": position(8)}})
    assert broken(report) == {"lines_accounted": ("O-1",)}
    assert report.violations[0].startswith("line accounting: O-1 TEE-M")


# ---------------------------------------------------------------- holds


def test_open_holds_follow_each_reservations_life() -> None:
    events: list[Message] = [
        reserved("R-1", 2),
        reserved("R-2", 3, supply="ASN-1"),  # waiting on supply: not on hand
        reserved("R-3", 1),
        reserved("R-4", 4, supply="ASN-1"),
        BackorderFilled(reservation_id="R-4", order_id="O-1", sku="TEE-M", location="WH-PAR", qty=4,
                        supply_id="ASN-1"),
        reserved("R-4", 4, supply="ASN-1"),  # the decision repeated: changes nothing
        ReservationReleased(reservation_id="R-3", order_id="O-1", sku="TEE-M", location="WH-PAR", qty=1,
                            reason="cancelled"),
        ReservationExpired(reservation_id="R-1", order_id="O-1", sku="TEE-M", location="WH-PAR", qty=2),
        reserved("R-1", 2),  # a late repeat of an ended reservation's decision
    ]
    assert open_holds(events) == {("WH-PAR", "TEE-M"): 4}


def test_reserved_that_no_open_hold_explains_is_reported() -> None:
    report = check({"O-1": {"status": "allocated", "lines": []}}, {"WH-PAR": {"TEE-M": position(10, 3)}},
                   events=[reserved("R-1", 2)])
    assert broken(report)["reserved_matches_holds"] == ("TEE-M@WH-PAR",)
    assert "holds: TEE-M@WH-PAR reserves 3 but its open holds sum to 2" in report.violations


def test_a_hold_the_ledger_no_longer_counts_is_reported() -> None:
    report = check({}, {}, events=[reserved("R-1", 2)])
    assert broken(report)["reserved_matches_holds"] == ("TEE-M@WH-PAR",)


def test_reservations_left_when_every_order_settled_are_reported() -> None:
    report = check({"O-1": shipped_order(2)}, {"WH-PAR": {"TEE-M": position(8, reserved=1)}})
    assert report.violations == ["reservations: TEE-M@WH-PAR still reserves 1 with every order settled"]


def test_reservations_of_unsettled_orders_are_fine() -> None:
    orders = {"O-1": shipped_order(2), "O-2": {"status": "in_fulfilment", "lines": []}}
    report = check(orders, {"WH-PAR": {"TEE-M": position(8, reserved=1)}})
    assert "reservations_ended" not in broken(report)


# ---------------------------------------------------------------- movements


def test_a_shipment_that_moved_on_hand_twice_is_reported() -> None:
    movements = [moved("R-1", -2, 8), moved("R-1", -2, 6)]
    report = check({"O-1": shipped_order(2)}, {"WH-PAR": {"TEE-M": position(6)}}, movements=movements)
    assert broken(report) == {"shipped_once": ("TEE-M@WH-PAR",), "no_double_effect": ("TEE-M@WH-PAR",),
                              "conservation": ("TEE-M@WH-PAR",)}
    assert "shipped once: TEE-M@WH-PAR on hand dropped 4 for 2 shipped" in report.violations
    assert "double effect: shipped TEE-M@WH-PAR caused by R-1 applied 2 times" in report.violations


def test_a_redelivered_movement_is_one_effect() -> None:
    movements = [moved("R-1", -2, 8), moved("R-1", -2, 8)]
    assert check({"O-1": shipped_order(2)}, {"WH-PAR": {"TEE-M": position(8)}}, movements=movements).ok


def test_a_shipment_that_never_moved_on_hand_is_reported() -> None:
    report = check({"O-1": shipped_order(2)}, {"WH-PAR": {"TEE-M": position(8)}}, movements=[])
    assert broken(report) == {"shipped_once": ("TEE-M@WH-PAR",)}


# ---------------------------------------------------------------- conservation


def test_stock_that_moved_without_a_shipment_breaks_conservation() -> None:
    report = check({"O-1": shipped_order(2)}, {"WH-PAR": {"TEE-M": position(7)}})
    assert report.violations == [
        "conservation: TEE-M@WH-PAR on hand 7, expected 8 (initial + received - shipped +- adjustments)"
    ]


def test_stock_appearing_at_an_unstocked_location_breaks_conservation() -> None:
    report = check({}, {"WH-PAR": {"TEE-M": position(10)}, "ST-LYO": {"TEE-M": position(3)}})
    assert broken(report) == {"conservation": ("TEE-M@ST-LYO",)}


def test_a_shipment_from_a_location_without_that_stock_breaks_conservation() -> None:
    report = check({"O-1": shipped_order(1, location="ST-LYO")}, {"WH-PAR": {"TEE-M": position(10)}})
    assert broken(report) == {"conservation": ("TEE-M@ST-LYO",)}


def test_recorded_adjustments_and_receipts_count_toward_conservation() -> None:
    orders = {"O-1": shipped_order(1)}
    movements = [moved("ns:initial:WH-PAR:TEE-M", 10, 10, kind="counted"), moved("R-1", -1, 9),
                 moved("A-1", -2, 7, kind="adjusted"), moved("RC-1", 5, 12, kind="received")]
    stock = {"WH-PAR": {"TEE-M": position(10 - 1 - 2 + 5)}}
    assert check(orders, stock, movements=movements).ok
    assert not check(orders, stock, movements=movements[:2]).ok


def test_without_an_initial_load_every_movement_counts() -> None:
    movements = [moved("feed-1", 10, 10, kind="counted"), moved("R-1", -2, 8)]
    expected = Expected(order_ids=("O-1",))
    assert check({"O-1": shipped_order(2)}, {"WH-PAR": {"TEE-M": position(8)}}, movements=movements,
                 expected=expected).ok


# ---------------------------------------------------------------- plumbing


def test_expected_from_a_scenario_lists_its_orders_and_initial_stock() -> None:
    scenario = parse_scenario({
        "name": "s", "locations": [{"id": "WH-PAR", "kind": "warehouse", "lat": 48.8, "lon": 2.3}],
        "skus": [{"sku": "TEE-M"}], "stock": [{"location": "WH-PAR", "sku": "TEE-M", "qty": 4}],
        "events": [{"type": "order.placed", "order": {"order_id": "O-1", "lines": [{"sku": "TEE-M", "qty": 1}],
                                                      "delivery": {"mode": "ship", "lat": 48.8, "lon": 2.3}}}],
        "generate": {"orders": 2, "seed": 3},
    })
    expected = Expected.from_scenario(scenario, "ns")
    assert expected.order_ids == ("O-1", "G-3-00001", "G-3-00002")
    assert expected.initial_stock == {("WH-PAR", "TEE-M"): 4}
    assert expected.initial_cause_prefix == "ns:initial:" and expected.skus == ("TEE-M",)


def test_availability_documents_become_positions() -> None:
    docs = {"TEE-M": {"WH-PAR": {"on_hand": 3, "reserved": 1, "available": 2, "version": 7}}}
    assert read_stock(docs) == {"WH-PAR": {"TEE-M": {"on_hand": 3, "reserved": 1, "available": 2,
                                                      "incoming": 0, "safety_stock": 0}}}


def test_the_newest_committed_availability_of_each_position_is_the_stock() -> None:
    def change(location: str, on_hand: int, version: int, sku: str = "TEE-M") -> AvailabilityChanged:
        return AvailabilityChanged(sku=sku, location=location, on_hand=on_hand, reserved=1, safety_stock=0,
                                   available=on_hand - 1, version=version)

    changes = [change("WH-PAR", 10, 1), change("WH-PAR", 8, 3), change("WH-PAR", 9, 2), change("ST-LYO", 4, 2),
               change("WH-PAR", 5, 1, sku="MUG-1")]
    stock = latest_positions(changes, skus=["TEE-M"])
    assert {loc: {sku: p["on_hand"] for sku, p in skus.items()} for loc, skus in stock.items()} == {
        "WH-PAR": {"TEE-M": 8}, "ST-LYO": {"TEE-M": 4}}
    assert latest_positions(changes)["WH-PAR"]["MUG-1"]["on_hand"] == 5


def test_a_reservation_that_ends_two_ways_is_reported() -> None:
    consumed = ReservationConsumed(reservation_id="R-1", order_id="O-1", sku="TEE-M", location="WH-PAR", qty=2,
                                   shipment_id="S-1")
    released = ReservationReleased(reservation_id="R-1", order_id="O-1", sku="TEE-M", location="WH-PAR", qty=2,
                                   reason="cancelled")
    stock = {"WH-PAR": {"TEE-M": position(8)}}
    assert check({"O-1": shipped_order(2)}, stock, events=[reserved("R-1", 2), consumed, consumed]).ok
    report = check({"O-1": shipped_order(2)}, stock, events=[reserved("R-1", 2), consumed, released])
    assert broken(report) == {"reservations_end_once": ("O-1",)}
    assert report.violations == ["ended twice: reservation R-1 of O-1 consumed and released"]
