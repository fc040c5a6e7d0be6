"""Issue 10: a short pick shrinks exactly the hold being picked and only the missing units are re-sourced.

The three pure cores, alone and chained by hand in the orders the network may deliver their messages: the WMS
names the holds it picked short; the ledger shrinks those holds to the units found and writes off only what
its books still counted; stock lost shrinks holds by the units missing (never frees a unit still there); the
orchestrator re-sources the missing units once, and waits for the pick when a location is already on a line.
"""

from __future__ import annotations

import pytest

from schemas.base import Message
from schemas.inventory import (
    AdjustStock,
    ConsumeReservation,
    CountStock,
    PickShortfall,
    ReleaseReservation,
    ReservationReduced,
    ReservationReleased,
    ReserveStock,
    StockMoved,
)
from schemas.orders import OrderCancelRequested, OrderRejected
from schemas.topics import INVENTORY_RESERVATIONS
from schemas.wms import CancelFulfilment, FulfilmentRejected, FulfilOrder, ShortPicked, ShortPickLine
from services.inventory.domain.ledger import SkuLedger
from services.runtime.outbox import Emit
from tests.unit.test_order_lifecycle import Story, hold_all, order
from tests.unit.test_order_saga import accepted, of, reserved, shipped
from tests.unit.test_wms_desk import REQUEST, node
from tests.unit.wms_support import of_type

SKU = "DRILL"


class Ledger:
    """The DRILL ledger with numbered command ids, stocked by a count per location."""

    def __init__(self, **on_hand: int) -> None:
        self.ledger = SkuLedger(sku=SKU)
        self.n = 0
        for location, qty in on_hand.items():
            self(CountStock(count_id=f"init-{location}", sku=SKU, location=location.replace("_", "-"), qty=qty))

    def __call__(self, command: Message) -> list[Emit]:
        self.n += 1
        return self.ledger.apply(command, f"cmd-{self.n}")

    def to_orchestrator(self, emits: list[Emit]) -> list[Message]:
        return [e.message for e in emits if e.topic == INVENTORY_RESERVATIONS.name]

    def position(self, location: str) -> tuple[int, int]:
        pos = self.ledger.positions[location]
        return pos.on_hand, pos.reserved


def short_pick(location: str, rid: str, asked: int, found: int) -> AdjustStock:
    """What the WMS sends the ledger when a pick of ``asked`` units of hold ``rid`` finds ``found``."""
    missing = asked - found
    shortfall = PickShortfall(reservation_id=rid, picked=found, missing=missing)
    return AdjustStock(adjustment_id=f"{location}:{rid}/pick:short:{SKU}", sku=SKU, location=location,
                       delta=-missing, reason="short_pick", shortfalls=[shortfall])


def short_picked(fulfil: Message, missing: int) -> ShortPicked:
    assert isinstance(fulfil, FulfilOrder)
    line = fulfil.lines[0]
    return ShortPicked(request_id=fulfil.request_id, order_id=fulfil.order_id, location=fulfil.location,
                       lines=[ShortPickLine(sku=line.sku, missing=missing, reservation_id=line.reservation_id)])


def reserves(emits: list[Emit]) -> list[tuple[str, int]]:
    return [(m.location, m.qty) for m in of(emits, ReserveStock)]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the WMS names the hold


def test_the_wms_short_pick_adjustment_names_the_hold_and_what_was_found() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 3), ("MUG-1", 1)))
    emits = n.send(n.confirm(f"{REQUEST}/pick", missing={"TEE-M": 2}))
    adjust = of_type(emits, AdjustStock)[0]
    assert (adjust.sku, adjust.delta) == ("TEE-M", -2)
    assert [(s.reservation_id, s.picked, s.missing) for s in adjust.shortfalls] == [("O-1/a1/0", 1, 2)]


# ---------------------------------------------------------------- the ledger shrinks the hold being picked


def test_a_short_pick_below_the_holds_shrinks_the_hold_picked_not_the_newest() -> None:
    book = Ledger(WH_A=4)
    book(ReserveStock(reservation_id="R-old", order_id="O-old", sku=SKU, location="WH-A", qty=3))
    book(ReserveStock(reservation_id="R-new", order_id="O-new", sku=SKU, location="WH-A", qty=1))
    emits = book(short_pick("WH-A", "R-old", asked=3, found=1))
    told = book.to_orchestrator(emits)
    assert [(type(m).__name__, m.reservation_id, m.qty) for m in told] == [  # type: ignore[attr-defined]
        ("ReservationReduced", "R-old", 1)
    ]
    assert book.position("WH-A") == (2, 2)  # 2 written off; the unit found and the newer hold stay held
    assert book.ledger.reservations["R-new"].status == "held"
    consumed = book(ConsumeReservation(reservation_id="R-old", order_id="O-old", sku=SKU, qty=1, shipment_id="P"))
    assert [m.delta for m in of(consumed, StockMoved)] == [-1]  # type: ignore[attr-defined]
    assert book.position("WH-A") == (1, 1)


def test_a_short_pick_of_every_unit_releases_the_hold_for_that_reason() -> None:
    book = Ledger(WH_A=3)
    book(ReserveStock(reservation_id="R1", order_id="O-1", sku=SKU, location="WH-A", qty=3))
    told = book.to_orchestrator(book(short_pick("WH-A", "R1", asked=3, found=0)))
    assert [(type(m).__name__, m.reason) for m in told] == [("ReservationReleased", "short pick")]  # type: ignore[attr-defined]
    assert book.position("WH-A") == (0, 0)


def test_a_count_during_the_pick_writes_the_loss_off_once() -> None:
    book = Ledger(WH_A=3)
    book(ReserveStock(reservation_id="R1", order_id="O-1", sku=SKU, location="WH-A", qty=3))
    counted = book(CountStock(count_id="c-1", sku=SKU, location="WH-A", qty=1))
    assert [(type(m).__name__, m.qty, m.reason) for m in book.to_orchestrator(counted)] == [  # type: ignore[attr-defined]
        ("ReservationReduced", 1, "stock lost")  # shrunk, not released: the unit left is still the order's
    ]
    emits = book(short_pick("WH-A", "R1", asked=3, found=1))  # the pickers find the unit the count found
    assert of(emits, StockMoved) == [] and book.to_orchestrator(emits) == []
    assert book.position("WH-A") == (1, 1)
    book(ConsumeReservation(reservation_id="R1", order_id="O-1", sku=SKU, qty=1, shipment_id="P"))
    assert book.position("WH-A") == (0, 0)


def test_a_short_pick_of_a_hold_released_meanwhile_writes_off_every_missing_unit() -> None:
    book = Ledger(WH_A=3)
    book(ReserveStock(reservation_id="R1", order_id="O-1", sku=SKU, location="WH-A", qty=3))
    book(ReleaseReservation(reservation_id="R1", order_id="O-1", sku=SKU, reason="cancelled"))
    emits = book(short_pick("WH-A", "R1", asked=3, found=1))
    assert [m.delta for m in of(emits, StockMoved)] == [-2]  # type: ignore[attr-defined]
    assert book.position("WH-A") == (1, 0)


def test_units_short_beyond_the_named_holds_are_written_off_as_well() -> None:
    book = Ledger(WH_A=5)
    book(ReserveStock(reservation_id="R1", order_id="O-1", sku=SKU, location="WH-A", qty=2))
    adjust = short_pick("WH-A", "R1", asked=2, found=1).model_copy(update={"delta": -3})
    book(adjust)
    assert book.position("WH-A") == (2, 1)


# ---------------------------------------------------------------- the orchestrator re-sources the missing units


@pytest.mark.parametrize("ledger_first", [True, False])
@pytest.mark.parametrize("names_the_hold", [True, False])
def test_the_issue_case_re_sources_only_the_missing_units_whatever_arrives_first(
    ledger_first: bool, names_the_hold: bool
) -> None:
    """3 DRILL held at WH-A, 2 not found: 2 reserved at WH-B, never 3, in either delivery order, and even with an
    older WMS whose adjustment names no hold (the ledger then shrinks the newest, the orchestrator waits)."""
    story, book = Story({SKU: {"WH-A": 3, "WH-B": 5}}), Ledger(WH_A=3, WH_B=5)
    placed = story.send(order(DRILL=3))
    fulfil = [m for cmd in of(placed, ReserveStock) for m in of(story.send(book.to_orchestrator(book(cmd))[0]),
                                                                      FulfilOrder)]
    assert [(f.location, f.lines[0].qty) for f in fulfil] == [("WH-A", 3)]  # type: ignore[attr-defined]
    story.send(accepted(fulfil[0]))
    rid = fulfil[0].lines[0].reservation_id  # type: ignore[attr-defined]
    adjust = short_pick("WH-A", rid, asked=3, found=1)
    if not names_the_hold:
        adjust = adjust.model_copy(update={"shortfalls": []})
    from_ledger = book.to_orchestrator(book(adjust))
    assert [type(m) for m in from_ledger] == [ReservationReduced]
    messages = [*from_ledger, short_picked(fulfil[0], 2)]  # type: ignore[arg-type]
    emitted = [e for m in (messages if ledger_first else messages[::-1]) for e in story.send(m)]
    assert reserves(emitted) == [("WH-B", 2)]
    second = of(story.send(reserved(of(emitted, ReserveStock)[0])), FulfilOrder)
    story.send(shipped(fulfil[0]).model_copy(update={"lines": [fulfil[0].lines[0].model_copy(update={"qty": 1})]}))  # type: ignore[attr-defined]
    story.send(shipped(second[0], parcel="P-2"))
    assert story.st.status == "shipped"
    assert story.st.line_statuses()[0].model_dump() == {"sku": SKU, "ordered": 3, "shipped": 3, "cancelled": 0,
                                                         "open": 0}


def test_stock_lost_under_a_line_a_location_is_picking_waits_for_the_pick() -> None:
    story = Story({SKU: {"WH-A": 3, "WH-B": 5}})
    fulfil = of(hold_all(story, story.send(order(DRILL=3))), FulfilOrder)
    story.send(accepted(fulfil[0]))
    rid = fulfil[0].lines[0].reservation_id  # type: ignore[attr-defined]
    released = ReservationReleased(reservation_id=rid, order_id="O-1", sku=SKU, location="WH-A", qty=3,
                                   reason="stock lost")
    assert story.send(released) == []  # the pickers may still find the units: nothing re-sourced yet
    assert reserves(story.send(short_picked(fulfil[0], 3))) == [("WH-B", 3)]  # they found none: all of it now


def test_stock_lost_under_a_line_no_location_has_yet_re_sources_the_units_given_back() -> None:
    story = Story({SKU: {"WH-A": 3, "WH-B": 5}, "SAW": {"WH-A": 1}})
    reserve = {m.sku: m for m in of(story.send(order(DRILL=3, SAW=1)), ReserveStock)}  # type: ignore[attr-defined]
    assert of(story.send(reserved(reserve[SKU])), FulfilOrder) == []  # SAW not answered yet: not dispatched
    reduced = ReservationReduced(reservation_id=reserve[SKU].reservation_id, order_id="O-1", sku=SKU,  # type: ignore[attr-defined]
                                 location="WH-A", qty=1, released=2, reason="stock lost")
    assert reserves(story.send(reduced)) == [("WH-B", 2)]
    assert story.send(reduced.model_copy()) == []  # the same reduction again (another id) takes nothing more


def test_a_pick_that_found_nothing_ends_the_line_and_the_ledger_release_changes_nothing() -> None:
    story = Story({SKU: {"WH-A": 3, "WH-B": 5}})
    fulfil = of(hold_all(story, story.send(order(DRILL=3))), FulfilOrder)
    story.send(accepted(fulfil[0]))
    rid = fulfil[0].lines[0].reservation_id  # type: ignore[attr-defined]
    assert reserves(story.send(short_picked(fulfil[0], 3))) == [("WH-B", 3)]
    assert next(p for p in story.st.planned if p.reservation_id == rid).status == "released"
    released = ReservationReleased(reservation_id=rid, order_id="O-1", sku=SKU, location="WH-A", qty=3,
                                   reason="short pick")
    assert story.send(released) == []


def test_a_cancel_while_the_missing_units_are_being_reserved_releases_both_legs_and_ships_nothing() -> None:
    story, book = Story({SKU: {"WH-A": 3, "WH-B": 5}}), Ledger(WH_A=3, WH_B=5)
    fulfil = of(story.send(book.to_orchestrator(book(of(story.send(order(DRILL=3)), ReserveStock)[0]))[0]),
                FulfilOrder)
    story.send(accepted(fulfil[0]))
    rid = fulfil[0].lines[0].reservation_id  # type: ignore[attr-defined]
    for message in book.to_orchestrator(book(short_pick("WH-A", rid, asked=3, found=1))):
        story.send(message)
    resource = of(story.send(short_picked(fulfil[0], 2)), ReserveStock)
    assert [(m.location, m.qty) for m in resource] == [("WH-B", 2)]  # type: ignore[attr-defined]
    cancel = story.send(OrderCancelRequested(order_id="O-1", reason="customer"))
    assert story.st.status == "cancelled"
    assert [c.location for c in of(cancel, CancelFulfilment)] == ["WH-A"]  # type: ignore[attr-defined]
    releases = of(cancel, ReleaseReservation)
    assert sorted(r.reservation_id for r in releases) == sorted([rid, resource[0].reservation_id])  # type: ignore[attr-defined]
    # the ledger answers the re-sourced reservation after the cancel: it is given back, never dispatched
    answer = book.to_orchestrator(book(resource[0]))[0]
    assert of(story.send(answer), FulfilOrder) == []
    for release in releases:
        book(release)
    assert book.position("WH-A") == (1, 0) and book.position("WH-B") == (5, 0)
    assert story.st.line_statuses()[0].cancelled == 3


# ---------------------------------------------------------------- what the simulator found (baton sim seeds)


def test_a_short_pick_with_no_other_source_rejects_the_order_instead_of_leaving_it_in_fulfilment() -> None:
    """Seeds 2 and 56: the pick finds nothing, no location has stock, no supply: the order ends ``rejected``."""
    story = Story({SKU: {"WH-A": 1}})
    fulfil = of(hold_all(story, story.send(order(DRILL=1))), FulfilOrder)
    story.send(accepted(fulfil[0]))
    emits = story.send(short_picked(fulfil[0], 1))
    assert story.st.status == "rejected" and "no source" in (story.st.reason or "")
    assert [type(m).__name__ for m in of(emits, OrderRejected)] == ["OrderRejected"]
    assert story.st.line_statuses()[0].cancelled == 1


def test_a_location_that_rejected_the_order_is_not_its_backorder_source_either() -> None:
    """Seed 271: WH-A refuses every request; re-sourcing must not backorder the line at WH-A again (for ever)."""
    story = Story({SKU: {"WH-A": 0}}, supply={SKU: {"WH-A": (5, "2026-12-01T00:00:00+00:00")}})
    first = of(story.send(order(DRILL=1)), ReserveStock)
    assert [(m.location, m.backorder) for m in first] == [("WH-A", True)]  # type: ignore[attr-defined]
    fulfil = of(story.send(reserved(first[0])), FulfilOrder)  # held on hand in this story: dispatched
    rejected = FulfilmentRejected(request_id=fulfil[0].request_id, order_id="O-1", location="WH-A",  # type: ignore[attr-defined]
                                  reason="closed")
    emits = story.send(rejected)
    assert of(emits, ReserveStock) == []
    assert story.st.status == "rejected"


def test_a_parcel_the_books_had_written_off_is_found_before_it_ships() -> None:
    """Seed 78: a count lowered stock below the hold being picked, the pickers found every unit and shipped them:
    the ledger records the units found, then the shipment, so its movements add up to the parcels."""
    book = Ledger(WH_A=4)
    book(ReserveStock(reservation_id="R1", order_id="O-1", sku=SKU, location="WH-A", qty=2))
    book(ReserveStock(reservation_id="R2", order_id="O-2", sku=SKU, location="WH-A", qty=2))
    book(CountStock(count_id="c-1", sku=SKU, location="WH-A", qty=3))  # R2 shrinks to 1
    book(ConsumeReservation(reservation_id="R1", order_id="O-1", sku=SKU, qty=2, shipment_id="P-1"))
    emits = book(ConsumeReservation(reservation_id="R2", order_id="O-2", sku=SKU, qty=2, shipment_id="P-2"))
    moved = [(m.kind, m.delta, m.on_hand_after) for m in of(emits, StockMoved)]  # type: ignore[attr-defined]
    assert moved == [("adjusted", 1, 2), ("shipped", -2, 0)]
    assert book.position("WH-A") == (0, 0)
