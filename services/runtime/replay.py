"""Read a topic back from its beginning to its current end (audits, invariant checks, time travel)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.envelope import Envelope, InvalidMessage, decode
from services.runtime.settings import Settings


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=30000)


async def existing_topics(settings: Settings) -> set[str]:
    admin = _admin(settings)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def topic_partitions(settings: Settings, topics: Iterable[str]) -> dict[str, list[int]]:
    """The partition numbers of each topic that exists (missing topics are left out)."""
    wanted = list(topics)
    if not wanted:
        return {}
    admin = _admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    return {
        str(topic["topic"]): sorted(int(p["partition"]) for p in topic["partitions"])
        for topic in described
        if not topic["error_code"] and topic["partitions"]
    }


async def read_topic(settings: Settings, topic: str) -> list[tuple[Envelope | None, bytes]]:
    """Every committed message of a topic: (its envelope, or None when it does not parse; the raw value).

    Read committed: what an aborted transaction wrote never happened.
    """
    partitions = (await topic_partitions(settings, [topic])).get(topic, [])
    tps = [TopicPartition(topic, p) for p in partitions]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        ends = await consumer.end_offsets(tps)
        out: list[tuple[Envelope | None, bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend((_envelope(r.value), r.value) for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


def _envelope(raw: bytes) -> Envelope | None:
    try:
        return decode(raw)[0]
    except InvalidMessage:
        return None
