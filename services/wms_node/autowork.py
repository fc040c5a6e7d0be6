"""Simulated workers (``--auto``) as a plain loop beside the node, in the same process.

They read the location's task topic (read committed: only tasks the node really committed) and confirm every
new task through the node's inbox, as people would. Each batch is one Kafka transaction: the confirmations and
the task topic's consumed offsets, committed in the node's consumer group (so the namespace's lag covers the
task topic too). A crash before the commit leaves nothing, and the batch is worked again from the committed
offsets with the same derived command ids (the node dedups them anyway).
"""

from __future__ import annotations

import asyncio
import copy
import traceback
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.envelope import InvalidMessage, decode, derived_id, encode, envelope_for
from schemas.wms import TaskCreated
from services.runtime.logs import get_logger
from services.wms_node.domain.workers import AutoWorker

log = get_logger(__name__)
Confirm = tuple[bytes, bytes]  # (key, value) of a ConfirmTask on the inbox


class AutoWorkers:
    def __init__(
        self,
        bootstrap: str,
        group: str,
        tasks_topic: str,
        inbox: str,
        worker: AutoWorker,
        *,
        retry_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.tasks_topic = tasks_topic
        self.inbox = inbox
        self.worker = worker
        self.retry_s = retry_s
        self.confirmed = 0

    async def run(self) -> None:
        """Work until cancelled; a failed transaction starts over from the committed offsets."""
        while True:
            try:
                await self._work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never die: a broker hiccup or a fenced producer, start over
                log.warning("auto_workers_restart", reason=repr(exc), trace=traceback.format_exc(limit=6))
                await asyncio.sleep(self.retry_s)

    async def _work(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, transactional_id=f"{self.group}-auto-workers",
            enable_idempotence=True, acks="all", linger_ms=5,
        )
        await consumer.start()
        await producer.start()
        try:
            consumer.assign(await self._partitions())  # no group membership: the node's engine has it
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                if batches:
                    await self._confirm_batch(producer, batches)
        finally:
            await producer.stop()
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        """The task topic's partitions (a consumer that joins no group knows only what it asks the cluster)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            while True:
                [described] = await admin.describe_topics([self.tasks_topic])
                partitions = sorted(p["partition"] for p in described.get("partitions", []))
                if described.get("error_code") == 0 and partitions:
                    return [TopicPartition(self.tasks_topic, p) for p in partitions]
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    async def _confirm_batch(self, producer: AIOKafkaProducer,
                             batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        before = copy.deepcopy(self.worker)  # short picks happen once: not if this batch is thrown away
        try:
            confirms = [c for records in batches.values() for c in await self._work_through(records)]
            async with producer.transaction():
                for key, value in confirms:
                    await producer.send(self.inbox, value, key=key)
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await producer.send_offsets_to_transaction(offsets, self.group)
        except BaseException:
            self.worker = before  # the loop starts over from the committed offsets
            raise
        self.confirmed += len(confirms)

    async def _work_through(self, records: Iterable[ConsumerRecord]) -> list[Confirm]:
        out = []
        for record in records:
            try:
                envelope, message = decode(record.value)
            except InvalidMessage:
                continue  # the node's own records: nothing here to work on
            if not isinstance(message, TaskCreated):
                continue
            if self.worker.behaviour.pace_s:
                await asyncio.sleep(self.worker.behaviour.pace_s)
            confirm = self.worker.confirm(message)
            reply = envelope_for(confirm, source=f"baton/wms/{self.worker.location}/auto-workers",
                                 correlationid=envelope.correlationid, causationid=envelope.id,
                                 event_id=derived_id(envelope.id, "auto-confirm"))
            out.append((confirm.order_id.encode(), encode(reply)))
        return out
