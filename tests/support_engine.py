"""A toy counting service on the processing engine, for its tests (in-process and as its own process).

Input: ``CountStock`` commands on ``{ns}.toy.in.v1`` keyed by SKU. For each, the ``counts`` store's entry of
the SKU counts one more input and adds its qty, and one record goes to ``{ns}.toy.out.v1``. The handler has
no idempotence of its own: exactly-once is the engine's doing. A qty of 13 makes the handler raise; a
location ``timer`` asks the next timer tick to emit a ``tick`` record; a location ``huge`` makes the handler
send a record too large for Kafka (once per process), so that the batch's transaction aborts; ``huge-always``
does it every time (its input must end dead-lettered).

Run as a process: ``python -m tests.support_engine`` with ``BATON_*`` in the environment.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.base import Message
from schemas.envelope import Envelope, encode, envelope_for
from schemas.inventory import CountStock
from schemas.topics import DEAD_LETTERS
from services.runtime.processing import Incoming, StoreSpec, StreamService, TaskContext
from services.runtime.settings import Settings

TOY_IN = "toy.in.v1"
TOY_OUT = "toy.out.v1"
TOY_PARTITIONS = 4


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class ToyCounter(StreamService):
    name = "toy-counter"
    source = "tests/toy-counter"
    stores = (StoreSpec[dict[str, Any]]("counts", _dumps, orjson.loads),)
    timer_interval_s = 0.2

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.huge_sent = False
        self.assigned: list[int] = []

    def inputs(self) -> list[str]:
        return [self.settings.topic(TOY_IN)]

    def on_assigned(self, ctx: TaskContext) -> None:
        self.assigned.append(ctx.task)

    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        assert isinstance(message, CountStock)
        if message.qty == 13:
            raise ValueError("unlucky thirteen")
        counts = ctx.store("counts")
        entry = counts.get(message.sku) or {"n": 0, "total": 0}
        entry = {"n": entry["n"] + 1, "total": entry["total"] + message.qty}
        counts.put(message.sku, entry)
        out = self.settings.topic(TOY_OUT)
        ctx.send_raw(out, message.sku.encode(), orjson.dumps({"id": message.count_id, "n": entry["n"]}))
        if message.location == "timer":
            counts.put(f"timer:{message.count_id}", {"n": 0, "total": 0})
        if message.location == "huge-always":
            ctx.send_raw(out, b"huge", b"x" * (3 * 1024 * 1024))
        if message.location == "huge" and not self.huge_sent:
            self.huge_sent = True
            ctx.send_raw(out, b"huge", b"x" * (3 * 1024 * 1024))

    def on_timer(self, ctx: TaskContext) -> None:
        counts = ctx.store("counts")
        for key in [k for k in counts.keys() if k.startswith("timer:")]:  # noqa: SIM118
            counts.delete(key)
            ctx.send_raw(self.settings.topic(TOY_OUT), key.encode(), orjson.dumps({"tick": key.split(":", 1)[1]}))


async def create_toy_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic(TOY_IN), settings.topic(TOY_OUT), settings.topic(DEAD_LETTERS.name)]
        new = [NewTopic(t, TOY_PARTITIONS, settings.replication_factor) for t in wanted if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


def toy_command(count_id: str, sku: str, qty: int = 1, location: str = "L1") -> bytes:
    message = CountStock(count_id=count_id, sku=sku, location=location, qty=qty)
    return encode(envelope_for(message, source="tests", correlationid=count_id, causationid=None))


async def publish(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(settings.topic(TOY_IN), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def partition_count(settings: Settings, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return len(described[0].get("partitions") or []) if described else 0
    finally:
        await admin.close()


async def read_all(
    settings: Settings, topic: str, *, committed_only: bool = True, timeout_s: float = 10.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic up to its end now (read committed by default)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(await partition_count(settings, topic))]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp, start in (await consumer.beginning_offsets(tps)).items():
            consumer.seek(tp, start)
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                out.extend((r.key, r.value) for r in records)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


def out_records(raw: list[tuple[bytes | None, bytes | None]]) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in raw if v is not None and v[:1] == b"{"]


def main() -> None:
    from services.runtime.runner import run_service

    settings = Settings()
    asyncio.run(create_toy_topics(settings))
    run_service(ToyCounter(settings), settings)


if __name__ == "__main__":
    main()
