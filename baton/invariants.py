"""The brief's invariants: their one definition, shared by the scenario runner, the bench and the audits.

The checks are pure functions over plain data (``Facts``: the orders' views, the final stock positions, the
reservation events and the ledger's stock movements); ``check_invariants_from_topics`` gathers those facts
from a namespace's topics and its Redis read model. Every check says whether it held and, when broken,
which orders or ``SKU@location`` positions broke it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.base import Message
from schemas.inventory import (
    AvailabilityChanged,
    BackorderFilled,
    ReservationConsumed,
    ReservationExpired,
    ReservationReduced,
    ReservationRefused,
    ReservationReleased,
    StockMoved,
    StockReserved,
)
from schemas.orders import TERMINAL_STATUSES, OrderCancelled, OrderPlaced, OrderShipped
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from schemas.topics import (
    INVENTORY_AVAILABILITY,
    INVENTORY_MOVEMENTS,
    INVENTORY_RESERVATIONS,
    ORDERS_INBOUND,
    PAYMENTS_COMMANDS,
    PAYMENTS_EVENTS,
)
from services.runtime.readmodel import ReadModel
from services.runtime.replay import read_topic
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

if TYPE_CHECKING:
    from baton.scenario.model import Scenario

SETTLED_STATUSES = TERMINAL_STATUSES
# waiting on something outside the run (supply that never lands, a customer who never comes)
WAITING_STATUSES = frozenset({"backordered", "ready_for_pickup", "reserved"})

StockKey = tuple[str, str]  # (location, sku)
Orders = Mapping[str, Mapping[str, Any]]  # order id -> view: status, lines, shipments
Stock = Mapping[str, Mapping[str, Mapping[str, int]]]  # location -> sku -> on_hand, reserved, safety_stock...
RESERVATION_EVENTS: tuple[type[Message], ...] = (
    StockReserved, BackorderFilled, ReservationConsumed, ReservationReleased, ReservationExpired, ReservationRefused,
    ReservationReduced,
)


@dataclass(frozen=True)
class Expected:
    """What a run was meant to contain: its orders, and the stock loaded at its start.

    ``initial_stock`` None: the stock was loaded by movements recorded on the ledger like any other.
    Movements caused by ``initial_cause_prefix`` are the initial load, already counted in ``initial_stock``.
    """

    order_ids: tuple[str, ...]
    skus: tuple[str, ...] = ()
    initial_stock: Mapping[StockKey, int] | None = None
    initial_cause_prefix: str | None = None
    settled_statuses: frozenset[str] = SETTLED_STATUSES | WAITING_STATUSES

    @classmethod
    def from_scenario(cls, scenario: Scenario, namespace: str) -> Expected:
        from baton.scenario.generate import generated_orders
        from baton.scenario.model import OrderPlacedStep

        placed = [s for s in [*scenario.events, *generated_orders(scenario)] if isinstance(s, OrderPlacedStep)]
        initial: dict[StockKey, int] = defaultdict(int)
        for row in scenario.stock:
            initial[(row.location, row.sku)] += row.qty
        return cls(
            order_ids=tuple(dict.fromkeys(s.order.order_id for s in placed)),
            skus=tuple(sorted({s.sku for s in scenario.skus})),
            initial_stock=dict(initial),
            initial_cause_prefix=initial_count_prefix(namespace),
        )


def initial_count_prefix(namespace: str) -> str:
    """The ``count_id`` prefix of the counts that load a run's starting stock."""
    return f"{namespace}:initial:"


@dataclass(frozen=True)
class Facts:
    """What a run produced. ``None`` events: not known (the checks that need them are not run)."""

    orders: Orders
    stock: Stock
    reservation_events: Sequence[Message] | None = None
    movements: Sequence[StockMoved] | None = None
    order_events: Sequence[Message] | None = None  # ``orders.events``, each order's in its log order
    paid: Mapping[str, float] | None = None  # order id -> what its customer paid (lines and shipping)
    refund_requests: Sequence[RefundRequested] | None = None  # ``payments.commands``, in log order
    refund_answers: Sequence[RefundSucceeded | RefundFailed] | None = None  # ``payments.events``, in log order


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    culprits: tuple[str, ...] = ()  # order ids, or SKU@location
    violations: tuple[str, ...] = ()

    @property
    def held(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "held": self.held, "culprits": list(self.culprits),
                "violations": list(self.violations)}


@dataclass(frozen=True)
class InvariantReport:
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.held for c in self.checks)

    @property
    def violations(self) -> list[str]:
        return [v for c in self.checks for v in c.violations]

    def summary(self) -> dict[str, Any]:
        """The scenario result's ``invariants``: ``{"ok", "violations"}``."""
        return {"ok": self.ok, "violations": self.violations}

    def as_json(self) -> dict[str, Any]:
        return {**self.summary(), "checks": [c.as_json() for c in self.checks]}


def check_invariants(facts: Facts, expected: Expected | None = None) -> InvariantReport:
    expected = expected or Expected(order_ids=tuple(facts.orders))
    checks: list[Callable[[Facts, Expected], Check]] = [
        every_order_settled, no_oversell, no_line_overshipped, lines_accounted, reserved_equals_open_holds,
        reservations_ended, reservations_end_once, shipped_once, no_double_effect, stock_conserved,
        cancel_after_shipment_refused, shipped_never_cancelled, refunds_within_what_was_paid, one_key_per_refund,
    ]
    return InvariantReport(tuple(check(facts, expected) for check in checks))


# The invariants that hold after every commit, not only once the network is quiet (a shipment whose stock has not
# moved yet, or an order still in progress, is not a violation mid-run).
SAFETY_CHECKS: tuple[Callable[[Facts, Expected], Check], ...] = ()  # filled below, once the checks are defined


def check_safety(facts: Facts, expected: Expected | None = None) -> InvariantReport:
    """The invariants that must hold at every moment (the simulator checks them after each commit)."""
    expected = expected or Expected(order_ids=tuple(facts.orders))
    return InvariantReport(tuple(check(facts, expected) for check in SAFETY_CHECKS))


def _check(name: str, title: str, broken: Iterable[tuple[str, str]]) -> Check:
    pairs = list(broken)
    return Check(name, title, tuple(dict.fromkeys(c for c, _ in pairs)), tuple(v for _, v in pairs))


def _positions(stock: Stock) -> Iterable[tuple[str, str, Mapping[str, int]]]:
    for location, skus in sorted(stock.items()):
        for sku, position in sorted(skus.items()):
            yield location, sku, position


# ---------------------------------------------------------------- orders


def every_order_settled(facts: Facts, expected: Expected) -> Check:
    """Settled, or waiting on something outside the run: a partly shipped order with units held against incoming
    supply waits for it as a backordered one does (its other held lines ship with the backorder)."""
    on_supply = units_waiting_on_supply(facts.reservation_events or ())
    stuck = [
        (order_id, f"settled: {order_id} is still {order.get('status', 'unknown')}")
        for order_id, order in sorted(facts.orders.items())
        if order.get("status") not in expected.settled_statuses and not (
            order.get("status") == "partially_shipped" and on_supply.get(order_id, 0) > 0)
    ]
    return _check("settled", "every order reached a settled status", stuck)


def cancel_after_shipment_refused(facts: Facts, expected: Expected) -> Check:
    """Once a parcel of an order left, a cancellation of it is refused: no ``OrderCancelled`` follows an
    ``OrderShipped`` of the same order (a parcel already on its way when a cancel came is shipped, not cancelled)."""
    title = "a cancel after shipment is refused"
    if facts.order_events is None:
        return Check("cancel_after_shipment", title)
    shipped: set[str] = set()
    broken = []
    for event in facts.order_events:
        if isinstance(event, OrderShipped):
            shipped.add(event.order_id)
        elif isinstance(event, OrderCancelled) and event.order_id in shipped:
            broken.append((event.order_id, f"cancel after shipment: {event.order_id} cancelled ({event.reason}) "
                                           "after a parcel of it shipped"))
    return _check("cancel_after_shipment", title, broken)


def shipped_never_cancelled(facts: Facts, expected: Expected) -> Check:
    """An order a parcel of which left is not cancelled or rejected: the shipment wins (a parcel on its way when
    a cancel came is shipped, not cancelled), and its status says so. (A store pickup shipped to the store and
    never collected does expire.)"""
    broken = [
        (order_id, f"cancelled yet shipped: {order_id} is {order['status']} but shipped "
                   f"{sum(line.get('shipped', 0) for line in order.get('lines', []))} units")
        for order_id, order in sorted(facts.orders.items())
        if order.get("status") in ("cancelled", "rejected") and order.get("shipments")
    ]
    return _check("shipped_never_cancelled", "no order that shipped is cancelled or rejected", broken)


def no_line_overshipped(facts: Facts, expected: Expected) -> Check:
    broken = []
    for order_id, order in sorted(facts.orders.items()):
        ordered: dict[str, int] = defaultdict(int)
        for line in order.get("lines", []):
            ordered[line["sku"]] += line["ordered"]
            if line.get("shipped", 0) > line["ordered"]:
                broken.append((order_id, f"overshipped: {order_id} {line['sku']} line shipped {line['shipped']} "
                                         f"of {line['ordered']} ordered"))
        for sku, qty in sorted(_shipped_by_sku(order).items()):
            if qty > ordered.get(sku, 0):
                broken.append((order_id, f"overshipped: {order_id} {sku} shipments carry {qty} "
                                         f"of {ordered.get(sku, 0)} ordered"))
    return _check("no_overship", "no order line shipped more than ordered", broken)


def _shipped_by_sku(order: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for shipment in order.get("shipments", []):
        for line in shipment["lines"]:
            out[line["sku"]] += line["qty"]
    return out


def lines_accounted(facts: Facts, expected: Expected) -> Check:
    broken = [
        (order_id, f"line accounting: {order_id} {line['sku']} {line}")
        for order_id, order in sorted(facts.orders.items())
        for line in order.get("lines", [])
        if line["ordered"] != line["shipped"] + line["cancelled"] + line["open"]
    ]
    return _check("lines_accounted", "ordered = shipped + cancelled + open on every line", broken)


# ---------------------------------------------------------------- stock


def no_oversell(facts: Facts, expected: Expected) -> Check:
    broken = []
    for location, sku, pos in _positions(facts.stock):
        where = f"{sku}@{location}"
        if pos["on_hand"] < 0:
            broken.append((where, f"no oversell: {where} on hand {pos['on_hand']} < 0"))
        if pos["reserved"] > max(0, pos["on_hand"] - pos.get("safety_stock", 0)):
            broken.append((where, f"no oversell: {where} reserved {pos['reserved']} > on hand - safety"))
    return _check("no_oversell", "no SKU oversold at any location", broken)


def open_holds(events: Iterable[Message]) -> dict[StockKey, int]:
    """Units held on hand per position by the reservations still open, folded from the ledger's events."""
    out: dict[StockKey, int] = defaultdict(int)
    for key, qty, on_hand, _ in open_reservations(events).values():
        if on_hand:
            out[key] += qty
    return dict(out)


def units_waiting_on_supply(events: Iterable[Message]) -> dict[str, int]:
    """Units per order held against incoming supply (backorders not filled yet)."""
    out: dict[str, int] = defaultdict(int)
    for _, qty, on_hand, order_id in open_reservations(events).values():
        if not on_hand:
            out[order_id] += qty
    return dict(out)


def open_reservations(events: Iterable[Message]) -> dict[str, tuple[StockKey, int, bool, str]]:
    """The reservations still open: position, units, whether on hand (else on supply), order.

    A reservation's first ``StockReserved`` decides whether it holds on hand or waits on supply (later ones
    only move a backorder's promise, or repeat the decision); ``BackorderFilled`` moves a waiting one on
    hand; ``ReservationReduced`` shrinks it to its ``qty``; consumed, released and expired end it.
    """
    holds: dict[str, tuple[StockKey, int, bool, str]] = {}
    ended: set[str] = set()
    for event in events:
        rid = getattr(event, "reservation_id", "")
        if rid in ended:
            continue
        if isinstance(event, StockReserved) and rid not in holds:
            holds[rid] = ((event.location, event.sku), event.qty, event.against_supply is None, event.order_id)
        elif isinstance(event, BackorderFilled) and rid in holds:
            holds[rid] = ((event.location, event.sku), event.qty, True, holds[rid][3])
        elif isinstance(event, ReservationReduced) and rid in holds:
            holds[rid] = (holds[rid][0], event.qty, holds[rid][2], holds[rid][3])
        elif isinstance(event, ReservationConsumed | ReservationReleased | ReservationExpired | ReservationRefused):
            ended.add(rid)
            holds.pop(rid, None)
    return holds


def reserved_equals_open_holds(facts: Facts, expected: Expected) -> Check:
    title = "reserved equals the sum of open holds"
    if facts.reservation_events is None:
        return Check("reserved_matches_holds", title)
    holds = open_holds(facts.reservation_events)
    keys = sorted({(loc, sku) for loc, sku, _ in _positions(facts.stock)} | set(holds))
    broken = []
    for location, sku in keys:
        reserved = facts.stock.get(location, {}).get(sku, {}).get("reserved", 0)
        if reserved != holds.get((location, sku), 0):
            where = f"{sku}@{location}"
            broken.append((where, f"holds: {where} reserves {reserved} but its open holds sum to "
                                  f"{holds.get((location, sku), 0)}"))
    return _check("reserved_matches_holds", title, broken)


def reservations_end_once(facts: Facts, expected: Expected) -> Check:
    """No reservation ends two ways (consumed and released, say); the same end delivered again is one end."""
    title = "every reservation ends exactly once"
    ends: dict[str, set[str]] = defaultdict(set)
    orders: dict[str, str] = {}
    for event in facts.reservation_events or ():
        if isinstance(event, ReservationConsumed | ReservationReleased | ReservationExpired):
            ends[event.reservation_id].add(event.event_type.split(".")[1].removeprefix("reservation_"))
            orders[event.reservation_id] = event.order_id
    broken = [
        (orders[rid], f"ended twice: reservation {rid} of {orders[rid]} {' and '.join(sorted(kinds))}")
        for rid, kinds in sorted(ends.items())
        if len(kinds) > 1
    ]
    return _check("reservations_end_once", title, broken)


def reservations_ended(facts: Facts, expected: Expected) -> Check:
    title = "no stock reserved once every order is over"
    if any(o.get("status") not in TERMINAL_STATUSES for o in facts.orders.values()):
        return Check("reservations_ended", title)
    broken = [
        (f"{sku}@{location}", f"reservations: {sku}@{location} still reserves {pos['reserved']} "
                              "with every order settled")
        for location, sku, pos in _positions(facts.stock)
        if pos["reserved"]
    ]
    return _check("reservations_ended", title, broken)


def distinct_movements(movements: Iterable[StockMoved]) -> list[StockMoved]:
    """The movements without their re-deliveries (same movement, same result: one effect)."""
    seen: dict[tuple[str, int], StockMoved] = {}
    for moved in movements:
        seen.setdefault((moved.movement_id, moved.on_hand_after), moved)
    return list(seen.values())


def shipped_once(facts: Facts, expected: Expected) -> Check:
    """On hand dropped by exactly the units the orders' shipments carried, per position."""
    title = "on hand moved exactly once per shipped unit"
    if facts.movements is None:
        return Check("shipped_once", title)
    moved: dict[StockKey, int] = defaultdict(int)
    for movement in distinct_movements(facts.movements):
        if movement.kind == "shipped":
            moved[(movement.location, movement.sku)] -= movement.delta
    shipped: dict[StockKey, int] = defaultdict(int)
    for order in facts.orders.values():
        for shipment in order.get("shipments", []):
            for line in shipment["lines"]:
                shipped[(shipment["location"], line["sku"])] += line["qty"]
    broken = [
        (f"{sku}@{location}", f"shipped once: {sku}@{location} on hand dropped {moved.get((location, sku), 0)} "
                              f"for {shipped.get((location, sku), 0)} shipped")
        for location, sku in sorted(set(moved) | set(shipped))
        if moved.get((location, sku), 0) != shipped.get((location, sku), 0)
    ]
    return _check("shipped_once", title, broken)


def no_double_effect(facts: Facts, expected: Expected) -> Check:
    """No cause moved stock twice: one movement id never carries two different results."""
    title = "no stock movement applied twice"
    results: dict[str, set[int]] = defaultdict(set)
    for movement in distinct_movements(facts.movements or ()):
        results[movement.movement_id].add(movement.on_hand_after)
    by_id = {m.movement_id: m for m in facts.movements or ()}
    broken = [
        (f"{by_id[mid].sku}@{by_id[mid].location}",
         f"double effect: {by_id[mid].kind} {by_id[mid].sku}@{by_id[mid].location} caused by "
         f"{by_id[mid].cause_id} applied {len(afters)} times")
        for mid, afters in sorted(results.items())
        if len(afters) > 1
    ]
    return _check("no_double_effect", title, broken)


def stock_conserved(facts: Facts, expected: Expected) -> Check:
    """on hand = initial + received - shipped (as the orders' shipments say) + restocked +- adjustments."""
    wanted: dict[StockKey, int] = defaultdict(int)
    for key, qty in (expected.initial_stock or {}).items():
        wanted[key] += qty
    for key, delta in other_movements(facts.movements or (), expected).items():
        wanted[key] += delta
    for order in facts.orders.values():
        for shipment in order.get("shipments", []):
            for line in shipment["lines"]:
                wanted[(shipment["location"], line["sku"])] -= line["qty"]
    for location, sku, _ in _positions(facts.stock):
        wanted.setdefault((location, sku), 0)
    broken = []
    for (location, sku), qty in sorted(wanted.items()):
        actual = facts.stock.get(location, {}).get(sku, {}).get("on_hand", 0)
        if actual != qty:
            broken.append((f"{sku}@{location}", f"conservation: {sku}@{location} on hand {actual}, expected {qty} "
                                                "(initial + received - shipped +- adjustments)"))
    return _check("conservation", "stock conserved", broken)


def other_movements(movements: Iterable[StockMoved], expected: Expected) -> dict[StockKey, int]:
    """Net on-hand changes besides shipments (and besides the initial load when ``expected`` gives it)."""
    out: dict[StockKey, int] = defaultdict(int)
    for moved in distinct_movements(movements):
        initial = expected.initial_stock is not None and expected.initial_cause_prefix is not None and \
            moved.cause_id.startswith(expected.initial_cause_prefix)
        if moved.kind != "shipped" and not initial:
            out[(moved.location, moved.sku)] += moved.delta
    return dict(out)


SAFETY_CHECKS = (no_oversell, no_line_overshipped, lines_accounted, reserved_equals_open_holds, reservations_end_once,
                 no_double_effect, cancel_after_shipment_refused)


# ---------------------------------------------------------------- from a namespace's topics and read model


async def check_invariants_from_topics(
    settings: Settings,
    scenario_or_expected: Scenario | Expected,
    *,
    orders: Orders | None = None,
    stock: Stock | None = None,
) -> InvariantReport:
    """Check a run from what its topics and read model hold; ``orders``/``stock`` when already read."""
    expected = scenario_or_expected if isinstance(scenario_or_expected, Expected) else \
        Expected.from_scenario(scenario_or_expected, settings.namespace)
    return check_invariants(await gather_facts(settings, expected, orders=orders, stock=stock), expected)


async def gather_facts(
    settings: Settings, expected: Expected, *, orders: Orders | None = None, stock: Stock | None = None
) -> Facts:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        if orders is None:
            views = await read_model.read_orders(list(expected.order_ids))
            orders = {oid: view or {"status": "unknown", "lines": [], "shipments": []} for oid, view in views.items()}
    finally:
        await read_model.close()
    if stock is None:
        changes = await _messages(settings, full_topic_name(settings, INVENTORY_AVAILABILITY), (AvailabilityChanged,))
        stock = latest_positions([c for c in changes if isinstance(c, AvailabilityChanged)], expected.skus)
    reservations = await _messages(settings, full_topic_name(settings, INVENTORY_RESERVATIONS), RESERVATION_EVENTS)
    movements = await _messages(settings, full_topic_name(settings, INVENTORY_MOVEMENTS), (StockMoved,))
    placed = await _messages(settings, full_topic_name(settings, ORDERS_INBOUND), (OrderPlaced,))
    requests = await _messages(settings, full_topic_name(settings, PAYMENTS_COMMANDS), (RefundRequested,))
    # a command delivered twice is answered twice under one event id: one answer
    answers = await _messages(settings, full_topic_name(settings, PAYMENTS_EVENTS), (RefundSucceeded, RefundFailed),
                              once=True)
    return Facts(orders, stock, reservations, [m for m in movements if isinstance(m, StockMoved)],
                 paid=paid_per_order(p for p in placed if isinstance(p, OrderPlaced)),
                 refund_requests=[r for r in requests if isinstance(r, RefundRequested)],
                 refund_answers=[a for a in answers if isinstance(a, RefundSucceeded | RefundFailed)])


def latest_positions(
    changes: Iterable[AvailabilityChanged], skus: Iterable[str] = ()
) -> dict[str, dict[str, dict[str, int]]]:
    """The newest availability of each position (by ledger version), as committed with the ledger's state.

    Read from the topic rather than the read model: the Redis views are written after each commit, so right
    after a run caught up they can still show an older position. ``skus`` (when given) keeps only those.
    """
    wanted = set(skus)
    newest: dict[StockKey, AvailabilityChanged] = {}
    for change in changes:
        key = (change.location, change.sku)
        if (not wanted or change.sku in wanted) and (key not in newest or change.version >= newest[key].version):
            newest[key] = change
    docs: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (location, sku), change in newest.items():
        docs[sku][location] = change.model_dump()
    return read_stock(docs)


def read_stock(docs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, dict[str, int]]]:
    """Availability documents (SKU -> location -> doc) as positions (location -> SKU -> figures)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for sku, locations in sorted(docs.items()):
        for location, doc in sorted(locations.items()):
            out.setdefault(location, {})[sku] = {
                k: int(doc.get(k, 0)) for k in ("on_hand", "reserved", "available", "incoming", "safety_stock")
            }
    return out


async def _messages(settings: Settings, topic: str, kinds: Sequence[type[Message]], *,
                    once: bool = False) -> list[Message]:
    """The topic's messages of these kinds; ``once``: an event appended twice (same id) counts once."""
    by_type = {kind.event_type: kind for kind in kinds}
    out = []
    seen: set[str] = set()
    for envelope, _ in await read_topic(settings, topic):
        if envelope is not None and envelope.type in by_type and not (once and envelope.id in seen):
            seen.add(envelope.id)
            out.append(by_type[envelope.type].model_validate(envelope.data))
    return out


# ---------------------------------------------------------------- over the whole log (``baton audit``)


def movements_balance(facts: Facts, expected: Expected) -> Check:
    """Per position, the ledger's movements (each counted once) sum to the on hand last published."""
    title = "the movements sum to the on hand last published"
    if facts.movements is None:
        return Check("movements_balance", title)
    summed: dict[StockKey, int] = defaultdict(int)
    for moved in distinct_movements(facts.movements):
        summed[(moved.location, moved.sku)] += moved.delta
    broken = []
    for location, sku in sorted(set(summed) | {(loc, sku) for loc, sku, _ in _positions(facts.stock)}):
        on_hand = facts.stock.get(location, {}).get(sku, {}).get("on_hand", 0)
        if summed.get((location, sku), 0) != on_hand:
            broken.append((f"{sku}@{location}", f"balance: {sku}@{location} movements sum to "
                                                f"{summed.get((location, sku), 0)}, availability says {on_hand}"))
    return _check("movements_balance", title, broken)


def positions_never_negative(facts: Facts, expected: Expected) -> Check:
    """No movement ever left a position below zero (on hand after it, and the running sum of the deltas)."""
    running: dict[StockKey, int] = defaultdict(int)
    broken = []
    for moved in distinct_movements(facts.movements or ()):
        key = (moved.location, moved.sku)
        running[key] += moved.delta
        if moved.on_hand_after < 0 or running[key] < 0:
            where = f"{moved.sku}@{moved.location}"
            broken.append((where, f"negative: {where} went to {min(moved.on_hand_after, running[key])} "
                                  f"by movement {moved.movement_id}"))
    return _check("never_negative", "no position ever went below zero", broken)


def refunds_within_paid(paid: Mapping[str, float], refunded: Iterable[tuple[str, float]]) -> Check:
    """An order's refunds (order id, amount) never sum above what was paid for it."""
    total: dict[str, float] = defaultdict(float)
    for order_id, amount in refunded:
        total[order_id] += amount
    broken = [
        (order_id, f"refunds: {order_id} refunded {amount:.2f} of {paid.get(order_id, 0.0):.2f} paid")
        for order_id, amount in sorted(total.items())
        if amount > paid.get(order_id, 0.0) + 0.005
    ]
    return _check("refunds_within_paid", "no order refunded beyond what was paid", broken)


def paid_per_order(placed: Iterable[OrderPlaced]) -> dict[str, float]:
    """What each order's customer paid: its lines and its shipping (an exchange's replacement: nothing). The
    first placement of an order id counts (a producer's retry repeats it)."""
    out: dict[str, float] = {}
    for order in placed:
        if order.order_id not in out:
            goods = sum(line.qty * line.unit_price for line in order.lines)
            out[order.order_id] = 0.0 if order.exchange_for else goods + float(order.shipping_price or 0.0)
    return out


def refunds_paid_out(answers: Iterable[RefundSucceeded | RefundFailed]) -> dict[str, RefundSucceeded]:
    """The refunds the provider paid, one per idempotency key (its first success; a repeat moves no money)."""
    out: dict[str, RefundSucceeded] = {}
    for answer in answers:
        if isinstance(answer, RefundSucceeded) and answer.idempotency_key not in out:
            out[answer.idempotency_key] = answer
    return out


def refunds_within_what_was_paid(facts: Facts, expected: Expected) -> Check:
    """No order's refunds, paid out or asked for (each key once, at its amount), sum above what it paid."""
    title = refunds_within_paid({}, ()).title
    if facts.paid is None or facts.refund_answers is None:
        return Check("refunds_within_paid", title)
    asked = {r.idempotency_key: (r.order_id, r.amount) for r in facts.refund_requests or ()}
    paid_out = {key: (a.order_id, a.amount) for key, a in refunds_paid_out(facts.refund_answers).items()}
    return refunds_within_paid(facts.paid, {**asked, **paid_out}.values())


def one_key_per_refund(facts: Facts, expected: Expected) -> Check:
    """No refund requested twice with different keys: every ``RefundRequested`` of a return carries the same
    idempotency key, at the same amount; and no key is paid out twice (two successes that are not repeats)."""
    title = "each return's refund requested under one key, paid at most once"
    if facts.refund_requests is None:
        return Check("refund_one_key", title)
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    amounts: dict[str, set[float]] = defaultdict(set)
    for request in facts.refund_requests:
        keys[(request.order_id, request.return_id)].add(request.idempotency_key)
        amounts[request.idempotency_key].add(round(request.amount, 2))
    # each answer once (by event id): two successes of a key that are not marked as repeats are two payouts
    payouts: dict[str, int] = defaultdict(int)
    owner: dict[str, str] = {}
    for answer in facts.refund_answers or ():
        if isinstance(answer, RefundSucceeded) and not answer.duplicate:
            payouts[answer.idempotency_key] += 1
            owner[answer.idempotency_key] = answer.order_id
    broken = [(order_id, f"refund keys: return {return_id} of {order_id} requested under {len(found)} keys "
                         f"({', '.join(sorted(found))})")
              for (order_id, return_id), found in sorted(keys.items()) if len(found) > 1]
    broken += [(key, f"refund amounts: key {key} requested with {len(found)} amounts {sorted(found)}")
               for key, found in sorted(amounts.items()) if len(found) > 1]
    broken += [(owner[key], f"refund paid twice: key {key} of {owner[key]} paid out {count} times")
               for key, count in sorted(payouts.items()) if count > 1]
    return _check("refund_one_key", title, broken)


SAFETY_CHECKS = (*SAFETY_CHECKS, refunds_within_what_was_paid, one_key_per_refund)  # they hold after every commit


def check_log_invariants(facts: Facts, expected: Expected | None = None) -> InvariantReport:
    """The brief's invariants plus those only the whole log can tell (``baton audit``)."""
    expected = expected or Expected(order_ids=tuple(facts.orders))
    extra = tuple(check(facts, expected) for check in (movements_balance, positions_never_negative))
    return InvariantReport(check_invariants(facts, expected).checks + extra)
