"""(faust, until the engine runs the node: see app.py)
A WMS node: one process per location. Its inbox (one partition) holds requests, deliveries, workers' claims
and confirmations and its own timer's ticks; its tasks go to the location's task topic.

The agent parses, builds the context (time of the message, the location's master data, SKU weights and
volumes, the ledger's on-hand for SKUs met for the first time), calls the pure core, writes the changed
entities (primary last), sends what the core returned, then updates the Redis views. A timer only *reads*
the table and, when a wave's cut-off or a claim's deadline is due, sends a ``NodeTick`` to the inbox.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any

import faust
import structlog
from faust.types import EventT

from schemas.base import Message
from schemas.catalog import SkuConfigured
from schemas.envelope import Envelope, derived_id
from schemas.network import LocationConfigured
from schemas.topics import CATALOG, NETWORK, WMS_COMMANDS, WMS_TASKS
from schemas.wms import NodeTick, TaskCreated, TaskUpdated
from services.runtime.feed import TopicFeed
from services.runtime.kafka import Sender, consume, create_app, full_topic_name, raw_topic
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.readmodel import ReadModel
from services.runtime.service import attach_heartbeat
from services.runtime.settings import Settings
from services.wms_node.config import config_row, node_config
from services.wms_node.domain.model import Site, sku_key
from services.wms_node.domain.node import WORKER_COMMANDS, Node, primary_key, skus_of
from services.wms_node.domain.waves import next_due_at
from services.wms_node.domain.work import Context, SiteInfo, SkuData
from services.wms_node.domain.workers import AutoWorker, WorkerBehaviour, behaviour_for
from services.wms_node.faust_web import attach_web
from services.wms_node.janitor import Janitor
from services.wms_node.store import UndoStore
from services.wms_node.views import NodeViews, ViewWriter, reply_of

log = get_logger(__name__)
TICK_EVERY_S = 0.2
TICK_AGAIN_AFTER_S = 0.5


class MasterData:
    """The location's own network entry and the SKUs' weights and volumes, followed from compacted topics."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.info: SiteInfo | None = None
        self.catalog: dict[str, SkuData] = {}

    def on_network(self, message: Message) -> None:
        if isinstance(message, LocationConfigured) and message.location.id == self.location:
            loc = message.location
            self.info = SiteInfo(kind=loc.kind, capabilities=tuple(loc.capabilities),
                                 daily_capacity=loc.daily_capacity, open=loc.open)

    def on_catalog(self, message: Message) -> None:
        if isinstance(message, SkuConfigured):
            self.catalog[message.sku] = SkuData(weight_g=message.weight_g, volume_cm3=message.volume_cm3)


def build(settings: Settings, location: str, auto: bool = False, web_port: int | None = None) -> faust.App:
    service = f"wms-{location}"
    app = create_app(service, settings, web_port=web_port)
    commands = raw_topic(app, settings, WMS_COMMANDS, location)
    tasks = raw_topic(app, settings, WMS_TASKS, location)
    table = app.Table("state", key_type=str, value_type=bytes, default=None, partitions=1)
    sender = Sender(app, settings, source=f"baton/wms/{location}")
    read_model = ReadModel(settings.redis_url, settings.namespace)
    views = NodeViews(settings.redis_url, settings.namespace, location)
    attach_heartbeat(app, read_model, service)

    behaviour = behaviour_for(location, os.environ.get("BATON_WORKERS")) if auto else WorkerBehaviour(location=location)
    raw_config = os.environ.get("BATON_WMS_CONFIG")
    node = Node(location, node_config(location, raw_config, reject_all=behaviour.reject_all))
    store = UndoStore(table)
    janitor = Janitor(config_row(location, raw_config).retain_s)
    master = MasterData(location)
    feeds = [
        TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, NETWORK), master.on_network),
        TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, CATALOG), master.on_catalog),
    ]
    waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
    writer = ViewWriter(views)
    app.task(writer.run)

    for feed in feeds:
        app.task(feed.run)

    async def ledger_on_hand(message: Message) -> dict[str, int]:
        new = sorted(s for s in skus_of(message) if table.get(sku_key(s)) is None)
        if not new:
            return {}
        docs = await read_model.read_availability(new)
        return {sku: int(docs.get(sku, {}).get(location, {}).get("on_hand", 0)) for sku in new}

    async def handle(envelope: Envelope, message: Message, event: EventT) -> None:
        key = primary_key(message)
        structlog.contextvars.bind_contextvars(correlationid=envelope.correlationid, subject=message.subject())
        for feed in feeds:
            await feed.caught_up.wait()
        ctx = Context(now=envelope.time, info=master.info, ledger=await ledger_on_hand(message),
                      catalog=master.catalog)
        unit = store.unit(envelope.id, key)
        emits = node.handle(unit, message, envelope.id, ctx)
        if store.undone:
            log.warning("undone_partial_apply", message_id=envelope.id, keys=store.undone)
        changes = store.commit(unit, envelope.id, key)
        janitor.observe(changes, envelope.time)
        if isinstance(message, NodeTick):
            expired = janitor.due(envelope.time)
            for gone in expired:
                del table[gone]
            janitor.forget(expired)
            changes += [(gone, None) for gone in expired]
        await sender.send(emits, correlationid=envelope.correlationid, causationid=envelope.id)
        replies = _replies(message, envelope.id, emits)
        writer.put(changes, replies)
        for command_id, reply in replies.items():
            future = waiting.pop(command_id, None)
            if future is not None and not future.done():
                future.set_result(reply)
        log.info("handled", type=envelope.type, emitted=len(emits), changed=len(changes))

    @app.agent(commands, concurrency=1)
    async def node_agent(stream: faust.StreamT) -> None:
        await consume(stream, sender, handle)

    ticking = {"sent": 0.0, "views": False, "raw": b"", "site": None}

    @app.timer(interval=TICK_EVERY_S)
    async def timer() -> None:
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return
        now = datetime.now(UTC)
        if not ticking["views"]:
            ticking["views"] = True
            everything = [(k, store.current(k)) for k in list(table.keys())]
            janitor.observe(everything, now)
            writer.put(everything, {})  # queued like the agent's: nothing newer is written over
        raw = table.get("site")
        if raw is None:
            return
        if raw is not ticking["raw"]:
            ticking["raw"], ticking["site"] = raw, Site.model_validate_json(store.current("site") or "{}")
        site = ticking["site"]
        assert isinstance(site, Site)
        wave_at = next_due_at(site.pending, site.waves)
        due = (wave_at is not None and wave_at <= now) or any(until <= now for until in site.claims.values())
        due = due or bool(janitor.due(now))
        if due and time.monotonic() - float(ticking["sent"]) >= TICK_AGAIN_AFTER_S:  # type: ignore[arg-type]
            ticking["sent"] = time.monotonic()
            tick = Emit.to(WMS_COMMANDS, location, NodeTick(location=location), derived_id(location, "tick", now),
                           location=location)
            await sender.send([tick], correlationid=f"{location}:tick", causationid=None)

    async def send_command(message: Message, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send a worker's command to the inbox and wait for the node's decision on it."""
        command_id = derived_id("web", location, time.time_ns())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting[command_id] = future
        emit = Emit.to(WMS_COMMANDS, message.subject(), message, command_id, location=location)
        await sender.send([emit], correlationid=message.subject(), causationid=None)
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            waiting.pop(command_id, None)

    attach_web(app, location=location, store=store, views=views, send=send_command)

    if auto:
        worker = AutoWorker(location, behaviour)

        async def work(envelope: Envelope, message: Message, event: EventT) -> None:
            if not isinstance(message, TaskCreated):
                return
            if behaviour.pace_s:
                await asyncio.sleep(behaviour.pace_s)
            confirm = worker.confirm(message)
            emit = Emit.to(WMS_COMMANDS, message.order_id, confirm, derived_id(envelope.id, "auto-confirm"),
                           location=location)
            await sender.send([emit], correlationid=envelope.correlationid, causationid=envelope.id)

        @app.agent(tasks, concurrency=1)
        async def auto_workers(stream: faust.StreamT) -> None:
            await consume(stream, sender, work)

    return app


def _replies(message: Message, command_id: str, emits: list[Emit]) -> dict[str, dict[str, Any]]:
    if not isinstance(message, WORKER_COMMANDS):
        return {}
    update = next((e.message for e in emits if isinstance(e.message, TaskUpdated)
                   and e.message.command_id == command_id), None)
    return {command_id: reply_of(update.model_dump(mode="json") if update else None, command_id)}


__all__ = ["build"]
