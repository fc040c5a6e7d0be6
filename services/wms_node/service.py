"""A WMS node on the processing engine: one task (its inbox has one partition), its entities in one store.

``handle`` parses nothing itself (the engine decoded the envelope): it builds the core's context from in-memory
views only (the location's master data, SKU weights and volumes, the ledger's on-hand from the compacted
availability topic), calls the pure core through a ``Unit`` over the task's store, puts back what changed and
sends what the core returned, all in the batch's transaction. No Redis, no awaits on that path: the Redis
views, the janitor's bookkeeping and the replies awaited by the HTTP API are handed over once the batch
committed, one buffer per batch.

The timer (``on_timer``) releases due waves and lapsed claims by applying a ``NodeTick`` straight to the store
(inside the timer's transaction), and deletes the entities finished longer ago than ``retain_s``.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.base import Message
from schemas.catalog import SkuConfigured
from schemas.envelope import Envelope, derived_id
from schemas.inventory import AvailabilityChanged
from schemas.network import LocationConfigured
from schemas.wms import NodeTick, TaskUpdated
from services.runtime.feed import TopicFeed
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.processing import AfterCommit, Incoming, Store, StoreSpec, StreamService, TaskContext
from services.wms_node.domain.model import (
    FINISHED_STAGES,
    Entity,
    OrderWork,
    Site,
    Task,
    Unit,
    entity_type,
    sku_key,
    task_key,
)
from services.wms_node.domain.node import WORKER_COMMANDS, Node, skus_of
from services.wms_node.domain.waves import next_due_at
from services.wms_node.domain.work import Context, SiteInfo, SkuData
from services.wms_node.janitor import Janitor
from services.wms_node.views import reply_of

log = get_logger(__name__)
Replies = dict[str, dict[str, Any]]

Bundle = dict[str, BaseModel]  # entity key -> the entity
Changes = list[tuple[str, BaseModel | None]]  # entity key -> its new value (None: removed)


ORDERS_PER_BUNDLE = 25  # a wave's work is split so that a bundle stays far below Kafka's record size limit


def bundle_of(key: str) -> str:
    """Where an entity lives when nothing says otherwise: the site, the journal, the bin map and each SKU under
    their own key (every batch changes the site; a SKU is changed by many orders); an order, task or delivery
    with the work it belongs to (task ids start with the id of their order, delivery or return)."""
    kind, sep, name = key.partition(":")
    if sep and kind in ("order", "task", "supply", "return"):
        return "work:" + name.split("/", 1)[0]
    return key


def home_of(key: str, entity: BaseModel, site: BaseModel | None) -> str:
    """The bundle an entity belongs in now. The work of a wave shares bundles: its orders are picked, packed
    and shipped together, so each step of twenty orders is one changelog record (or a few) instead of twenty.
    Accepted orders wait for their wave in one ``intake`` bundle (written with the site in each batch anyway);
    an order finished without a wave (rejected, cancelled early), a delivery and a return have their own."""
    if isinstance(entity, Task) and entity.wave_id:
        return wave_bundle(entity.wave_id, entity.subject, site)
    if isinstance(entity, OrderWork):
        waves = [req.wave_id for req in entity.requests.values() if req.wave_id]
        if waves:
            return wave_bundle(waves[-1], entity.order_id, site)
        if entity.requests and all(req.stage not in FINISHED_STAGES for req in entity.requests.values()):
            return "intake"
    return bundle_of(key)


def wave_bundle(wave_id: str, order_id: str, site: BaseModel | None) -> str:
    max_orders = site.waves.max_orders if isinstance(site, Site) else ORDERS_PER_BUNDLE
    parts = -(-max_orders // ORDERS_PER_BUNDLE)
    if parts <= 1:
        return f"wave:{wave_id}"
    return f"wave:{wave_id}/{zlib.crc32(order_id.encode()) % parts}"


class Placement:
    """Which bundle holds each entity, in memory. Never trusted blindly: a batch rolled back leaves it pointing
    where the entity is not (moved, created or deleted by that batch), and a look-up that finds the entity
    missing from its bundle rebuilds it from the store. An entry is only ever removed by a rebuild, so an
    entity in the store always has one."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {}

    def rebuild(self, store: Store[Bundle]) -> None:
        self.where = {key: name for name, bundle in store.items() for key in bundle}


def encode_bundle(bundle: Bundle) -> bytes:
    """A bundle's changelog value: its entities' JSON, each written by pydantic (fields left at their default
    are left out: a finished order's empty lists and unset stamps would be most of its bytes), and only once
    after each change."""
    return orjson.dumps({key: orjson.Fragment(_json_of(entity)) for key, entity in bundle.items()})


def _json_of(entity: BaseModel) -> bytes:
    if isinstance(entity, Entity):
        return entity.json_bytes()
    return entity.model_dump_json(exclude_defaults=True).encode()


def decode_bundle(raw: bytes) -> Bundle:
    return {key: entity_type(key).model_validate(doc) for key, doc in orjson.loads(raw).items()}


# The node's entities (site, journal, bins, sku:…, order:…, task:…, supply:…, return:…), in bundles.
ENTITIES = StoreSpec[Bundle]("entities", encode=encode_bundle, decode=decode_bundle)


class Entities:
    """The node's entities by their own keys, over a task's store of bundles. With the service's ``placement``
    a look-up is a dictionary read; without one (readers outside the service), a scan."""

    def __init__(self, store: Store[Bundle], placement: Placement | None = None) -> None:
        self.store = store
        self.placement = placement

    def bundle_name(self, key: str) -> str | None:
        """The bundle holding ``key`` now (None: no such entity)."""
        fixed = bundle_of(key)
        if fixed == key:
            return key
        if self.placement is None:
            return next((name for name, bundle in self.store.items() if key in bundle), None)
        name = self.placement.where.get(key)
        if name is None:
            return None
        bundle = self.store.get(name)
        if bundle is not None and key in bundle:
            return name
        self.placement.rebuild(self.store)  # left behind by a rolled-back batch, or deleted
        return self.placement.where.get(key)

    def entity(self, key: str) -> BaseModel | None:
        """The entity itself (a handler may change it in place, then must ``write`` it)."""
        name = self.bundle_name(key)
        bundle = None if name is None else self.store.get(name)
        return None if bundle is None else bundle.get(key)

    def get(self, key: str) -> str | None:
        """The entity's JSON text."""
        entity = self.entity(key)
        return None if entity is None else entity.model_dump_json()

    def committed(self, key: str) -> str | None:
        """As of the last commit, as JSON text (for readers outside the batches)."""
        where = self.placement.where.get(key) if self.placement is not None else None
        bundle = self.store.committed_value(where) if where else None
        if bundle is None or key not in bundle:  # not placed yet, or moved since: find its bytes
            needle = orjson.dumps(key)
            found = (name for name, raw in self.store.committed_raw_items() if needle in raw)
            bundle = next((b for b in map(self.store.committed_value, found) if b is not None and key in b), None)
        return None if bundle is None else bundle[key].model_dump_json()

    def write(self, changes: Iterable[tuple[str, BaseModel | None]]) -> None:
        """Put changed entities (None: removed), each in the bundle it belongs in now (moved there if it was
        elsewhere); each bundle touched is put once."""
        touched: dict[str, Bundle] = {}
        site = self.entity("site")

        def bundle(name: str) -> Bundle:
            if name not in touched:
                touched[name] = self.store.get(name) or {}
            return touched[name]

        for key, value in changes:
            current = self.bundle_name(key)
            home = None if value is None else home_of(key, value, site)
            if current is not None and current != home:
                bundle(current).pop(key, None)
            if value is not None and home is not None:
                if isinstance(value, Entity):
                    value.touched()
                bundle(home)[key] = value
                if self.placement is not None:
                    self.placement.where[key] = home
        for name, content in touched.items():
            if content:
                self.store.put(name, content)
            else:
                self.store.delete(name)

    def entities(self) -> Iterator[tuple[str, BaseModel]]:
        for _, bundle in self.store.items():
            yield from bundle.items()

    def items(self) -> Iterator[tuple[str, str]]:
        """Every entity as JSON text."""
        for key, entity in self.entities():
            yield key, entity.model_dump_json()


class MasterData:
    """What the node knows of the world, followed from compacted topics: its own network entry, the SKUs'
    weights and volumes, and the ledger's on-hand at this location (for a SKU the node meets the first time)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.info: SiteInfo | None = None
        self.catalog: dict[str, SkuData] = {}
        self.on_hand: dict[str, tuple[int, int]] = {}  # sku -> (ledger version, on hand)

    def on_network(self, message: Message) -> None:
        if isinstance(message, LocationConfigured) and message.location.id == self.location:
            loc = message.location
            self.info = SiteInfo(kind=loc.kind, capabilities=tuple(loc.capabilities),
                                 daily_capacity=loc.daily_capacity, open=loc.open)

    def on_catalog(self, message: Message) -> None:
        if isinstance(message, SkuConfigured):
            self.catalog[message.sku] = SkuData(weight_g=message.weight_g, volume_cm3=message.volume_cm3)

    def on_availability(self, message: Message) -> None:
        if not isinstance(message, AvailabilityChanged) or message.location != self.location:
            return
        known = self.on_hand.get(message.sku)
        if known is None or message.version >= known[0]:  # a replayed older position never wins
            self.on_hand[message.sku] = (message.version, message.on_hand)

    def ledger_on_hand(self, skus: Iterable[str]) -> dict[str, int]:
        return {sku: self.on_hand.get(sku, (0, 0))[1] for sku in skus}


@dataclass
class Committed:
    """What one batch changed, handed to the views, the janitor and the HTTP waiters once it committed."""

    changed: dict[str, BaseModel | None] = field(default_factory=dict)  # the latest value of each key changed
    replies: Replies = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    now: datetime | None = None

    @property
    def changes(self) -> Changes:
        return list(self.changed.items())

    def add(self, changes: Iterable[tuple[str, BaseModel | None]]) -> None:
        self.changed.update(changes)


class CommitSink:
    """Where committed batches go (Redis views, the waiting HTTP requests); the service never awaits it."""

    def committed(self, batch: Committed) -> None:
        """Called after the batch's transaction committed."""


class NodeService(StreamService):
    stores = (ENTITIES,)
    timer_interval_s = 0.2

    def __init__(
        self,
        location: str,
        inbox: str,
        node: Node,
        master: MasterData,
        *,
        retain_s: float,
        sink: CommitSink | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        feeds: Sequence[TopicFeed] = (),
    ) -> None:
        self.name = f"wms-{location}"
        self.source = f"baton/wms/{location}"
        self.location = location
        self.inbox = inbox
        self.node = node
        self.master = master
        self.janitor = Janitor(retain_s)
        self.sink = sink or CommitSink()
        self.feeds = feeds
        self.on_start = on_start  # starts the master-data feeds (and what else the process runs), until caught up
        self.task_ctx: TaskContext | None = None  # the node's one task, once assigned (read by the HTTP API)
        self.placement = Placement()
        self._batch: Committed | None = None
        self._batch_callback: AfterCommit | None = None

    # ------------------------------------------------------------------ engine hooks

    def inputs(self) -> list[str]:
        return [self.inbox]

    def views(self) -> Sequence[TopicFeed]:
        return self.feeds

    async def start(self) -> None:
        if self.on_start is not None:
            await self.on_start()

    def on_assigned(self, ctx: TaskContext) -> None:
        """Restored: every entity counts as finished from now (janitor), and the views are rebuilt from it."""
        self.task_ctx = ctx
        self.placement.rebuild(ctx.store(ENTITIES.name))
        everything: Changes = list(self.entities(ctx).entities())
        now = datetime.now(UTC)
        self.janitor = Janitor(self.janitor.retain.total_seconds())
        self.janitor.observe(everything, now)
        self.sink.committed(Committed(changed=dict(everything), now=now))

    def on_revoked(self, task: int) -> None:
        self.task_ctx = None
        self.placement = Placement()
        self._batch = None

    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        emits = self.apply(ctx, message, envelope.id, envelope.time)
        ctx.send(emits, correlationid=envelope.correlationid, causationid=envelope.id)
        if isinstance(message, WORKER_COMMANDS):
            task = self.entities(ctx).entity(task_key(message.task_id))
            self.batch(ctx).replies[envelope.id] = _reply(self.location, envelope.id, emits, task)

    def on_timer(self, ctx: TaskContext) -> None:
        store = self.entities(ctx)
        now = ctx.now
        if self.tick_due(store, now):
            tick_id = derived_id(self.location, "tick", now)
            emits = self.apply(ctx, NodeTick(location=self.location), tick_id, now)
            ctx.send(emits, correlationid=f"{self.location}:tick", causationid=tick_id)
        gone = self.janitor.due(now)
        if gone:
            store.write((key, None) for key in gone)
            batch = self.batch(ctx)
            batch.add((key, None) for key in gone)
            batch.gone += gone

    # ------------------------------------------------------------------ the work

    def entities(self, ctx: TaskContext) -> Entities:
        return Entities(ctx.store(ENTITIES.name), self.placement)

    def apply(self, ctx: TaskContext, message: Message, message_id: str, now: datetime) -> list[Emit]:
        """One message through the pure core; the entities it changed are put back in the store."""
        store = self.entities(ctx)
        first_met = [sku for sku in skus_of(message) if store.get(sku_key(sku)) is None]
        core_ctx = Context(now=now, info=self.master.info, ledger=self.master.ledger_on_hand(first_met),
                           catalog=self.master.catalog)
        unit = Unit(store.entity)
        emits = self.node.handle(unit, message, message_id, core_ctx)
        changes = unit.changes()
        store.write(changes)
        batch = self.batch(ctx)
        batch.add(changes)
        batch.now = now
        return emits

    def tick_due(self, store: Entities, now: datetime) -> bool:
        """Whether a wave's cut-off or a claim's deadline has come, read from the in-memory site."""
        site = self.site(store)
        if site is None:
            return False
        wave_at = next_due_at(site.pending, site.waves)
        return (wave_at is not None and wave_at <= now) or any(until <= now for until in site.claims.values())

    def site(self, store: Entities) -> Site | None:
        site = store.entity("site")
        return site if isinstance(site, Site) else None

    def batch(self, ctx: TaskContext) -> Committed:
        """This batch's buffer for after the commit: one per batch (a rolled-back batch's buffer is dropped with
        the callback the engine forgets, so a re-applied batch starts a fresh one)."""
        if self._batch is None or self._batch_callback not in ctx.after:
            batch = Committed()
            self._batch = batch

            async def committed() -> None:
                self.janitor.observe(batch.changes, batch.now or ctx.now)
                self.janitor.forget(batch.gone)
                self.sink.committed(batch)

            self._batch_callback = committed
            ctx.after_commit(committed)
        return self._batch


def _reply(location: str, command_id: str, emits: list[Emit], task: BaseModel | None) -> dict[str, Any]:
    """The task update a worker's command caused; for a command applied before (sent twice), the task as it is."""
    update = next((e.message for e in emits if isinstance(e.message, TaskUpdated)
                   and e.message.command_id == command_id), None)
    if update is None and isinstance(task, Task) and task.seen(command_id):
        update = TaskUpdated(task_id=task.task_id, location=location, kind=task.kind,
                             status=task.status, worker=task.worker or task.done_by,
                             claimed_until=task.claimed_until, command_id=command_id)
    return reply_of(update.model_dump(mode="json") if update else None, command_id)


__all__ = ["ENTITIES", "CommitSink", "Committed", "Entities", "MasterData", "NodeService", "Placement", "bundle_of",
           "home_of"]
