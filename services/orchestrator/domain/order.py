"""An order and its reservation saga: plan, reserve every line, allocate, follow fulfilment.

Pure: the agent loads the order's state, calls ``OrderSaga.handle`` with the message and (for messages
that may need a plan) a fresh availability snapshot, stores the state and sends what came back.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from baton.runtime.outbox import AppliedLog, Emit
from schemas.base import Message
from schemas.envelope import derived_id
from schemas.inventory import (
    ConsumeReservation,
    ReleaseReservation,
    ReservationConsumed,
    ReservationRefused,
    ReservationReleased,
    ReserveStock,
    StockReserved,
)
from schemas.orders import (
    TERMINAL_STATUSES,
    AllocatedLine,
    LineStatus,
    OrderAccepted,
    OrderAllocated,
    OrderCancelled,
    OrderCancelRequested,
    OrderLine,
    OrderPlaced,
    OrderRejected,
    OrderShipped,
    OrderStatus,
    OrderStatusChanged,
    ReturnLine,
    ShipmentView,
)
from schemas.topics import INVENTORY_COMMANDS, ORDERS_EVENTS, ORDERS_STATUS, WMS_COMMANDS
from schemas.wms import FulfilmentAccepted, FulfilmentLine, FulfilOrder, ItemsPicked, ParcelShipped
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.sourcing import Availability, SourcingPlan, plan_order

MAX_ATTEMPTS = 8
PLANNING_MESSAGES = (OrderPlaced, ReservationRefused)
LineProgress = Literal["pending", "held", "refused", "released", "consumed"]


class PlannedLine(BaseModel):
    line_index: int
    sku: str
    qty: int
    location: str
    reservation_id: str
    attempt: int
    status: LineProgress = "pending"


class OrderState(BaseModel):
    order_id: str
    placed: dict[str, Any]
    status: OrderStatus = "accepted"
    reason: str | None = None
    attempt: int = 0
    planned: list[PlannedLine] = []
    excluded: list[str] = []
    shipped: dict[int, int] = {}
    cancelled: dict[int, int] = {}
    shipments: list[ShipmentView] = []
    history: list[dict[str, Any]] = []
    last_decision: dict[str, Any] = {}
    applied: AppliedLog = AppliedLog(keep_ids=500, keep_emits=32)
    version: int = 0

    @property
    def order(self) -> OrderPlaced:
        return OrderPlaced.model_validate(self.placed)

    def line_statuses(self) -> list[LineStatus]:
        out = []
        for i, line in enumerate(self.order.lines):
            shipped, cancelled = self.shipped.get(i, 0), self.cancelled.get(i, 0)
            out.append(
                LineStatus(
                    sku=line.sku,
                    ordered=line.qty,
                    shipped=shipped,
                    cancelled=cancelled,
                    open=line.qty - shipped - cancelled,
                )
            )
        return out

    def current(self) -> list[PlannedLine]:
        return [p for p in self.planned if p.attempt == self.attempt]

    def view(self) -> dict[str, Any]:
        """The read-model document of this order (what ``baton orders show`` and the scenario print)."""
        order = self.order
        return {
            "order_id": self.order_id,
            "status": self.status,
            "reason": self.reason,
            "channel": order.channel,
            "delivery": order.delivery.model_dump(mode="json"),
            "lines": [ls.model_dump() for ls in self.line_statuses()],
            "shipments": [s.model_dump() for s in self.shipments],
            "promised_date": None,
            "history": self.history,
            "version": self.version,
        }


@dataclass
class Decision:
    emits: list[Emit] = field(default_factory=list)
    state: OrderState | None = None


class OrderSaga:
    """Handles one message for one order. ``network`` and ``availability`` are the snapshot to plan with."""

    def __init__(self, network: NetworkView, availability: Availability | None = None) -> None:
        self.network = network
        self.availability = availability or {}

    def handle(self, state: OrderState | None, message: Message, message_id: str) -> Decision:
        if state is not None and state.applied.seen(message_id):
            return Decision(emits=state.applied.replay(message_id), state=state)
        if isinstance(message, OrderPlaced):
            if state is not None:
                return Decision(state=state)  # the same order id placed again: no effect
            state = OrderState(order_id=message.order_id, placed=message.model_dump(mode="json"))
        if state is None:
            return Decision()
        emits = _Step(state, self, message_id).run(message)
        state.applied.record(message_id, emits)
        state.version += 1
        return Decision(emits=emits, state=state)


class _Step:
    """The handling of one message: mutates the state and collects emits."""

    def __init__(self, state: OrderState, saga: OrderSaga, message_id: str) -> None:
        self.state = state
        self.saga = saga
        self.message_id = message_id
        self.emits: list[Emit] = []

    def run(self, message: Message) -> list[Emit]:
        match message:
            case OrderPlaced():
                self._accept(message)
            case StockReserved():
                self._reserved(message)
            case ReservationRefused():
                self._refused(message)
            case FulfilmentAccepted():
                if self.state.status == "allocated":
                    self._set_status("in_fulfilment")
            case ParcelShipped():
                self._shipped(message)
            case OrderCancelRequested():
                self._cancel(message)
            case ReservationReleased() | ReservationConsumed() | ItemsPicked():
                pass
            case _:
                raise ValueError(f"the orchestrator does not handle {message.event_type}")
        return self.emits

    def _id(self, *parts: object) -> str:
        return derived_id(self.message_id, *parts)

    def _emit(self, topic: Any, key: str, message: Message, *parts: object, location: str | None = None) -> None:
        self.emits.append(Emit.to(topic, key, message, self._id(message.event_type, *parts), location))

    def _set_status(self, status: OrderStatus, reason: str | None = None) -> None:
        state = self.state
        previous = state.status if state.history else None
        if previous == status and state.history:
            return
        state.status, state.reason = status, reason
        state.history.append({"status": status, "reason": reason, "cause": self.message_id})
        changed = OrderStatusChanged(
            order_id=state.order_id,
            status=status,
            previous=previous,
            reason=reason,
            channel=state.order.channel,
            lines=state.line_statuses(),
            shipments=state.shipments,
            version=len(state.history),
        )
        self._emit(ORDERS_STATUS, state.order_id, changed, status)

    def _accept(self, placed: OrderPlaced) -> None:
        self._emit(ORDERS_EVENTS, placed.order_id, OrderAccepted(order_id=placed.order_id, channel=placed.channel))
        self._set_status("accepted")
        self._plan()

    def _plan(self) -> None:
        state, order = self.state, self.state.order
        if state.attempt >= MAX_ATTEMPTS:
            self._reject(f"could not reserve stock after {MAX_ATTEMPTS} attempts")
            return
        plan = plan_order(order.lines, order.delivery, self.saga.network, self.saga.availability, set(state.excluded))
        state.last_decision = _explain(plan, self.saga.network.version, state.attempt + 1)
        if not plan.complete:
            self._reject(_no_source_reason(order.lines, plan))
            return
        state.attempt += 1
        for n, a in enumerate(plan.assignments):
            rid = f"{state.order_id}/a{state.attempt}/{n}"
            state.planned.append(PlannedLine(line_index=a.line_index, sku=a.sku, qty=a.qty, location=a.location,
                                             reservation_id=rid, attempt=state.attempt))
            reserve = ReserveStock(
                reservation_id=rid, order_id=state.order_id, sku=a.sku, location=a.location, qty=a.qty
            )
            self._emit(INVENTORY_COMMANDS, a.sku, reserve, rid)

    def _reject(self, reason: str) -> None:
        state = self.state
        self._emit(ORDERS_EVENTS, state.order_id, OrderRejected(order_id=state.order_id, reason=reason))
        for i, line in enumerate(state.order.lines):
            state.cancelled[i] = line.qty - state.shipped.get(i, 0)
        self._set_status("rejected", reason)

    def _line(self, reservation_id: str) -> PlannedLine | None:
        return next((p for p in self.state.planned if p.reservation_id == reservation_id), None)

    def _reserved(self, event: StockReserved) -> None:
        line = self._line(event.reservation_id)
        if line is None:
            return
        live = line.attempt == self.state.attempt and self.state.status == "accepted"
        if not live:
            self._release(line, "superseded")
            return
        line.status = "held"
        if all(p.status == "held" for p in self.state.current()):
            self._allocate()

    def _release(self, line: PlannedLine, reason: str) -> None:
        if line.status in ("released", "consumed", "refused"):
            return
        line.status = "released"
        release = ReleaseReservation(reservation_id=line.reservation_id, order_id=self.state.order_id,
                                     sku=line.sku, reason=reason)
        self._emit(INVENTORY_COMMANDS, line.sku, release, line.reservation_id)

    def _refused(self, event: ReservationRefused) -> None:
        state = self.state
        line = self._line(event.reservation_id)
        if line is None or line.attempt != state.attempt or state.status != "accepted":
            if line is not None:
                line.status = "refused"
            return
        line.status = "refused"
        state.excluded.append(f"{line.sku}@{line.location}")
        for other in state.current():
            if other.status == "held":
                self._release(other, "re-sourcing")
        self._plan()

    def _allocate(self) -> None:
        state = self.state
        current = state.current()
        allocated = OrderAllocated(
            order_id=state.order_id,
            allocations=[AllocatedLine(sku=p.sku, qty=p.qty, location=p.location, reservation_id=p.reservation_id)
                         for p in current],
            rule=state.last_decision.get("rule", "default"),
            candidates=state.last_decision.get("candidates", []),
            attempt=state.attempt,
        )
        self._emit(ORDERS_EVENTS, state.order_id, allocated)
        by_location: dict[str, list[PlannedLine]] = defaultdict(list)
        for p in current:
            by_location[p.location].append(p)
        for location, lines in sorted(by_location.items()):
            request = FulfilOrder(
                request_id=f"{state.order_id}/a{state.attempt}/{location}",
                order_id=state.order_id,
                location=location,
                lines=[FulfilmentLine(sku=p.sku, qty=p.qty, reservation_id=p.reservation_id) for p in lines],
                delivery_mode=state.order.delivery.mode,
            )
            self._emit(WMS_COMMANDS, state.order_id, request, location, location=location)
        self._set_status("allocated")

    def _shipped(self, event: ParcelShipped) -> None:
        state = self.state
        if any(s.parcel_id == event.parcel.parcel_id for s in state.shipments):
            return
        shipped_lines: dict[str, int] = defaultdict(int)
        for fl in event.lines:
            line = self._line(fl.reservation_id)
            if line is None:
                continue
            line.status = "consumed"
            state.shipped[line.line_index] = state.shipped.get(line.line_index, 0) + fl.qty
            self._uncancel_what_shipped(line.line_index)
            shipped_lines[fl.sku] += fl.qty
            consume = ConsumeReservation(reservation_id=fl.reservation_id, order_id=state.order_id, sku=fl.sku,
                                         qty=fl.qty, shipment_id=event.parcel.parcel_id)
            self._emit(INVENTORY_COMMANDS, fl.sku, consume, fl.reservation_id)
        lines = [ReturnLine(sku=s, qty=q) for s, q in sorted(shipped_lines.items())]
        state.shipments.append(ShipmentView(location=event.location, lines=lines, tracking=event.tracking,
                                            carrier=event.carrier, parcel_id=event.parcel.parcel_id))
        complete = all(ls.open == 0 for ls in state.line_statuses())
        self._emit(ORDERS_EVENTS, state.order_id, OrderShipped(order_id=state.order_id, location=event.location,
                   parcel_id=event.parcel.parcel_id, tracking=event.tracking, lines=lines, complete=complete))
        self._set_status("shipped" if complete else "partially_shipped")

    def _uncancel_what_shipped(self, line_index: int) -> None:
        """A parcel that left after a cancellation (the warehouse was already on it) is shipped, not cancelled."""
        ordered = self.state.order.lines[line_index].qty
        shipped = self.state.shipped[line_index]
        cancelled = self.state.cancelled.get(line_index, 0)
        self.state.cancelled[line_index] = max(0, min(cancelled, ordered - shipped))

    def _cancel(self, request: OrderCancelRequested) -> None:
        state = self.state
        if state.status in TERMINAL_STATUSES or state.shipments:
            return
        for planned in state.planned:
            if planned.status in ("pending", "held"):
                self._release(planned, "cancelled")
        for i, line in enumerate(state.order.lines):
            state.cancelled[i] = line.qty - state.shipped.get(i, 0)
        self._emit(ORDERS_EVENTS, state.order_id, OrderCancelled(order_id=state.order_id, reason=request.reason))
        self._set_status("cancelled", request.reason)


def _explain(plan: SourcingPlan, network_version: int, attempt: int) -> dict[str, Any]:
    return {
        "rule": plan.rule,
        "network_version": network_version,
        "attempt": attempt,
        "candidates": [c.model_dump() for c in plan.candidates],
        "assignments": [vars(a) for a in plan.assignments],
    }


def _no_source_reason(lines: list[OrderLine], plan: SourcingPlan) -> str:
    missing = ", ".join(f"{lines[i].sku} x{q}" for i, q in sorted(plan.unsourced.items()))
    return f"no source for {missing or 'the order'}"
