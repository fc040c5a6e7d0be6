"""Simulated workers (``--auto``) as a plain loop beside the node, in the same process.

They read the location's task topic (read committed: only tasks the node really committed) and confirm every
new task through the node's inbox, as people would: each confirmation is sent (idempotent producer, no
transaction, so a worker killed part-way never holds the node's inbox behind an open transaction) and, once
the confirmations are delivered, the offsets are committed in the node's consumer group (so the namespace's lag
covers the task topic too), in an offsets-only transaction at most every half second and whenever the queue is
empty. A crash in between confirms some tasks again with the same derived command ids; the node applies a
command id once.
"""

from __future__ import annotations

import asyncio
import copy
import time
import traceback
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.envelope import InvalidMessage, decode, derived_id, encode, envelope_for
from schemas.wms import TaskCreated
from services.runtime.logs import get_logger
from services.runtime.settings import kafka_connection
from services.wms_node.domain.workers import AutoWorker

log = get_logger(__name__)
Confirm = tuple[bytes, bytes]  # (key, value) of a ConfirmTask on the inbox
MAX_BATCH = 1000
COMMIT_EVERY_S = 0.5
TASK_CREATED = TaskCreated.event_type.encode()


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
            **kafka_connection(self.bootstrap), group_id=self.group, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
        )
        # confirmations go out idempotently, outside any transaction: an open transaction on the node's inbox
        # (a worker killed part-way) would hold every later message of the inbox from the node until it timed out
        sender = AIOKafkaProducer(**kafka_connection(self.bootstrap), enable_idempotence=True, acks="all", linger_ms=5,
                                  compression_type="lz4")
        # the task topic's offsets are committed in the node's group in offsets-only transactions (a consumer
        # outside the group cannot commit in it otherwise)
        committer = AIOKafkaProducer(**kafka_connection(self.bootstrap), transactional_id=f"{self.group}-auto-workers",
                                     enable_idempotence=True, acks="all")
        await consumer.start()
        await sender.start()
        await committer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)  # no group membership: the node's engine has it
            log.info("auto_workers_started", partitions=len(partitions), pace_s=self.worker.behaviour.pace_s)
            done: dict[TopicPartition, int] = {}  # offsets confirmed, not yet committed
            last_commit = time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=int(COMMIT_EVERY_S * 1000) if done else 500,
                                                 max_records=MAX_BATCH)
                if batches:
                    done |= await self._confirm_batch(sender, batches)
                # one offsets-only transaction (three round trips) now and then, and whenever the queue is empty
                if done and (not batches or time.monotonic() - last_commit >= COMMIT_EVERY_S):
                    async with committer.transaction():
                        await committer.send_offsets_to_transaction(done, self.group)
                    done, last_commit = {}, time.monotonic()
        finally:
            await committer.stop()
            await sender.stop()
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        """The task topic's partitions (a consumer that joins no group knows only what it asks the cluster)."""
        admin = AIOKafkaAdminClient(**kafka_connection(self.bootstrap))
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

    async def _confirm_batch(self, sender: AIOKafkaProducer,
                             batches: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
        """Confirm the batch's new tasks (each sent as soon as it is done), wait until every confirmation is
        delivered, and return the offsets to commit. A crash before they are committed confirms some tasks
        again, with the same command ids: the node applies a command id once."""
        before = copy.deepcopy(self.worker)  # short picks happen once: not if this batch is thrown away
        try:
            sent = []
            for records in batches.values():
                async for key, value in self._work_through(records):
                    sent.append(await sender.send(self.inbox, value, key=key))
            await asyncio.gather(*sent)
        except BaseException:
            self.worker = before  # the loop starts over from the committed offsets
            raise
        self.confirmed += len(sent)
        return {tp: records[-1].offset + 1 for tp, records in batches.items()}

    async def _work_through(self, records: Iterable[ConsumerRecord]) -> AsyncIterator[Confirm]:
        for record in records:
            if record.value is None or TASK_CREATED not in record.value:
                continue  # task updates (half the topic): not decoded
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
            yield confirm.order_id.encode(), encode(reply)
