"""The inventory service: the only writer of stock. One agent, concurrency 1, one ledger per SKU."""

from __future__ import annotations

import faust
import structlog
from faust.types import EventT

from baton.runtime.kafka import Sender, consume, create_app, raw_topic
from baton.runtime.logs import get_logger
from baton.runtime.readmodel import ReadModel
from baton.runtime.service import attach_heartbeat
from baton.runtime.settings import Settings
from schemas.base import Message
from schemas.envelope import Envelope
from schemas.inventory import AvailabilityChanged
from schemas.topics import INVENTORY_COMMANDS
from services.inventory.domain.ledger import SkuLedger

SERVICE = "inventory"
log = get_logger(__name__)


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    commands = raw_topic(app, settings, INVENTORY_COMMANDS)
    ledgers = app.Table("ledgers", key_type=str, value_type=bytes, default=None)
    sender = Sender(app, settings, source=f"baton/{SERVICE}")
    read_model = ReadModel(settings.redis_url, settings.namespace)
    attach_heartbeat(app, read_model, SERVICE)

    async def handle(envelope: Envelope, command: Message, event: EventT) -> None:
        sku = command.subject()
        structlog.contextvars.bind_contextvars(correlationid=envelope.correlationid, sku=sku)
        raw = ledgers.get(sku)
        ledger = SkuLedger.model_validate_json(raw) if raw else SkuLedger(sku=sku)
        emits = ledger.apply(command, envelope.id)
        ledgers[sku] = ledger.model_dump_json().encode()
        await sender.send(emits, correlationid=envelope.correlationid, causationid=envelope.id)
        changes = [e.message for e in emits if isinstance(e.message, AvailabilityChanged)]
        await read_model.write_availability(changes)
        log.info("applied", type=envelope.type, emitted=len(emits))

    @app.agent(commands, concurrency=1)
    async def ledger_agent(stream: faust.StreamT) -> None:
        await consume(stream, sender, handle)

    return app
