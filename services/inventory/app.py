"""The inventory service: the only writer of stock, on the processing engine (one ledger per SKU).

Input is ``inventory.commands.v1`` (keyed by SKU); partition *i* is task *i*, with its own ``ledgers`` and
``holds`` stores. ``handle`` applies one command to its SKU's ledger through the pure core and sends what the
core returned; the engine writes each changed ledger once per batch (the changelog), every event and the
consumed offsets in one transaction. A ledger is stored in two parts: its head (positions, supplies, applied
ids) under the SKU, and each reservation under ``SKU@reservation id``, so that a batch writes the heads and the
reservations it changed, not every hold of a busy SKU (5,000 open holds made 130 KB records, written once per
batch per SKU). Nothing here waits on the network while commands are applied:

- the availability a batch changed goes to Redis after the commit, through a coalescing background writer;
- timed holds the orchestrator did not expire are expired by the service itself (``ExpireReservation`` to its
  own command topic, in the transaction of a timer) from an in-memory index of each task's holds;
- when a task is assigned (after its store was restored), the index and the Redis read model are rebuilt
  from the store in the background (the task processes meanwhile; what its batches commit is newer);
- with a web port, ``GET /stock/{sku}`` answers from the ledgers as last committed (``services.inventory.web``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.inventory import AvailabilityChanged
from schemas.network import Location, LocationConfigured
from schemas.topics import INVENTORY_COMMANDS, NETWORK
from services.inventory.domain.ledger import INVENTORY_COMMAND_TYPES, Reservation, SkuLedger
from services.inventory.views import AvailabilityWriter, Expiries
from services.inventory.web import stock_app
from services.runtime.feed import TopicFeed
from services.runtime.logs import get_logger
from services.runtime.processing import Incoming, Store, StoreSpec, StreamService, TaskContext
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

SERVICE = "inventory"
LEDGERS = "ledgers"
HOLDS = "holds"
REBUILD_CHUNK = 50  # ledgers decoded between two looks at the loop while a task's views are rebuilt
log = get_logger(__name__)


def load(raw: bytes | None, sku: str) -> SkuLedger:
    return SkuLedger.model_validate_json(raw) if raw else SkuLedger(sku=sku)


def dump(ledger: SkuLedger) -> bytes:
    """The whole ledger (reservations included), as tools and tests read it."""
    return ledger.model_dump_json(exclude_defaults=True).encode()


def dump_head(ledger: SkuLedger) -> bytes:
    """The ledger without its reservations (each is stored under its own key)."""
    return ledger.model_dump_json(exclude_defaults=True, exclude={"reservations"}).encode()


def decode_ledger(raw: bytes) -> SkuLedger:
    return SkuLedger.model_validate_json(raw)


def hold_key(sku: str, reservation_id: str) -> str:
    return f"{sku}@{reservation_id}"  # "@" is in no SKU (see schemas.base.Sku)


def sku_of_hold(key: str) -> str:
    return key.split("@", 1)[0]


def dump_reservation(reservation: Reservation) -> bytes:
    return reservation.model_dump_json(exclude_defaults=True).encode()


def decode_reservation(raw: bytes) -> Reservation:
    return Reservation.model_validate_json(raw)


def assemble(head: SkuLedger, reservations: Iterable[Reservation]) -> SkuLedger:
    """A ledger head with its reservations, in creation order (the order the ledger made them in). A head
    stored whole (before reservations had keys of their own) keeps those it holds, unless stored apart too."""
    merged = {**head.reservations, **{r.reservation_id: r for r in reservations}}
    head.reservations = {r.reservation_id: r for r in sorted(merged.values(), key=lambda r: r.seq)}
    return head


LEDGER_STORE: StoreSpec[SkuLedger] = StoreSpec(LEDGERS, dump_head, decode_ledger)
HOLD_STORE: StoreSpec[Reservation] = StoreSpec(HOLDS, dump_reservation, decode_reservation)


class HoldIndex:
    """A task's reservation keys per SKU as committed at one revision of its ``holds`` store: what to read to
    put a ledger together again. Only needed when a ledger head is decoded afresh (the first use after a
    restore, or after a roll-back), so it is built then, once per revision, rather than kept up to date."""

    def __init__(self, holds: Store[Reservation]) -> None:
        self.revision = holds.revision
        self.by_sku: dict[str, list[str]] = {}
        for key, _ in holds.committed_raw_items():
            self.by_sku.setdefault(sku_of_hold(key), []).append(key)

    def keys(self, sku: str) -> list[str]:
        return self.by_sku.get(sku, [])


@dataclass
class BatchViews:
    """What one batch of a task changed, for the views updated once it committed."""

    ledgers: dict[str, SkuLedger] = field(default_factory=dict)
    availability: dict[tuple[str, str], AvailabilityChanged] = field(default_factory=dict)
    availability_sent_at: dict[tuple[str, str], int] = field(default_factory=dict)  # index in ctx.outgoing


class InventoryService(StreamService):
    name = SERVICE
    source = f"baton/{SERVICE}"
    stores = (LEDGER_STORE, HOLD_STORE)
    timer_interval_s = 1.0

    def __init__(self, settings: Settings, read_model: ReadModel, network_feed: TopicFeed | None = None) -> None:
        self.settings = settings
        self.writer = AvailabilityWriter(read_model)
        self.network_feed = network_feed
        self.network: dict[str, Location] = {}
        self.expiries: dict[int, Expiries] = {}
        self.ledger_stores: dict[int, Store[SkuLedger]] = {}
        self.hold_stores: dict[int, Store[Reservation]] = {}
        self.hold_index: dict[int, HoldIndex] = {}
        self.assembled: dict[int, dict[str, SkuLedger]] = {}  # task -> the ledger objects given their holds
        self.batches: dict[int, tuple[BatchViews, object]] = {}  # task -> (its batch's views, their flush)
        self.background: set[asyncio.Task[None]] = set()
        self.rebuilds: set[asyncio.Task[None]] = set()

    def inputs(self) -> list[str]:
        return [self.settings.topic(INVENTORY_COMMANDS.resolve())]

    def views(self) -> Sequence[TopicFeed]:
        return () if self.network_feed is None else (self.network_feed,)

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
        holds: Store[Reservation] = ctx.store(HOLDS)
        expiries = Expiries()
        self.ledger_stores[ctx.task] = store
        self.hold_stores[ctx.task] = holds
        self.hold_index.pop(ctx.task, None)
        self.assembled[ctx.task] = {}
        self.expiries[ctx.task] = expiries
        # decoding every ledger takes a while: in the background, so that the task processes at once
        rebuild = asyncio.get_running_loop().create_task(self.rebuild_views(ctx.task, expiries))
        self.rebuilds.add(rebuild)
        rebuild.add_done_callback(self.rebuilds.discard)

    async def rebuild_views(self, task: int, expiries: Expiries) -> None:
        """The holds to expire and the Redis read model again from a task's restored ledgers."""
        positions: list[AvailabilityChanged] = []
        skus = list(self.ledger_stores[task].keys())
        for done, sku in enumerate(skus, start=1):
            if self.expiries.get(task) is not expiries:
                return  # revoked (or assigned again) meanwhile
            ledger = self.committed_in_task(task, sku)
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
        self.hold_stores.pop(task, None)
        self.hold_index.pop(task, None)
        self.assembled.pop(task, None)
        self.expiries.pop(task, None)
        self.batches.pop(task, None)

    # --- processing -------------------------------------------------------------------------------------
    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        if not isinstance(message, INVENTORY_COMMAND_TYPES):
            raise ValueError(f"the inventory ledger does not handle {envelope.type}")
        store: Store[SkuLedger] = ctx.store(LEDGERS)
        sku = message.sku
        ledger = self.ledger(ctx, sku)
        emits = ledger.apply(message, envelope.id)
        store.put(sku, ledger)
        views = self.batch_views(ctx)
        views.ledgers[sku] = ledger
        self.put_holds(ctx, ledger)
        for emit in emits:
            ctx.send([emit], correlationid=envelope.correlationid, causationid=envelope.id)
            if isinstance(emit.message, AvailabilityChanged):
                self.keep_latest_availability(ctx, views, emit.message)

    def ledger(self, ctx: TaskContext, sku: str) -> SkuLedger:
        """The SKU's ledger in this batch; a head read afresh from the store gets its committed reservations."""
        head: SkuLedger | None = ctx.store(LEDGERS).get(sku)
        if head is None:
            return SkuLedger(sku=sku)
        assembled = self.assembled.setdefault(ctx.task, {})
        if assembled.get(sku) is not head:  # decoded since (first use, or the batch before was rolled back)
            holds: Store[Reservation] = ctx.store(HOLDS)
            keys = self.committed_hold_keys(ctx.task, holds, sku)
            # decoded afresh, never from the store's cache: a command that raised half-way may have changed a
            # cached reservation in place without putting it back
            if head.reservations:  # stored whole by an older version: each goes under its own key at the next put
                head.mark_reservations_changed()
            assemble(head, (r for r in (holds.committed_value(key) for key in keys) if r is not None))
            assembled[sku] = head
        return head

    def committed_hold_keys(self, task: int, holds: Store[Reservation], sku: str) -> list[str]:
        index = self.hold_index.get(task)
        if index is None or index.revision != holds.revision:
            index = self.hold_index[task] = HoldIndex(holds)
        return index.keys(sku)

    @staticmethod
    def put_holds(ctx: TaskContext, ledger: SkuLedger) -> None:
        """The reservations the command changed, each under its own key (forgotten ones deleted)."""
        holds: Store[Reservation] = ctx.store(HOLDS)
        changed, forgotten = ledger.take_changed_reservations()
        for reservation in changed:
            holds.put(hold_key(ledger.sku, reservation.reservation_id), reservation)
        for reservation_id in forgotten:
            holds.delete(hold_key(ledger.sku, reservation_id))

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
        for task in list(self.ledger_stores):
            ledger = self.committed_in_task(task, sku)
            if ledger is not None:
                return ledger
        return None

    def committed_in_task(self, task: int, sku: str) -> SkuLedger | None:
        """The SKU's ledger with its reservations as of the task's last commit, decoded afresh."""
        store, holds = self.ledger_stores.get(task), self.hold_stores.get(task)
        head = store.committed_value(sku) if store is not None else None
        if head is None or holds is None:
            return head
        keys = self.committed_hold_keys(task, holds, sku)
        return assemble(head, (r for r in (holds.committed_value(key) for key in keys) if r is not None))

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
