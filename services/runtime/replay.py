"""Read a topic back from its beginning to its current end (audits, invariant checks, time travel)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.envelope import Envelope, InvalidMessage, decode
from services.runtime.settings import Settings


async def read_topic(settings: Settings, topic: str) -> list[tuple[Envelope | None, bytes]]:
    """Every message of a topic: (its envelope, or None when it does not parse; the raw value)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
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
