"""The stock ledger of one SKU: examples per command, and a stateful model of every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from schemas.base import Message
from schemas.inventory import (
    AdjustStock,
    AvailabilityChanged,
    BackorderFilled,
    ConsumeReservation,
    CountStock,
    ExpireReservation,
    PickShortfall,
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
from schemas.orders import OrderPlaced
from schemas.topics import INVENTORY_AVAILABILITY, INVENTORY_MOVEMENTS, INVENTORY_RESERVATIONS
from services.inventory.domain.ledger import Position, SkuLedger, rebuild
from services.runtime.outbox import Emit

SKU = "TEE-M"


def count(location: str, qty: int, safety: int | None = None, count_id: str = "c") -> CountStock:
    return CountStock(count_id=count_id, sku=SKU, location=location, qty=qty, safety_stock=safety)


def reserve(rid: str, location: str, qty: int, order: str = "O-1") -> ReserveStock:
    return ReserveStock(reservation_id=rid, order_id=order, sku=SKU, location=location, qty=qty)


def release(rid: str, order: str = "O-1", reason: str = "cancelled") -> ReleaseReservation:
    return ReleaseReservation(reservation_id=rid, order_id=order, sku=SKU, reason=reason)


def consume(rid: str, qty: int, order: str = "O-1", shipment: str = "P-1") -> ConsumeReservation:
    return ConsumeReservation(reservation_id=rid, order_id=order, sku=SKU, qty=qty, shipment_id=shipment)


def types(emits: list[Emit]) -> list[type[Message]]:
    return [type(e.message) for e in emits]


def stocked(qty: int = 10, safety: int | None = None, location: str = "WH-A") -> SkuLedger:
    ledger = SkuLedger(sku=SKU)
    ledger.apply(count(location, qty, safety, count_id="init"), "cmd-init")
    return ledger


# ---------------------------------------------------------------- reserve


def test_reserve_holds_units_and_publishes_availability() -> None:
    ledger = stocked(10)
    emits = ledger.apply(reserve("R1", "WH-A", 4), "cmd-1")

    assert types(emits) == [StockReserved, AvailabilityChanged]
    decision, avail = emits
    assert decision.topic == INVENTORY_RESERVATIONS.name and decision.key == "O-1"
    assert decision.message == StockReserved(
        reservation_id="R1", order_id="O-1", sku=SKU, location="WH-A", qty=4
    )
    assert avail.topic == INVENTORY_AVAILABILITY.name and avail.key == f"{SKU}@WH-A"
    assert isinstance(avail.message, AvailabilityChanged)
    assert (avail.message.on_hand, avail.message.reserved, avail.message.available) == (10, 4, 6)
    assert ledger.positions["WH-A"].reserved == 4
    assert ledger.positions["WH-A"].on_hand == 10
    assert ledger.reservations["R1"].status == "held"


def test_reserve_exactly_the_available_units_is_accepted() -> None:
    ledger = stocked(5)
    assert types(ledger.apply(reserve("R1", "WH-A", 5), "cmd-1"))[0] is StockReserved
    assert ledger.positions["WH-A"].available == 0


def test_reserve_more_than_available_is_refused_and_changes_nothing() -> None:
    ledger = stocked(3)
    ledger.apply(reserve("R1", "WH-A", 2), "cmd-1")
    emits = ledger.apply(reserve("R2", "WH-A", 2), "cmd-2")

    assert types(emits) == [ReservationRefused]
    refused = emits[0].message
    assert isinstance(refused, ReservationRefused)
    assert refused.available == 1 and refused.qty == 2 and refused.location == "WH-A"
    assert "1 available" in refused.reason
    assert ledger.positions["WH-A"].reserved == 2
    assert ledger.reservations["R2"].status == "refused"


def test_reserve_at_an_unknown_location_is_refused() -> None:
    ledger = stocked(10, location="WH-A")
    emits = ledger.apply(reserve("R1", "WH-B", 1), "cmd-1")
    assert types(emits) == [ReservationRefused]
    assert ledger.position("WH-B").reserved == 0


def test_safety_stock_is_never_promised() -> None:
    ledger = stocked(10, safety=3)
    refused = ledger.apply(reserve("R1", "WH-A", 8), "cmd-1")
    assert types(refused) == [ReservationRefused]
    assert isinstance(refused[0].message, ReservationRefused) and refused[0].message.available == 7

    accepted = ledger.apply(reserve("R2", "WH-A", 7), "cmd-2")
    assert types(accepted)[0] is StockReserved
    pos = ledger.positions["WH-A"]
    assert pos.reserved == 7 and pos.available == 0
    assert pos.reserved <= pos.on_hand - pos.safety_stock


def test_safety_stock_above_on_hand_leaves_nothing_available() -> None:
    ledger = stocked(2, safety=5)
    assert ledger.positions["WH-A"].available == 0
    emits = ledger.apply(reserve("R1", "WH-A", 1), "cmd-1")
    assert isinstance(emits[0].message, ReservationRefused) and emits[0].message.available == 0


def test_same_reservation_id_under_a_new_command_id_does_not_reserve_twice() -> None:
    ledger = stocked(10)
    first = ledger.apply(reserve("R1", "WH-A", 4), "cmd-1")
    again = ledger.apply(reserve("R1", "WH-A", 4), "cmd-2")
    assert types(again) == [StockReserved]
    assert again[0] == first[0]  # same decision, same event id
    assert ledger.positions["WH-A"].reserved == 4


def test_refused_reservation_stays_refused_when_stock_arrives_later() -> None:
    ledger = stocked(1)
    ledger.apply(reserve("R1", "WH-A", 3), "cmd-1")
    ledger.apply(count("WH-A", 50, count_id="c2"), "cmd-2")
    again = ledger.apply(reserve("R1", "WH-A", 3), "cmd-3")
    assert types(again) == [ReservationRefused]
    assert ledger.positions["WH-A"].reserved == 0


# ---------------------------------------------------------------- release


def test_release_gives_the_units_back_exactly_once() -> None:
    ledger = stocked(10)
    ledger.apply(reserve("R1", "WH-A", 4), "cmd-1")
    emits = ledger.apply(release("R1", reason="re-sourcing"), "cmd-2")

    assert types(emits) == [ReservationReleased, AvailabilityChanged]
    released = emits[0].message
    assert isinstance(released, ReservationReleased)
    assert (released.qty, released.location, released.reason) == (4, "WH-A", "re-sourcing")
    assert ledger.positions["WH-A"].reserved == 0
    assert ledger.reservations["R1"].status == "released"
    assert ledger.reservations["R1"].ended_by == "re-sourcing"

    # a second release (a new command) changes nothing
    assert ledger.apply(release("R1"), "cmd-3") == []
    assert ledger.positions["WH-A"].reserved == 0
    assert ledger.positions["WH-A"].on_hand == 10
    # the parcel shipped anyway (a late cancellation): the reservation stays released, on hand follows once
    assert types(ledger.apply(consume("R1", 4), "cmd-4")) == [StockMoved, AvailabilityChanged]
    assert ledger.apply(consume("R1", 4, shipment="P-2"), "cmd-5") == []
    assert ledger.positions["WH-A"].on_hand == 6
    assert ledger.reservations["R1"].status == "released"


def test_release_of_unknown_or_refused_reservation_is_a_no_op() -> None:
    ledger = stocked(1)
    ledger.apply(reserve("R1", "WH-A", 5), "cmd-1")
    assert ledger.apply(release("R1"), "cmd-2") == []
    assert ledger.apply(release("nope"), "cmd-3") == []
    assert ledger.reservations["R1"].status == "refused"
    assert ledger.positions["WH-A"].reserved == 0


# ---------------------------------------------------------------- consume


def test_consume_removes_units_from_on_hand_and_reserved_exactly_once() -> None:
    ledger = stocked(10)
    ledger.apply(reserve("R1", "WH-A", 3), "cmd-1")
    emits = ledger.apply(consume("R1", 3, shipment="P-9"), "cmd-2")

    assert types(emits) == [ReservationConsumed, StockMoved, AvailabilityChanged]
    consumed, moved, avail = (e.message for e in emits)
    assert isinstance(consumed, ReservationConsumed) and consumed.qty == 3 and consumed.shipment_id == "P-9"
    assert isinstance(moved, StockMoved)
    assert (moved.kind, moved.delta, moved.on_hand_after, moved.cause_id) == ("shipped", -3, 7, "R1")
    assert emits[1].topic == INVENTORY_MOVEMENTS.name
    assert isinstance(avail, AvailabilityChanged) and (avail.on_hand, avail.reserved) == (7, 0)
    pos = ledger.positions["WH-A"]
    assert (pos.on_hand, pos.reserved) == (7, 0)

    assert ledger.apply(consume("R1", 3, shipment="P-10"), "cmd-3") == []
    assert ledger.apply(release("R1"), "cmd-4") == []
    assert (pos.on_hand, pos.reserved) == (7, 0)
    assert ledger.reservations["R1"].ended_by == "P-9"


def test_consume_less_than_reserved_ships_only_that_and_frees_the_rest() -> None:
    ledger = stocked(10)
    ledger.apply(reserve("R1", "WH-A", 4), "cmd-1")
    emits = ledger.apply(consume("R1", 1), "cmd-2")
    assert isinstance(emits[1].message, StockMoved) and emits[1].message.delta == -1
    pos = ledger.positions["WH-A"]
    assert (pos.on_hand, pos.reserved, pos.available) == (9, 0, 9)


def test_consume_more_than_reserved_ships_at_most_the_reservation() -> None:
    ledger = stocked(10)
    ledger.apply(reserve("R1", "WH-A", 2), "cmd-1")
    emits = ledger.apply(consume("R1", 5), "cmd-2")
    assert isinstance(emits[0].message, ReservationConsumed) and emits[0].message.qty == 2
    assert ledger.positions["WH-A"].on_hand == 8


def test_consume_of_unknown_reservation_is_a_no_op() -> None:
    ledger = stocked(10)
    assert ledger.apply(consume("ghost", 1), "cmd-1") == []
    assert ledger.positions["WH-A"].on_hand == 10


def test_consume_after_count_below_reserved_does_not_crash() -> None:
    ledger = stocked(5)
    ledger.apply(reserve("R1", "WH-A", 5), "cmd-1")
    lost = ledger.apply(count("WH-A", 0, count_id="c2"), "cmd-2")  # a stock feed reports the shelf empty
    assert types(lost) == [StockMoved, ReservationReleased, AvailabilityChanged]
    assert ledger.reservations["R1"].status == "released"  # the count left nothing to hold: stock lost
    # the parcel left anyway (the units were in a tote): found first, so on hand never goes below zero
    shipped = [e.message for e in ledger.apply(consume("R1", 5), "cmd-3") if isinstance(e.message, StockMoved)]
    assert [(m.kind, m.delta, m.on_hand_after) for m in shipped] == [("adjusted", 5, 5), ("shipped", -5, 0)]
    assert ledger.positions["WH-A"].on_hand == 0
    assert ledger.positions["WH-A"].reserved == 0


# ---------------------------------------------------------------- count


def test_count_adjusts_on_hand_to_the_counted_quantity() -> None:
    ledger = SkuLedger(sku=SKU)
    up = ledger.apply(count("WH-A", 12, count_id="c1"), "cmd-1")
    assert types(up) == [StockMoved, AvailabilityChanged]
    assert isinstance(up[0].message, StockMoved)
    assert (up[0].message.kind, up[0].message.delta, up[0].message.on_hand_after) == ("counted", 12, 12)

    down = ledger.apply(count("WH-A", 9, count_id="c2"), "cmd-2")
    assert isinstance(down[0].message, StockMoved) and down[0].message.delta == -3
    assert ledger.positions["WH-A"].on_hand == 9

    same = ledger.apply(count("WH-A", 9, count_id="c3"), "cmd-3")
    assert types(same) == [AvailabilityChanged]
    assert ledger.positions["WH-A"].on_hand == 9


def test_count_sets_safety_stock_only_when_given() -> None:
    ledger = stocked(10, safety=2)
    ledger.apply(count("WH-A", 10, count_id="c2"), "cmd-2")
    assert ledger.positions["WH-A"].safety_stock == 2
    ledger.apply(count("WH-A", 10, safety=0, count_id="c3"), "cmd-3")
    assert ledger.positions["WH-A"].safety_stock == 0


def test_count_keeps_reservations_and_locations_apart() -> None:
    ledger = stocked(10)
    ledger.apply(count("WH-B", 4, count_id="cb"), "cmd-b")
    ledger.apply(reserve("R1", "WH-A", 6), "cmd-1")
    ledger.apply(count("WH-A", 8, count_id="c2"), "cmd-2")
    a, b = ledger.positions["WH-A"], ledger.positions["WH-B"]
    assert (a.on_hand, a.reserved, a.available) == (8, 6, 2)
    assert (b.on_hand, b.reserved, b.available) == (4, 0, 4)


# ---------------------------------------------------------------- idempotency, versions, storage


def test_repeated_command_id_replays_the_first_emits_and_changes_nothing() -> None:
    ledger = stocked(10)
    first = ledger.apply(reserve("R1", "WH-A", 4), "cmd-1")
    before = ledger.model_dump()
    again = ledger.apply(reserve("R1", "WH-A", 4), "cmd-1")
    assert again == first
    assert [e.event_id for e in again] == [e.event_id for e in first]
    assert ledger.model_dump() == before


def test_repeated_count_id_after_other_changes_is_not_reapplied() -> None:
    ledger = stocked(10)
    ledger.apply(reserve("R1", "WH-A", 2), "cmd-1")
    ledger.apply(consume("R1", 2), "cmd-2")
    ledger.apply(count("WH-A", 10, count_id="init"), "cmd-init")  # the original feed delivered again
    assert ledger.positions["WH-A"].on_hand == 8


def test_version_counts_applied_commands_and_availability_carries_it() -> None:
    ledger = SkuLedger(sku=SKU)
    ledger.apply(count("WH-A", 5), "cmd-1")
    emits = ledger.apply(reserve("R1", "WH-A", 1), "cmd-2")
    ledger.apply(reserve("R1", "WH-A", 1), "cmd-2")
    assert ledger.version == 2
    assert isinstance(emits[-1].message, AvailabilityChanged) and emits[-1].message.version == 2


def test_event_ids_are_deterministic_across_ledgers() -> None:
    a, b = stocked(10), stocked(10)
    assert a.apply(reserve("R1", "WH-A", 3), "x") == b.apply(reserve("R1", "WH-A", 3), "y")


def test_unhandled_message_is_an_error() -> None:
    placed = OrderPlaced.model_validate(
        {
            "order_id": "O",
            "channel": "web",
            "customer_id": "C",
            "lines": [{"sku": SKU, "qty": 1}],
            "delivery": {"mode": "ship", "lat": 0, "lon": 0},
        }
    )
    with pytest.raises(ValueError, match="does not handle"):
        SkuLedger(sku=SKU).apply(placed, "m")


def test_json_round_trip_keeps_state_and_replays() -> None:
    ledger = stocked(10, safety=1)
    first = ledger.apply(reserve("R1", "WH-A", 3), "cmd-1")
    restored = SkuLedger.model_validate_json(ledger.model_dump_json())
    assert restored.model_dump() == ledger.model_dump()
    assert restored.apply(reserve("R1", "WH-A", 3), "cmd-1") == first
    assert restored.apply(reserve("R2", "WH-A", 7), "cmd-2")[0].message.__class__ is ReservationRefused


def test_new_ledgers_do_not_share_mutable_defaults() -> None:
    a, b = SkuLedger(sku="A"), SkuLedger(sku="B")
    a.apply(CountStock(count_id="c", sku="A", location="WH-A", qty=3), "m1")
    assert b.applied.ids == [] and b.positions == {} and b.reservations == {}


# ---------------------------------------------------------------- stateful model

LOCATIONS = ("WH-A", "ST-B")
KEEP_EMITS = SkuLedger(sku=SKU).applied.keep_emits
ETAS = tuple(datetime(2026, 12, d, tzinfo=UTC) for d in (1, 5, 9))
EXPIRY = datetime(2026, 11, 30, tzinfo=UTC)
END_EVENTS = {ReservationConsumed: "consumed", ReservationReleased: "released", ReservationExpired: "expired"}


@dataclass
class Applied:
    command: Message
    command_id: str
    emits: list[dict[str, Any]]


@dataclass
class SeenReservation:
    """A reservation as its events tell it (the orchestrator's view)."""

    location: str
    qty: int
    decision: str = ""  # on_hand | supply | refused
    promised: str | None = None
    filled: int = 0
    ends: set[str] = field(default_factory=set)
    end_status: str | None = None


class LedgerMachine(RuleBasedStateMachine):
    """SkuLedger over two locations: random reserves (some backordered, some timed), releases, expiries,
    consumes, supplies and their revisions, receipts (short, damaged, against unknown supplies), adjustments,
    counts, and duplicate deliveries (same command id; same movement under a new command id).

    Checked after every step: on hand never below zero and equal to what the commands imply and to the sum of
    the movements published; reserved is the sum of the on-hand holds and never exceeds on hand minus safety
    stock; every reservation is decided once, filled at most once and ends at most once, and the ledger's
    state is what its events say; no waiting backorder fits in what is available; no supply is promised beyond
    what it still brings; the last availability event of each position is the position; and a ledger rebuilt
    from the commands equals the live one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ledger = SkuLedger(sku=SKU)
        self.n = 0
        self.on_hand = dict.fromkeys(LOCATIONS, 0)
        self.safety = dict.fromkeys(LOCATIONS, 0)
        self.seen: dict[str, SeenReservation] = {}
        self.event_ids: set[str] = set()
        self.movements: dict[str, int] = dict.fromkeys(LOCATIONS, 0)
        self.last_availability: dict[str, AvailabilityChanged] = {}
        self.history: list[Applied] = []
        self.supplies: list[str] = []
        self.receipts: list[ReceiveStock] = []

    # ------------------------------------------------------------ plumbing

    def _apply(self, command: Message, command_id: str | None = None) -> list[Emit]:
        if command_id is None:
            self.n += 1
            command_id = f"cmd-{self.n}"
        emits = self.ledger.apply(command, command_id)
        self.history.append(Applied(command, command_id, [e.stored() for e in emits]))
        for e in emits:
            self._observe(e)
        return emits

    def _observe(self, e: Emit) -> None:
        """Read an emitted event as a consumer would: once per event id."""
        if e.event_id in self.event_ids:
            return
        self.event_ids.add(e.event_id)
        m = e.message
        if isinstance(m, AvailabilityChanged):
            assert m.version == self.ledger.version + 1 or m.version == self.ledger.version
            self.last_availability[m.location] = m
        elif isinstance(m, StockMoved):
            self.movements[m.location] += m.delta
            assert m.on_hand_after == self.movements[m.location]
        elif isinstance(m, StockReserved):
            seen = self.seen[m.reservation_id]
            assert not seen.ends and not seen.filled and seen.decision != "refused"
            if not seen.decision:
                seen.decision = "supply" if m.against_supply else "on_hand"
            else:
                assert seen.decision == "supply" and m.against_supply  # a promise moved
            seen.promised = m.against_supply
        elif isinstance(m, ReservationRefused):
            seen = self.seen[m.reservation_id]
            assert not seen.decision
            seen.decision = "refused"
        elif isinstance(m, BackorderFilled):
            seen = self.seen[m.reservation_id]
            assert seen.decision == "supply" and not seen.ends
            seen.filled += 1
        elif isinstance(m, ReservationReduced):
            seen = self.seen[m.reservation_id]
            assert not seen.ends and (seen.decision == "on_hand" or seen.filled) and 0 < m.qty < seen.qty
            assert m.released == seen.qty - m.qty
            seen.qty = m.qty
        elif type(m) in END_EVENTS:
            seen = self.seen[m.reservation_id]  # type: ignore[attr-defined]
            assert seen.decision in ("on_hand", "supply")
            seen.ends.add(e.event_id)
            seen.end_status = END_EVENTS[type(m)]

    def _pos(self, location: str) -> Position:
        return self.ledger.positions.get(location) or Position()

    def _rid(self, data: st.DataObject) -> str:
        known = sorted(self.seen)
        return data.draw(st.sampled_from([*known, "R-unknown"]) if known else st.just("R-unknown"))

    def _held_on_hand(self, location: str) -> int:
        return sum(
            s.qty for s in self.seen.values()
            if s.location == location and not s.ends and (s.decision == "on_hand" or s.filled)
        )

    # ------------------------------------------------------------ stock

    @rule(location=st.sampled_from(LOCATIONS), qty=st.integers(0, 12), safety=st.none() | st.integers(0, 3))
    def count(self, location: str, qty: int, safety: int | None) -> None:
        self._apply(CountStock(count_id=f"count-{self.n}", sku=SKU, location=location, qty=qty, safety_stock=safety))
        self.on_hand[location] = qty
        if safety is not None:
            self.safety[location] = safety

    @rule(
        location=st.sampled_from(LOCATIONS),
        delta=st.integers(-6, 6),
        reason=st.sampled_from(["short_pick", "damaged", "cycle_count", "return_restocked", "correction"]),
    )
    def adjust(self, location: str, delta: int, reason: str) -> None:
        emits = self._apply(AdjustStock(adjustment_id=f"adj-{self.n}", sku=SKU, location=location, delta=delta,
                                        reason=reason))  # type: ignore[arg-type]
        moved = [e.message for e in emits if isinstance(e.message, StockMoved)]
        expected_kind = "restocked" if reason == "return_restocked" else "adjusted"
        assert all(m.kind == expected_kind for m in moved)
        self.on_hand[location] = max(0, self.on_hand[location] + delta)

    @rule(data=st.data(), picked=st.integers(0, 6), missing=st.integers(1, 6))
    def short_pick(self, data: st.DataObject, picked: int, missing: int) -> None:
        """A pick of one hold came up short: the hold shrinks to the units found, and on hand drops only by what
        the books still counted for it (nothing for a hold stock loss already wrote off), never by a unit found."""
        rid = self._rid(data)
        known = self.ledger.reservations.get(rid)
        was = known.model_copy() if known else None
        location = was.location if was else data.draw(st.sampled_from(LOCATIONS))
        before = self._pos(location).model_copy()
        shortfall = PickShortfall(reservation_id=rid, picked=picked, missing=missing)
        emits = self._apply(AdjustStock(adjustment_id=f"adj-{self.n}", sku=SKU, location=location, delta=-missing,
                                        reason="short_pick", shortfalls=[shortfall]))
        on_hold = was is not None and was.status == "held" and not was.waiting
        if on_hold:
            books = was.qty  # type: ignore[union-attr]
        elif was is not None and was.status == "released" and was.ended_by in ("stock lost", "short pick"):
            books = 0
        else:
            books = picked + missing
        lost = min(max(0, min(missing, books - picked)), self.on_hand[location])
        assert sum(e.message.delta for e in emits if isinstance(e.message, StockMoved)) == -lost
        self.on_hand[location] -= lost
        if on_hold:
            now = self.ledger.reservations[rid]
            assert (now.status, now.ended_by) == ("released", "short pick") if lost == was.qty else (  # type: ignore[union-attr]
                now.status == "held" and now.qty == was.qty - lost)  # type: ignore[union-attr]
            assert self._pos(location).available == before.available  # the units found stay held: no one else's

    @rule(location=st.sampled_from(LOCATIONS), qty=st.integers(1, 8), eta=st.sampled_from(ETAS),
          kind=st.sampled_from(["asn", "purchase_order", "transfer"]), data=st.data())
    def record_supply(self, location: str, qty: int, eta: datetime, kind: str, data: st.DataObject) -> None:
        revise = self.supplies and data.draw(st.booleans())
        supply_id = data.draw(st.sampled_from(self.supplies)) if revise else f"S{len(self.supplies) + 1}"
        if not revise:
            self.supplies.append(supply_id)
        known = self.ledger.supplies.get(supply_id)
        location = known.location if known else location
        emits = self._apply(RecordSupply(supply_id=supply_id, sku=SKU, location=location, qty=qty, eta=eta,
                                         kind=kind))  # type: ignore[arg-type]
        if known is not None and known.closed:
            assert emits == []
        else:
            assert isinstance(emits[0].message, SupplyRecorded)

    @rule(data=st.data(), location=st.sampled_from(LOCATIONS), qty=st.integers(0, 8), damaged=st.integers(0, 2),
          closes=st.none() | st.booleans())
    def receive(self, data: st.DataObject, location: str, qty: int, damaged: int, closes: bool | None) -> None:
        supply_id = data.draw(st.sampled_from([None, "S-unannounced", *self.supplies]))
        known = self.ledger.supplies.get(supply_id) if supply_id else None
        if known is not None and data.draw(st.booleans()):
            location = known.location
        before = {r.reservation_id for r in self.ledger.reservations.values() if r.waiting}
        receipt = ReceiveStock(receipt_id=f"rcpt-{self.n}", sku=SKU, location=location, qty=qty,
                               supply_id=supply_id, damaged=damaged, closes_supply=closes)
        emits = self._apply(receipt)
        self.receipts.append(receipt)
        self.on_hand[location] += qty
        filled = {e.message.reservation_id for e in emits if isinstance(e.message, BackorderFilled)}
        assert filled <= before
        if supply_id == "S-unannounced":
            self.supplies.append(supply_id) if supply_id not in self.supplies else None

    # ------------------------------------------------------------ reservations

    @rule(location=st.sampled_from(LOCATIONS), qty=st.integers(1, 6), backorder=st.booleans(), timed=st.booleans())
    def reserve(self, location: str, qty: int, backorder: bool, timed: bool) -> None:
        rid = f"R{len(self.seen) + 1}"
        self.seen[rid] = SeenReservation(location, qty)
        before = self.ledger.availability(location)
        free = max(0, self.on_hand[location] - self.safety[location] - self._held_on_hand(location))
        emits = self._apply(ReserveStock(reservation_id=rid, order_id=f"O-{rid}", sku=SKU, location=location,
                                         qty=qty, backorder=backorder, expires_at=EXPIRY if timed else None))
        decision = emits[0].message
        assert before.available == free
        covering = [s for s in before.supplies if s.unreserved >= qty]
        if qty <= free:
            assert isinstance(decision, StockReserved) and decision.against_supply is None
        elif backorder and covering:
            assert isinstance(decision, StockReserved)
            assert (decision.against_supply, decision.eta) == (covering[0].supply_id, covering[0].eta)
        else:
            assert isinstance(decision, ReservationRefused) and decision.available == free
            assert types(emits) == [ReservationRefused]

    @rule(data=st.data())
    def reserve_same_reservation_again(self, data: st.DataObject) -> None:
        if not self.seen:
            return
        rid = data.draw(st.sampled_from(sorted(self.seen)))
        seen = self.seen[rid]
        before = self.ledger.model_dump(exclude={"applied", "version"})
        emits = self._apply(ReserveStock(reservation_id=rid, order_id=f"O-{rid}", sku=SKU, location=seen.location,
                                         qty=seen.qty, backorder=True))
        assert len(emits) == 1  # the first decision again, same event id
        assert emits[0].event_id in self.event_ids
        assert self.ledger.model_dump(exclude={"applied", "version"}) == before

    @rule(data=st.data(), how=st.sampled_from(["release", "expire"]))
    def end(self, data: st.DataObject, how: str) -> None:
        rid = self._rid(data)
        status = self.ledger.reservations[rid].status if rid in self.ledger.reservations else None
        command: Message = (
            ReleaseReservation(reservation_id=rid, order_id=f"O-{rid}", sku=SKU, reason="cancelled")
            if how == "release"
            else ExpireReservation(reservation_id=rid, order_id=f"O-{rid}", sku=SKU)
        )
        emits = self._apply(command)
        if status != "held":
            assert emits == []
        else:
            assert type(emits[0].message) is (ReservationReleased if how == "release" else ReservationExpired)
            assert self.ledger.reservations[rid].status == ("released" if how == "release" else "expired")

    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        rid = self._rid(data)
        res = self.ledger.reservations.get(rid)
        qty = data.draw(st.integers(1, (res.qty if res else 1) + 1))
        was = res.model_copy() if res else None
        emits = self._apply(ConsumeReservation(reservation_id=rid, order_id=f"O-{rid}", sku=SKU, qty=qty,
                                               shipment_id=f"P-{rid}"))
        if was is None or was.waiting or was.status == "refused" or was.late_shipment or was.status == "consumed":
            assert emits == []
            return
        shipped = min(qty, was.qty + was.shrunk)  # a parcel's units were there: any the books missed are found
        moved = [e.message for e in emits if isinstance(e.message, StockMoved) and e.message.kind == "shipped"]
        assert [m.delta for m in moved] == [-shipped]
        if was.status == "held":
            assert isinstance(emits[0].message, ReservationConsumed)
        self.on_hand[was.location] = max(0, self.on_hand[was.location] - shipped)

    # ------------------------------------------------------------ duplicates, storage, rebuild

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        if not self.history:
            return
        back = data.draw(st.integers(1, len(self.history)))
        past = self.history[-back]
        before = self.ledger.model_dump()
        emits = self.ledger.apply(past.command, past.command_id)
        assert self.ledger.model_dump() == before
        if back <= KEEP_EMITS:
            assert [e.stored() for e in emits] == past.emits
        assert all(e.event_id in self.event_ids for e in emits)  # nothing new: the same events again

    @rule(data=st.data())
    def same_receipt_under_a_new_command_id(self, data: st.DataObject) -> None:
        if not self.receipts:
            return
        receipt = data.draw(st.sampled_from(self.receipts))
        before = self.ledger.model_dump(exclude={"applied"})
        self.n += 1
        assert self.ledger.apply(receipt, f"cmd-{self.n}") == []
        assert self.ledger.model_dump(exclude={"applied"}) == before

    @rule()
    def store_and_load(self) -> None:
        before = self.ledger.model_dump()
        self.ledger = SkuLedger.model_validate_json(self.ledger.model_dump_json())
        assert self.ledger.model_dump() == before

    @rule()
    def rebuild_from_the_commands(self) -> None:
        rebuilt = rebuild((a.command_id, a.command) for a in self.history)
        assert rebuilt[SKU].model_dump() == self.ledger.model_dump() if self.history else rebuilt == {}

    # ------------------------------------------------------------ invariants

    @invariant()
    def no_oversell(self) -> None:
        for location in LOCATIONS:
            pos = self._pos(location)
            assert pos.on_hand >= 0
            assert pos.reserved <= max(0, pos.on_hand - pos.safety_stock)

    @invariant()
    def stock_is_conserved(self) -> None:
        for location in LOCATIONS:
            pos = self._pos(location)
            assert pos.on_hand == self.on_hand[location] == self.movements[location]
            assert pos.safety_stock == self.safety[location]

    @invariant()
    def reserved_is_the_sum_of_holds_on_hand(self) -> None:
        for location in LOCATIONS:
            held = sum(r.qty for r in self.ledger.reservations.values()
                       if r.location == location and r.status == "held" and not r.waiting)
            assert self._pos(location).reserved == held == self._held_on_hand(location)

    @invariant()
    def reservations_are_what_their_events_say(self) -> None:
        assert set(self.ledger.reservations) == set(self.seen)
        for rid, seen in self.seen.items():
            res = self.ledger.reservations[rid]
            assert len(seen.ends) <= 1 and seen.filled <= 1
            if seen.decision == "refused":
                assert res.status == "refused"
            elif seen.ends:
                assert res.status == seen.end_status and not res.waiting
            else:
                assert res.status == "held"
                assert res.waiting == (seen.decision == "supply" and not seen.filled)
            if res.waiting and res.supply_id:
                assert res.supply_id == seen.promised

    @invariant()
    def backorders_wait_only_when_they_must(self) -> None:
        for location in LOCATIONS:
            waiting = [r for r in self.ledger.reservations.values() if r.waiting and r.location == location]
            available = self._pos(location).available
            assert all(r.qty > available for r in waiting)  # otherwise it would have been filled
            left = {s.supply_id: s.outstanding for s in self.ledger.supplies.values()
                    if s.location == location and s.outstanding > 0}
            for r in waiting:
                if r.supply_id is not None:
                    left[r.supply_id] -= r.qty
            assert all(v >= 0 for v in left.values())  # no supply promised beyond what it brings
            for r in waiting:
                if r.supply_id is None:
                    assert all(v < r.qty for v in left.values())  # it would have been assigned

    @invariant()
    def the_backorder_index_lists_the_waiting_reservations_in_arrival_order(self) -> None:
        waiting = sorted((r for r in self.ledger.reservations.values() if r.waiting), key=lambda r: r.seq)
        assert self.ledger.backorders == [r.reservation_id for r in waiting]

    @invariant()
    def availability_events_are_the_positions(self) -> None:
        for location, event in self.last_availability.items():
            live = self.ledger.availability(location)
            assert event.model_dump(exclude={"version"}) == live.model_dump(exclude={"version"})

    @invariant()
    def version_counts_applied_commands(self) -> None:
        assert self.ledger.version == len({a.command_id for a in self.history if a.command_id.startswith("cmd-")}) - (
            self._natural_duplicates()
        )

    def _natural_duplicates(self) -> int:
        firsts: set[str] = set()
        dupes = 0
        ids: set[str] = set()
        for a in self.history:
            if a.command_id in ids:
                continue
            ids.add(a.command_id)
            if isinstance(a.command, ReceiveStock):
                if a.command.receipt_id in firsts:
                    dupes += 1
                firsts.add(a.command.receipt_id)
        return dupes


LedgerMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerMachine = LedgerMachine.TestCase
