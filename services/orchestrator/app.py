"""The orchestrator on the processing engine: intake, the order saga, sourcing, deadlines and order status out.

Its inputs (``orders.inbound``, ``inventory.reservations``, ``wms.events``, ``orders.timers``) are all keyed by
order id and co-partitioned, so task *i* holds every order of partition *i* in its ``orders`` store and sees
every message about them in offset order. ``handle`` does no I/O: it plans against in-memory views of the
network, the rule set and the availability topic (followed from their compacted topics by every instance),
puts the order's new state in the store and sends what the saga returned; the engine commits all of it with
the consumed offsets in one transaction. Order views reach Redis after the commit, one pipeline per batch.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError

from schemas.base import Message
from schemas.catalog import SkuConfigured
from schemas.envelope import Envelope
from schemas.inventory import AvailabilityChanged
from schemas.network import LocationConfigured, RuleSetPublished
from schemas.orders import OrderDeadlineReached, OrderPlaced, ReturnRequested
from schemas.topics import (
    CATALOG,
    INVENTORY_AVAILABILITY,
    INVENTORY_RESERVATIONS,
    NETWORK,
    ORDERS_INBOUND,
    ORDERS_TIMERS,
    PAYMENTS_EVENTS,
    RULES,
    WMS_EVENTS,
)
from schemas.wms import FulfilOrder
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import PLANNING_MESSAGES, Deadline, OrderSaga, OrderState, Snapshot
from services.orchestrator.domain.rules import DEFAULT_RULES, RuleSet, RuleSetError, parse_rule_set
from services.orchestrator.domain.sourcing import Availability, Supply
from services.orchestrator.web import order_status_app
from services.runtime.feed import TopicFeed
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.processing import Incoming, Store, StoreSpec, StreamService, TaskContext
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

SERVICE = "orchestrator"
INBOX = (ORDERS_INBOUND, INVENTORY_RESERVATIONS, WMS_EVENTS, ORDERS_TIMERS, PAYMENTS_EVENTS)
ORDERS = "orders"
CAPACITY = "capacity"
REPLAYABLE_EMITS = 1  # per order (see _bound_replayable_emits)
VIEWS_PER_PIPELINE = 500
VIEW_WRITE_ATTEMPTS = 8
T = TypeVar("T")
REFIRE_AFTER_S = 10.0  # a deadline sent but never committed (its transaction aborted) is sent again after this
log = get_logger(__name__)


def _encode_order(state: OrderState) -> bytes:
    """Fields at their default are left out (an order's empty lists, unset deadline...): decoding puts them back,
    and the changelog, the largest one, writes a sixth fewer bytes."""
    return state.model_dump_json(exclude_defaults=True).encode()


def _decode_order(raw: bytes) -> OrderState:
    return OrderState.model_validate_json(raw)


class _VersionOnly(BaseModel):
    """A stored order's version, read without building the whole state (the views re-sync compares it)."""

    model_config = ConfigDict(extra="ignore")
    version: int = 0


class _DeadlineOnly(BaseModel):
    """The one field of a stored order that the deadline index needs, read without building the whole state."""

    model_config = ConfigDict(extra="ignore")
    deadline: Deadline | None = None


ORDER_STORE: StoreSpec[OrderState] = StoreSpec(ORDERS, _encode_order, _decode_order)
# requests handed to a location on a day by this task, key "location@day" (see ``CapacityUse``)
CAPACITY_STORE: StoreSpec[int] = StoreSpec(CAPACITY, lambda n: str(n).encode(), lambda raw: int(raw))


class MasterData:
    """The network, the rule set and the catalog's prices in force, followed from their compacted topics."""

    def __init__(self) -> None:
        self.network = NetworkView()
        self.rules: RuleSet = DEFAULT_RULES
        self.prices: dict[str, float] = {}  # an exchange asks for the same SKU or another of equal price
        self.price_versions: dict[str, int] = {}

    def on_message(self, message: Message) -> None:
        if isinstance(message, SkuConfigured):
            if message.price is not None and message.version >= self.price_versions.get(message.sku, 0):
                self.prices[message.sku] = message.price
                self.price_versions[message.sku] = message.version
        elif isinstance(message, LocationConfigured):
            self.network.apply(message.location, message.network_version)
        elif isinstance(message, RuleSetPublished):
            try:
                self.rules = parse_rule_set(message.document, f"rule set {message.name} v{message.version}")
            except RuleSetError as exc:
                log.error("rule_set_ignored", reason=str(exc))

    def limited_locations(self) -> dict[str, int]:
        return {loc.id: loc.daily_capacity for loc in self.network.locations.values() if loc.daily_capacity}


class StockView:
    """The latest availability of every SKU at every location, followed from ``inventory.availability``.

    It may lag the ledger by a moment; that is sound because the ledger's reservation decides: a stale view
    only costs a refusal and a re-plan.
    """

    def __init__(self) -> None:
        self.positions: dict[str, dict[str, AvailabilityChanged]] = defaultdict(dict)

    def on_message(self, message: Message) -> None:
        if not isinstance(message, AvailabilityChanged):
            return
        by_location = self.positions[message.sku]
        known = by_location.get(message.location)
        if known is None or known.version <= message.version:  # a replayed older position never wins
            by_location[message.location] = message

    def views(self, skus: set[str]) -> tuple[Availability, Supply]:
        availability: Availability = {}
        supply: Supply = {}
        for sku in skus:
            by_location = self.positions.get(sku, {})
            availability[sku] = {loc: p.available for loc, p in by_location.items()}
            supply[sku] = {
                loc: (p.incoming_unreserved, p.next_eta.isoformat() if p.next_eta else None)
                for loc, p in by_location.items()
            }
        return availability, supply


class Deadlines:
    """One task's open deadlines, soonest first, the ones sent but not yet committed, and the ones committed.

    A deadline is marked sent as it is sent, and delivered once its transaction committed: from then on it is in
    this task's own input (``orders.timers``, read exactly once) and is never sent again while it stays due. One
    whose transaction aborted (never delivered) is sent again after ``REFIRE_AFTER_S``. Re-sending what was
    delivered, as this once did every 10 s, fed on itself under load: with 100,000 orders and an input backlog
    longer than 10 s, every due deadline went out again and again behind the backlog (5.7 million
    ``OrderDeadlineReached`` in 20 minutes). Sending twice is harmless (same event id; the saga applies it once);
    the index is updated from committed states only, so an order's new deadline (or none) ends its re-sending.
    """

    def __init__(self) -> None:
        self.due: dict[str, Deadline] = {}
        self.heap: list[tuple[datetime, str]] = []
        self.sent: dict[str, float] = {}  # order id -> when its due deadline was last sent (monotonic), uncommitted
        self.delivered: set[str] = set()  # order ids whose due deadline's message committed

    def track(self, order_id: str, deadline: Deadline | None) -> None:
        """The order's deadline as committed (None: it has none)."""
        known = self.due.get(order_id)
        if known == deadline:
            return
        self.sent.pop(order_id, None)
        self.delivered.discard(order_id)
        if deadline is None:
            self.due.pop(order_id, None)
            return
        self.due[order_id] = deadline
        heapq.heappush(self.heap, (deadline.due, order_id))

    def ripe(self, now: datetime, clock: float) -> list[tuple[str, Deadline]]:
        """Deadlines due by ``now`` that were not sent, or were sent over ``REFIRE_AFTER_S`` ago; marked sent."""
        while self.heap and self.heap[0][0] <= now:
            _, order_id = heapq.heappop(self.heap)
            deadline = self.due.get(order_id)
            if deadline is not None and deadline.due <= now and order_id not in self.sent \
                    and order_id not in self.delivered:
                self.sent[order_id] = clock - REFIRE_AFTER_S
        ripe = [(order_id, self.due[order_id]) for order_id, at in self.sent.items() if clock - at >= REFIRE_AFTER_S]
        for order_id, _ in ripe:
            self.sent[order_id] = clock
        return ripe

    def committed_sent(self, order_id: str, deadline: Deadline) -> None:
        """The transaction that sent ``deadline`` committed: unless the order moved on since, it is never re-sent."""
        if self.due.get(order_id) == deadline and self.sent.pop(order_id, None) is not None:
            self.delivered.add(order_id)


class CapacityUse:
    """Requests handed to each location with a daily capacity, per day, for planning; no Redis on the way.

    Why a count in the task's store: it commits with the order states and the ``FulfilOrder`` commands in one
    transaction, so a crash neither loses nor doubles a count. Each task counts its own dispatches; planning
    uses this task's count (including its batch in flight) plus the other tasks' counts as last committed on
    this instance. With several instances the others' counts are not seen here: the sum is then too low,
    never too high, so a location is never skipped while it has room; one over its capacity refuses the
    request (the WMS node enforces its capacity itself) and the order is re-sourced.
    """

    def __init__(self) -> None:
        self.committed: dict[int, dict[str, int]] = {}  # task -> key -> count as last committed

    @staticmethod
    def key(location: str, day: str) -> str:
        return f"{location}@{day}"

    def assigned(self, task: int, store: Store[int]) -> None:
        self.committed[task] = {key: int(raw) for key, raw in store.committed_raw_items()}

    def revoked(self, task: int) -> None:
        self.committed.pop(task, None)

    def left(self, ctx: TaskContext, limits: dict[str, int], day: str) -> dict[str, int]:
        store: Store[int] = ctx.store(CAPACITY)
        left = {}
        for location, limit in limits.items():
            key = self.key(location, day)
            others = sum(counts.get(key, 0) for task, counts in self.committed.items() if task != ctx.task)
            left[location] = limit - others - (store.get(key) or 0)
        return left

    def count(self, ctx: TaskContext, emits: list[Emit], limits: dict[str, int], day: str) -> dict[str, int]:
        """Count the requests among ``emits``; the keys changed, with their new counts."""
        store: Store[int] = ctx.store(CAPACITY)
        changed: dict[str, int] = {}
        for emit in emits:
            if isinstance(emit.message, FulfilOrder) and emit.message.location in limits:
                key = self.key(emit.message.location, day)
                changed[key] = (store.get(key) or 0) + 1
                store.put(key, changed[key])
        return changed

    def commit(self, task: int, changed: dict[str, int]) -> None:
        self.committed.setdefault(task, {}).update(changed)

    def forget_before(self, ctx: TaskContext, day: str) -> None:
        """Drop the counts of days gone (they are never read again)."""
        store: Store[int] = ctx.store(CAPACITY)
        for key in [k for k, _ in store.items() if k.rsplit("@", 1)[-1] < day]:
            store.delete(key)
            self.committed.get(ctx.task, {}).pop(key, None)


@dataclass
class Batch:
    """What one batch of a task changed, applied to the in-memory indexes and Redis once it committed."""

    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    deadlines: dict[str, Deadline | None] = field(default_factory=dict)
    deadlines_sent: list[tuple[str, Deadline]] = field(default_factory=list)
    capacity: dict[str, int] = field(default_factory=dict)


class Orchestrator(StreamService):
    name = SERVICE
    source = f"baton/{SERVICE}"
    stores = (ORDER_STORE, CAPACITY_STORE)
    timer_interval_s = 0.5

    def __init__(self, settings: Settings, read_model: ReadModel) -> None:
        self.settings = settings
        self.read_model = read_model
        self.clock = time.monotonic  # for re-sending deadlines (tests set their own)
        self.master = MasterData()
        self.stock = StockView()
        self.capacity = CapacityUse()
        self.deadlines: dict[int, Deadlines] = {}
        self.batches: dict[int, tuple[Batch, object]] = {}  # task -> (its batch in flight, that batch's flush)
        self.background: set[asyncio.Task[None]] = set()
        self.pruned: dict[int, str] = {}  # task -> the day before which its capacity counts were dropped
        self.feeds = [
            TopicFeed(settings.kafka_bootstrap, settings.topic(NETWORK.resolve()), self.master.on_message),
            TopicFeed(settings.kafka_bootstrap, settings.topic(RULES.resolve()), self.master.on_message),
            TopicFeed(settings.kafka_bootstrap, settings.topic(CATALOG.resolve()), self.master.on_message),
            TopicFeed(settings.kafka_bootstrap, settings.topic(INVENTORY_AVAILABILITY.resolve()),
                      self.stock.on_message),
        ]

    def inputs(self) -> list[str]:
        return [self.settings.topic(spec.resolve()) for spec in INBOX]

    def views(self) -> Sequence[TopicFeed]:
        return self.feeds

    async def start(self) -> None:
        for feed in self.feeds:
            running = asyncio.get_running_loop().create_task(feed.run_forever(), name=f"feed {feed.topic}")
            self.background.add(running)
        while not all(feed.caught_up.is_set() for feed in self.feeds):
            await asyncio.sleep(0.05)
        log.info("views_caught_up", locations=len(self.master.network.locations), rules=self.master.rules.name,
                 skus=len(self.stock.positions))

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        await self.read_model.close()

    # --- tasks ------------------------------------------------------------------------------------------
    def on_assigned(self, ctx: TaskContext) -> None:
        orders: Store[OrderState] = ctx.store(ORDERS)
        deadlines = Deadlines()
        stored = orders.committed_raw_items()
        for order_id, raw in stored:  # only the deadline read: 100,000 orders in about a second, none cached
            deadlines.track(order_id, _DeadlineOnly.model_validate_json(raw).deadline)
        self.deadlines[ctx.task] = deadlines
        self.capacity.assigned(ctx.task, ctx.store(CAPACITY))
        if stored:
            # a crash between a commit and its Redis write left those orders' views behind: every view is written
            # again from the restored store, in the background (live views are not held up behind 100,000 of
            # them), never over a newer one
            resync = self.resync_views(ctx.task, orders, [order_id for order_id, _ in stored])
            running = asyncio.get_running_loop().create_task(resync, name=f"views of task {ctx.task}")
            self.background.add(running)
            running.add_done_callback(self.background.discard)
        log.info("task_assigned", task=ctx.task, orders=len(stored), deadlines=len(deadlines.due))

    def on_revoked(self, task: int) -> None:
        self.deadlines.pop(task, None)
        self.capacity.revoked(task)
        self.batches.pop(task, None)

    # --- processing -------------------------------------------------------------------------------------
    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        order_id = message.subject()
        orders: Store[OrderState] = ctx.store(ORDERS)
        state = orders.get(order_id)
        version = state.version if state is not None else -1
        # the batch's time, not the message's: a deadline measures how long the saga has waited since it asked,
        # and a backlog (a burst, a restart) must not eat that wait and turn every order into a re-plan
        snapshot = self.snapshot(ctx, state, message, ctx.now)
        decision = OrderSaga(self.master.network, snapshot=snapshot).handle(state, message, envelope.id)
        if decision.state is None:
            log.info("ignored", type=envelope.type, order_id=order_id, why="no such order")
            ctx.send(decision.emits, correlationid=order_id, causationid=envelope.id)  # a return's rejection
            return
        correlation = order_id if isinstance(message, OrderPlaced) else envelope.correlationid
        ctx.send(decision.emits, correlationid=correlation, causationid=envelope.id)
        if decision.state.version == version:
            return  # a message applied before (its emits sent again above): the state did not change
        _bound_replayable_emits(decision.state)
        orders.put(order_id, decision.state)
        batch = self.batch(ctx)
        batch.views[order_id] = decision.state.view()
        batch.deadlines[order_id] = decision.state.deadline
        limits = self.master.limited_locations()
        if limits:
            batch.capacity.update(self.capacity.count(ctx, decision.emits, limits, ctx.now.date().isoformat()))

    def snapshot(self, ctx: TaskContext, state: OrderState | None, message: Message, now: datetime) -> Snapshot:
        snap = Snapshot(network=self.master.network, rules=self.master.rules, now=now)
        if isinstance(message, ReturnRequested | OrderPlaced):  # an exchange's prices; the SKUs the catalog knows
            snap.prices = self.master.prices
        if not isinstance(message, PLANNING_MESSAGES):
            return snap
        order = message if isinstance(message, OrderPlaced) else (state.order if state else None)
        if order is None:
            return snap
        snap.availability, snap.supply = self.stock.views({line.sku for line in order.lines})
        limits = self.master.limited_locations()
        if limits:
            snap.capacity_left = self.capacity.left(ctx, limits, now.date().isoformat())
        return snap

    def on_timer(self, ctx: TaskContext) -> None:
        deadlines = self.deadlines.get(ctx.task)
        if deadlines is None:
            return
        yesterday = (ctx.now - timedelta(days=1)).date().isoformat()
        if self.pruned.get(ctx.task) != yesterday:
            self.capacity.forget_before(ctx, yesterday)
            self.pruned[ctx.task] = yesterday
        ripe = deadlines.ripe(ctx.now, self.clock())
        for order_id, deadline in ripe:
            reached = OrderDeadlineReached(order_id=order_id, kind=deadline.kind, due=deadline.due)
            emit = Emit.to(ORDERS_TIMERS, order_id, reached, f"deadline:{order_id}:{deadline.kind}:{deadline.due}")
            ctx.send([emit], correlationid=order_id, causationid=None)
        if ripe:
            self.batch(ctx).deadlines_sent.extend(ripe)
            log.info("deadlines_reached", task=ctx.task, count=len(ripe))

    # --- after the commit -------------------------------------------------------------------------------
    def batch(self, ctx: TaskContext) -> Batch:
        """This batch's changes, applied once it committed; a batch rolled back drops its flush (and them)."""
        current = self.batches.get(ctx.task)
        if current is not None and current[1] in ctx.after:
            return current[0]
        batch = Batch()

        async def flush() -> None:
            await self.committed(ctx.task, batch)

        self.batches[ctx.task] = (batch, flush)
        ctx.after_commit(flush)
        return batch

    async def committed(self, task: int, batch: Batch) -> None:
        deadlines = self.deadlines.get(task)
        if deadlines is not None:
            for order_id, deadline in batch.deadlines.items():
                deadlines.track(order_id, deadline)
            for order_id, deadline in batch.deadlines_sent:
                deadlines.committed_sent(order_id, deadline)
        self.capacity.commit(task, batch.capacity)
        if batch.views:
            await self.write_views(list(batch.views.values()))

    async def resync_views(self, task: int, orders: Store[OrderState], order_ids: list[str]) -> None:
        started, rewritten = time.monotonic(), 0
        raw_of = dict(orders.committed_raw_items())
        for start in range(0, len(order_ids), VIEWS_PER_PIPELINE):
            chunk = [order_id for order_id in order_ids[start:start + VIEWS_PER_PIPELINE] if order_id in raw_of]
            shown = await self.read_views(chunk)
            # only views older than the stored order are rebuilt: decoding every order (100,000 after a restart)
            # would hold the event loop, and the batches behind it, for tens of seconds
            stale = [order_id for order_id in chunk
                     if (shown.get(order_id) or {}).get("version", -1) < _VersionOnly.model_validate_json(
                         raw_of[order_id]).version]
            states = (orders.committed_value(order_id) for order_id in stale)
            views = [state.view() for state in states if state is not None]
            if views:
                await self.write_views(views, only_newer=True)
            rewritten += len(views)
            await asyncio.sleep(0)  # let the batches run between chunks
        log.info("views_resynced", task=task, orders=len(order_ids), rewritten=rewritten,
                 seconds=round(time.monotonic() - started, 3))

    async def read_views(self, order_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """As ``write_views``: Redis hiccups are retried (a Redis just restarted left broken connections in the pool:
        a re-sync that died on one left a whole task's views missing)."""
        return await _redis_retried("views_read_failed", lambda: self.read_model.read_orders(order_ids))

    async def write_views(self, views: list[dict[str, Any]], *, only_newer: bool = False) -> None:
        """One pipeline; Redis hiccups are retried (a view never written would show an order stuck)."""
        write = self.read_model.write_orders_if_newer if only_newer else self.read_model.write_orders
        await _redis_retried("views_write_failed", lambda: write(views))


async def _redis_retried(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, tried again with a growing pause (at most 5 s) while Redis fails; the last try raises."""
    for attempt in range(VIEW_WRITE_ATTEMPTS):
        try:
            return await call()
        except (OSError, RedisError) as exc:
            log.warning(what, attempt=attempt + 1, error=repr(exc))
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
    return await call()


def _bound_replayable_emits(state: OrderState) -> None:
    """Keep the emits of the last applied message only (every id is kept, so none is applied twice).

    The saga remembers what each message emitted, to send it again if the message comes twice; that was for a
    loop that could lose sends after writing the state. Here the emits commit in the same transaction as the
    state, so a duplicate (an outside producer's retry, close behind) needs at most the last; the rest were
    two thirds of every changelog record.
    """
    applied = state.applied
    applied.keep_emits = REPLAYABLE_EMITS
    for message_id in list(applied.emits)[:-REPLAYABLE_EMITS]:
        del applied.emits[message_id]


def build(settings: Settings, web_port: int | None = None) -> tuple[Orchestrator, web.Application | None]:
    """The service, and with a web port the HTTP app serving order status from the read model."""
    read_model = ReadModel(settings.redis_url, settings.namespace)
    service = Orchestrator(settings, read_model)
    return service, order_status_app(read_model) if web_port else None
