"""The orchestrator: intake, the order saga, sourcing, deadlines and order status out. One agent, concurrency 1."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import faust
import structlog
from faust.types import EventT

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.network import LocationConfigured, RuleSetPublished
from schemas.orders import OrderDeadlineReached, OrderPlaced
from schemas.topics import INVENTORY_RESERVATIONS, NETWORK, ORDERS_INBOUND, ORDERS_TIMERS, RULES, WMS_EVENTS
from schemas.wms import FulfilOrder
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import PLANNING_MESSAGES, Deadline, OrderSaga, OrderState, Snapshot
from services.orchestrator.domain.rules import DEFAULT_RULES, RuleSet, RuleSetError, parse_rule_set
from services.orchestrator.domain.sourcing import Availability, Supply
from services.orchestrator.faust_web import attach_web
from services.runtime.feed import TopicFeed
from services.runtime.kafka import Sender, consume, create_app, full_topic_name, raw_topic
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.readmodel import CapacityCounter, ReadModel
from services.runtime.service import attach_heartbeat
from services.runtime.settings import Settings

SERVICE = "orchestrator"
INBOX = (ORDERS_INBOUND, INVENTORY_RESERVATIONS, WMS_EVENTS, ORDERS_TIMERS)
log = get_logger(__name__)


class MasterData:
    """The network and the rule set in force, followed from their compacted topics."""

    def __init__(self, settings: Settings) -> None:
        self.network = NetworkView()
        self.rules: RuleSet = DEFAULT_RULES
        self.network_feed = TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, NETWORK), self._on)
        self.rules_feed = TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, RULES), self._on)

    def _on(self, message: Message) -> None:
        if isinstance(message, LocationConfigured):
            self.network.apply(message.location, message.network_version)
        elif isinstance(message, RuleSetPublished):
            try:
                self.rules = parse_rule_set(message.document, f"rule set {message.name} v{message.version}")
            except RuleSetError as exc:
                log.error("rule_set_ignored", reason=str(exc))

    async def ready(self) -> None:
        await self.network_feed.caught_up.wait()
        await self.rules_feed.caught_up.wait()


class Deadlines:
    """Due times of open orders' deadlines (rebuilt from the table), turned into messages when due."""

    def __init__(self) -> None:
        self.due: dict[str, Deadline] = {}

    def track(self, order_id: str, deadline: Deadline | None) -> None:
        if deadline is None:
            self.due.pop(order_id, None)
        else:
            self.due[order_id] = deadline

    def pop_due(self, now: datetime) -> list[tuple[str, Deadline]]:
        ripe = [(oid, d) for oid, d in self.due.items() if d.due <= now]
        for order_id, _ in ripe:
            del self.due[order_id]
        return ripe


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings, web_port=settings.web_port or None)
    inbox = app.topic(
        *(full_topic_name(settings, spec) for spec in INBOX),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    for spec in INBOX:
        raw_topic(app, settings, spec)
    orders = app.Table("orders", key_type=str, value_type=bytes, default=None)
    sender = Sender(app, settings, source=f"baton/{SERVICE}")
    read_model = ReadModel(settings.redis_url, settings.namespace)
    capacity = CapacityCounter(read_model)
    master = MasterData(settings)
    deadlines = Deadlines()
    attach_heartbeat(app, read_model, SERVICE)
    attach_web(app, read_model)

    @app.task
    async def follow_network() -> None:
        await master.network_feed.run()

    @app.task
    async def follow_rules() -> None:
        await master.rules_feed.run()

    async def snapshot_for(state: OrderState | None, message: Message, now: datetime) -> Snapshot:
        snap = Snapshot(network=master.network, rules=master.rules, now=now)
        if not isinstance(message, PLANNING_MESSAGES):
            return snap
        order = message if isinstance(message, OrderPlaced) else (state.order if state else None)
        if order is None:
            return snap
        docs = await read_model.read_availability(line.sku for line in order.lines)
        snap.availability, snap.supply = _stock_views(docs)
        snap.capacity_left = await _capacity_left(capacity, master.network, now)
        return snap

    async def handle(envelope: Envelope, message: Message, event: EventT) -> None:
        order_id = message.subject()
        structlog.contextvars.bind_contextvars(correlationid=envelope.correlationid, order_id=order_id)
        await master.ready()
        raw = orders.get(order_id)
        state = OrderState.model_validate_json(raw) if raw else None
        snap = await snapshot_for(state, message, envelope.time)
        decision = OrderSaga(master.network, snapshot=snap).handle(state, message, envelope.id)
        if decision.state is None:
            log.info("ignored", type=envelope.type, why="no such order")
            return
        orders[order_id] = decision.state.model_dump_json().encode()
        correlation = order_id if isinstance(message, OrderPlaced) else envelope.correlationid
        await sender.send(decision.emits, correlationid=correlation, causationid=envelope.id)
        await _count_dispatches(capacity, decision.emits, envelope.time)
        await read_model.write_orders([decision.state.view()])
        deadlines.track(order_id, decision.state.deadline)
        log.info("handled", type=envelope.type, status=decision.state.status, emitted=len(decision.emits))

    @app.agent(inbox, concurrency=1)
    async def order_agent(stream: faust.StreamT) -> None:
        await consume(stream, sender, handle)

    rebuilt = {"at": 0.0}

    @app.timer(interval=0.5)
    async def fire_deadlines() -> None:
        if time.monotonic() - rebuilt["at"] > 30:
            _rebuild(deadlines, orders)
            rebuilt["at"] = time.monotonic()
        for order_id, deadline in deadlines.pop_due(datetime.now(UTC)):
            reached = OrderDeadlineReached(order_id=order_id, kind=deadline.kind, due=deadline.due)
            emit = Emit.to(ORDERS_TIMERS, order_id, reached, f"deadline:{order_id}:{deadline.kind}:{deadline.due}")
            await sender.send([emit], correlationid=order_id, causationid=None)

    return app


def _rebuild(deadlines: Deadlines, orders: Any) -> None:
    """Re-read the deadlines of the orders this instance holds (after a restart or a rebalance)."""
    for order_id, raw in list(orders.items()):
        if raw:
            deadlines.track(order_id, OrderState.model_validate_json(raw).deadline)


def _stock_views(docs: dict[str, dict[str, dict[str, Any]]]) -> tuple[Availability, Supply]:
    availability: Availability = {}
    supply: Supply = {}
    for sku, by_location in docs.items():
        availability[sku] = {loc: int(doc.get("available", 0)) for loc, doc in by_location.items()}
        supply[sku] = {
            loc: (int(doc.get("incoming_unreserved", doc.get("incoming", 0)) or 0), doc.get("next_eta"))
            for loc, doc in by_location.items()
        }
    return availability, supply


async def _capacity_left(capacity: CapacityCounter, network: NetworkView, now: datetime) -> dict[str, int]:
    limited = {loc.id: loc.daily_capacity for loc in network.locations.values() if loc.daily_capacity}
    if not limited:
        return {}
    used = await capacity.used(limited, now.date().isoformat())
    return {loc: limit - used.get(loc, 0) for loc, limit in limited.items()}


async def _count_dispatches(capacity: CapacityCounter, emits: list[Emit], now: datetime) -> None:
    locations = [e.message.location for e in emits if isinstance(e.message, FulfilOrder)]
    if locations:
        await capacity.add(locations, now.date().isoformat())
