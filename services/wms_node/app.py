"""A WMS node: one process per location. Its inbox holds requests and confirmations; its tasks go to workers."""

from __future__ import annotations

import uuid

import faust
import structlog
from faust.types import EventT

from baton.runtime.kafka import Sender, consume, create_app, raw_topic
from baton.runtime.logs import get_logger
from baton.runtime.outbox import Emit
from baton.runtime.readmodel import ReadModel
from baton.runtime.service import attach_heartbeat
from baton.runtime.settings import Settings
from schemas.base import Message
from schemas.envelope import Envelope
from schemas.topics import WMS_COMMANDS, WMS_TASKS
from schemas.wms import ConfirmTask, TaskCreated
from services.wms_node.domain.fulfilment import FulfilmentDesk, LocationOrder
from services.wms_node.domain.workers import AutoWorker

log = get_logger(__name__)


def build(settings: Settings, location: str, auto: bool = False) -> faust.App:
    service = f"wms-{location}"
    app = create_app(service, settings)
    commands = raw_topic(app, settings, WMS_COMMANDS, location)
    tasks = raw_topic(app, settings, WMS_TASKS, location)
    orders = app.Table("orders", key_type=str, value_type=bytes, default=None)
    sender = Sender(app, settings, source=f"baton/wms/{location}")
    desk = FulfilmentDesk()
    read_model = ReadModel(settings.redis_url, settings.namespace)
    attach_heartbeat(app, read_model, service)

    async def handle(envelope: Envelope, message: Message, event: EventT) -> None:
        order_id = message.subject()
        structlog.contextvars.bind_contextvars(correlationid=envelope.correlationid, order_id=order_id)
        raw = orders.get(order_id)
        state = LocationOrder.model_validate_json(raw) if raw else LocationOrder(order_id=order_id, location=location)
        emits = desk.handle(state, message, envelope.id)
        orders[order_id] = state.model_dump_json().encode()
        await sender.send(emits, correlationid=envelope.correlationid, causationid=envelope.id)
        log.info("handled", type=envelope.type, emitted=len(emits))

    @app.agent(commands, concurrency=1)
    async def node_agent(stream: faust.StreamT) -> None:
        await consume(stream, sender, handle)

    if auto:
        worker = AutoWorker(location)

        async def work(envelope: Envelope, message: Message, event: EventT) -> None:
            if not isinstance(message, TaskCreated):
                return
            confirm = worker.confirm(message)
            emit = Emit.to(WMS_COMMANDS, message.order_id, confirm, str(uuid.uuid4()), location=location)
            await sender.send([emit], correlationid=envelope.correlationid, causationid=envelope.id)

        @app.agent(tasks, concurrency=1)
        async def auto_workers(stream: faust.StreamT) -> None:
            await consume(stream, sender, work)

    return app


__all__ = ["ConfirmTask", "build"]
