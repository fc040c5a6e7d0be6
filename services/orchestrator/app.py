"""The orchestrator: intake, the order saga, sourcing, and order status out. One agent, concurrency 1."""

from __future__ import annotations

import faust
import structlog
from faust.types import EventT

from baton.runtime.feed import TopicFeed
from baton.runtime.kafka import Sender, consume, create_app, full_topic_name, raw_topic
from baton.runtime.logs import get_logger
from baton.runtime.readmodel import ReadModel
from baton.runtime.service import attach_heartbeat
from baton.runtime.settings import Settings
from schemas.base import Message
from schemas.envelope import Envelope
from schemas.network import LocationConfigured
from schemas.orders import OrderPlaced
from schemas.topics import INVENTORY_RESERVATIONS, NETWORK, ORDERS_INBOUND, WMS_EVENTS
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import PLANNING_MESSAGES, OrderSaga, OrderState
from services.orchestrator.domain.sourcing import Availability

SERVICE = "orchestrator"
log = get_logger(__name__)


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings, web_port=settings.web_port or None)
    inbox = app.topic(
        *(full_topic_name(settings, spec) for spec in (ORDERS_INBOUND, INVENTORY_RESERVATIONS, WMS_EVENTS)),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    for spec in (ORDERS_INBOUND, INVENTORY_RESERVATIONS, WMS_EVENTS):
        raw_topic(app, settings, spec)
    orders = app.Table("orders", key_type=str, value_type=bytes, default=None)
    sender = Sender(app, settings, source=f"baton/{SERVICE}")
    read_model = ReadModel(settings.redis_url, settings.namespace)
    network = NetworkView()
    attach_heartbeat(app, read_model, SERVICE)

    def on_network(message: Message) -> None:
        if isinstance(message, LocationConfigured):
            network.apply(message.location, message.network_version)

    feed = TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, NETWORK), on_network)

    @app.task
    async def follow_network() -> None:
        await feed.run()

    async def availability_for(state: OrderState | None, message: Message) -> Availability:
        if not isinstance(message, PLANNING_MESSAGES):
            return {}
        order = message if isinstance(message, OrderPlaced) else (state.order if state else None)
        if order is None:
            return {}
        docs = await read_model.read_availability(line.sku for line in order.lines)
        return {sku: {loc: int(doc["available"]) for loc, doc in by_loc.items()} for sku, by_loc in docs.items()}

    async def handle(envelope: Envelope, message: Message, event: EventT) -> None:
        order_id = message.subject()
        structlog.contextvars.bind_contextvars(correlationid=envelope.correlationid, order_id=order_id)
        await feed.caught_up.wait()
        raw = orders.get(order_id)
        state = OrderState.model_validate_json(raw) if raw else None
        saga = OrderSaga(network, await availability_for(state, message))
        decision = saga.handle(state, message, envelope.id)
        if decision.state is None:
            log.info("ignored", type=envelope.type, why="no such order")
            return
        orders[order_id] = decision.state.model_dump_json().encode()
        correlation = envelope.correlationid if not isinstance(message, OrderPlaced) else order_id
        await sender.send(decision.emits, correlationid=correlation, causationid=envelope.id)
        await read_model.write_orders([decision.state.view()])
        log.info("handled", type=envelope.type, status=decision.state.status, emitted=len(decision.emits))

    @app.agent(inbox, concurrency=1)
    async def order_agent(stream: faust.StreamT) -> None:
        await consume(stream, sender, handle)

    return app
