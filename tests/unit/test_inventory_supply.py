"""The ledger's supply side, by example: backorders held on incoming supply, receipts (full, short, damaged,
unannounced), promises that move, timed holds, adjustments and counts that lose stock, and the rebuild."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.base import Message
from schemas.inventory import (
    AdjustStock,
    AvailabilityChanged,
    BackorderFilled,
    ConsumeReservation,
    CountStock,
    ExpireReservation,
    ReceiveStock,
    RecordSupply,
    ReleaseReservation,
    ReservationConsumed,
    ReservationExpired,
    ReservationReduced,
    ReservationRefused,
    ReservationReleased,
    ReserveStock,
    StockMoved,
    StockReserved,
    SupplyRecorded,
)
from services.inventory.domain.ledger import SkuLedger, rebuild
from services.runtime.outbox import Emit

SKU = "TEE-M"
D1 = datetime(2026, 12, 1, tzinfo=UTC)
D2 = datetime(2026, 12, 8, tzinfo=UTC)
D3 = datetime(2026, 12, 15, tzinfo=UTC)


class Book:
    """A ledger with numbered command ids, for short examples."""

    def __init__(self, on_hand: int = 0, location: str = "WH-A") -> None:
        self.ledger = SkuLedger(sku=SKU)
        self.n = 0
        if on_hand:
            self(CountStock(count_id="init", sku=SKU, location=location, qty=on_hand))

    def __call__(self, command: Message) -> list[Emit]:
        self.n += 1
        return self.ledger.apply(command, f"cmd-{self.n}")

    def supply(self, supply_id: str, qty: int, eta: datetime, kind: str = "asn", location: str = "WH-A") -> None:
        self(RecordSupply(supply_id=supply_id, sku=SKU, location=location, qty=qty, eta=eta,
                          kind=kind))  # type: ignore[arg-type]

    def reserve(self, rid: str, qty: int, backorder: bool = True, **extra: object) -> list[Emit]:
        return self(ReserveStock(reservation_id=rid, order_id=f"O-{rid}", sku=SKU, location="WH-A", qty=qty,
                                 backorder=backorder, **extra))  # type: ignore[arg-type]

    def receive(self, receipt: str, qty: int, supply_id: str | None = None, **extra: object) -> list[Emit]:
        return self(ReceiveStock(receipt_id=receipt, sku=SKU, location="WH-A", qty=qty, supply_id=supply_id,
                                 **extra))  # type: ignore[arg-type]

    def avail(self) -> AvailabilityChanged:
        return self.ledger.availability("WH-A")


def of(emits: list[Emit], kind: type[Message]) -> list[Message]:
    return [e.message for e in emits if isinstance(e.message, kind)]


def kinds(emits: list[Emit]) -> list[str]:
    return [type(e.message).__name__ for e in emits]


# ---------------------------------------------------------------- reserving against supply


def test_a_backorder_is_held_on_the_earliest_supply_that_covers_it() -> None:
    book = Book(on_hand=1)
    book.supply("PO-LATE", 10, D3, kind="purchase_order")
    book.supply("ASN-EARLY", 2, D1)
    emits = book.reserve("R1", 3)  # 1 on hand is not enough; the early ASN (2) is too small; the PO covers it
    assert kinds(emits) == ["StockReserved", "AvailabilityChanged"]
    reserved = emits[0].message
    assert isinstance(reserved, StockReserved)
    assert (reserved.against_supply, reserved.eta, reserved.qty) == ("PO-LATE", D3, 3)
    avail = book.avail()
    assert (avail.available, avail.reserved, avail.incoming, avail.incoming_unreserved) == (1, 0, 12, 9)
    assert (avail.backordered, avail.next_eta) == (3, D1)
    assert [(s.supply_id, s.unreserved) for s in avail.supplies] == [("ASN-EARLY", 2), ("PO-LATE", 7)]


def test_a_backorder_that_stock_on_hand_covers_is_a_normal_hold() -> None:
    book = Book(on_hand=5)
    book.supply("ASN-1", 10, D1)
    reserved = book.reserve("R1", 5)[0].message
    assert isinstance(reserved, StockReserved) and reserved.against_supply is None and reserved.eta is None
    assert book.avail().reserved == 5 and book.avail().backordered == 0


def test_without_backorder_incoming_supply_does_not_count() -> None:
    book = Book(on_hand=1)
    book.supply("ASN-1", 10, D1)
    refused = book.reserve("R1", 2, backorder=False)
    assert kinds(refused) == ["ReservationRefused"]


def test_a_backorder_no_supply_covers_is_refused_with_the_reason() -> None:
    book = Book(on_hand=1)
    book.supply("ASN-1", 3, D1)
    book.reserve("R1", 2)  # takes 2 of the ASN's 3
    emits = book.reserve("R2", 2)
    refused = emits[0].message
    assert isinstance(refused, ReservationRefused)
    assert refused.available == 1 and "no incoming supply there covers 2" in refused.reason
    assert book.ledger.reservations["R2"].status == "refused"


def test_supply_at_another_location_does_not_cover_a_backorder() -> None:
    book = Book(on_hand=0)
    book.supply("ASN-B", 10, D1, location="WH-B")
    assert kinds(book.reserve("R1", 1)) == ["ReservationRefused"]


def test_the_decision_of_a_backorder_is_re_derived_identically_after_the_emit_memory_forgets_it() -> None:
    book = Book()
    book.supply("ASN-1", 5, D1)
    first = book.reserve("R1", 2)[0]
    for n in range(20):  # push the reservation's emits out of the bounded memory
        book(CountStock(count_id=f"c{n}", sku=SKU, location="WH-B", qty=n))
    again = book.ledger.apply(ReserveStock(reservation_id="R1", order_id="O-R1", sku=SKU, location="WH-A", qty=2,
                                           backorder=True), "cmd-2")
    assert again == [first]


# ---------------------------------------------------------------- receiving


def test_a_receipt_fills_the_backorders_of_its_supply_in_arrival_order() -> None:
    book = Book()
    book.supply("PO-1", 6, D1, kind="purchase_order")
    for rid, qty in (("R1", 2), ("R2", 3), ("R3", 1)):
        book.reserve(rid, qty)
    emits = book.receive("rcpt-1", 4, "PO-1")  # a first delivery of a purchase order: 4 of 6
    assert kinds(emits)[0] == "StockMoved"
    moved = emits[0].message
    assert isinstance(moved, StockMoved) and (moved.kind, moved.delta, moved.cause_id) == ("received", 4, "rcpt-1")
    filled = [m.reservation_id for m in of(emits, BackorderFilled)]  # type: ignore[attr-defined]
    assert filled == ["R1", "R3"]  # R2 (3) does not fit in the 2 left; R3 (1) behind it does
    assert all(m.supply_id == "PO-1" for m in of(emits, BackorderFilled))  # type: ignore[attr-defined]
    avail = book.avail()
    assert (avail.on_hand, avail.reserved, avail.available, avail.incoming, avail.backordered) == (4, 3, 1, 2, 3)
    assert not book.ledger.supplies["PO-1"].closed  # a purchase order stays open until every unit arrived
    emits = book.receive("rcpt-2", 2, "PO-1")
    assert [m.reservation_id for m in of(emits, BackorderFilled)] == ["R2"]  # type: ignore[attr-defined]
    assert book.ledger.supplies["PO-1"].closed and book.avail().incoming == 0


def test_a_short_asn_moves_what_it_cannot_cover_to_the_next_supply_with_a_new_promise() -> None:
    book = Book()
    book.supply("ASN-1", 4, D1)
    book.supply("PO-2", 10, D2, kind="purchase_order")
    book.reserve("R1", 3)
    book.reserve("R2", 1)
    emits = book.receive("rcpt-1", 2, "ASN-1", damaged=1)  # 2 good, 1 damaged, 1 never came; the ASN ends
    assert of(emits, BackorderFilled)[0].reservation_id == "R2"  # type: ignore[attr-defined]
    promise = of(emits, StockReserved)
    assert len(promise) == 1 and isinstance(promise[0], StockReserved)
    assert (promise[0].reservation_id, promise[0].against_supply, promise[0].eta) == ("R1", "PO-2", D2)
    first_id = book.ledger.apply(ReserveStock(reservation_id="R1", order_id="O-R1", sku=SKU, location="WH-A", qty=3,
                                              backorder=True), "cmd-x")[0].event_id
    assert [e.event_id for e in emits if isinstance(e.message, StockReserved)] != [first_id]  # a new event
    supply = book.ledger.supplies["ASN-1"]
    assert supply.closed and (supply.received, supply.damaged) == (2, 1)
    assert book.avail().on_hand == 2  # damaged units never become stock


def test_backorders_no_supply_covers_wait_and_take_the_next_supply_announced() -> None:
    book = Book()
    book.supply("ASN-1", 5, D1)
    book.reserve("R1", 5)
    emits = book.receive("rcpt-1", 1, "ASN-1")  # almost nothing came, and nothing else is on its way
    assert of(emits, StockReserved) == [] and of(emits, BackorderFilled) == []
    res = book.ledger.reservations["R1"]
    assert res.waiting and res.supply_id is None and res.status == "held"
    avail = book.avail()
    assert (avail.backordered, avail.backordered_unsupplied, avail.incoming, avail.available) == (5, 5, 0, 1)
    emits = book(RecordSupply(supply_id="ASN-2", sku=SKU, location="WH-A", qty=6, eta=D2))
    assert kinds(emits) == ["SupplyRecorded", "StockReserved", "AvailabilityChanged"]
    assert emits[1].message.against_supply == "ASN-2"  # type: ignore[attr-defined]
    assert book.avail().incoming_unreserved == 1


def test_a_revised_eta_moves_the_promise() -> None:
    book = Book()
    book.supply("PO-1", 5, D1, kind="purchase_order")
    book.reserve("R1", 2)
    emits = book(RecordSupply(supply_id="PO-1", sku=SKU, location="WH-A", qty=5, eta=D3, kind="purchase_order"))
    recorded, promise = of(emits, SupplyRecorded), of(emits, StockReserved)
    assert recorded[0].eta == D3  # type: ignore[attr-defined]
    assert len(promise) == 1 and promise[0].eta == D3  # type: ignore[attr-defined]


def test_units_freed_at_a_location_fill_waiting_backorders_first() -> None:
    book = Book(on_hand=2)
    book.supply("ASN-1", 5, D2)
    book.reserve("R1", 2, backorder=False)
    book.reserve("R2", 2)  # waits for the ASN
    emits = book(ReleaseReservation(reservation_id="R1", order_id="O-R1", sku=SKU))
    filled = of(emits, BackorderFilled)
    assert [m.reservation_id for m in filled] == ["R2"]  # type: ignore[attr-defined]
    assert filled[0].supply_id == "ASN-1"  # type: ignore[attr-defined]
    assert book.avail().reserved == 2 and book.avail().incoming_unreserved == 5


def test_a_receipt_for_an_unannounced_supply_adds_stock_and_a_late_announcement_adds_nothing_incoming() -> None:
    book = Book()
    book.receive("rcpt-1", 3, "ASN-X")
    assert book.avail().on_hand == 3
    assert book(RecordSupply(supply_id="ASN-X", sku=SKU, location="WH-A", qty=3, eta=D1)) == []
    assert book.avail().incoming == 0


def test_the_same_receipt_under_a_new_command_id_is_received_once() -> None:
    book = Book()
    receipt = ReceiveStock(receipt_id="rcpt-1", sku=SKU, location="WH-A", qty=3)
    assert kinds(book.ledger.apply(receipt, "a")) == ["StockMoved", "AvailabilityChanged"]
    assert book.ledger.apply(receipt, "b") == []
    assert book.avail().on_hand == 3


def test_a_backorder_still_waiting_cannot_ship() -> None:
    book = Book()
    book.supply("ASN-1", 5, D1)
    book.reserve("R1", 2)
    assert book(ConsumeReservation(reservation_id="R1", order_id="O-R1", sku=SKU, qty=2, shipment_id="P")) == []
    assert book.ledger.reservations["R1"].status == "held"


# ---------------------------------------------------------------- timed holds


def test_expiry_ends_a_hold_once_and_gives_the_units_back() -> None:
    book = Book(on_hand=3)
    book.reserve("R1", 2, backorder=False, expires_at=D1)
    assert book.ledger.deadlines() == [(D1, "R1", "O-R1")]
    emits = book(ExpireReservation(reservation_id="R1", order_id="O-R1", sku=SKU))
    assert kinds(emits) == ["ReservationExpired", "AvailabilityChanged"]
    expired = emits[0].message
    assert isinstance(expired, ReservationExpired) and expired.qty == 2
    assert book.avail().available == 3 and book.ledger.deadlines() == []
    assert book(ExpireReservation(reservation_id="R1", order_id="O-R1", sku=SKU)) == []
    assert book(ReleaseReservation(reservation_id="R1", order_id="O-R1", sku=SKU)) == []


def test_a_collection_that_races_the_expiry_still_takes_the_units_off_the_shelf_once() -> None:
    book = Book(on_hand=3)
    book.reserve("R1", 2, backorder=False, expires_at=D1)
    book(ExpireReservation(reservation_id="R1", order_id="O-R1", sku=SKU))
    consume = ConsumeReservation(reservation_id="R1", order_id="O-R1", sku=SKU, qty=2, shipment_id="handover")
    assert kinds(book(consume)) == ["StockMoved", "AvailabilityChanged"]
    assert book(consume) == []
    assert book.avail().on_hand == 1 and book.ledger.reservations["R1"].status == "expired"


# ---------------------------------------------------------------- adjustments and counts


def test_an_adjustment_never_takes_on_hand_below_zero_and_restocked_returns_have_their_kind() -> None:
    book = Book(on_hand=2)
    moved = book(AdjustStock(adjustment_id="a1", sku=SKU, location="WH-A", delta=-5, reason="damaged"))[0].message
    assert isinstance(moved, StockMoved) and (moved.kind, moved.delta, moved.on_hand_after) == ("adjusted", -2, 0)
    back = book(AdjustStock(adjustment_id="a2", sku=SKU, location="WH-A", delta=1, reason="return_restocked"))
    assert isinstance(back[0].message, StockMoved) and back[0].message.kind == "restocked"
    assert kinds(book(AdjustStock(adjustment_id="a3", sku=SKU, location="WH-A", delta=0, reason="correction"))) == [
        "AvailabilityChanged"
    ]


def test_stock_lost_below_what_is_held_shrinks_the_newest_holds_by_exactly_the_missing_units() -> None:
    book = Book(on_hand=6)
    for rid in ("R1", "R2", "R3"):
        book.reserve(rid, 2, backorder=False)
    emits = book(AdjustStock(adjustment_id="a1", sku=SKU, location="WH-A", delta=-3, reason="correction"))
    released = of(emits, ReservationReleased)
    assert [(m.reservation_id, m.reason) for m in released] == [("R3", "stock lost")]  # type: ignore[attr-defined]
    reduced = of(emits, ReservationReduced)
    assert [(m.reservation_id, m.qty, m.released) for m in reduced] == [("R2", 1, 1)]  # type: ignore[attr-defined]
    avail = book.avail()
    assert (avail.on_hand, avail.reserved, avail.available) == (3, 3, 0)  # no unit still there was freed


def test_raising_safety_stock_above_what_is_free_shrinks_holds_with_that_reason() -> None:
    book = Book(on_hand=4)
    book.reserve("R1", 3, backorder=False)
    book.reserve("R2", 1, backorder=False)
    emits = book(CountStock(count_id="c2", sku=SKU, location="WH-A", qty=4, safety_stock=2))
    assert [(m.reservation_id, m.reason) for m in of(emits, ReservationReleased)] == [  # type: ignore[attr-defined]
        ("R2", "safety stock raised")
    ]
    assert [(m.reservation_id, m.qty, m.reason) for m in of(emits, ReservationReduced)] == [  # type: ignore[attr-defined]
        ("R1", 2, "safety stock raised")
    ]


def test_a_consumed_reservation_is_never_released_by_a_later_loss() -> None:
    book = Book(on_hand=2)
    book.reserve("R1", 2, backorder=False)
    assert kinds(book(ConsumeReservation(reservation_id="R1", order_id="O-R1", sku=SKU, qty=2, shipment_id="P")))[
        0
    ] == ReservationConsumed.__name__
    emits = book(CountStock(count_id="c2", sku=SKU, location="WH-A", qty=0))
    assert of(emits, ReservationReleased) == []


# ---------------------------------------------------------------- rebuild


def test_rebuild_skips_a_command_the_service_could_not_apply_and_equals_the_live_ledger() -> None:
    class Boom(ReserveStock):
        """A command whose handling raises (a bug, a corrupt field): the service dead-letters it."""

    book = Book(on_hand=5)
    history: list[tuple[str, Message]] = [("cmd-1", CountStock(count_id="init", sku=SKU, location="WH-A", qty=5))]
    good = ReserveStock(reservation_id="R1", order_id="O", sku=SKU, location="WH-A", qty=2)
    history.append(("cmd-2", good))
    book.ledger.apply(good, "cmd-2")
    bad = Boom(reservation_id="R2", order_id="O", sku=SKU, location="WH-A", qty=1)
    original = SkuLedger._reserve

    def explode(self: SkuLedger, cmd: ReserveStock) -> list[Emit]:
        if isinstance(cmd, Boom):
            self.position("WH-A").reserved += 99  # a half-done change the rebuild must not keep
            raise RuntimeError("boom")
        return original(self, cmd)

    SkuLedger._reserve = explode  # type: ignore[method-assign]
    try:
        history.append(("cmd-3", bad))
        history.append(("cmd-4", ReserveStock(reservation_id="R3", order_id="O", sku=SKU, location="WH-A", qty=1)))
        rebuilt = rebuild(history)[SKU]
    finally:
        SkuLedger._reserve = original  # type: ignore[method-assign]
    book.ledger.apply(history[3][1], "cmd-4")
    assert rebuilt.model_dump() == book.ledger.model_dump()
    assert rebuilt.positions["WH-A"].reserved == 3
