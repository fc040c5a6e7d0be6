"""The inventory service on faust (kept only until the processing engine runs ``services.inventory.app``).

The agent takes the commands in batches (``take_events``): it applies them in order (each SKU's ledger
loaded once), sends their events, writes each changed ledger once to the table (the changelog on the
partition of the SKU's last command) and the availability of the batch to Redis in one pipeline; the batch
is acknowledged only after all of that. A crash re-delivers the whole batch, which the ledgers apply as the
duplicates they are (same events, same ids).

Commands of a partition are applied strictly in offset order, each once. Around a restart faust can hand
over a message twice, or skip a few and go on (and its commits then stall at the hole): ``InOrder`` drops
the repeats, and on a hole the missing commands are read straight from Kafka (``HoleReader``) and applied
first; faust is then told the range is done so that its commits pass it. Skipped commands at the very end of
a partition show no later command: a timer compares each partition with its log end (``Tails``).

Besides the agent: a timer that expires timed holds the orchestrator has not expired (it sends
``ExpireReservation`` to the ledger's own command topic, never writing the table itself), a re-sync of the
Redis read model from the table after every recovery, and, with ``--web-port``, ``GET /stock/{sku}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import faust.streams as faust_streams
import orjson
import redis.exceptions
import structlog
from faust.types import EventT

from schemas.base import Message
from schemas.envelope import Envelope, InvalidMessage, decode, derived_id
from schemas.inventory import AvailabilityChanged, ExpireReservation
from schemas.network import Location, LocationConfigured
from schemas.topics import INVENTORY_COMMANDS, NETWORK
from services.inventory.domain.ledger import INVENTORY_COMMAND_TYPES, SkuLedger, replay
from services.runtime.atp import parse_near, parse_time, stock_document
from services.runtime.feed import TopicFeed
from services.runtime.inorder import HoleReader, InOrder, Tails
from services.runtime.kafka import Sender, create_app, full_topic_name, raw_topic
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.readmodel import ReadModel
from services.runtime.service import attach_heartbeat
from services.runtime.settings import Settings

SERVICE = "inventory"
BATCH_MAX = 500
BATCH_WITHIN_S = 0.005
TAIL_QUIET_S = 3.0  # a partition behind its log end by the same offset at two looks this far apart is healed
EXPIRY_GRACE = timedelta(seconds=5)  # the orchestrator expires its holds first; this is the safety net
log = get_logger(__name__)
Deadline = tuple[datetime, str, str]


def load(raw: bytes | None, sku: str) -> SkuLedger:
    return SkuLedger.model_validate_json(raw) if raw else SkuLedger(sku=sku)


def dump(ledger: SkuLedger) -> bytes:
    return ledger.model_dump_json(exclude_defaults=True).encode()


@contextlib.contextmanager
def writing_as(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event of this task while a table key is written.

    A faust table writes its changelog to the partition of the current event (a context variable); in a batch
    that must be the partition of the command that changed the key. Only this task's context is touched: the
    stream's own ``current_event`` attribute is not.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


class LedgerCache:
    """Parsed ledgers, so that a busy SKU is not parsed again for every batch.

    An entry is used only while the table still holds the very bytes it was parsed from (after a recovery the
    table holds new values, and the entry is ignored), and a batch takes the entry out while it works on the
    ledger: a batch that fails half-way leaves nothing behind, and the next one parses the stored value.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.entries: OrderedDict[str, tuple[bytes, SkuLedger]] = OrderedDict()

    def take(self, sku: str, raw: bytes | None) -> SkuLedger | None:
        entry = self.entries.pop(sku, None)
        return entry[1] if entry is not None and raw is not None and entry[0] is raw else None

    def put(self, sku: str, raw: bytes, ledger: SkuLedger) -> None:
        self.entries[sku] = (raw, ledger)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class Batch:
    """The commands of one take: ledgers loaded once per SKU, applied in order, stored once per SKU."""

    def __init__(self, table: Any, cache: LedgerCache | None = None) -> None:
        self.table = table
        self.cache = cache or LedgerCache(0)
        self.ledgers: dict[str, SkuLedger] = {}
        self.applied: dict[str, list[tuple[str, Message]]] = {}
        self.last_event: dict[str, EventT] = {}
        self.outgoing: list[tuple[Envelope, list[Emit]]] = []

    def apply(self, envelope: Envelope, command: Message, event: EventT) -> list[Emit]:
        sku: str = command.sku  # type: ignore[attr-defined]
        if sku not in self.ledgers:
            raw = self.table.get(sku)
            self.ledgers[sku] = self.cache.take(sku, raw) or load(raw, sku)
        try:
            emits = self.ledgers[sku].apply(command, envelope.id)
        except Exception:
            # the ledger may be half-changed: back to the stored state plus this batch's good commands
            self.ledgers[sku] = replay(sku, self.applied.get(sku, []), load(self.table.get(sku), sku))
            raise
        self.applied.setdefault(sku, []).append((envelope.id, command))
        self.last_event[sku] = event
        self.outgoing.append((envelope, emits))
        return emits

    def changed(self) -> dict[str, SkuLedger]:
        return {sku: self.ledgers[sku] for sku in self.last_event}

    def availability(self) -> list[AvailabilityChanged]:
        """The last availability of every position the batch changed."""
        latest: dict[tuple[str, str], AvailabilityChanged] = {}
        for _, emits in self.outgoing:
            for emit in emits:
                if isinstance(emit.message, AvailabilityChanged):
                    latest[(emit.message.sku, emit.message.location)] = emit.message
        return list(latest.values())


class Expiries:
    """Timed holds by SKU, kept in memory from the ledgers the agent writes (and from a scan after recovery)."""

    def __init__(self) -> None:
        self.by_sku: dict[str, list[Deadline]] = {}
        self.sent: set[str] = set()

    def track(self, ledger: SkuLedger) -> None:
        deadlines = ledger.deadlines()
        if deadlines:
            self.by_sku[ledger.sku] = deadlines
        else:
            self.by_sku.pop(ledger.sku, None)
        live = {rid for items in self.by_sku.values() for _, rid, _ in items}
        self.sent &= live

    def due(self, now: datetime) -> list[Emit]:
        out = []
        for sku, items in self.by_sku.items():
            for at, rid, order_id in items:
                if at <= now - EXPIRY_GRACE and rid not in self.sent:
                    expire = ExpireReservation(reservation_id=rid, order_id=order_id, sku=sku)
                    out.append(Emit.to(INVENTORY_COMMANDS, sku, expire, derived_id(rid, "expire")))
        return out


async def with_retry(action: Callable[[], Awaitable[None]], what: str) -> None:
    """Infrastructure hiccups (Redis, sockets) are retried; everything written here is idempotent."""
    for attempt in range(1, 31):
        try:
            await action()
            return
        except (TimeoutError, OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("transient_failure", what=what, attempt=attempt, error=repr(exc))
            await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
    await action()


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings, web_port=settings.web_port or None)
    commands = raw_topic(app, settings, INVENTORY_COMMANDS)
    ledgers = app.Table("ledgers", key_type=str, value_type=bytes, default=None)
    sender = Sender(app, settings, source=f"baton/{SERVICE}")
    read_model = ReadModel(settings.redis_url, settings.namespace)
    redis_lock = asyncio.Lock()  # the agent and the re-sync never interleave their writes of a position
    expiries = Expiries()
    cache = LedgerCache()
    resync = {"needed": True}
    looked = {"tails": 0.0}
    attach_heartbeat(app, read_model, SERVICE)

    async def write_availability(changes: Sequence[AvailabilityChanged]) -> None:
        async def write() -> None:
            async with redis_lock:
                await read_model.write_availability(changes)

        if changes:
            await with_retry(write, "redis availability")

    async def process(events: Sequence[EventT]) -> None:
        batch = Batch(ledgers, cache)
        for event in events:
            await handle_one(batch, event)
        for envelope, emits in batch.outgoing:
            await sender.send(emits, correlationid=envelope.correlationid, causationid=envelope.id)
        for sku, ledger in batch.changed().items():
            raw = dump(ledger)
            with writing_as(batch.last_event[sku]):
                ledgers[sku] = raw
            cache.put(sku, raw, ledger)
            expiries.track(ledger)
        await write_availability(batch.availability())
        if len(events) > 1:
            log.info("batch", commands=len(events), skus=len(batch.ledgers))

    async def handle_one(batch: Batch, event: EventT) -> None:
        try:
            envelope, command = decode(event.value)
        except InvalidMessage as exc:
            await sender.dead_letter(event, str(exc))
            return
        if not isinstance(command, INVENTORY_COMMAND_TYPES):
            await sender.dead_letter(event, f"the inventory ledger does not handle {envelope.type}")
            return
        structlog.contextvars.bind_contextvars(correlationid=envelope.correlationid, sku=command.sku)
        try:
            emits = batch.apply(envelope, command, event)
        except Exception as exc:  # the agent must survive any one bad message
            log.error("handler_failed", type=envelope.type, error=repr(exc))
            await sender.dead_letter(event, f"handler error on {envelope.type}: {exc!r}")
            return
        log.debug("applied", type=envelope.type, emitted=len(emits))

    in_order = InOrder(lambda tp: app.consumer._committed_offset.get(tp))  # type: ignore[attr-defined]
    holes = HoleReader(settings.kafka_bootstrap)
    applying = asyncio.Lock()  # the agent's batches and the tail healing never interleave
    tails = Tails()
    commands_topic = full_topic_name(settings, INVENTORY_COMMANDS)

    @app.agent(commands, concurrency=1)
    async def ledger_agent(stream: faust.StreamT) -> None:
        batches = stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S)  # type: ignore[attr-defined]
        async for events in batches:
            async with applying:
                work, gaps = await in_order_with_holes_filled(events)
                if work:
                    await process(work)
                for tp, first, last in gaps:  # faust never delivered these: done, let its commits pass them
                    await app.consumer._add_gap(tp, first, last)  # type: ignore[attr-defined]

    async def heal_tails() -> None:
        """Commands at the end of a partition that faust skipped (no later one reveals the hole): apply them
        from the log, as the agent would, once a partition lagged without progress for a whole look."""
        if app.in_recovery or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return
        ours = [tp for tp in app.consumer.assignment() if tp.topic == commands_topic]
        if not ours:
            return
        ends = await holes.end_offsets(ours)
        for tp, start, end in tails.stuck({tp: in_order.next_offset(tp) for tp in ours}, ends):
            async with applying:
                if in_order.next_offset(tp) != start:
                    continue  # the agent moved on meanwhile
                log.warning("offset_tail", partition=str(tp), missing_from=start, missing_to=end - 1)
                missing = await holes.read(tp.topic, tp.partition, start, end)
                in_order.expected[tp] = end
                await process(missing)
                await app.consumer._add_gap(tp, start, end - 1)  # type: ignore[attr-defined]

    async def in_order_with_holes_filled(events: Sequence[EventT]) -> tuple[list[Any], list[tuple[Any, int, int]]]:
        work: list[Any] = []
        gaps: list[tuple[Any, int, int]] = []
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            verdict, expected = in_order.check(tp, offset)
            if verdict == "repeat":
                continue
            if verdict == "hole":
                log.warning("offset_hole", partition=str(tp), missing_from=expected, missing_to=offset - 1)
                work.extend(await holes.read(tp.topic, tp.partition, expected, offset))
                gaps.append((tp, expected, offset - 1))
            work.append(event)
        return work, gaps

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        in_order.forget(revoked)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any = (), **kwargs: Any) -> None:
        in_order.forget(assigned)
        resync["needed"] = True

    async def resync_from_table() -> None:
        """After a recovery: the read model and the expiry index again from the table (the truth)."""
        resync["needed"] = False
        changes: list[AvailabilityChanged] = []
        for sku, raw in list(ledgers.items()):
            ledger = load(raw, sku)
            expiries.track(ledger)
            changes.extend(ledger.availability(location) for location in ledger.locations())
        await write_availability(changes)
        log.info("read_model_resynced", positions=len(changes))

    @app.timer(interval=1.0)
    async def housekeeping() -> None:
        if resync["needed"] and app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            await resync_from_table()
        if time.monotonic() >= looked["tails"] + TAIL_QUIET_S:
            looked["tails"] = time.monotonic()
            await heal_tails()
        for emit in expiries.due(datetime.now(UTC)):
            expire = emit.message
            assert isinstance(expire, ExpireReservation)
            await sender.send([emit], correlationid=expire.order_id, causationid=None)
            expiries.sent.add(expire.reservation_id)
            log.info("hold_lapsed", reservation_id=expire.reservation_id, sku=expire.sku)

    if settings.web_port:
        attach_stock_view(app, settings, ledgers)
    return app


def attach_stock_view(app: faust.App, settings: Settings, ledgers: Any) -> None:
    """``GET /stock/{sku}[?near=LAT,LON][&by=ISO-TIME]``: the ledger's own positions and ATP, as JSON."""
    network: dict[str, Location] = {}

    def on_network(message: Message) -> None:
        if isinstance(message, LocationConfigured):
            network[message.location.id] = message.location

    feed = TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, NETWORK), on_network)

    @app.task
    async def follow_network() -> None:
        await feed.run()

    @app.page("/stock/{sku}")
    async def stock_view(web: Any, request: Any, sku: str) -> Any:
        try:
            near = parse_near(request.query.get("near"))
            by = parse_time(request.query.get("by"))
        except ValueError as exc:
            return web.bytes(orjson.dumps({"error": str(exc)}), content_type="application/json", status=400)
        raw = ledgers.get(sku)
        if not raw:
            body = {"error": f"unknown SKU {sku!r}: no location has a stock position for it"}
            return web.bytes(orjson.dumps(body), content_type="application/json", status=404)
        ledger = load(raw, sku)
        positions = {location: ledger.availability(location) for location in ledger.locations()}
        document = stock_document(sku, positions, network, near=near, by=by)
        document["version"] = ledger.version
        return web.bytes(orjson.dumps(document), content_type="application/json")
