"""A service process in the simulation: the real ``StreamService`` driven as the engine drives it, minus Kafka.

Partition *i* of every input is task *i*, with its own stores and a ``TaskContext``. A batch is a few records
of the task's inputs (merged by timestamp, as the engine merges them), handed one by one to ``handle``; then
either the batch commits (its changelog becomes the stores' truth, its records are appended to the broker, its
offsets are committed, its after-commit work runs) or it is lost: an aborted transaction rolls the task back to
its last commit and it reads again from there; a killed process is built afresh from the committed stores and
offsets (``on_assigned`` again) and its in-memory views re-read their topics from the start.

Envelope times are the records' simulated timestamps (the services stamp envelopes with the wall clock, which a
deterministic run cannot use); ``ctx.now`` is the simulated clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from baton.sim.broker import Record, SimBroker, TopicPartition
from baton.sim.clock import SimClock
from schemas.base import Message
from schemas.envelope import Envelope, InvalidMessage, decode
from services.runtime.processing import Incoming, Outgoing, Store, StreamService, TaskContext

Feed = tuple[str, Callable[[Message], None]]  # (topic, what the service does with each of its messages)


@dataclass
class SimTask:
    task: int
    ctx: TaskContext
    inputs: list[TopicPartition]
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    position: dict[TopicPartition, int] = field(default_factory=dict)

    def stores(self) -> dict[str, Store[Any]]:
        return self.ctx.stores


@dataclass
class Committed:
    """What a committed batch wrote: per store its changelog, and the records appended."""

    changes: dict[str, list[tuple[str, bytes | None]]]
    records: list[Record]


class Failure(Exception):
    """A handler raised on a message of ours: in production it would be dead-lettered; here it fails the seed."""


class SimProcess:
    """One service process: its tasks, its feeds (global views read from topics), its service object."""

    def __init__(
        self,
        name: str,
        build: Callable[[], tuple[StreamService, list[Feed]]],
        broker: SimBroker,
        clock: SimClock,
        topic_name: Callable[[str, str | None], str],
        on_commit: Callable[[SimProcess, int, Committed], None],
        on_failure: Callable[[str], None],
    ) -> None:
        self.name = name
        self.build = build
        self.broker = broker
        self.clock = clock
        self.topic_name = topic_name
        self.on_commit = on_commit
        self.on_failure = on_failure
        self.service, self.feeds = build()
        self.feed_positions: dict[TopicPartition, int] = {}
        self.feeds_at: list[Feed] | None = None
        self.feed_tps: list[tuple[TopicPartition, Callable[[Message], None]]] = []
        self.tasks: dict[int, SimTask] = {}
        self.down_until = clock.now  # stalled (slow, or restarting) until then
        self.next_timer = clock.now
        self.kills = 0

    # --- tasks -------------------------------------------------------------------------------------------
    def task_count(self) -> int:
        inputs = self.service.inputs()
        return self.broker.partitions(inputs[0])

    async def start(self) -> None:
        self.catch_up_feeds()
        for task_id in range(self.task_count()):
            stores: dict[str, Store[Any]] = {spec.name: Store(spec) for spec in self.service.stores}
            self.tasks[task_id] = self.new_task(task_id, stores, {})
        await self.assign_all()

    def new_task(self, task_id: int, stores: dict[str, Store[Any]], committed: dict[TopicPartition, int]) -> SimTask:
        ctx = TaskContext(self.service.source, task_id, stores, self.topic_name, now=self.clock.now)
        inputs = [(topic, task_id) for topic in self.service.inputs()]
        return SimTask(task_id, ctx, inputs, dict(committed), dict(committed))

    async def assign_all(self) -> None:
        for task in self.tasks.values():
            task.ctx.now = self.clock.now
            self.service.on_assigned(task.ctx)
        await settle_background()

    async def kill(self) -> None:
        """kill -9 and restart: a new service object; stores and offsets as last committed; views re-read."""
        self.kills += 1
        old = self.tasks
        self.service, self.feeds = self.build()
        self.feed_positions = {}
        self.catch_up_feeds()
        self.tasks = {}
        for task_id, task in old.items():
            stores: dict[str, Store[Any]] = {}
            for spec in self.service.stores:
                store: Store[Any] = Store(spec)
                for key, raw in task.stores()[spec.name].committed_raw_items():
                    store.restore(key, raw)
                stores[spec.name] = store
            self.tasks[task_id] = self.new_task(task_id, stores, task.committed)
        await self.assign_all()

    # --- feeds -------------------------------------------------------------------------------------------
    def feed_lag(self) -> int:
        return sum(self.broker.end(tp) - self.feed_positions.get(tp, 0) for tp, _ in self.feed_partitions())

    def feed_partitions(self) -> list[tuple[TopicPartition, Callable[[Message], None]]]:
        if self.feeds_at is not self.feeds:  # built again after a restart
            self.feeds_at = self.feeds
            self.feed_tps = [((topic, p), apply) for topic, apply in self.feeds
                             for p in range(self.broker.partitions(topic))]
        return self.feed_tps

    def feed(self, limit: int) -> None:
        """Up to ``limit`` records of the first feed partition behind (the views' lag is part of the world)."""
        for tp, apply in self.feed_partitions():
            start = self.feed_positions.get(tp, 0)
            records = self.broker.read(tp, start, start + limit)
            if records:
                for record in records:
                    apply(decode(record.value)[1])
                self.feed_positions[tp] = start + len(records)
                return

    def catch_up_feeds(self) -> None:
        while self.feed_lag():
            self.feed(1_000_000)

    def feeds_behind(self) -> bool:
        end, at = self.broker.end, self.feed_positions.get
        return any(end(tp) > at(tp, 0) for tp, _ in self.feed_partitions())

    # --- batches -----------------------------------------------------------------------------------------
    def backlog(self, task: SimTask) -> bool:
        end, at = self.broker.end, task.position.get
        return any(end(tp) > at(tp, 0) for tp in task.inputs)

    def next_records(self, task: SimTask, limit: int) -> list[Record]:
        pending = [r for tp in task.inputs for r in self.broker.read(tp, task.position.get(tp, 0),
                                                                     task.position.get(tp, 0) + limit)]
        pending.sort(key=lambda r: (r.at, task.inputs.index((r.topic, r.partition)), r.offset))
        return pending[:limit]

    def apply(self, task: SimTask, records: list[Record]) -> None:
        ctx = task.ctx
        ctx.now = self.clock.now
        applied: list[tuple[Envelope, Message, Incoming]] = []
        for record in records:
            task.position[(record.topic, record.partition)] = record.offset + 1
            incoming = Incoming(record.topic, record.partition, record.offset, record.key, record.value,
                                self.clock.ms(record.at))
            try:
                envelope, message = decode(record.value)
            except InvalidMessage as exc:
                self.on_failure(f"{self.name}: undecodable record on {record.topic}: {exc}")
                continue
            envelope = envelope.model_copy(update={"time": record.at})
            try:
                self.service.handle(ctx, envelope, message, incoming)
            except Exception as exc:  # the engine dead-letters it and applies the batch again without it
                self.on_failure(f"{self.name}: handler raised on {envelope.type} {message.subject()}: {exc!r}")
                ctx.rolled_back()
                for again in applied:
                    self.service.handle(ctx, *again)
                continue
            applied.append((envelope, message, incoming))

    def timer(self, task: SimTask) -> bool:
        """The service's timer on a task; whether it produced anything to commit."""
        task.ctx.now = self.clock.now
        try:
            self.service.on_timer(task.ctx)
        except Exception as exc:
            self.on_failure(f"{self.name}: timer raised: {exc!r}")
            task.ctx.rolled_back()
            return False
        return bool(task.ctx.outgoing) or any(store.changed() for store in task.stores().values())

    async def commit(self, task: SimTask, duplicate: Callable[[Outgoing], bool]) -> Committed:
        """The batch's transaction committed: changelog, records (``duplicate`` ones twice), offsets, then the
        after-commit work."""
        changes = {name: store.changelog() for name, store in task.stores().items()}
        for name, store in task.stores().items():
            store.committed(changes[name])
        outgoing, after = task.ctx.take()
        records = []
        for out in outgoing:
            records.append(self.broker.append(out.topic, out.key, out.value, self.clock.now, out.partition))
            if duplicate(out):
                records.append(self.broker.append(out.topic, out.key, out.value, self.clock.now, out.partition))
        task.committed = dict(task.position)
        done = Committed(changes, records)
        self.on_commit(self, task.task, done)
        for work in after:
            await work()
        await settle_background()
        return done

    def abort(self, task: SimTask) -> None:
        """The transaction failed: the batch is discarded and the task reads again from its last commit."""
        task.ctx.rolled_back()
        task.position = dict(task.committed)


async def settle_background() -> None:
    """Let the work a service started in the background (view rebuilds at assignment) run to its end now."""
    current = asyncio.current_task()
    while True:
        pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not pending:
            return
        await asyncio.gather(*pending, return_exceptions=True)


__all__ = ["Committed", "Failure", "Feed", "SimProcess", "SimTask", "settle_background"]
