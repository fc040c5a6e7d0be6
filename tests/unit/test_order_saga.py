"""The order saga: plan, reserve, allocate, fulfil, ship; refusals, cancellation, and re-delivery."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from schemas.base import Message
from schemas.inventory import (
    ConsumeReservation,
    ReleaseReservation,
    ReservationRefused,
    ReserveStock,
    StockReserved,
)
from schemas.network import Location
from schemas.orders import (
    CancelRefused,
    OrderAccepted,
    OrderAllocated,
    OrderCancelled,
    OrderCancelRequested,
    OrderLine,
    OrderPlaced,
    OrderPlacementRefused,
    OrderRejected,
    OrderShipped,
    OrderStatusChanged,
    ShipTo,
)
from schemas.topics import INVENTORY_COMMANDS, ORDERS_EVENTS, ORDERS_STATUS, WMS_COMMANDS
from schemas.wms import FulfilmentAccepted, FulfilOrder, Parcel, ParcelShipped
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import Decision, OrderSaga, OrderState, Snapshot
from services.orchestrator.domain.rules import DEFAULT_RULES
from services.orchestrator.domain.sourcing import Availability
from services.runtime.outbox import Emit

MAX_ATTEMPTS = DEFAULT_RULES.max_attempts

CUSTOMER = ShipTo(lat=48.8566, lon=2.3522)
COORDS = {"WH-A": (48.86, 2.35), "WH-B": (45.76, 4.84)}


def network(coords: dict[str, tuple[float, float]] = COORDS) -> NetworkView:
    view = NetworkView()
    for n, (lid, (lat, lon)) in enumerate(coords.items(), start=1):
        view.apply(Location(id=lid, kind="warehouse", lat=lat, lon=lon), n)
    return view


def placed(order_id: str = "O-1", **qty: int) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        channel="web",
        customer_id="C-1",
        lines=[OrderLine(sku=sku, qty=q, unit_price=10.0) for sku, q in (qty or {"X": 2}).items()],
        delivery=CUSTOMER,
    )


def of(emits: list[Emit], kind: type[Message]) -> list[Message]:
    return [e.message for e in emits if isinstance(e.message, kind)]


def kinds(emits: list[Emit]) -> list[str]:
    return [type(e.message).__name__ for e in emits]


def reserved(cmd: Message) -> StockReserved:
    assert isinstance(cmd, ReserveStock)
    return StockReserved(
        reservation_id=cmd.reservation_id,
        order_id=cmd.order_id,
        sku=cmd.sku,
        location=cmd.location,
        qty=cmd.qty,
    )


def refused(cmd: Message) -> ReservationRefused:
    assert isinstance(cmd, ReserveStock)
    return ReservationRefused(
        reservation_id=cmd.reservation_id,
        order_id=cmd.order_id,
        sku=cmd.sku,
        location=cmd.location,
        qty=cmd.qty,
        available=0,
        reason="only 0 available",
    )


def accepted(cmd: Message) -> FulfilmentAccepted:
    assert isinstance(cmd, FulfilOrder)
    return FulfilmentAccepted(request_id=cmd.request_id, order_id=cmd.order_id, location=cmd.location)


def shipped(cmd: Message, parcel: str | None = None) -> ParcelShipped:
    assert isinstance(cmd, FulfilOrder)
    return ParcelShipped(
        request_id=cmd.request_id,
        order_id=cmd.order_id,
        location=cmd.location,
        parcel=Parcel(parcel_id=parcel or f"P-{cmd.location}", box="S"),
        carrier="baton-post",
        tracking=f"T-{cmd.location}",
        dock_door="D1",
        lines=cmd.lines,
    )


class Run:
    """Feeds one order's messages to the saga, optionally storing/loading the state as JSON in between."""

    def __init__(
        self, availability: Availability, view: NetworkView | None = None, as_json: bool = False
    ) -> None:
        self.saga = OrderSaga(view or network(), availability)
        self.state: OrderState | None = None
        self.as_json = as_json
        self.n = 0

    def send(self, message: Message, message_id: str | None = None) -> list[Emit]:
        self.n += 1
        if self.as_json and self.state is not None:
            self.state = OrderState.model_validate_json(self.state.model_dump_json())
        decision = self.saga.handle(self.state, message, message_id or f"m-{self.n}")
        self.state = decision.state
        return decision.emits

    @property
    def st(self) -> OrderState:
        assert self.state is not None
        return self.state

    def lines(self) -> list[tuple[str, int, int, int, int]]:
        return [(ls.sku, ls.ordered, ls.shipped, ls.cancelled, ls.open) for ls in self.st.line_statuses()]


def allocate(run: Run, order: OrderPlaced) -> list[Message]:
    """Place the order and confirm every reservation; return the FulfilOrder commands."""
    for cmd in of(run.send(order), ReserveStock):
        emits = run.send(reserved(cmd))
    return of(emits, FulfilOrder)


# ---------------------------------------------------------------- happy path


def test_happy_path_to_shipped() -> None:
    run = Run({"X": {"WH-A": 5, "WH-B": 5}, "Y": {"WH-A": 5}})
    emits = run.send(placed(X=2, Y=1))
    assert kinds(emits) == ["OrderAccepted", "OrderStatusChanged", "ReserveStock", "ReserveStock"]
    assert emits[0].topic == ORDERS_EVENTS.name and emits[1].topic == ORDERS_STATUS.name
    assert of(emits, OrderAccepted)[0] == OrderAccepted(order_id="O-1", channel="web")
    reserves = of(emits, ReserveStock)
    assert [(r.sku, r.location, r.qty) for r in reserves] == [("X", "WH-A", 2), ("Y", "WH-A", 1)]  # type: ignore[attr-defined]
    assert all(e.topic == INVENTORY_COMMANDS.name and e.key == e.message.sku for e in emits[2:])  # type: ignore[attr-defined]
    assert run.st.status == "accepted" and run.st.attempt == 1

    assert run.send(reserved(reserves[0])) == []  # not all lines held yet
    assert run.st.status == "accepted"
    emits = run.send(reserved(reserves[1]))
    assert kinds(emits) == ["OrderAllocated", "FulfilOrder", "OrderStatusChanged"]
    allocated = of(emits, OrderAllocated)[0]
    assert isinstance(allocated, OrderAllocated) and allocated.attempt == 1
    assert [(a.sku, a.qty, a.location) for a in allocated.allocations] == [("X", 2, "WH-A"), ("Y", 1, "WH-A")]
    fulfil = emits[1]
    assert fulfil.topic == WMS_COMMANDS.name and fulfil.location == "WH-A"
    assert isinstance(fulfil.message, FulfilOrder)
    assert [(fl.sku, fl.qty) for fl in fulfil.message.lines] == [("X", 2), ("Y", 1)]
    assert run.st.status == "allocated"

    emits = run.send(accepted(fulfil.message))
    assert run.st.status == "in_fulfilment"
    assert [m.status for m in of(emits, OrderStatusChanged)] == ["in_fulfilment"]  # type: ignore[attr-defined]

    emits = run.send(shipped(fulfil.message))
    consumes = of(emits, ConsumeReservation)
    assert [(c.sku, c.qty, c.shipment_id) for c in consumes] == [("X", 2, "P-WH-A"), ("Y", 1, "P-WH-A")]  # type: ignore[attr-defined]
    ship = of(emits, OrderShipped)[0]
    assert isinstance(ship, OrderShipped) and ship.complete and ship.tracking == "T-WH-A"
    assert run.st.status == "shipped"
    assert run.lines() == [("X", 2, 2, 0, 0), ("Y", 1, 1, 0, 0)]
    assert all(p.status == "consumed" for p in run.st.planned)
    assert [h["status"] for h in run.st.history] == ["accepted", "allocated", "in_fulfilment", "shipped"]


def test_status_events_carry_previous_status_and_growing_versions() -> None:
    run = Run({"X": {"WH-A": 5}})
    emitted: list[Emit] = []
    fulfil = allocate(run, placed(X=1))
    emitted += run.send(accepted(fulfil[0]))
    emitted += run.send(shipped(fulfil[0]))
    changes = [m for m in of(emitted, OrderStatusChanged) if isinstance(m, OrderStatusChanged)]
    assert [(c.previous, c.status) for c in changes] == [
        ("allocated", "in_fulfilment"),
        ("in_fulfilment", "shipped"),
    ]
    assert [c.version for c in changes] == [3, 4]


def test_no_source_rejects_the_order() -> None:
    run = Run({"X": {"WH-A": 1}})
    emits = run.send(placed(X=3))
    assert kinds(emits) == ["OrderAccepted", "OrderStatusChanged", "OrderRejected", "OrderStatusChanged"]
    rejected = of(emits, OrderRejected)[0]
    assert isinstance(rejected, OrderRejected) and "X x2" in rejected.reason
    assert run.st.status == "rejected"
    assert run.lines() == [("X", 3, 0, 3, 0)]
    assert of(emits, ReserveStock) == []


def test_event_for_an_unknown_order_is_ignored_and_a_cancel_of_one_is_refused() -> None:
    saga = OrderSaga(network(), {})
    late = FulfilmentAccepted(request_id="nope/a1/WH-A", order_id="nope", location="WH-A")
    assert saga.handle(None, late, "m-0") == Decision(emits=[], state=None)
    decision = saga.handle(None, OrderCancelRequested(order_id="nope"), "m-1")
    assert decision.state is None
    [refused] = [emit.message for emit in decision.emits]
    assert isinstance(refused, CancelRefused) and refused.reason == "cancel refused: unknown order"


def test_fulfilment_accepted_before_allocation_changes_nothing() -> None:
    run = Run({"X": {"WH-A": 5}})
    run.send(placed(X=1))
    emits = run.send(FulfilmentAccepted(request_id="O-1/a1/WH-A", order_id="O-1", location="WH-A"))
    assert emits == [] and run.st.status == "accepted"


# ---------------------------------------------------------------- refusals


def test_refusal_caps_that_source_at_what_the_ledger_had_and_replans() -> None:
    run = Run({"X": {"WH-A": 5, "WH-B": 5}})
    first = of(run.send(placed(X=2)), ReserveStock)[0]
    assert first.location == "WH-A"  # type: ignore[attr-defined]

    emits = run.send(refused(first))
    again = of(emits, ReserveStock)
    assert [(r.location, r.reservation_id) for r in again] == [("WH-B", "O-1/a2/0")]  # type: ignore[attr-defined]
    assert run.st.attempt == 2 and run.st.caps == {"X@WH-A": 0}
    assert run.st.status == "accepted"

    emits = run.send(reserved(again[0]))
    allocated = of(emits, OrderAllocated)[0]
    assert isinstance(allocated, OrderAllocated) and allocated.attempt == 2
    assert [a.location for a in allocated.allocations] == ["WH-B"]
    assert run.st.status == "allocated"


def test_refusal_releases_the_lines_already_held() -> None:
    run = Run({"X": {"WH-A": 5, "WH-B": 5}, "Y": {"WH-A": 5, "WH-B": 5}})
    x, y = of(run.send(placed(X=1, Y=1)), ReserveStock)
    assert run.send(reserved(y)) == []
    emits = run.send(refused(x))
    releases = of(emits, ReleaseReservation)
    assert [(r.reservation_id, r.reason) for r in releases] == [(y.reservation_id, "re-sourcing")]  # type: ignore[attr-defined]
    # the whole order moves to the one location still able to serve all of it
    assert [(r.sku, r.location) for r in of(emits, ReserveStock)] == [("X", "WH-B"), ("Y", "WH-B")]  # type: ignore[attr-defined]


def test_refusals_until_no_source_left_reject() -> None:
    run = Run({"X": {"WH-A": 5, "WH-B": 5}})
    cmd = of(run.send(placed(X=1)), ReserveStock)[0]
    cmd = of(run.send(refused(cmd)), ReserveStock)[0]
    emits = run.send(refused(cmd))
    assert of(emits, ReserveStock) == []
    assert kinds(emits) == ["OrderRejected", "OrderStatusChanged"]
    assert run.st.status == "rejected" and run.st.caps == {"X@WH-A": 0, "X@WH-B": 0}


def test_max_attempts_then_rejection() -> None:
    coords = {f"WH-{n}": (45.0 + n * 0.1, 2.0) for n in range(MAX_ATTEMPTS + 2)}
    run = Run({"X": dict.fromkeys(coords, 5)}, view=network(coords))
    cmd = of(run.send(placed(X=1)), ReserveStock)[0]
    tried = [cmd.location]  # type: ignore[attr-defined]
    for _ in range(MAX_ATTEMPTS - 1):
        cmd = of(run.send(refused(cmd)), ReserveStock)[0]
        tried.append(cmd.location)  # type: ignore[attr-defined]
    assert run.st.attempt == MAX_ATTEMPTS and len(set(tried)) == MAX_ATTEMPTS
    emits = run.send(refused(cmd))
    assert of(emits, ReserveStock) == []
    rejected = of(emits, OrderRejected)[0]
    assert isinstance(rejected, OrderRejected) and f"after {MAX_ATTEMPTS} attempts" in rejected.reason
    assert run.st.status == "rejected"


def test_stale_stock_reserved_from_a_superseded_attempt_is_released() -> None:
    run = Run({"X": {"WH-A": 5, "WH-B": 5}, "Y": {"WH-A": 5, "WH-B": 5}})
    x, y = of(run.send(placed(X=1, Y=1)), ReserveStock)
    emits = run.send(refused(x))  # y is still pending: released at once (the ledger applies it after the reserve)
    assert [(r.reservation_id, r.reason) for r in of(emits, ReleaseReservation)] == [  # type: ignore[attr-defined]
        (y.reservation_id, "re-sourcing")
    ]
    new = of(emits, ReserveStock)

    emits = run.send(reserved(y))  # attempt 1's reservation lands late: already released, nothing twice
    assert of(emits, ReleaseReservation) == []
    assert run.st.status == "accepted"

    for cmd in new:
        emits = run.send(reserved(cmd))
    allocated = of(emits, OrderAllocated)[0]
    assert isinstance(allocated, OrderAllocated)
    assert {a.reservation_id for a in allocated.allocations} == {c.reservation_id for c in new}  # type: ignore[attr-defined]


def test_stale_refusal_from_a_superseded_attempt_does_not_replan() -> None:
    run = Run({"X": {"WH-A": 5, "WH-B": 5}, "Y": {"WH-A": 5, "WH-B": 5}})
    x, y = of(run.send(placed(X=1, Y=1)), ReserveStock)
    run.send(refused(x))
    emits = run.send(refused(y))
    assert emits == [] and run.st.attempt == 2


# ---------------------------------------------------------------- cancellation


def test_cancel_before_shipment_releases_every_reservation() -> None:
    run = Run({"X": {"WH-A": 5}, "Y": {"WH-B": 5}})
    fulfil = allocate(run, placed(X=1, Y=2))
    run.send(accepted(fulfil[0]))
    emits = run.send(OrderCancelRequested(order_id="O-1", reason="changed mind"))
    releases = of(emits, ReleaseReservation)
    assert sorted((r.sku, r.reason) for r in releases) == [("X", "cancelled"), ("Y", "cancelled")]  # type: ignore[attr-defined]
    assert {r.reservation_id for r in releases} == {p.reservation_id for p in run.st.planned}  # type: ignore[attr-defined]
    assert of(emits, OrderCancelled) == [OrderCancelled(order_id="O-1", reason="changed mind")]
    assert run.st.status == "cancelled" and run.st.reason == "changed mind"
    assert run.lines() == [("X", 1, 0, 1, 0), ("Y", 2, 0, 2, 0)]

    # a second request is refused with a reason, and reservations landing late release nothing twice
    again = run.send(OrderCancelRequested(order_id="O-1"))
    assert [type(e.message) for e in again] == [CancelRefused]
    assert (
        run.send(
            StockReserved(
                reservation_id=run.st.planned[0].reservation_id,
                order_id="O-1",
                sku="X",
                location="WH-A",
                qty=1,
            )
        )
        == []
    )


def test_cancel_while_reservations_are_pending_releases_them_too() -> None:
    run = Run({"X": {"WH-A": 5}})
    (cmd,) = of(run.send(placed(X=1)), ReserveStock)
    emits = run.send(OrderCancelRequested(order_id="O-1"))
    assert [r.reservation_id for r in of(emits, ReleaseReservation)] == [cmd.reservation_id]  # type: ignore[attr-defined]
    assert run.send(reserved(cmd)) == []  # the release already went out after it
    assert run.st.status == "cancelled"


def test_cancel_after_shipment_is_refused() -> None:
    run = Run({"X": {"WH-A": 5}})
    fulfil = allocate(run, placed(X=1))
    run.send(shipped(fulfil[0]))
    before = run.st.model_dump(exclude={"applied", "version", "history"})
    refusal = run.send(OrderCancelRequested(order_id="O-1"))
    assert [type(e.message) for e in refusal] == [CancelRefused]
    assert run.st.model_dump(exclude={"applied", "version", "history"}) == before
    assert run.st.status == "shipped"


def test_cancel_after_a_partial_shipment_is_refused() -> None:
    run = Run({"X": {"WH-A": 5}, "Y": {"WH-B": 5}})
    fulfil = allocate(run, placed(X=1, Y=1))
    run.send(shipped(fulfil[0]))
    assert [type(e.message) for e in run.send(OrderCancelRequested(order_id="O-1"))] == [CancelRefused]
    assert run.st.status == "partially_shipped"
    assert run.lines() == [("X", 1, 1, 0, 0), ("Y", 1, 0, 0, 1)]


def test_parcel_shipped_after_cancellation_is_handled() -> None:
    run = Run({"X": {"WH-A": 5}})
    fulfil = allocate(run, placed(X=2))
    run.send(accepted(fulfil[0]))
    run.send(OrderCancelRequested(order_id="O-1"))
    run.send(shipped(fulfil[0]))  # raises today
    for _sku, ordered, shipped_, cancelled, open_ in run.lines():
        assert ordered == shipped_ + cancelled + open_ and min(shipped_, cancelled, open_) >= 0


# ---------------------------------------------------------------- partial shipments


def test_partial_shipment_across_two_locations() -> None:
    run = Run({"X": {"WH-A": 5}, "Y": {"WH-B": 5}})
    fulfil = allocate(run, placed(X=1, Y=3))
    assert [f.location for f in fulfil] == ["WH-A", "WH-B"]  # type: ignore[attr-defined]
    run.send(accepted(fulfil[0]))
    run.send(accepted(fulfil[1]))
    assert run.st.status == "in_fulfilment"

    emits = run.send(shipped(fulfil[1]))
    ship = of(emits, OrderShipped)[0]
    assert isinstance(ship, OrderShipped) and not ship.complete and ship.location == "WH-B"
    assert [(c.sku, c.qty) for c in of(emits, ConsumeReservation)] == [("Y", 3)]  # type: ignore[attr-defined]
    assert run.st.status == "partially_shipped"
    assert run.lines() == [("X", 1, 0, 0, 1), ("Y", 3, 3, 0, 0)]

    emits = run.send(shipped(fulfil[0]))
    ship = of(emits, OrderShipped)[0]
    assert isinstance(ship, OrderShipped) and ship.complete
    assert run.st.status == "shipped"
    assert [s.location for s in run.st.shipments] == ["WH-B", "WH-A"]
    assert run.lines() == [("X", 1, 1, 0, 0), ("Y", 3, 3, 0, 0)]


def test_one_line_split_across_two_locations_ships_in_two_parcels() -> None:
    run = Run({"X": {"WH-A": 2, "WH-B": 3}})
    fulfil = allocate(run, placed(X=5))
    assert sorted((f.location, f.lines[0].qty) for f in fulfil) == [("WH-A", 2), ("WH-B", 3)]  # type: ignore[attr-defined]
    run.send(shipped(fulfil[0]))
    assert run.st.status == "partially_shipped" and run.lines() == [("X", 5, 2, 0, 3)]
    run.send(shipped(fulfil[1]))
    assert run.st.status == "shipped" and run.lines() == [("X", 5, 5, 0, 0)]


# ---------------------------------------------------------------- re-delivery


def test_duplicate_delivery_replays_the_same_emits_and_changes_nothing() -> None:
    run = Run({"X": {"WH-A": 5}})
    (cmd,) = of(run.send(placed(X=1)), ReserveStock)
    first = run.send(reserved(cmd), "evt-1")
    before = run.st.model_dump()
    again = run.send(reserved(cmd), "evt-1")
    assert again == first and kinds(first) == ["OrderAllocated", "FulfilOrder", "OrderStatusChanged"]
    assert run.st.model_dump() == before


def test_same_parcel_under_a_new_message_id_is_shipped_once() -> None:
    run = Run({"X": {"WH-A": 5}})
    fulfil = allocate(run, placed(X=2))
    first = run.send(shipped(fulfil[0]), "evt-a")
    assert len(of(first, ConsumeReservation)) == 1
    again = run.send(shipped(fulfil[0]), "evt-b")
    assert of(again, ConsumeReservation) == [] and of(again, OrderShipped) == []
    assert len(run.st.shipments) == 1 and run.lines() == [("X", 2, 2, 0, 0)]


def test_second_order_of_other_content_under_a_taken_order_id_is_refused_and_the_first_stands() -> None:
    run = Run({"X": {"WH-A": 5}, "Y": {"WH-A": 5}})
    run.send(placed(X=1), "p-1")
    before = run.st.model_dump()
    emits = run.send(placed(Y=4), "p-2")
    [refused] = of(emits, OrderPlacementRefused)
    assert len(emits) == 1 and emits[0].topic == ORDERS_STATUS.name
    assert isinstance(refused, OrderPlacementRefused) and refused.refused_event_id == "p-2"
    assert "already placed with other content (lines differ)" in refused.reason and "(accepted)" in refused.reason
    assert run.st.model_dump() == before
    assert [ln.sku for ln in run.st.order.lines] == ["X"]
    assert run.send(placed(Y=4), "p-2") == emits  # redelivered: the same refusal, under the same event id


def test_the_same_order_placed_again_under_a_new_event_id_changes_nothing() -> None:
    run = Run({"X": {"WH-A": 5}})
    run.send(placed(X=1), "p-1")
    before = run.st.model_dump()
    assert run.send(placed(X=1), "p-retry") == []  # a producer's retry with a new CloudEvents id
    assert run.st.model_dump() == before


def test_an_order_of_an_unknown_sku_is_rejected_with_the_sku_named() -> None:
    run = Run({"X": {"WH-A": 5}})
    emits = run.send(placed(X=1, NOPE=1))
    assert run.st.status == "rejected" and "unknown SKU 'NOPE'" in (run.st.reason or "")
    assert of(emits, ReserveStock) == []


def test_a_sku_known_only_by_the_catalog_or_a_zero_position_is_not_unknown() -> None:
    run = Run({"X": {"WH-A": 0}})
    run.send(placed(X=1))
    assert run.st.status == "rejected" and "no source and no supply" in (run.st.reason or "")
    catalog = OrderSaga(network(), snapshot=Snapshot(network=network(), prices={"CAT": 9.0}))
    state = catalog.handle(None, placed(CAT=1), "m-1").state
    assert state is not None and "no source and no supply" in (state.reason or "")


def test_redelivered_order_placed_replays_its_emits() -> None:
    run = Run({"X": {"WH-A": 5}})
    first = run.send(placed(X=1), "p-1")
    again = run.send(placed(X=1), "p-1")
    assert again == first


# ---------------------------------------------------------------- storage between messages


def _full_story(run: Run) -> list[list[Emit]]:
    out = [run.send(placed(X=1, Y=2), "p-1")]
    x, y = of(out[0], ReserveStock)
    out.append(run.send(refused(x), "r-1"))
    new = of(out[-1], ReserveStock)
    out.append(run.send(reserved(y), "r-2"))  # stale: released
    for n, cmd in enumerate(new):
        out.append(run.send(reserved(cmd), f"r-{3 + n}"))
    fulfil = of(out[-1], FulfilOrder)
    out.append(run.send(reserved(new[0]), f"r-{3}"))  # a duplicate
    for f in fulfil:
        out.append(run.send(accepted(f), f"a-{f.location}"))  # type: ignore[attr-defined]
    for f in fulfil:
        out.append(run.send(shipped(f), f"s-{f.location}"))  # type: ignore[attr-defined]
    out.append(run.send(OrderCancelRequested(order_id="O-1"), "c-1"))
    return out


def test_state_survives_a_json_round_trip_between_messages() -> None:
    availability = {"X": {"WH-A": 5, "WH-B": 5}, "Y": {"WH-A": 5, "WH-B": 5}}
    live, stored = Run(availability), Run(availability, as_json=True)
    live_emits, stored_emits = _full_story(live), _full_story(stored)
    assert stored_emits == live_emits
    assert stored.st.status == live.st.status == "shipped"
    assert stored.st.model_dump() == live.st.model_dump()
    assert OrderState.model_validate_json(stored.st.model_dump_json()).view() == live.st.view()
    assert stored.lines() == [("X", 1, 1, 0, 0), ("Y", 2, 2, 0, 0)]


@pytest.mark.parametrize("step", [lambda r: r, lambda r: OrderState.model_validate_json(r.model_dump_json())])
def test_view_accounts_for_every_line(step: Callable[[OrderState], OrderState]) -> None:
    run = Run({"X": {"WH-A": 5}})
    allocate(run, placed(X=2))
    view = step(run.st).view()
    assert view["status"] == "allocated"
    assert view["lines"] == [{"sku": "X", "ordered": 2, "shipped": 0, "cancelled": 0, "open": 2}]


def test_a_partial_refusal_keeps_what_the_source_still_has_for_a_split() -> None:
    """The ledger refused 12 at WH-A but has 9: the re-plan still uses those 9 (no blanket exclusion)."""
    run = Run({"X": {"WH-A": 12, "WH-B": 7}})
    first = of(run.send(placed(X=12)), ReserveStock)[0]
    assert first.location == "WH-A"  # type: ignore[attr-defined]
    refusal = refused(first).model_copy(update={"available": 9})
    again = of(run.send(refusal), ReserveStock)
    assert sorted((r.location, r.qty) for r in again) == [("WH-A", 9), ("WH-B", 3)]  # type: ignore[attr-defined]
