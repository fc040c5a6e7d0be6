"""A namespace's retained topics read back whole, fast: every record with its place (topic, partition, offset).

The audits read everything once into plain records: orjson documents, never pydantic models (a model costs
several microseconds per record; the audit's checks read a few keys of each). The consumer is group-less,
read committed (what an aborted transaction wrote never happened), and fetches in large batches with
``getmany``; each partition is read from its beginning to the end offset it had when the read started, or to
the last record stamped at or before ``until``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from baton.orders_cli import catalog_partitions
from schemas.topics import ALL_TOPICS
from services.runtime.settings import Settings

Progress = Callable[[int], None]  # called with the number of records just read
FETCH_BYTES = 64 * 1024 * 1024
STALL_S = 10.0


@dataclass(slots=True, eq=False)
class LogRecord:
    """One record of the log: where it is, when Kafka stamped it, and its CloudEvents document (None: not JSON);
    its type, id and data picked out once (the checks read them many times). Not frozen: a frozen dataclass
    sets each field through ``object.__setattr__``, which doubled the cost of building 400,000 of them."""

    topic: str  # the catalog name, e.g. ``inventory.movements.v1`` or ``wms.WH-PAR.commands.v1``
    partition: int
    offset: int
    timestamp_ms: int
    doc: dict[str, Any] | None
    type: str = ""  # "": not a CloudEvent with an id, a type and data (the audit reports it)
    id: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # never changed once read
    cause: str | None = None

    @classmethod
    def parsed(cls, topic: str, partition: int, offset: int, timestamp_ms: int, raw: bytes | None) -> LogRecord:
        doc = _document(raw)
        if doc is None:
            return cls(topic, partition, offset, timestamp_ms, None)
        data, kind, event_id = doc.get("data"), doc.get("type"), doc.get("id")
        if not (kind and event_id and isinstance(data, dict)):
            return cls(topic, partition, offset, timestamp_ms, doc, "", str(event_id or ""))
        cause = doc.get("causationid")
        return cls(topic, partition, offset, timestamp_ms, doc, str(kind), str(event_id), data,
                   None if cause is None else str(cause))

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed; a naive one is UTC)."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def catalog_name(settings: Settings, topic: str) -> str:
    """The namespace's prefix taken off: ``ns.inventory.movements.v1`` -> ``inventory.movements.v1``."""
    return topic.removeprefix(settings.namespace + ".")


def spec_name(topic: str) -> str:
    """The catalog spec a topic name belongs to (``wms.WH-PAR.tasks.v1`` -> ``wms.{location}.tasks.v1``)."""
    parts = topic.split(".")
    if len(parts) == 4 and parts[0] == "wms" and parts[1] != "events":
        return f"wms.{{location}}.{parts[2]}.{parts[3]}"
    return topic


KNOWN_SPECS = frozenset(spec.name for spec in ALL_TOPICS)


async def read_log(
    settings: Settings,
    *,
    until: datetime | None = None,
    topics: Iterable[str] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> list[LogRecord]:
    """Every record of the namespace's catalog topics (or of the catalog names in ``topics``), partition by
    partition in offset order."""
    partitions = await catalog_partitions(settings)
    if topics is not None:
        wanted = set(topics)
        partitions = [tp for tp in partitions if spec_name(catalog_name(settings, tp.topic)) in wanted
                      or catalog_name(settings, tp.topic) in wanted]
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=FETCH_BYTES,
        request_timeout_ms=30_000,
    )
    await consumer.start()
    try:
        with paused_gc():
            return await _read(consumer, settings, partitions, until, on_total, on_progress)
    finally:
        await consumer.stop()


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while millions of records are built (none of them holds a cycle):
    measured, its repeated full scans of the growing list took over half of the read. Frozen after, so later
    collections do not walk the records either."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


async def _read(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    partitions: list[TopicPartition],
    until: datetime | None,
    on_total: Callable[[int], None] | None,
    on_progress: Progress | None,
) -> list[LogRecord]:
    if not partitions:
        return []
    consumer.assign(partitions)
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    if until is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, int(until.timestamp() * 1000) + 1))
        ends = {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}
    if on_total is not None:
        on_total(sum(max(0, ends[tp] - starts[tp]) for tp in partitions))
    pending = {tp for tp in partitions if ends[tp] > starts[tp]}
    consumer.pause(*(set(partitions) - pending))
    for tp in pending:
        consumer.seek(tp, starts[tp])
    names = {tp.topic: catalog_name(settings, tp.topic) for tp in partitions}
    out: list[LogRecord] = []
    loop_time = time.monotonic
    stalled_since = loop_time()
    while pending:
        batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
        for tp, records in batches.items():
            end, name, before = ends[tp], names[tp.topic], len(out)
            parsed = LogRecord.parsed
            out.extend(parsed(name, tp.partition, r.offset, r.timestamp, r.value) for r in records if r.offset < end)
            if on_progress is not None:
                on_progress(len(out) - before)
        done = {tp for tp in pending if await consumer.position(tp) >= ends[tp]}
        if done:
            consumer.pause(*done)
            pending -= done
        if batches or done:
            stalled_since = loop_time()
        elif loop_time() - stalled_since > STALL_S:
            raise RuntimeError(f"{len(pending)} partition(s) stopped short of their end offsets")
    return out


def _document(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None
