"""What the bench reads back from the topics: order times, status changes, records and bytes per topic.

Every figure comes from here (event times and record counts on the topics), never from the services' logs.
Readers use ``read_committed``: records of aborted transactions never happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from baton.bench.report import OrderTimeline, TopicTraffic
from schemas.orders import OrderPlaced, OrderStatusChanged, ReturnRefunded
from schemas.topics import ALL_TOPICS, ORDERS_INBOUND, ORDERS_STATUS, ORDERS_TIMERS
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

Offsets = dict[TopicPartition, int]
IDLE_POLLS = 6  # empty polls in a row (0.5 s each) after which a reader stops waiting for records it was promised
# Event topics: the catalog's, less the orchestrator's own timers. Everything else in the namespace (changelogs,
# timers, a framework's own topics) is internal.
EVENT_TOPICS = frozenset(spec.name for spec in ALL_TOPICS if spec is not ORDERS_TIMERS)
BENCH_TOPIC_MARK = "-bench-"  # the baseline's own topics are not the pipeline's


def is_internal(settings: Settings, topic: str) -> bool:
    relative = topic.removeprefix(f"{settings.namespace}.")
    if relative == topic:  # "<namespace>-...": a service's own topic (changelog, framework bookkeeping)
        return True
    return not any(_matches(relative, name) for name in EVENT_TOPICS)


def _matches(relative: str, catalog_name: str) -> bool:
    if "{location}" not in catalog_name:
        return relative == catalog_name
    head, tail = catalog_name.split("{location}")
    return relative.startswith(head) and relative.endswith(tail) and len(relative) > len(head) + len(tail)


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                            isolation_level="read_committed", max_partition_fetch_bytes=4 * 2**20)


async def namespace_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        prefixes = (f"{settings.namespace}.", f"{settings.namespace}-")
        baseline = f"{settings.namespace}{BENCH_TOPIC_MARK}"
        return sorted(t for t in await admin.list_topics() if t.startswith(prefixes) and not t.startswith(baseline))
    finally:
        await admin.close()


async def partitions_of(settings: Settings, topics: Iterable[str], wait_s: float = 10.0) -> list[TopicPartition]:
    """Every partition of ``topics`` (from the broker's metadata), waiting a little for topics just created."""
    wanted = list(topics)
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + wait_s
        while True:
            described = await admin.describe_topics(wanted)
            found = [TopicPartition(d["topic"], p["partition"]) for d in described if not d.get("error_code")
                     for p in d.get("partitions", ())]
            if {tp.topic for tp in found} >= set(wanted) or time.monotonic() > deadline:
                return sorted(found)
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def end_offsets(settings: Settings) -> Offsets:
    """Where every topic of the namespace ends now (the run's records are those written after)."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        tps = await partitions_of(settings, await namespace_topics(settings))
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


@dataclass
class Collected:
    timeline: OrderTimeline = field(default_factory=OrderTimeline)
    traffic: list[TopicTraffic] = field(default_factory=list)


async def collect(settings: Settings, since: Offsets) -> Collected:
    """Read every topic of the namespace from ``since`` (0 for topics born later) to its end."""
    out = Collected()
    consumer = _consumer(settings)
    await consumer.start()
    try:
        topics = await namespace_topics(settings)
        tps = await partitions_of(settings, topics)
        ends = dict(await consumer.end_offsets(tps)) if tps else {}
        counts: dict[str, list[int]] = {t: [0, 0] for t in topics}
        times: dict[str, list[float]] = {t: [] for t in topics}
        inbound, status = full_topic_name(settings, ORDERS_INBOUND), full_topic_name(settings, ORDERS_STATUS)
        async for record in _records(consumer, tps, since, ends):
            count = counts[record.topic]
            count[0] += 1
            count[1] += len(record.key or b"") + len(record.value or b"") + sum(
                len(k) + len(v or b"") for k, v in record.headers or ())
            times[record.topic].append(record.timestamp / 1000.0)
            if record.topic == inbound:
                _observe_placed(out.timeline, record.value)
            elif record.topic == status:
                _observe_status(out.timeline, record.value)
        out.traffic = [TopicTraffic(t, is_internal(settings, t), counts[t][0], counts[t][1], times[t]) for t in topics]
        return out
    finally:
        await consumer.stop()


async def _records(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: Offsets,
                   ends: Offsets) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    wanted = [tp for tp in tps if ends.get(tp, 0) > since.get(tp, 0)]
    if not wanted:
        return
    consumer.assign(wanted)
    for tp in wanted:
        consumer.seek(tp, since.get(tp, 0))
    idle = 0
    while idle < IDLE_POLLS and any([await consumer.position(tp) < ends[tp] for tp in wanted]):
        batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
        idle = 0 if batch else idle + 1
        for tp, records in batch.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record


def _event(raw: bytes | None) -> tuple[str, datetime, dict[str, object]] | None:
    try:
        doc = orjson.loads(raw or b"")
        return str(doc["type"]), datetime.fromisoformat(doc["time"]), doc["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _observe_placed(timeline: OrderTimeline, raw: bytes | None) -> None:
    event = _event(raw)
    if event and event[0] == OrderPlaced.event_type:
        timeline.placed.setdefault(str(event[2]["order_id"]), event[1].timestamp())


def _observe_status(timeline: OrderTimeline, raw: bytes | None) -> None:
    event = _event(raw)
    if event and event[0] == OrderStatusChanged.event_type:
        timeline.observe_status(str(event[2]["order_id"]), str(event[2]["status"]), event[1].timestamp())
    elif event and event[0] == ReturnRefunded.event_type:
        timeline.refunded.setdefault(str(event[2]["return_id"]), event[1].timestamp())


class StatusTail:
    """Follows the public status topic while the bench runs: live counts, and when every order settled."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeline = OrderTimeline()
        self.last_change = time.monotonic()  # when the last status change arrived
        self.consumer = _consumer(settings)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StatusTail:
        await self.consumer.start()
        topic = full_topic_name(self.settings, ORDERS_STATUS)
        tps = await partitions_of(self.settings, [topic])
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._follow())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    async def _follow(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=5_000)
            for records in batch.values():
                self.last_change = time.monotonic()
                for record in records:
                    _observe_status(self.timeline, record.value)

    def count_in(self, order_ids: Iterable[str], statuses: frozenset[str]) -> int:
        final = self.timeline.final_status
        return sum(1 for oid in order_ids if final.get(oid) in statuses)

