"""An order and its saga: validate, plan, reserve every line, allocate, follow fulfilment to the end.

Pure: the agent loads the order's state, calls ``OrderSaga.handle`` with the message, the snapshot to plan
with (network, availability, supply, rule set, capacity) and the message's time; it stores the state and
sends what came back. Every step with a wait has a deadline; the agent's timer turns a due deadline into an
``OrderDeadlineReached`` message, handled here like any other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.base import Message
from schemas.envelope import derived_id
from schemas.inventory import (
    BackorderFilled,
    ConsumeReservation,
    ExpireReservation,
    ReleaseReservation,
    ReservationConsumed,
    ReservationExpired,
    ReservationReduced,
    ReservationRefused,
    ReservationReleased,
    ReserveStock,
    StockReserved,
)
from schemas.orders import (
    TERMINAL_STATUSES,
    AllocatedLine,
    CancelRefused,
    LineStatus,
    OrderAccepted,
    OrderAllocated,
    OrderCancelled,
    OrderCancelRequested,
    OrderDeadlineReached,
    OrderLine,
    OrderPlaced,
    OrderPlacementRefused,
    OrderRejected,
    OrderShipped,
    OrderStatus,
    OrderStatusChanged,
    PickupAt,
    PickupCollected,
    ReserveAt,
    ReturnAuthorized,
    ReturnLine,
    ReturnRefunded,
    ReturnRejected,
    ReturnRequested,
    ShipmentView,
)
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from schemas.topics import (
    INVENTORY_COMMANDS,
    ORDERS_EVENTS,
    ORDERS_INBOUND,
    ORDERS_STATUS,
    PAYMENTS_COMMANDS,
    WMS_COMMANDS,
)
from schemas.wms import (
    CancelFulfilment,
    FulfilmentAccepted,
    FulfilmentCancelled,
    FulfilmentLine,
    FulfilmentRejected,
    FulfilOrder,
    HandedOver,
    HandOver,
    ItemsPicked,
    ParcelShipped,
    ReadyForPickup,
    ReceiveReturn,
    ReturnReceived,
    ShortPicked,
)
from services.orchestrator.domain import returns as rma
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.rules import DEFAULT_RULES, OrderFacts, Rule, RuleSet, applicable_rules
from services.orchestrator.domain.sourcing import Availability, SourcingPlan, Supply, plan_backorder, plan_order
from services.runtime.outbox import AppliedLog, Emit

PLANNING_MESSAGES = (
    OrderPlaced,
    ReservationRefused,
    FulfilmentRejected,
    ShortPicked,
    OrderDeadlineReached,
    ReservationReleased,
    ReservationReduced,
)
# what the saga hears of but never acts on: applying one changes nothing, so nothing of it is recorded (no applied
# id, no new version) and the adapter writes nothing (no changelog record, no view) for it
NO_EFFECT_MESSAGES = (ItemsPicked, HandedOver, ReservationConsumed)
FALLBACK_RULE = Rule(name="fallback: default")  # built once: a rule is read, never changed, and costly to build
LineProgress = Literal["pending", "held", "refused", "released", "consumed", "expired"]
TRANSIT_DAYS = 1
DeadlineKind = Literal["reserve", "accept", "pickup", "hold", "refund"]


class PlannedLine(BaseModel):
    line_index: int
    sku: str
    qty: int
    location: str
    reservation_id: str
    attempt: int
    status: LineProgress = "pending"
    backorder: bool = False
    against_supply: str | None = None
    eta: str | None = None
    request_id: str | None = None
    short: int = 0

    @property
    def effective(self) -> int:
        return self.qty - self.short

    @property
    def waiting_on_supply(self) -> bool:
        return self.status == "held" and self.against_supply is not None


class Deadline(BaseModel):
    kind: DeadlineKind
    due: datetime


class OrderState(BaseModel):
    # default factories: pydantic deep-copies a mutable default for every instance, a third of building one
    order_id: str
    placed: dict[str, Any]
    status: OrderStatus = "accepted"
    reason: str | None = None
    attempt: int = 0
    planned: list[PlannedLine] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    caps: dict[str, int] = Field(default_factory=dict)
    shipped: dict[int, int] = Field(default_factory=dict)
    cancelled: dict[int, int] = Field(default_factory=dict)
    shipments: list[ShipmentView] = Field(default_factory=list)
    returns: list[rma.ReturnCase] = Field(default_factory=list)
    requests: dict[str, str] = Field(default_factory=dict)
    request_seq: int = 0
    ship_to_store: bool = False
    promised_date: datetime | None = None
    deadline: Deadline | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    last_decision: dict[str, Any] = Field(default_factory=dict)
    rule_set: str = "default"
    rule_set_version: int = 1
    applied: AppliedLog = Field(default_factory=lambda: AppliedLog(keep_ids=500, keep_emits=32))
    version: int = 0

    @cached_property
    def order(self) -> OrderPlaced:
        """The order as placed, parsed once per state object (``placed`` never changes; read many times a step)."""
        return OrderPlaced.model_validate(self.placed)

    def line_statuses(self) -> list[LineStatus]:
        out = []
        for i, line in enumerate(self.order.lines):
            shipped, cancelled = self.shipped.get(i, 0), self.cancelled.get(i, 0)
            out.append(LineStatus(sku=line.sku, ordered=line.qty, shipped=shipped, cancelled=cancelled,
                                  open=max(0, line.qty - shipped - cancelled)))
        return out

    def current(self) -> list[PlannedLine]:
        return [p for p in self.planned if p.attempt == self.attempt]

    def live(self) -> list[PlannedLine]:
        """Planned lines still promising units: pending or held (on stock or on supply), not yet shipped."""
        return [p for p in self.planned if p.status in ("pending", "held")]

    def need(self) -> dict[int, int]:
        """Units of each line that nothing (live plan, shipment, cancellation) accounts for yet."""
        covered: defaultdict[int, int] = defaultdict(int)
        for p in self.live():
            covered[p.line_index] += p.effective
        out = {}
        for i, line in enumerate(self.order.lines):
            missing = line.qty - self.shipped.get(i, 0) - self.cancelled.get(i, 0) - covered[i]
            if missing > 0:
                out[i] = missing
        return out

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
            "returns": [r.view() for r in self.returns],
            "refunds": [{"return_id": r.return_id, **r.refund.model_dump()} for r in self.returns if r.refund],
            "promised_date": self.promised_date.isoformat() if self.promised_date else None,
            "deadline": self.deadline.model_dump(mode="json") if self.deadline else None,
            "decision": self.last_decision,
            "history": self.history,
            "version": self.version,
        }


@dataclass
class Decision:
    emits: list[Emit] = field(default_factory=list)
    state: OrderState | None = None


@dataclass
class Snapshot:
    """What the orchestrator knew when it handled a message: master data and a view of stock."""

    network: NetworkView
    availability: Availability = field(default_factory=dict)
    supply: Supply = field(default_factory=dict)
    rules: RuleSet = DEFAULT_RULES
    capacity_left: dict[str, int] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)  # the catalog's: exchanges of another SKU, known SKUs
    # the agent passes the handled message's time; the fixed default keeps pure tests deterministic
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC)


class OrderSaga:
    """Handles one message for one order."""

    def __init__(
        self,
        network: NetworkView,
        availability: Availability | None = None,
        *,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.snapshot = snapshot or Snapshot(network=network, availability=availability or {})

    def handle(self, state: OrderState | None, message: Message, message_id: str) -> Decision:
        if state is not None and state.applied.seen(message_id):
            return Decision(emits=state.applied.replay(message_id), state=state)
        if isinstance(message, OrderPlaced):
            if state is not None:  # the same order id placed again: the first stands
                return Decision(emits=_placed_again(state, message, message_id), state=state)
            state = OrderState(order_id=message.order_id, placed=message.model_dump(mode="json"),
                               rule_set=self.snapshot.rules.name, rule_set_version=self.snapshot.rules.version)
        if state is None:
            return Decision(emits=_unknown_order(message, message_id))
        if isinstance(message, NO_EFFECT_MESSAGES):
            return Decision(state=state)
        emits = _Step(state, self.snapshot, message_id).run(message)
        state.applied.record(message_id, emits)
        state.version += 1
        return Decision(emits=emits, state=state)


class _Step:
    """The handling of one message: mutates the state and collects emits."""

    def __init__(self, state: OrderState, snapshot: Snapshot, message_id: str) -> None:
        self.state = state
        self.snap = snapshot
        self.message_id = message_id
        self.emits: list[Emit] = []

    def run(self, message: Message) -> list[Emit]:
        handler = getattr(self, "_on_" + type(message).__name__, None)
        if handler is None:
            raise ValueError(f"the orchestrator does not handle {message.event_type}")
        handler(message)
        return self.emits

    # ------------------------------------------------------------------ plumbing

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
        state.history.append({"status": status, "reason": reason, "cause": self.message_id,
                              "at": self.snap.now.isoformat()})
        if status in TERMINAL_STATUSES:
            state.deadline = None
        self._publish_status(previous)

    def _publish_status(self, previous: OrderStatus | None) -> None:
        state = self.state
        changed = OrderStatusChanged(
            order_id=state.order_id,
            status=state.status,
            previous=previous,
            reason=state.reason,
            channel=state.order.channel,
            lines=state.line_statuses(),
            shipments=state.shipments,
            promised_date=state.promised_date,
            version=len(state.history),
        )
        self._emit(ORDERS_STATUS, state.order_id, changed, state.status, len(state.history))

    def _set_deadline(self, kind: DeadlineKind, seconds: float) -> None:
        self.state.deadline = Deadline(kind=kind, due=self.snap.now + timedelta(seconds=seconds))

    def _line(self, reservation_id: str) -> PlannedLine | None:
        return next((p for p in self.state.planned if p.reservation_id == reservation_id), None)

    # ------------------------------------------------------------------ intake

    def _on_OrderPlaced(self, placed: OrderPlaced) -> None:
        problem = self._invalid(placed)
        self._emit(ORDERS_EVENTS, placed.order_id, OrderAccepted(order_id=placed.order_id, channel=placed.channel))
        self._set_status("accepted")
        if problem:
            self._reject(problem)
            return
        self._plan_initial()

    def _invalid(self, placed: OrderPlaced) -> str | None:
        unknown = [line.sku for line in placed.lines if not self._known_sku(line.sku)]
        if unknown:
            return f"invalid: unknown SKU {', '.join(map(repr, unknown))} (no location stocks or expects it, " \
                   "not in the catalog)"
        delivery = placed.delivery
        if isinstance(delivery, PickupAt | ReserveAt):
            store = self.snap.network.get(delivery.location)
            if store is None:
                return f"invalid: unknown location {delivery.location!r} for {delivery.mode}"
            if delivery.mode not in store.capabilities:
                return f"invalid: {delivery.location} does not offer {delivery.mode}"
        if placed.store_id is not None and self.snap.network.get(placed.store_id) is None:
            return f"invalid: unknown store {placed.store_id!r}"
        return None

    def _known_sku(self, sku: str) -> bool:
        """A SKU some location holds a position of (even at zero, even only incoming supply), or the catalog's."""
        return bool(self.snap.availability.get(sku)) or bool(self.snap.supply.get(sku)) or sku in self.snap.prices

    def _reject(self, reason: str) -> None:
        state = self.state
        for p in state.live():
            self._release(p, "rejected")
        self._emit(ORDERS_EVENTS, state.order_id, OrderRejected(order_id=state.order_id, reason=reason))
        for i, line in enumerate(state.order.lines):
            state.cancelled[i] = line.qty - state.shipped.get(i, 0)
        self._set_status("rejected", reason)

    # ------------------------------------------------------------------ planning

    def _facts(self) -> OrderFacts:
        order = self.state.order
        return OrderFacts(
            channel=order.channel,
            delivery_mode=order.delivery.mode,
            customer_tier=order.customer_tier,
            order_value=sum(ln.qty * ln.unit_price for ln in order.lines),
            skus=[ln.sku for ln in order.lines],
        )

    def _rule(self) -> Rule:
        """The first rule whose conditions match decides; an order no rule matches gets the default rule."""
        return next(iter(applicable_rules(self.snap.rules, self._facts())), FALLBACK_RULE)

    def _plan_initial(self) -> None:
        """Plan the whole order (again): the first plan, or a re-plan after a refusal before allocation."""
        if self.state.attempt >= self.snap.rules.max_attempts:
            self._reject(f"could not reserve stock after {self.snap.rules.max_attempts} attempts")
            return
        self.state.attempt += 1
        if not self._plan_need(self.state.need(), initial=True):
            return
        self._set_deadline("reserve", self.snap.rules.reserve_deadline_s)

    def _plan_need(self, need: dict[int, int], initial: bool) -> bool:
        """Reserve what ``need`` asks for; False when the order was rejected or the need cancelled."""
        if not need:
            return True
        plan = self._best_plan(need)
        unsourced = dict(plan.unsourced)
        backorder = self._backorder_plan(unsourced) if unsourced else None
        if backorder is not None and not backorder.unsourced:
            plan.assignments += backorder.assignments
            plan.rule += " + backorder against supply"
            unsourced = {}
        self.state.last_decision = _explain(plan, self.snap, self.state)
        if unsourced:
            reason = _no_source_reason(self.state.order.lines, unsourced)
            if initial:
                self._reject(reason)
                return False
            self._cancel_units(unsourced, reason)
            if not plan.assignments and not self.state.live() and not self.state.shipments:
                self._reject(reason)  # nothing left to fulfil, nothing shipped: it would wait for ever
                return False
        self.state.ship_to_store = self.state.ship_to_store or plan.ship_to_store
        self._reserve(plan)
        return True

    def _best_plan(self, need: dict[int, int]) -> SourcingPlan:
        order = self.state.order
        return plan_order(order.lines, order.delivery, self.snap.network, self._capped_availability(),
                          set(self.state.excluded), rule=self._rule(), need=need, capacity_left=self.snap.capacity_left)

    def _capped_availability(self) -> Availability:
        """The snapshot, never above what the ledger itself said was available when it refused us."""
        capped = {sku: dict(by_loc) for sku, by_loc in self.snap.availability.items()}
        for key, cap in self.state.caps.items():
            sku, location = key.split("@", 1)
            by_loc = capped.setdefault(sku, {})
            by_loc[location] = min(by_loc.get(location, 0), cap)
        return capped

    def _backorder_plan(self, unsourced: dict[int, int]) -> SourcingPlan | None:
        order = self.state.order
        if self.snap.rules.fallback != "backorder" or isinstance(order.delivery, ReserveAt):
            return None
        return plan_backorder(order.lines, unsourced, order.delivery, self.snap.network, self.snap.supply,
                              set(self.state.excluded), self._rule())

    def _reserve(self, plan: SourcingPlan) -> None:
        state = self.state
        expires = None
        if isinstance(state.order.delivery, ReserveAt):
            expires = self.snap.now + timedelta(seconds=state.order.delivery.hold_s)
        for a in plan.assignments:
            rid = f"{state.order_id}/a{state.attempt}/{sum(p.attempt == state.attempt for p in state.planned)}"
            state.planned.append(PlannedLine(line_index=a.line_index, sku=a.sku, qty=a.qty, location=a.location,
                                             reservation_id=rid, attempt=state.attempt, backorder=a.backorder))
            reserve = ReserveStock(reservation_id=rid, order_id=state.order_id, sku=a.sku, location=a.location,
                                   qty=a.qty, backorder=a.backorder, expires_at=expires)
            self._emit(INVENTORY_COMMANDS, a.sku, reserve, rid)

    def _release(self, line: PlannedLine, reason: str) -> None:
        if line.status not in ("pending", "held"):
            return
        line.status = "released"
        release = ReleaseReservation(reservation_id=line.reservation_id, order_id=self.state.order_id,
                                     sku=line.sku, reason=reason)
        self._emit(INVENTORY_COMMANDS, line.sku, release, line.reservation_id)

    def _cancel_units(self, units: dict[int, int], reason: str) -> None:
        for i, qty in units.items():
            self.state.cancelled[i] = self.state.cancelled.get(i, 0) + qty
        self.state.history.append({"note": f"cancelled what could not be re-sourced: {reason}",
                                   "cause": self.message_id})

    # ------------------------------------------------------------------ reservations

    def _on_StockReserved(self, event: StockReserved) -> None:
        line = self._line(event.reservation_id)
        if line is None:
            return
        if line.status == "held" and line.against_supply is not None and event.against_supply:
            self._promise_moved(line, event)  # the ledger re-promised a backorder (short delivery, new ETA)
            return
        if line.status != "pending" or self.state.status in TERMINAL_STATUSES:
            self._release(line, "superseded")  # answered after the order moved on: give it back
            return
        line.status = "held"
        if event.against_supply:
            line.against_supply, line.eta = event.against_supply, event.eta.isoformat() if event.eta else None
        self._advance()

    def _promise_moved(self, line: PlannedLine, event: StockReserved) -> None:
        line.against_supply, line.eta = event.against_supply, event.eta.isoformat() if event.eta else None
        if self.state.status == "backordered":
            self._promise()
            self._publish_status(self.state.status)

    def _promise(self) -> None:
        etas = [datetime.fromisoformat(p.eta) for p in self.state.live() if p.waiting_on_supply and p.eta]
        self.state.promised_date = max(etas) + timedelta(days=TRANSIT_DAYS) if etas else None

    def _on_BackorderFilled(self, event: BackorderFilled) -> None:
        line = self._line(event.reservation_id)
        if line is None or line.status != "held":
            return
        line.against_supply = None
        self._advance()

    def _on_ReservationRefused(self, event: ReservationRefused) -> None:
        state = self.state
        line = self._line(event.reservation_id)
        if line is None or line.status != "pending" or state.status in TERMINAL_STATUSES:
            if line is not None and line.status == "pending":
                line.status = "refused"
            return
        line.status = "refused"
        # the ledger told us what it had: plan with that (not a blanket exclusion, which could hide stock)
        state.caps[f"{line.sku}@{line.location}"] = event.available
        if state.status == "accepted":
            for other in state.current():
                self._release(other, "re-sourcing")
            self._plan_initial()
        else:
            self._plan_need(state.need(), initial=False)
            self._advance()

    def _held_line_free_to_resource(self, reservation_id: str, reason: str) -> PlannedLine | None:
        """The held line the ledger just gave units back on, if the saga should re-source them now: not when
        the order is over, and not while a location is picking it (the pick then says what was there)."""
        line = self._line(reservation_id)
        if line is None or line.status != "held" or self.state.status in TERMINAL_STATUSES:
            return None
        if self._being_fulfilled(line):
            self._await_pick(line, reason)
            return None
        return line

    def _on_ReservationReleased(self, event: ReservationReleased) -> None:
        """The ledger gave up a hold on its own (stock lost in a count): re-source those units, unless a
        location is already picking them (then the pick says what was there)."""
        line = self._held_line_free_to_resource(event.reservation_id, event.reason)
        if line is None:
            return
        line.status = "released"
        self.state.excluded.append(f"{line.sku}@{line.location}")
        self._resource(f"stock lost at {line.location}")

    def _on_ReservationReduced(self, event: ReservationReduced) -> None:
        """The ledger shrank a hold (stock lost under it): re-source the units it gave back, unless a location
        is already picking the line (then the pick says what was there)."""
        line = self._held_line_free_to_resource(event.reservation_id, event.reason)
        if line is None:
            return
        line.short = max(line.short, line.qty - event.qty)  # absolute: a repeated reduction changes nothing
        self.state.excluded.append(f"{line.sku}@{line.location}")
        self._resource(f"{event.reason} at {line.location}")

    def _being_fulfilled(self, line: PlannedLine) -> bool:
        """A location holds a live request for the line: its pickers will take what they find and ship it."""
        return line.request_id is not None and self.state.requests.get(line.request_id) in ("sent", "accepted")

    def _await_pick(self, line: PlannedLine, reason: str) -> None:
        """Re-sourcing now would ship twice what the location still finds: its short pick, if any, re-sources
        exactly the units missing, and the ledger follows what really ships."""
        self.state.history.append({"note": f"{reason} at {line.location} while it fulfils {line.reservation_id}: "
                                           "waiting for its pick", "cause": self.message_id})

    def _on_ReservationExpired(self, event: ReservationExpired) -> None:
        line = self._line(event.reservation_id)
        if line is not None and line.status == "held":
            line.status = "expired"
        if self.state.status in ("reserved", "ready_for_pickup") and not self.state.live():
            self._expire("the hold lapsed")

    def _on_ReservationConsumed(self, event: ReservationConsumed) -> None:
        pass

    def _advance(self) -> None:
        """Every live line answered: wait on supply (backordered), or hand the held lines to the locations."""
        state = self.state
        live = state.live()
        if not live or any(p.status == "pending" for p in live):
            return
        if any(p.waiting_on_supply for p in live):
            self._promise()
            state.deadline = None
            self._set_status("backordered", "waiting for incoming supply")
            return
        self._dispatch([p for p in live if p.request_id is None])

    def _dispatch(self, lines: list[PlannedLine]) -> None:
        state = self.state
        if not lines:
            return
        first = state.status in ("accepted", "backordered")
        if first:
            self._emit(ORDERS_EVENTS, state.order_id, self._allocated(lines))
        by_location: dict[str, list[PlannedLine]] = defaultdict(list)
        for p in lines:
            by_location[p.location].append(p)
        for location, group in sorted(by_location.items()):
            state.request_seq += 1
            request_id = f"{state.order_id}/r{state.request_seq}/{location}"
            for p in group:
                p.request_id = request_id
            state.requests[request_id] = "sent"
            mode = "ship" if state.ship_to_store else state.order.delivery.mode
            request = FulfilOrder(request_id=request_id, order_id=state.order_id, location=location,
                                  lines=[FulfilmentLine(sku=p.sku, qty=p.effective, reservation_id=p.reservation_id)
                                         for p in group],
                                  delivery_mode=mode)
            self._emit(WMS_COMMANDS, state.order_id, request, request_id, location=location)
        if isinstance(state.order.delivery, ReserveAt):
            self._set_deadline("hold", state.order.delivery.hold_s)
            self._set_status("reserved")
        elif first:
            self._set_deadline("accept", self.snap.rules.accept_deadline_s)
            self._set_status("allocated")

    def _allocated(self, lines: list[PlannedLine]) -> OrderAllocated:
        state = self.state
        return OrderAllocated(
            order_id=state.order_id,
            allocations=[AllocatedLine(sku=p.sku, qty=p.effective, location=p.location,
                                       reservation_id=p.reservation_id) for p in lines],
            rule_set=state.rule_set,
            rule_set_version=state.rule_set_version,
            rule=state.last_decision.get("rule", "default"),
            candidates=state.last_decision.get("candidates", []),
            attempt=state.attempt,
        )

    # ------------------------------------------------------------------ fulfilment

    def _on_FulfilmentAccepted(self, event: FulfilmentAccepted) -> None:
        state = self.state
        if state.requests.get(event.request_id) == "sent":
            state.requests[event.request_id] = "accepted"
        if state.deadline and state.deadline.kind == "accept" and "sent" not in state.requests.values():
            state.deadline = None
        if state.status == "allocated":
            self._set_status("in_fulfilment")

    def _on_ItemsPicked(self, event: ItemsPicked) -> None:
        pass

    def _on_HandedOver(self, event: HandedOver) -> None:
        pass

    def _on_FulfilmentCancelled(self, event: FulfilmentCancelled) -> None:
        self.state.requests[event.request_id] = "cancelled"

    def _on_FulfilmentRejected(self, event: FulfilmentRejected) -> None:
        state = self.state
        if state.requests.get(event.request_id) not in ("sent", "accepted"):
            return
        state.requests[event.request_id] = "rejected"
        state.excluded.append(f"*@{event.location}")
        for p in state.live():
            if p.request_id == event.request_id:
                self._release(p, f"rejected by {event.location}")
        self._resource(f"{event.location} rejected the request: {event.reason}")

    def _on_ShortPicked(self, event: ShortPicked) -> None:
        for short in event.lines:
            line = self._line(short.reservation_id)
            if line is None:
                continue
            line.short = min(line.qty, line.short + short.missing)
            if line.effective == 0 and line.status == "held":
                line.status = "released"  # nothing found there: the ledger ends the hold on the short pick
            self.state.excluded.append(f"{line.sku}@{line.location}")
        self._resource(f"short pick at {event.location}")

    def _resource(self, why: str) -> None:
        """Find the units nothing accounts for any more at other locations."""
        state = self.state
        if state.status in TERMINAL_STATUSES:
            return
        state.history.append({"note": f"re-sourcing: {why}", "cause": self.message_id})
        if not state.need():
            return
        if not self._plan_need(state.need(), initial=state.status == "accepted"):
            return
        self._advance()
        self._settle_if_done()

    def _on_ParcelShipped(self, event: ParcelShipped) -> None:
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
        state.requests[event.request_id] = "shipped"
        lines = [ReturnLine(sku=s, qty=q) for s, q in sorted(shipped_lines.items())]
        state.shipments.append(ShipmentView(location=event.location, lines=lines, tracking=event.tracking,
                                            carrier=event.carrier, parcel_id=event.parcel.parcel_id))
        complete = all(ls.open == 0 for ls in state.line_statuses())
        self._emit(ORDERS_EVENTS, state.order_id, OrderShipped(order_id=state.order_id, location=event.location,
                   parcel_id=event.parcel.parcel_id, tracking=event.tracking, lines=lines, complete=complete))
        self._settle_if_done()

    def _settle_if_done(self) -> None:
        state = self.state
        overtaken = state.status in SHIPMENT_OVERTURNS
        if not state.shipments or (state.status in TERMINAL_STATUSES and not overtaken):
            return
        complete = all(ls.open == 0 for ls in state.line_statuses())
        if overtaken:
            self._cancel_overtaken_by_shipment()
        if state.ship_to_store:
            if complete:
                self._ready_for_pickup()
            return
        reason = f"a parcel had already left when the order was {state.status}" if overtaken else None
        self._set_status("shipped" if complete else "partially_shipped", reason)

    def _cancel_overtaken_by_shipment(self) -> None:
        """A parcel already on its way when the cancel (or the rejection) came left anyway: what shipped is
        shipped (``_uncancel_what_shipped``: the cancellation stands only for what did not ship)."""
        state = self.state
        why = f"cancel refused: a parcel had left before the order was {state.status}"
        state.history.append({"note": why, "cause": self.message_id})

    def _uncancel_what_shipped(self, line_index: int) -> None:
        """A parcel that left after a cancellation (the warehouse was already on it) is shipped, not cancelled."""
        ordered = self.state.order.lines[line_index].qty
        shipped = self.state.shipped[line_index]
        cancelled = self.state.cancelled.get(line_index, 0)
        self.state.cancelled[line_index] = max(0, min(cancelled, ordered - shipped))

    # ------------------------------------------------------------------ stores

    def _on_ReadyForPickup(self, event: ReadyForPickup) -> None:
        if isinstance(self.state.order.delivery, PickupAt) and self.state.status in ("allocated", "in_fulfilment"):
            self._ready_for_pickup()

    def _ready_for_pickup(self) -> None:
        self._set_deadline("pickup", self.snap.rules.pickup_window_s)
        self._set_status("ready_for_pickup")

    def _on_PickupCollected(self, event: PickupCollected) -> None:
        state = self.state
        if state.status not in ("ready_for_pickup", "reserved"):
            state.history.append({"note": f"collection ignored while {state.status}", "cause": self.message_id})
            return
        handed: dict[str, int] = defaultdict(int)
        for p in state.live():
            p.status = "consumed"
            state.shipped[p.line_index] = state.shipped.get(p.line_index, 0) + p.effective
            handed[p.sku] += p.effective
            consume = ConsumeReservation(reservation_id=p.reservation_id, order_id=state.order_id, sku=p.sku,
                                         qty=p.effective, shipment_id=f"handover:{state.order_id}")
            self._emit(INVENTORY_COMMANDS, p.sku, consume, p.reservation_id)
        location = state.order.delivery.location if isinstance(state.order.delivery, PickupAt | ReserveAt) else ""
        self._store_requests("collected", lambda request_id: HandOver(order_id=state.order_id, location=location,
                                                                        request_id=request_id))
        if handed:
            state.shipments.append(ShipmentView(location=location, tracking=f"handover:{state.order_id}",
                                                lines=[ReturnLine(sku=s, qty=q) for s, q in sorted(handed.items())],
                                                carrier="in-store", parcel_id=f"handover:{state.order_id}"))
        self._set_status("collected")

    def _store_requests(self, outcome: str, command: Any) -> None:
        """Tell the pickup store what became of its requests (handed over, or put back on the shelf)."""
        state = self.state
        store = state.order.delivery.location if isinstance(state.order.delivery, PickupAt | ReserveAt) else None
        requests = [rid for rid, status in state.requests.items()
                    if rid.rsplit("/", 1)[-1] == store and status in ("sent", "accepted")]
        for request_id in requests:  # none for ship-to-store: the store node never had a request for it
            state.requests[request_id] = outcome
            self._emit(WMS_COMMANDS, state.order_id, command(request_id), outcome, request_id, location=store)

    def _expire(self, reason: str) -> None:
        state = self.state
        self._store_requests("expired", lambda request_id: CancelFulfilment(
            request_id=request_id, order_id=state.order_id, location=request_id.rsplit("/", 1)[-1],
            reason="not collected"))
        for p in state.live():
            if p.status == "held" and isinstance(state.order.delivery, ReserveAt):
                p.status = "expired"
                expire = ExpireReservation(reservation_id=p.reservation_id, order_id=state.order_id, sku=p.sku)
                self._emit(INVENTORY_COMMANDS, p.sku, expire, p.reservation_id)
            else:
                self._release(p, "pickup window lapsed")
        for i, line in enumerate(state.order.lines):
            state.cancelled[i] = line.qty - state.shipped.get(i, 0)
        self._set_status("expired", reason)

    # ------------------------------------------------------------------ returns

    def _on_ReturnRequested(self, request: ReturnRequested) -> None:
        """Authorise (RMA) and route the return, or reject it with the reason; a known return id changes nothing."""
        state = self.state
        if self._return(request.return_id) is not None:
            return
        case = rma.ReturnCase(return_id=request.return_id, method=request.method, reason=request.reason,
                              lines=[ln.model_dump() for ln in request.lines],
                              exchange=[ln.model_dump() for ln in request.exchange])
        state.returns.append(case)
        decision = rma.authorize(request, self._return_facts(), self.snap.rules.returns, self.snap.network,
                                 self.snap.now, self.snap.prices)
        if isinstance(decision, str):
            case.status, case.rejection = "rejected", decision
            self._emit(ORDERS_STATUS, state.order_id, ReturnRejected(
                return_id=case.return_id, order_id=state.order_id, reason=decision, lines=request.lines),
                case.return_id)
            self._return_note(case, f"rejected: {decision}")
            return
        case.status, case.destination = "authorized", decision.destination
        case.label = decision.label.model_dump() if decision.label else None
        self._emit(ORDERS_STATUS, state.order_id, ReturnAuthorized(
            return_id=case.return_id, order_id=state.order_id, lines=request.lines, method=request.method,
            destination=decision.destination, reason=request.reason, label=decision.label,
            exchange=request.exchange), case.return_id)
        receive = ReceiveReturn(return_id=case.return_id, order_id=state.order_id, location=decision.destination,
                                lines=request.lines, method=request.method, expected_condition=request.condition)
        self._emit(WMS_COMMANDS, state.order_id, receive, case.return_id, location=decision.destination)
        self._return_note(case, f"authorized to {decision.destination} ({request.method})")

    def _on_ReturnReceived(self, event: ReturnReceived) -> None:
        """Refund what came back (or place the exchange); a return received before changes nothing."""
        state = self.state
        case = self._return(event.return_id)
        if case is None or case.status != "authorized":
            return
        others = [r for r in state.returns if r is not case]
        case.status = "received"
        case.received = [ln.model_dump() for ln in event.lines]
        case.disposition = rma.main_disposition(event.lines)
        self._return_note(case, f"received at {event.location}: " + ", ".join(
            f"{ln.sku} x{ln.qty} {ln.condition} -> {ln.disposition}" for ln in event.lines))
        replacement = rma.replacement_lines(case.exchange, sum(ln.qty for ln in event.lines))
        if replacement:
            self._place_exchange(case, replacement)
        inputs = rma.RefundInputs(
            order=state.order, shipped=self._shipped_by_sku(), received=event.lines,
            exchanged_units=sum(ln.qty for ln in replacement),
            units_back_before=sum(sum(r.received_units().values()) for r in others),
            refunded_before_cents=sum(round(r.refund.amount * 100) for r in others
                                      if r.refund and r.refund.status != "failed"))
        cents = rma.refund_cents(inputs, self.snap.rules.returns)
        if cents == 0:
            self._emit(ORDERS_STATUS, state.order_id, ReturnRefunded(
                return_id=case.return_id, order_id=state.order_id, currency=state.order.currency,
                exchange_order_id=case.exchange_order_id), case.return_id, "nothing owed")
            return
        case.refund = rma.RefundCase(refund_id=f"{state.order_id}/{case.return_id}/refund",
                                     idempotency_key=rma.refund_key(state.order_id, case.return_id),
                                     amount=rma.euros(cents), currency=state.order.currency)
        self._request_refund(case, case.refund)

    def _place_exchange(self, case: rma.ReturnCase, lines: list[ReturnLine]) -> None:
        replacement = rma.replacement_order(self.state.order, case.return_id, lines, self.snap.now)
        case.exchange_order_id = replacement.order_id
        self._emit(ORDERS_INBOUND, replacement.order_id, replacement, case.return_id)
        self._return_note(case, f"replacement order {replacement.order_id} placed")

    def _request_refund(self, case: rma.ReturnCase, refund: rma.RefundCase) -> None:
        request = RefundRequested(refund_id=refund.refund_id, idempotency_key=refund.idempotency_key,
                                  return_id=case.return_id, order_id=self.state.order_id, amount=refund.amount,
                                  currency=refund.currency, attempt=refund.attempts)
        self._emit(PAYMENTS_COMMANDS, self.state.order_id, request, refund.idempotency_key, refund.attempts)
        self._return_note(case, f"refund of {refund.amount:.2f} {refund.currency} requested "
                                f"(attempt {refund.attempts}, key {refund.idempotency_key})")

    def _on_RefundSucceeded(self, event: RefundSucceeded) -> None:
        case, refund = self._refund_of(event.return_id, event.idempotency_key)
        if case is None or refund is None or refund.status == "succeeded":
            return
        refund.status, refund.reason = "succeeded", None
        case.status = "refunded"
        self._emit(ORDERS_STATUS, self.state.order_id, ReturnRefunded(
            return_id=case.return_id, order_id=self.state.order_id, refund_id=refund.refund_id,
            amount=refund.amount, currency=refund.currency, exchange_order_id=case.exchange_order_id),
            case.return_id, "refunded")
        self._return_note(case, f"refunded {refund.amount:.2f} {refund.currency}")

    def _on_RefundFailed(self, event: RefundFailed) -> None:
        """Retry with the same key (a new key could pay twice), up to the policy's attempts."""
        case, refund = self._refund_of(event.return_id, event.idempotency_key)
        if case is None or refund is None or refund.status != "requested" or event.attempt != refund.attempts:
            return  # already answered, or the answer to an attempt retried since
        if refund.attempts >= self.snap.rules.returns.max_refund_attempts:
            refund.status, refund.reason = "failed", event.reason
            self._return_note(case, f"refund failed {refund.attempts} times: {event.reason}; left to customer service")
            return
        refund.attempts += 1
        refund.reason = event.reason
        delay = rma.retry_delay_s(self.snap.rules.returns, refund.attempts)
        if delay <= 0 or self.state.status not in TERMINAL_STATUSES or self.state.deadline is not None:
            self._request_refund(case, refund)  # the order's own deadline holds the one slot: retry at once
            return
        refund.retry_at = self.snap.now + timedelta(seconds=delay)
        self._set_deadline("refund", delay)
        self._return_note(case, f"refund failed ({event.reason}): retried in {delay:g} s with the same key")

    def _retry_due_refunds(self) -> None:
        """Send again, with their keys, the refunds whose retry is due; wait on for the next one."""
        waiting = [(case, case.refund) for case in self.state.returns
                   if case.refund is not None and case.refund.retry_at is not None]
        later = []
        for case, refund in waiting:
            assert refund.retry_at is not None
            if refund.retry_at <= self.snap.now:
                refund.retry_at = None
                self._request_refund(case, refund)
            else:
                later.append(refund.retry_at)
        if later:
            self._set_deadline("refund", (min(later) - self.snap.now).total_seconds())

    def _return(self, return_id: str) -> rma.ReturnCase | None:
        return next((r for r in self.state.returns if r.return_id == return_id), None)

    def _refund_of(self, return_id: str, key: str) -> tuple[rma.ReturnCase | None, rma.RefundCase | None]:
        case = self._return(return_id)
        refund = case.refund if case is not None else None
        if refund is None or refund.idempotency_key != key:
            return case, None
        return case, refund

    def _return_note(self, case: rma.ReturnCase, what: str) -> None:
        self.state.history.append({"note": f"return {case.return_id}: {what}", "return_id": case.return_id,
                                   "cause": self.message_id, "at": self.snap.now.isoformat()})

    def _shipped_by_sku(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for i, line in enumerate(self.state.order.lines):
            out[line.sku] += self.state.shipped.get(i, 0)
        return dict(out)

    def _return_facts(self) -> rma.ReturnFacts:
        state = self.state
        returning: dict[str, int] = defaultdict(int)
        for case in state.returns:
            for sku, qty in case.units_in_flight().items():
                returning[sku] += qty
        fulfilled = [h["at"] for h in state.history
                     if h.get("status") in ("shipped", "partially_shipped", "collected") and h.get("at")]
        return rma.ReturnFacts(shipped=self._shipped_by_sku(), returning=dict(returning),
                               fulfilled_at=datetime.fromisoformat(fulfilled[-1]) if fulfilled else None,
                               origin=rma.customer_origin(state.order, self.snap.network))

    # ------------------------------------------------------------------ deadlines

    def _on_OrderDeadlineReached(self, reached: OrderDeadlineReached) -> None:
        state = self.state
        deadline = state.deadline
        if deadline is None or deadline.kind != reached.kind or deadline.due != reached.due:
            return  # stale: the order moved on since this deadline was set
        state.deadline = None
        if reached.kind == "reserve" and state.status == "accepted":
            self._reserve_timed_out()
        elif reached.kind == "accept":
            self._acceptance_timed_out()
        elif reached.kind == "pickup" and state.status == "ready_for_pickup":
            self._expire("not collected within the pickup window")
        elif reached.kind == "hold" and state.status == "reserved":
            self._expire("the hold lapsed")
        elif reached.kind == "refund":
            self._retry_due_refunds()

    def _reserve_timed_out(self) -> None:
        for p in self.state.current():
            self._release(p, "reservation timed out")
        self.state.history.append({"note": "reservation step timed out: re-planning", "cause": self.message_id})
        self._plan_initial()

    def _acceptance_timed_out(self) -> None:
        state = self.state
        late = [rid for rid, status in state.requests.items() if status == "sent"]
        for request_id in late:
            location = request_id.rsplit("/", 1)[-1]
            state.requests[request_id] = "cancelled"
            state.excluded.append(f"*@{location}")
            self._emit(WMS_COMMANDS, state.order_id, CancelFulfilment(request_id=request_id, order_id=state.order_id,
                       location=location, reason="not accepted in time"), request_id, location=location)
            for p in state.live():
                if p.request_id == request_id:
                    self._release(p, f"{location} did not accept in time")
        if late:
            self._resource("a location did not accept in time")

    # ------------------------------------------------------------------ cancellation

    def _on_OrderCancelRequested(self, request: OrderCancelRequested) -> None:
        state = self.state
        if state.status in TERMINAL_STATUSES or state.shipments:
            why = f"cancel refused: the order is {state.status}" if state.status in TERMINAL_STATUSES else (
                "cancel refused: part of the order already shipped")
            self._emit(ORDERS_EVENTS, state.order_id, CancelRefused(order_id=state.order_id, reason=why))
            state.history.append({"note": why, "cause": self.message_id})
            return
        for planned in state.live():
            self._release(planned, "cancelled")
        for request_id, status in state.requests.items():
            if status in ("sent", "accepted"):
                location = request_id.rsplit("/", 1)[-1]
                state.requests[request_id] = "cancelled"
                withdraw = CancelFulfilment(request_id=request_id, order_id=state.order_id, location=location,
                                            reason=request.reason)
                self._emit(WMS_COMMANDS, state.order_id, withdraw, request_id, location=location)
        for i, line in enumerate(state.order.lines):
            state.cancelled[i] = line.qty - state.shipped.get(i, 0)
        self._emit(ORDERS_EVENTS, state.order_id, OrderCancelled(order_id=state.order_id, reason=request.reason))
        self._set_status("cancelled", request.reason)


# Statuses a parcel that left anyway overturns: the shipment wins (a parcel cannot be called back).
SHIPMENT_OVERTURNS = frozenset({"cancelled", "rejected"})


def _placed_again(state: OrderState, placed: OrderPlaced, message_id: str) -> list[Emit]:
    """An order id placed again: the same order (a producer's retry) changes nothing; another order under a taken
    id is refused in public, and the first stands whatever its status."""
    first = state.order
    if placed == first:
        return []
    differ = [name for name in OrderPlaced.model_fields if getattr(placed, name) != getattr(first, name)]
    refused = OrderPlacementRefused(
        order_id=placed.order_id, refused_event_id=message_id,
        reason=f"order id {placed.order_id!r} already placed with other content ({', '.join(differ)} differ); "
               f"the first order stands ({state.status})")
    return [Emit.to(ORDERS_STATUS, placed.order_id, refused, derived_id(message_id, refused.event_type))]


def _unknown_order(message: Message, message_id: str) -> list[Emit]:
    """A return or a cancel of an order the OMS never took is refused with the reason; anything else about it
    (a late event of a purged order, a pickup) is ignored."""
    if isinstance(message, OrderCancelRequested):
        refused = CancelRefused(order_id=message.order_id, reason="cancel refused: unknown order")
        return [Emit.to(ORDERS_EVENTS, message.order_id, refused, derived_id(message_id, refused.event_type))]
    if not isinstance(message, ReturnRequested):
        return []
    rejected = ReturnRejected(return_id=message.return_id, order_id=message.order_id, reason="unknown order",
                              lines=message.lines)
    return [Emit.to(ORDERS_STATUS, message.order_id, rejected,
                    derived_id(message_id, rejected.event_type, message.return_id))]


def _explain(plan: SourcingPlan, snapshot: Snapshot, state: OrderState) -> dict[str, Any]:
    return {
        "rule_set": snapshot.rules.name,
        "rule_set_version": snapshot.rules.version,
        "rule": plan.rule,
        "network_version": snapshot.network.version,
        "attempt": state.attempt,
        "excluded": sorted(set(state.excluded)),
        "candidates": [c.model_dump() for c in plan.candidates],
        "assignments": [vars(a) for a in plan.assignments],
    }


def _no_source_reason(lines: list[OrderLine], unsourced: dict[int, int]) -> str:
    missing = ", ".join(f"{lines[i].sku} x{q}" for i, q in sorted(unsourced.items()))
    return f"no source and no supply for {missing or 'the order'}"
