"""The inventory service: the only writer of stock, on the processing engine (one ledger per SKU).

Input is ``inventory.commands.v1`` (keyed by SKU); partition *i* is task *i*, with its own ``ledgers`` store.
``handle`` applies one command to its SKU's ledger through the pure core and sends what the core returned;
the engine writes each changed ledger once per batch (the changelog), every event and the consumed offsets
in one transaction. Nothing here waits on the network while commands are applied:

- the availability a batch changed goes to Redis after the commit, through a coalescing background writer;
- timed holds the orchestrator did not expire are expired by the service itself (``ExpireReservation`` to its
  own command topic, in the transaction of a timer) from an in-memory index of each task's holds;
- when a task is assigned (after its store was restored), the index and the Redis read model are rebuilt
  from the store in the background (the task processes meanwhile; what its batches commit is newer);
- with a web port, ``GET /stock/{sku}`` answers from the ledgers as last committed (``services.inventory.web``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.inventory import AvailabilityChanged
from schemas.network import Location, LocationConfigured
from schemas.topics import INVENTORY_COMMANDS, NETWORK
from services.inventory.domain.ledger import INVENTORY_COMMAND_TYPES, SkuLedger
from services.inventory.views import AvailabilityWriter, Expiries
from services.inventory.web import stock_app
from services.runtime.feed import TopicFeed
from services.runtime.logs import get_logger
from services.runtime.processing import Incoming, Store, StoreSpec, StreamService, TaskContext
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

SERVICE = "inventory"
LEDGERS = "ledgers"
REBUILD_CHUNK = 50  # ledgers decoded between two looks at the loop while a task's views are rebuilt
log = get_logger(__name__)


def load(raw: bytes | None, sku: str) -> SkuLedger:
    return SkuLedger.model_validate_json(raw) if raw else SkuLedger(sku=sku)


def dump(ledger: SkuLedger) -> bytes:
    return ledger.model_dump_json(exclude_defaults=True).encode()


def decode_ledger(raw: bytes) -> SkuLedger:
    return SkuLedger.model_validate_json(raw)


LEDGER_STORE: StoreSpec[SkuLedger] = StoreSpec(LEDGERS, dump, decode_ledger)


@dataclass
class BatchViews:
    """What one batch of a task changed, for the views updated once it committed."""

    ledgers: dict[str, SkuLedger] = field(default_factory=dict)
    availability: dict[tuple[str, str], AvailabilityChanged] = field(default_factory=dict)
    availability_sent_at: dict[tuple[str, str], int] = field(default_factory=dict)  # index in ctx.outgoing


class InventoryService(StreamService):
    name = SERVICE
    source = f"baton/{SERVICE}"
    stores = (LEDGER_STORE,)
    timer_interval_s = 1.0

    def __init__(self, settings: Settings, read_model: ReadModel, network_feed: TopicFeed | None = None) -> None:
        self.settings = settings
        self.writer = AvailabilityWriter(read_model)
        self.network_feed = network_feed
        self.network: dict[str, Location] = {}
        self.expiries: dict[int, Expiries] = {}
        self.ledger_stores: dict[int, Store[SkuLedger]] = {}
        self.batches: dict[int, tuple[BatchViews, object]] = {}  # task -> (its batch's views, their flush)
        self.background: set[asyncio.Task[None]] = set()
        self.rebuilds: set[asyncio.Task[None]] = set()

    def inputs(self) -> list[str]:
        return [self.settings.topic(INVENTORY_COMMANDS.resolve())]

    async def start(self) -> None:
        self.writer.start()
        if self.network_feed is not None:
            await self.follow(self.network_feed)

    async def follow(self, feed: TopicFeed) -> None:
        """Follow a global view in the background (started again if it fails) and wait until it caught up."""
        running = asyncio.get_running_loop().create_task(feed.run_forever(), name=f"feed {feed.topic}")
        self.background.add(running)
        await feed.caught_up.wait()

    # --- tasks ------------------------------------------------------------------------------------------
    def on_assigned(self, ctx: TaskContext) -> None:
        store: Store[SkuLedger] = ctx.store(LEDGERS)
        expiries = Expiries()
        self.ledger_stores[ctx.task] = store
        self.expiries[ctx.task] = expiries
        # decoding every ledger takes a while: in the background, so that the task processes at once
        rebuild = asyncio.get_running_loop().create_task(self.rebuild_views(ctx.task, store, expiries))
        self.rebuilds.add(rebuild)
        rebuild.add_done_callback(self.rebuilds.discard)

    async def rebuild_views(self, task: int, store: Store[SkuLedger], expiries: Expiries) -> None:
        """The holds to expire and the Redis read model again from a task's restored ledgers."""
        positions: list[AvailabilityChanged] = []
        skus = list(store.keys())
        for done, sku in enumerate(skus, start=1):
            if self.expiries.get(task) is not expiries:
                return  # revoked (or assigned again) meanwhile
            ledger = store.committed_value(sku)
            if ledger is not None:
                expiries.track_if_unknown(ledger)
                positions.extend(ledger.availability(location) for location in ledger.locations())
            if done % REBUILD_CHUNK == 0:
                self.writer.offer(positions)
                positions = []
                await asyncio.sleep(0)  # let the batches go on
        self.writer.offer(positions)
        log.info("task_views_rebuilt", task=task, skus=len(skus))

    def on_revoked(self, task: int) -> None:
        self.ledger_stores.pop(task, None)
        self.expiries.pop(task, None)
        self.batches.pop(task, None)

    # --- processing -------------------------------------------------------------------------------------
    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        if not isinstance(message, INVENTORY_COMMAND_TYPES):
            raise ValueError(f"the inventory ledger does not handle {envelope.type}")
        store: Store[SkuLedger] = ctx.store(LEDGERS)
        sku = message.sku
        ledger = store.get(sku) or SkuLedger(sku=sku)
        emits = ledger.apply(message, envelope.id)
        store.put(sku, ledger)
        views = self.batch_views(ctx)
        views.ledgers[sku] = ledger
        for emit in emits:
            ctx.send([emit], correlationid=envelope.correlationid, causationid=envelope.id)
            if isinstance(emit.message, AvailabilityChanged):
                self.keep_latest_availability(ctx, views, emit.message)

    @staticmethod
    def keep_latest_availability(ctx: TaskContext, views: BatchViews, change: AvailabilityChanged) -> None:
        """One ``AvailabilityChanged`` per position per batch: the topic is compacted and the read model keeps
        the newest, so a later change in the same transaction takes the place of the earlier record."""
        position = (change.sku, change.location)
        views.availability[position] = change
        earlier = views.availability_sent_at.get(position)
        if earlier is None:
            views.availability_sent_at[position] = len(ctx.outgoing) - 1
        else:
            ctx.outgoing[earlier] = ctx.outgoing.pop()

    def on_timer(self, ctx: TaskContext) -> None:
        expiries = self.expiries.get(ctx.task)
        if expiries is None:
            return
        for emit in expiries.due(ctx.now):
            order_id = getattr(emit.message, "order_id", "")
            ctx.send([emit], correlationid=order_id, causationid=None)
            log.info("hold_lapsed", task=ctx.task, sku=emit.key, order_id=order_id)

    def batch_views(self, ctx: TaskContext) -> BatchViews:
        """This batch's views, flushed after its commit; a batch rolled back drops its flush (and so them)."""
        current = self.batches.get(ctx.task)
        if current is not None and current[1] in ctx.after:
            return current[0]
        views = BatchViews()

        async def flush() -> None:
            self.views_committed(ctx.task, views)

        self.batches[ctx.task] = (views, flush)
        ctx.after_commit(flush)
        return views

    def views_committed(self, task: int, views: BatchViews) -> None:
        expiries = self.expiries.get(task)
        if expiries is not None:
            for ledger in views.ledgers.values():
                expiries.track(ledger)
        self.writer.offer(views.availability.values())

    # --- reads ------------------------------------------------------------------------------------------
    def committed_ledger(self, sku: str) -> SkuLedger | None:
        """The SKU's ledger as last committed, from whichever task of this instance holds it."""
        for store in list(self.ledger_stores.values()):
            ledger = store.committed_value(sku)
            if ledger is not None:
                return ledger
        return None

    def on_network(self, message: Message) -> None:
        if isinstance(message, LocationConfigured):
            self.network[message.location.id] = message.location

    async def stop(self) -> None:
        await self.writer.drain()
        for task in self.background:
            task.cancel()


def build(settings: Settings, web_port: int | None = None) -> tuple[InventoryService, web.Application | None]:
    """The service, and with a web port the HTTP app serving ``GET /stock/{sku}``."""
    read_model = ReadModel(settings.redis_url, settings.namespace)
    if not web_port:
        return InventoryService(settings, read_model), None
    service = InventoryService(settings, read_model)
    service.network_feed = TopicFeed(settings.kafka_bootstrap, settings.topic(NETWORK.resolve()), service.on_network)
    return service, stock_app(service.committed_ledger, service.network)
