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

from collections.abc import Awaitable, Callable, Iterable, Iterator
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
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.processing import AfterCommit, Incoming, Store, StoreSpec, StreamService, TaskContext
from services.wms_node.domain.model import Site, Task, Unit, entity_type, sku_key, task_key
from services.wms_node.domain.node import WORKER_COMMANDS, Node, skus_of
from services.wms_node.domain.waves import next_due_at
from services.wms_node.domain.work import Context, SiteInfo, SkuData
from services.wms_node.janitor import Janitor
from services.wms_node.views import reply_of

log = get_logger(__name__)
Replies = dict[str, dict[str, Any]]

Bundle = dict[str, BaseModel]  # entity key -> the entity
Changes = list[tuple[str, BaseModel | None]]  # entity key -> its new value (None: removed)


def bundle_of(key: str) -> str:
    """The store key an entity lives under. An order and its requests' tasks (task ids start with the order id),
    or a delivery and its tasks, share one: a worker's step changes the order, finishes one task and creates the
    next, and that is one changelog record instead of three. The site, the journal, the bin map and each SKU
    have their own (every batch changes the site; a SKU is changed by many orders)."""
    kind, sep, name = key.partition(":")
    if sep and kind in ("order", "task", "supply"):
        return "work:" + name.split("/", 1)[0]
    return key


def encode_bundle(bundle: Bundle) -> bytes:
    """A bundle's changelog value: its entities' JSON, each written by pydantic (fields left at their default
    are left out: a finished order's empty lists and unset stamps would be most of its bytes)."""
    return orjson.dumps({key: orjson.Fragment(entity.model_dump_json(exclude_defaults=True))
                         for key, entity in bundle.items()})


def decode_bundle(raw: bytes) -> Bundle:
    return {key: entity_type(key).model_validate(doc) for key, doc in orjson.loads(raw).items()}


# The node's entities (site, journal, bins, sku:…, order:…, task:…, supply:…), in bundles.
ENTITIES = StoreSpec[Bundle]("entities", encode=encode_bundle, decode=decode_bundle)


class Entities:
    """The node's entities by their own keys, over a task's store of bundles."""

    def __init__(self, store: Store[Bundle]) -> None:
        self.store = store

    def entity(self, key: str) -> BaseModel | None:
        """The entity itself (a handler may change it in place, then must ``write`` it)."""
        bundle = self.store.get(bundle_of(key))
        return None if bundle is None else bundle.get(key)

    def get(self, key: str) -> str | None:
        """The entity's JSON text."""
        entity = self.entity(key)
        return None if entity is None else entity.model_dump_json()

    def committed(self, key: str) -> str | None:
        """As of the last commit, as JSON text (for readers outside the batches)."""
        bundle = self.store.committed_value(bundle_of(key))
        entity = None if bundle is None else bundle.get(key)
        return None if entity is None else entity.model_dump_json()

    def write(self, changes: Iterable[tuple[str, BaseModel | None]]) -> None:
        """Put changed entities (None: removed); each bundle touched is put once, as a new value."""
        touched: dict[str, Bundle] = {}
        for key, value in changes:
            name = bundle_of(key)
            if name not in touched:
                touched[name] = dict(self.store.get(name) or {})
            if value is None:
                touched[name].pop(key, None)
            else:
                touched[name][key] = value
        for name, bundle in touched.items():
            if bundle:
                self.store.put(name, bundle)
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
    ) -> None:
        self.name = f"wms-{location}"
        self.source = f"baton/wms/{location}"
        self.location = location
        self.inbox = inbox
        self.node = node
        self.master = master
        self.janitor = Janitor(retain_s)
        self.sink = sink or CommitSink()
        self.on_start = on_start  # starts the master-data feeds (and what else the process runs), until caught up
        self.task_ctx: TaskContext | None = None  # the node's one task, once assigned (read by the HTTP API)
        self._batch: Committed | None = None
        self._batch_callback: AfterCommit | None = None

    # ------------------------------------------------------------------ engine hooks

    def inputs(self) -> list[str]:
        return [self.inbox]

    async def start(self) -> None:
        if self.on_start is not None:
            await self.on_start()

    def on_assigned(self, ctx: TaskContext) -> None:
        """Restored: every entity counts as finished from now (janitor), and the views are rebuilt from it."""
        self.task_ctx = ctx
        everything: Changes = list(Entities(ctx.store(ENTITIES.name)).entities())
        now = datetime.now(UTC)
        self.janitor = Janitor(self.janitor.retain.total_seconds())
        self.janitor.observe(everything, now)
        self.sink.committed(Committed(changed=dict(everything), now=now))

    def on_revoked(self, task: int) -> None:
        self.task_ctx = None
        self._batch = None

    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        emits = self.apply(ctx, message, envelope.id, envelope.time)
        ctx.send(emits, correlationid=envelope.correlationid, causationid=envelope.id)
        if isinstance(message, WORKER_COMMANDS):
            task = Entities(ctx.store(ENTITIES.name)).entity(task_key(message.task_id))
            self.batch(ctx).replies[envelope.id] = _reply(self.location, envelope.id, emits, task)

    def on_timer(self, ctx: TaskContext) -> None:
        store = Entities(ctx.store(ENTITIES.name))
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

    def apply(self, ctx: TaskContext, message: Message, message_id: str, now: datetime) -> list[Emit]:
        """One message through the pure core; the entities it changed are put back in the store."""
        store = Entities(ctx.store(ENTITIES.name))
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


__all__ = ["ENTITIES", "CommitSink", "Committed", "Entities", "MasterData", "NodeService", "bundle_of"]
