"""Follow a (compacted) topic from its beginning without a consumer group: master data such as the network.

Every instance reads every partition, so each one holds the whole view; ``caught_up`` is set once the
end offsets seen at start have been reached. It reads committed records only (the producers are
transactional), so the end offsets it waits for are the last stable offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.base import Message
from schemas.envelope import InvalidMessage, decode
from services.runtime.logs import get_logger
from services.runtime.settings import kafka_connection

log = get_logger(__name__)


class TopicFeed:
    def __init__(self, bootstrap: str, topic: str, on_message: Callable[[Message], None]) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_message = on_message
        self.caught_up = asyncio.Event()
        self.positions: dict[int, int] = {}  # partition -> the next offset this view will read

    def position_report(self) -> dict[str, dict[str, int]]:
        """``{topic: {partition: next offset}}``: how far this view has read, for a runner that must know the
        view holds what it published before it goes on (``GET /feeds``)."""
        return {self.topic: {str(partition): offset for partition, offset in sorted(self.positions.items())}}

    async def run_forever(self, retry_s: float = 1.0) -> None:
        """``run``, started again from the beginning whenever it fails (a broker that went away): a view is never
        left behind for good. Values are applied again, which a view keyed by the latest value takes in stride."""
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("feed_failed", topic=self.topic, error=repr(exc))
                await asyncio.sleep(retry_s)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            **kafka_connection(self.bootstrap),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            # the producers are transactional: a view must never show what an aborted transaction wrote
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            partitions = await self._wait_for_assignment(consumer)
            self.positions.clear()  # read again from the beginning: a caught-up runner must wait again
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            await self._follow(consumer, ends)
        finally:
            await consumer.stop()

    async def _wait_for_assignment(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Without a group, a subscription is given every partition once the topic's metadata is known."""
        while not consumer.assignment():
            await asyncio.sleep(0.1)
        return sorted(consumer.assignment())

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        pending = {tp for tp, end in ends.items() if end > 0}
        while True:
            if not pending and not self.caught_up.is_set():
                self.caught_up.set()
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    self._apply(record.value)
            for tp in ends:
                self.positions[tp.partition] = await consumer.position(tp)
            # the consumer's position, not the last record's offset: a transaction's commit marker takes an
            # offset of its own, so a partition's end can lie past its last readable record
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)

    def _apply(self, raw: bytes | None) -> None:
        try:
            _, message = decode(raw)
        except InvalidMessage as exc:
            log.warning("feed_message_skipped", topic=self.topic, reason=str(exc))
            return
        self.on_message(message)
