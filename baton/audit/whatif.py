"""``baton whatif --rules FILE``: the recorded orders of a period sourced again, offline, under another rule set.

Nothing is written to any topic. Every order placed in the period is handed, in the order it was placed, to the
orchestrator's pure saga (its first plan: the rule that matches, the split policy, the fallback to backorder
or rejection) with the network in force when it was placed and the stock as the orchestrator's view held it
then, corrected by what this replay itself reserved differently so far (units one run took at a location are
not there for the next order; units it left are). That is done twice, under the same procedure: with the rule
sets that were in force (the baseline, checked against what was recorded), and with the rule set of FILE.
The difference between the two is the effect of the rules alone; the same rule set gives zero difference.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from baton.audit.checks import in_time_order
from baton.audit.decisions import LOOKBACK_MS
from baton.audit.history import History
from baton.audit.log import LogRecord
from schemas.orders import OrderPlaced, PickupAt, ReserveAt, ShipTo
from services.orchestrator.domain.network import NetworkView, distance_km, shipping_cost
from services.orchestrator.domain.order import OrderSaga, Snapshot
from services.orchestrator.domain.rules import RuleSet

WHATIF_TOPICS = ("orders.inbound.v1", "orders.events.v1", "inventory.commands.v1", "inventory.reservations.v1",
                 "network.v1", "rules.v1", "inventory.availability.v1", "wms.{location}.commands.v1")
Position = tuple[str, str]  # (sku, location)
METRICS = ("orders", "split_orders", "shipments", "units", "cost", "distance_km", "backordered", "rejected")


@dataclass(frozen=True)
class Sourcing:
    """One order's first plan: (sku, qty, location, backorder) per reservation, or the rejection."""

    assignments: tuple[tuple[str, int, str, bool], ...] = ()
    rejected: str | None = None

    @property
    def locations(self) -> list[str]:
        return sorted({loc for _, _, loc, _ in self.assignments})


@dataclass
class Outcome:
    """A run's figures over the orders of the period."""

    sourcing: dict[str, Sourcing] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 0.0))
    shipments_per_location: Counter[str] = field(default_factory=Counter)

    def add(self, order_id: str, sourcing: Sourcing, placed: OrderPlaced, network: NetworkView) -> None:
        self.sourcing[order_id] = sourcing
        m = self.metrics
        m["orders"] += 1
        if sourcing.rejected is not None:
            m["rejected"] += 1
            return
        m["backordered"] += any(backorder for *_, backorder in sourcing.assignments)
        m["split_orders"] += len(sourcing.locations) > 1
        units: dict[str, int] = defaultdict(int)
        for _, qty, location, _ in sourcing.assignments:
            units[location] += qty
        for location, qty in units.items():
            km = _distance(network, location, placed)
            handling = network.locations[location].handling_cost if location in network.locations else 0.0
            m["shipments"] += 1
            m["units"] += qty
            m["distance_km"] += km
            m["cost"] += handling * qty + shipping_cost(km)
            self.shipments_per_location[location] += 1

    def as_json(self) -> dict[str, Any]:
        return {"metrics": {k: round(v, 2) for k, v in self.metrics.items()},
                "shipments_per_location": dict(sorted(self.shipments_per_location.items()))}


@dataclass
class WhatIf:
    recorded: Outcome
    baseline: Outcome
    candidate: Outcome
    candidate_rules: RuleSet

    @property
    def baseline_agrees(self) -> int:
        return sum(1 for oid, s in self.baseline.sourcing.items() if self.recorded.sourcing.get(oid) == s)

    def differences(self) -> dict[str, float]:
        return {k: round(self.candidate.metrics[k] - self.baseline.metrics[k], 2) for k in METRICS}

    def location_differences(self) -> dict[str, int]:
        locations = set(self.baseline.shipments_per_location) | set(self.candidate.shipments_per_location)
        return {loc: self.candidate.shipments_per_location[loc] - self.baseline.shipments_per_location[loc]
                for loc in sorted(locations)}

    def changed_orders(self) -> list[tuple[str, Sourcing, Sourcing]]:
        return [(oid, s, self.candidate.sourcing[oid]) for oid, s in self.baseline.sourcing.items()
                if self.candidate.sourcing.get(oid) != s]

    @property
    def zero_difference(self) -> bool:
        return not self.changed_orders() and not any(self.differences().values())

    def as_json(self) -> dict[str, Any]:
        return {
            "rules": {"name": self.candidate_rules.name, "version": self.candidate_rules.version},
            "orders": int(self.baseline.metrics["orders"]),
            "baseline_agrees_with_recorded": self.baseline_agrees,
            "recorded": self.recorded.as_json(), "baseline": self.baseline.as_json(),
            "candidate": self.candidate.as_json(), "differences": self.differences(),
            "shipments_per_location_differences": self.location_differences(),
            "zero_difference": self.zero_difference,
            "changed_orders": [{"order_id": oid, "baseline": describe(b), "candidate": describe(c)}
                               for oid, b, c in self.changed_orders()],
        }


def what_if(records: Sequence[LogRecord], rules: RuleSet, start_ms: int | None = None,
            end_ms: int | None = None) -> WhatIf:
    history = History(records)
    placed = _placed_orders(records, start_ms, end_ms)
    recorded, planned_ms = _recorded(records, placed, history)
    baseline = _replay(placed, planned_ms, history, recorded, None)  # settles each order's view moment
    candidate = _replay(placed, planned_ms, history, recorded, rules)
    return WhatIf(recorded, baseline, candidate, rules)


def _placed_orders(records: Sequence[LogRecord], start_ms: int | None, end_ms: int | None) -> list[LogRecord]:
    seen: set[str] = set()
    out = []
    for record in in_time_order(records):
        if record.type != "order.placed.v1" or record.data.get("order_id") in seen:
            continue
        if (start_ms is not None and record.timestamp_ms < start_ms) or (end_ms is not None
                                                                         and record.timestamp_ms > end_ms):
            continue
        seen.add(str(record.data.get("order_id")))
        out.append(record)
    return out


def _recorded(records: Sequence[LogRecord], placed: list[LogRecord],
              history: History) -> tuple[Outcome, dict[str, int]]:
    """What the orchestrator decided first for each order (the reservations its placement asked, or the
    rejection), and when it wrote that decision (its stock view as of then is what it planned with)."""
    by_cause: dict[str, list[LogRecord]] = defaultdict(list)
    for record in records:
        cause = record.doc.get("causationid") if record.doc else None
        if cause and record.type in ("inventory.reserve_stock.v1", "order.rejected.v1"):
            by_cause[str(cause)].append(record)
    outcome = Outcome()
    planned_ms: dict[str, int] = {}
    for record in placed:
        message = OrderPlaced.model_validate(record.data)
        caused = by_cause.get(record.id, [])
        planned_ms[message.order_id] = min((r.timestamp_ms for r in caused), default=record.timestamp_ms)
        rejected = next((str(r.data.get("reason")) for r in caused if r.type == "order.rejected.v1"), None)
        assignments = tuple(sorted((str(r.data["sku"]), int(r.data["qty"]), str(r.data["location"]),
                                    bool(r.data.get("backorder"))) for r in caused if r.type != "order.rejected.v1"))
        outcome.add(message.order_id, Sourcing(assignments, rejected), message,
                    history.network_as_of(planned_ms[message.order_id]))
    return outcome, planned_ms


def _replay(placed: list[LogRecord], planned_ms: dict[str, int], history: History, recorded: Outcome,
            rules: RuleSet | None) -> Outcome:
    """Each order's first plan under ``rules`` (None: the rule set in force then), on the recorded stock
    corrected by what this run reserved differently so far.

    The stock view is the one the orchestrator had when it wrote the recorded decision; it trails the ledger,
    so for the baseline the positions published in the few seconds before are tried too (newest first) and the
    view that reproduces the recorded decision is kept, for the candidate as well (``planned_ms`` updated)."""
    outcome = Outcome()
    drift: dict[Position, int] = defaultdict(int)  # units this run left (+) or took (-) beyond the recorded run
    for record in placed:
        message = OrderPlaced.model_validate(record.data)
        order_id = message.order_id
        skus = {ln.sku for ln in message.lines}
        moments = [planned_ms[order_id]]
        if rules is None:
            moments += sorted(history.availability_times(skus, moments[0] - LOOKBACK_MS, moments[0] - 1), reverse=True)
        tried = [(at_ms, _plan(message, record, history, drift, rules, at_ms)) for at_ms in moments]
        at_ms, (sourcing, network) = next(((at, plan) for at, plan in tried
                                           if plan[0] == recorded.sourcing[order_id]), tried[0])
        planned_ms[order_id] = at_ms
        outcome.add(order_id, sourcing, message, network)
        for sku, qty, location, backorder in recorded.sourcing[order_id].assignments:
            if not backorder:
                drift[(sku, location)] += qty
        for sku, qty, location, backorder in sourcing.assignments:
            if not backorder:
                drift[(sku, location)] -= qty
    return outcome


def _plan(message: OrderPlaced, record: LogRecord, history: History, drift: dict[Position, int],
          rules: RuleSet | None, at_ms: int) -> tuple[Sourcing, NetworkView]:
    network = history.network_as_of(at_ms)
    availability, supply = history.stock_as_of({ln.sku for ln in message.lines}, at_ms)
    for (sku, location), units in drift.items():
        if sku in availability:
            availability[sku][location] = availability[sku].get(location, 0) + units
    snapshot = Snapshot(network=network, availability=availability, supply=supply,
                        rules=rules or history.rules_as_of(at_ms).rules, now=record.time,
                        capacity_left=history.capacity_left(network, at_ms))
    decision = OrderSaga(network, snapshot=snapshot).handle(None, message, record.id)
    return _sourcing(decision.emits), network


def _sourcing(emits: Sequence[Any]) -> Sourcing:
    rejected = next((str(e.message.reason) for e in emits if e.message.event_type == "order.rejected.v1"), None)
    assignments = tuple(sorted((e.message.sku, e.message.qty, e.message.location, e.message.backorder)
                               for e in emits if e.message.event_type == "inventory.reserve_stock.v1"))
    return Sourcing(assignments, rejected)


def _distance(network: NetworkView, location: str, placed: OrderPlaced) -> float:
    source = network.get(location)
    delivery = placed.delivery
    if source is None:
        return 0.0
    if isinstance(delivery, ShipTo):
        return distance_km(source.lat, source.lon, delivery.lat, delivery.lon)
    if isinstance(delivery, PickupAt | ReserveAt):
        target = network.get(delivery.location)
        return distance_km(source.lat, source.lon, target.lat, target.lon) if target else 0.0
    return 0.0


def describe(sourcing: Sourcing) -> str:
    if sourcing.rejected is not None:
        return f"rejected: {sourcing.rejected}"
    return ", ".join(f"{sku} x{qty} @ {loc}" + (" (backorder)" if bo else "") for sku, qty, loc, bo in
                     sourcing.assignments)
