"""``baton replay decision ORDER_ID``: the order's sourcing decisions re-made offline, and compared.

The order's inputs (placed, the ledger's answers, the locations' reports, its deadlines) are handed again, in
their recorded order, to the orchestrator's pure saga (``services.orchestrator.domain.order``), each with the
snapshot the orchestrator had: the network and the rule set in force at that moment, and, for a message it
planned on, the availability its stock view held. Each decision the replay makes (reservations asked and
released, allocation with its rule, rejection, requests to the locations) is set beside the one recorded as
caused by the same message.

The stock view follows ``inventory.availability.v1`` a moment behind the ledger, so "the availability as of that
offset" is the positions published by the time the decision was written; when that replay disagrees, the
positions published in the few seconds before are tried too (from the newest), and the one that reproduces the
decision is reported with how far behind it was. A decision no such view reproduces is reported as disagreeing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from baton.audit.checks import in_time_order
from baton.audit.history import History
from baton.audit.log import LogRecord
from schemas.base import Message
from schemas.orders import OrderDeadlineReached
from schemas.registry import model_for
from services.orchestrator.domain.order import PLANNING_MESSAGES, Deadline, OrderSaga, OrderState, Snapshot

INPUT_TOPICS = ("orders.inbound.v1", "inventory.reservations.v1", "wms.events.v1", "orders.timers.v1")
DECISION_TOPICS = ("inventory.commands.v1", "orders.events.v1")
REPLAY_TOPICS = (*INPUT_TOPICS, *DECISION_TOPICS, "network.v1", "rules.v1", "inventory.availability.v1",
                 "wms.{location}.commands.v1")
LOOKBACK_MS = 5_000  # how far behind the ledger the stock view may have been


def decision_view(type_: str, data: dict[str, Any]) -> tuple[Any, ...] | None:
    """What a decision is, without what depends on the moment (deadlines, expiry times, candidate scores)."""
    if type_ == "inventory.reserve_stock.v1":
        return (type_, data["reservation_id"], data["sku"], data["location"], data["qty"], bool(data.get("backorder")))
    if type_ == "inventory.release_reservation.v1":
        return (type_, data["reservation_id"])
    if type_ == "order.allocated.v1":
        lines = tuple(sorted((a["sku"], a["qty"], a["location"], a["reservation_id"]) for a in data["allocations"]))
        return (type_, lines, data.get("rule_set"), data.get("rule_set_version"), data.get("rule"))
    if type_ in ("order.rejected.v1", "order.cancelled.v1"):
        return (type_, data.get("reason"))
    if type_ == "wms.fulfil_order.v1":
        requested = tuple(sorted((ln["sku"], ln["qty"], ln["reservation_id"]) for ln in data["lines"]))
        return (type_, data["request_id"], data["location"], requested, data.get("delivery_mode"))
    return None


def describe(view: tuple[Any, ...]) -> str:
    kind = view[0]
    if kind == "inventory.reserve_stock.v1":
        return f"reserve {view[2]} x{view[4]} @ {view[3]}" + (" (backorder)" if view[5] else "")
    if kind == "inventory.release_reservation.v1":
        return f"release {view[1]}"
    if kind == "order.allocated.v1":
        lines = ", ".join(f"{sku} x{qty} @ {loc}" for sku, qty, loc, _ in view[1])
        return f"allocated {lines} by {view[2]} v{view[3]}, rule {view[4]!r}"
    if kind == "wms.fulfil_order.v1":
        return f"request {view[2]}: " + ", ".join(f"{sku} x{qty}" for sku, qty, _ in view[3])
    return f"{kind.split('.')[1]}: {view[1]}"


@dataclass
class Step:
    """One message the order's saga handled, with the decisions recorded and replayed for it."""

    input: LogRecord
    recorded: list[tuple[Any, ...]]
    replayed: list[tuple[Any, ...]]
    planned: bool = False
    rule_set: str = ""
    rule_set_version: int | None = None
    network_version: int = 0
    availability: dict[str, dict[str, int]] = field(default_factory=dict)
    view_behind_ms: int | None = None
    view_at_ms: int | None = None  # the availability published by then is what the replay planned with

    @property
    def agree(self) -> bool:
        return sorted(self.recorded) == sorted(self.replayed)

    def as_json(self) -> dict[str, Any]:
        return {
            "input": {"type": self.input.type, "id": self.input.id, "where": self.input.where,
                      "time": self.input.time.isoformat()},
            "planned": self.planned, "rule_set": self.rule_set, "rule_set_version": self.rule_set_version,
            "network_version": self.network_version, "availability": self.availability,
            "view_behind_ms": self.view_behind_ms, "view_at": _iso_ms(self.view_at_ms), "agree": self.agree,
            "recorded": [describe(v) for v in sorted(self.recorded)],
            "replayed": [describe(v) for v in sorted(self.replayed)],
        }


@dataclass
class OrderReplay:
    order_id: str
    steps: list[Step]

    @property
    def found(self) -> bool:
        return bool(self.steps)

    @property
    def agree(self) -> bool:
        return all(step.agree for step in self.steps)

    @property
    def decisions(self) -> list[Step]:
        return [s for s in self.steps if s.recorded or s.replayed]

    def as_json(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "agree": self.agree, "decisions": [s.as_json() for s in self.decisions]}


class DecisionReplayer:
    """Replays orders' decisions from one read of the log."""

    def __init__(self, records: Sequence[LogRecord]) -> None:
        self.history = History(records)
        self.inputs: dict[str, list[LogRecord]] = {}
        self.caused: dict[str, list[LogRecord]] = {}
        for record in in_time_order(records):
            if record.topic in INPUT_TOPICS and "order_id" in record.data:
                self.inputs.setdefault(str(record.data["order_id"]), []).append(record)
            cause = record.doc.get("causationid") if record.doc else None
            if cause and decision_view(record.type, record.data) is not None:
                self.caused.setdefault(str(cause), []).append(record)

    def order_ids(self) -> list[str]:
        return sorted(oid for oid, inputs in self.inputs.items() if any(r.type == "order.placed.v1" for r in inputs))

    def replay(self, order_id: str) -> OrderReplay:
        state: OrderState | None = None
        steps = []
        for record in _deduplicated(self.inputs.get(order_id, [])):
            model = model_for(record.type)
            if model is None:
                continue
            message = model.model_validate(record.data)
            state, step = self._step(state, record, message)
            steps.append(step)
        return OrderReplay(order_id, steps)

    def _step(self, state: OrderState | None, record: LogRecord, message: Message) -> tuple[OrderState | None, Step]:
        outputs = self.caused.get(record.id, [])
        recorded = [v for v in (decision_view(r.type, r.data) for r in outputs) if v is not None]
        written_ms = min((r.timestamp_ms for r in outputs), default=record.timestamp_ms)
        if isinstance(message, OrderDeadlineReached) and state is not None:
            if not outputs:  # the orchestrator found it stale: nothing came of it
                return state, Step(record, recorded, [])
            state.deadline = Deadline(kind=message.kind, due=message.due)  # the deadline as the orchestrator set it
        planned = isinstance(message, PLANNING_MESSAGES)
        cutoffs = [written_ms]
        if planned:
            skus = _skus(state, message)
            earlier = self.history.availability_times(skus, written_ms - LOOKBACK_MS, written_ms - 1)
            cutoffs += sorted(earlier, reverse=True)
        first: tuple[OrderState | None, Step] | None = None
        for cutoff in cutoffs:
            trial = state.model_copy(deep=True) if state is not None else None
            outcome = self._try(trial, record, message, recorded, cutoff, written_ms, planned)
            if outcome[1].agree:
                return outcome
            first = first or outcome
        assert first is not None
        return first

    def _try(self, state: OrderState | None, record: LogRecord, message: Message, recorded: list[tuple[Any, ...]],
             cutoff_ms: int, written_ms: int, planned: bool) -> tuple[OrderState | None, Step]:
        network = self.history.network_as_of(written_ms)
        rules = self.history.rules_as_of(written_ms)
        snapshot = Snapshot(network=network, rules=rules.rules, now=record.time)
        step = Step(record, recorded, [], planned, rules.rules.name,
                    rules.rules.version if rules.published_ms is not None else None, network.version)
        if planned:
            skus = _skus(state, message)
            snapshot.availability, snapshot.supply = self.history.stock_as_of(skus, cutoff_ms)
            snapshot.capacity_left = self.history.capacity_left(network, cutoff_ms)
            step.availability = snapshot.availability
            step.view_behind_ms = written_ms - cutoff_ms
            step.view_at_ms = cutoff_ms
        decision = OrderSaga(network, snapshot=snapshot).handle(state, message, record.id)
        step.replayed = [v for v in (decision_view(e.message.event_type, e.message.model_dump(mode="json"))
                                     for e in decision.emits) if v is not None]
        return decision.state, step


def _iso_ms(at_ms: int | None) -> str | None:
    return None if at_ms is None else datetime.fromtimestamp(at_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _skus(state: OrderState | None, message: Message) -> set[str]:
    lines = getattr(message, "lines", None) if state is None else state.order.lines
    return {str(getattr(line, "sku", "")) for line in lines or []}


def _deduplicated(records: list[LogRecord]) -> list[LogRecord]:
    """Each input once (a message delivered twice is applied once by the saga)."""
    seen: set[str] = set()
    out = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            out.append(record)
    return out
