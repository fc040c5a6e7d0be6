"""The Kafka engine of the processing model (``services.runtime.processing``): Kafka Streams' exactly-once.

One consumer per process (read committed, no auto-commit) subscribes to the service's co-partitioned inputs;
the ``TaskAssignor`` gives partition i of every input to the member owning task i. Each task owned here has
its own transactional producer (``{group}-task-{i}``: a new owner of the task fences the old one) and its
stores, restored from their changelog partitions i. A batch of a task's records is applied through the
service's ``handle`` in offset order, then its changelog records, every record sent and the consumed offsets
are written in one transaction. Only a committed transaction makes the stores' changes their truth and runs
the after-commit work; anything else rolls the task back to its last commit and re-reads from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    IllegalStateError,
    InvalidProducerEpoch,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TransactionCoordinatorFenced,
    UnsupportedForMessageFormatError,
)

from schemas.base import Message
from schemas.envelope import Envelope, InvalidMessage, decode, encode, envelope_for
from schemas.network import DeadLettered
from schemas.topics import ALL_TOPICS, DEAD_LETTERS
from services.runtime.admin import CHANGELOG_CONFIG, changelog_name
from services.runtime.assignor import TaskAssignor
from services.runtime.logs import get_logger
from services.runtime.processing import AfterCommit, Incoming, Outgoing, Store, StreamService, TaskContext
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, spec_named

log = get_logger(__name__)

FENCED = (ProducerFenced, InvalidProducerEpoch, TransactionCoordinatorFenced)
# each step of the clean-up after the loop (the lock, the producers, the consumer, the after-commit work) waits
# at most this long: with the broker gone none of them can finish, and a stop must not wait for Kafka (decision 0012)
CLOSE_STEP_S = 1.5
OPEN_RETRY_MAX_S = 5.0  # a task that cannot be opened (Kafka unreachable) is tried again at most this far apart
PROGRESS_EVERY_S = 30.0
# Errors caused by what a batch would write, not by Kafka's state: retrying the same batch fails again.
UNWRITABLE = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    InvalidTimestampError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)


def unwritable(error: BaseException) -> bool:
    """The batch itself cannot be written (a record too large, a bad topic name, a value that is not bytes)."""
    return isinstance(error, UNWRITABLE) or not isinstance(error, KafkaError | asyncio.TimeoutError | OSError)


def input_size_limits(settings: Settings) -> dict[str, int]:
    """Full topic name -> the largest record value its readers take (the catalog's limits, public topics)."""
    return {settings.topic(spec.name): spec.max_message_bytes for spec in ALL_TOPICS
            if spec.max_message_bytes is not None and not spec.per_location}


def record_time(timestamp_ms: int) -> datetime | None:
    """A record's Kafka timestamp as a time (None for a record without one)."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms > 0 else None


def changelog_topic(settings: Settings, service_name: str, store: str) -> str:
    return changelog_name(settings, service_name, store)


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float = 10.0) -> None:
    """New topics are usable once every partition has a leader (else the first restore logs metadata errors)."""
    deadline = time.monotonic() + timeout_s
    while topics and time.monotonic() < deadline:
        described = await admin.describe_topics(topics)
        if all(d.get("partitions") and all(p["leader"] >= 0 for p in d["partitions"]) for d in described):
            return
        await asyncio.sleep(0.1)


@dataclass
class EngineConfig:
    """Tuning of the loop and its producers (defaults measured in docs/decisions/0001-processing.md)."""

    max_records: int = 2000
    # a task commits at least this often under load: a burst's first batch (2,000 orders planned, seconds of
    # work) would otherwise hold every answer it causes, and the answers to it, until it is all done; the
    # records not applied by then are the task's next batch (the budget is shared by the batch's tasks). At low
    # load a batch takes milliseconds and this never binds; in a burst each transaction costs the broker about
    # 6 ms of CPU, so 0.1 s (25 ms per task) made it the largest cost: 2,000-order burst without workers, same
    # machine, 0.1 -> 0.3 -> 0.6 s: 251 -> 260-374 -> 414 orders/s allocated, Kafka CPU 3.2 -> 1.9-2.6 -> 1.8 s
    # per 1,000 orders (decision 0001)
    batch_budget_s: float = 0.5
    poll_timeout_ms: int = 100
    # how long the broker may hold a fetch waiting for data (aiokafka's default). Measured at 100 orders/s
    # (no workers): 10 ms made every idle consumer poll the broker 100 times a second, CPU went from 14.5 to
    # 23 s per 1,000 orders and p99 placed -> allocated from 0.9 to 2.2 s; the CPU is the bottleneck here
    fetch_max_wait_ms: int = 500
    # a task's records are all handed to the producer at once and then awaited (delivery before the offsets, see
    # ``_transaction``), so lingering only delays them: 100 orders/s without workers, two runs each, p50 placed ->
    # allocated 341 / 313 ms with 5 ms, 280 / 263 ms with 0 (p99 695 / 496 and 477 / 514 ms)
    linger_ms: int = 0
    # a transaction begun right after the task's last commit meets CONCURRENT_TRANSACTIONS (the broker is still
    # writing the last one's markers) and aiokafka then backs off 20 ms (adding partitions, fixed) or
    # ``retry_backoff_ms`` (adding the offsets): 25 ms per transaction back to back instead of 6-9 ms once the
    # markers are written, ~2 ms later (measured). So a task's next transaction begins this long after its last
    # commit at the earliest, and a retry that still happens waits 10 ms, not aiokafka's default 100 ms
    min_commit_gap_s: float = 0.003
    retry_backoff_ms: int = 10
    max_batch_size: int = 512 * 1024
    compression_type: str | None = "lz4"
    session_timeout_ms: int = 8000
    heartbeat_interval_ms: int = 1000
    retry_backoff_s: float = 0.5
    commit_timeout_s: float = 30.0  # a transaction not committed by then is aborted and the batch retried
    # static membership (KIP-345): a process restarted with the same id takes its tasks back at once instead
    # of waiting for the session of the killed one to expire; each instance of a service needs its own id
    instance_id: str | None = None


@dataclass
class EngineStats:
    """What the engine did, for logs and measurements."""

    inputs: int = 0
    records_written: int = 0
    changelog_records: int = 0
    transactions: int = 0
    aborted: int = 0
    dead_lettered: int = 0
    restore_seconds: float = 0.0
    restored_records: int = 0
    # where a batch's time goes (diagnosis of latency): seconds applying, seconds committing, and how old
    # each batch's oldest record was when picked up (its producer's send to our fetch: upstream commit,
    # read-committed visibility, our fetch and our previous batch)
    batches: int = 0
    apply_seconds: float = 0.0
    commit_seconds: float = 0.0
    pickup_lag_ms: list[float] = field(default_factory=list, repr=False)
    phase_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # send, delivery, offsets, end
    # the garbage collector's pauses (every batch of every task waits for them): full (oldest generation) ones
    # scan every object the stores keep decoded
    gc_pauses: list[int] = field(default_factory=lambda: [0, 0, 0])  # per generation
    gc_seconds: float = 0.0
    gc_longest_ms: float = 0.0
    _gc_started: float = field(default=0.0, repr=False)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` hook: time each collection."""
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        self.gc_pauses[info["generation"]] += 1
        self.gc_seconds += took
        self.gc_longest_ms = max(self.gc_longest_ms, took * 1000)

    def summary(self) -> dict[str, Any]:
        """The counters, and the pickup lag's percentiles over the batches since the last summary."""
        lags = sorted(self.pickup_lag_ms)
        self.pickup_lag_ms.clear()
        figures: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k not in ("pickup_lag_ms", "_gc_started")}
        if lags:
            figures["pickup_lag_ms_p50_p99_max"] = [round(lags[len(lags) // 2]), round(lags[int(len(lags) * 0.99)]),
                                                    round(lags[-1])]
        return figures


class EngineObserver:
    """What the engine tells an observer (metrics): every method is a no-op here; override what you need.
    Called on the engine's loop, so each must be quick and never raise."""

    def handled(self, message_type: str, seconds: float) -> None: ...

    def dead_lettered(self, topic: str) -> None: ...

    def batch(self, size: int) -> None: ...

    def transaction(self, seconds: float, committed: bool) -> None: ...


@dataclass
class Task:
    """Task i owned by this process: its producer, stores (in the context) and where its inputs stand."""

    id: int
    producer: AIOKafkaProducer
    ctx: TaskContext
    inputs: list[TopicPartition]
    committed: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read, as of the last commit
    next: dict[TopicPartition, int] = field(default_factory=dict)  # next offset expected, batch included
    changelog_next: dict[str, int] = field(default_factory=dict)  # store -> offset after its last known record
    # after a batch that could not be written: its records go one per transaction, up to these offsets, so
    # that the one whose output cannot be written is found and dead-lettered
    isolate: dict[TopicPartition, int] = field(default_factory=dict)
    last_commit: float = 0.0  # monotonic time of the producer's last transaction end (see min_commit_gap_s)
    # records fetched but left for a later batch (the batch's time budget ran out): ``pending[pending_from:]``,
    # in the order they were merged. They are the task's next batch, instead of being fetched, decompressed and
    # parsed again; nothing more is fetched for the task until they are applied
    pending: list[ConsumerRecord] = field(default_factory=list)
    pending_from: int = 0

    def take_pending(self) -> tuple[list[ConsumerRecord], int]:
        taken = self.pending, self.pending_from
        self.pending, self.pending_from = [], 0
        return taken


@dataclass
class Suspended:
    """A task's stores kept after a revocation: if it comes back, only the changelog's tail is read again."""

    stores: dict[str, Store[Any]]
    changelog_next: dict[str, int]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.engine.revoke(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.engine.assign(assigned)


class Engine:
    """Runs one ``StreamService`` on Kafka with transactions per task. ``run()`` until ``stop()``."""

    def __init__(self, service: StreamService, settings: Settings, config: EngineConfig | None = None) -> None:
        self.service = service
        self.settings = settings
        self.config = config or EngineConfig()
        self.group = settings.group(service.name)
        self.stats = EngineStats()
        self.tasks: dict[int, Task] = {}
        self.suspended: dict[int, Suspended] = {}
        self.lock = asyncio.Lock()  # a batch (apply + commit) and a rebalance never overlap
        self.stopping = asyncio.Event()
        self.running = False  # the loop has started (a stop before it has nothing to commit)
        self.started = asyncio.Event()  # the first assignment is done (tasks restored)
        self.failure: BaseException | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._after: asyncio.Queue[AfterCommit | None] = asyncio.Queue()
        self._after_worker: asyncio.Task[None] | None = None
        self._partitions = 0
        self.generation = 0  # bumped by every rebalance
        self._listener = _Rebalance(self)
        self._rejoin = False  # a task was fenced: ask the group again who owns what
        self._dead_letter_topic = settings.topic(DEAD_LETTERS.name)
        self._size_limits = input_size_limits(settings)
        self.observer = EngineObserver()  # replaced by whoever watches (``services.runtime.metrics``)

    # --- life cycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        gc.callbacks.append(self.stats.on_gc)
        await self._ensure_changelogs()
        self._after_worker = asyncio.create_task(self._run_after_commit())
        self.consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            group_id=self.group,
            client_id=f"{self.group}-consumer",
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(TaskAssignor,),
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
            group_instance_id=self.config.instance_id,
        )
        self.consumer.subscribe(self.service.inputs(), listener=self._listener)
        await self.consumer.start()

    async def run(self) -> None:
        """The loop: batches of records per task, each task's batch committed in its own transaction."""
        if self.consumer is None:
            await self.start()
        assert self.consumer is not None
        self.running = True
        interval = max(self.service.timer_interval_s, 0.01)
        next_timer = time.monotonic() + interval
        next_progress = time.monotonic() + PROGRESS_EVERY_S
        poll_ms = min(self.config.poll_timeout_ms, int(interval * 1000))
        try:
            while not self.stopping.is_set():
                if self.failure is not None:
                    raise self.failure
                if self._rejoin:
                    self._rejoin = False
                    log.info("rejoining_group")
                    self.consumer.subscribe(self.service.inputs(), listener=self._listener)  # a new subscription
                generation = self.generation
                records = await self._fetch(poll_ms)
                async with self.lock:
                    # records fetched before a rebalance may not follow on from the offsets the tasks were
                    # reset to: drop them, the tasks read again from their committed offsets
                    if generation == self.generation and (records or self._has_pending()):
                        await self._process(records)
                    if time.monotonic() >= next_timer:
                        next_timer = time.monotonic() + interval
                        await self._run_timers()
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + PROGRESS_EVERY_S
                    log.info("engine_progress", tasks=sorted(self.tasks), **self.stats.summary())
        finally:
            await self._close()

    async def _fetch(self, poll_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The next records of the tasks with nothing pending; no wait when some task has records pending."""
        assert self.consumer is not None
        busy = {task.id for task in self.tasks.values() if task.pending}
        if not busy:
            return await self.consumer.getmany(timeout_ms=poll_ms, max_records=self.config.max_records)
        wanted = [tp for tp in self.consumer.assignment() if tp.partition not in busy]
        if not wanted:
            return {}
        return await self.consumer.getmany(*wanted, timeout_ms=0, max_records=self.config.max_records)

    async def lag(self) -> dict[str, int]:
        """Records not yet handled per input topic: the end offset (last stable: read committed) minus the
        consumer's position (which steps over transaction markers), plus what was fetched but left for a later
        batch. The partitions assigned here only; none before the first fetch."""
        behind: dict[str, int] = {}
        if self.consumer is None:
            return behind
        for tp in self.consumer.assignment():
            end = self.consumer.last_stable_offset(tp) or self.consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), timeout=0.5)
            except (TimeoutError, IllegalStateError):
                continue  # no position yet, or revoked meanwhile: the next sample tells
            behind[tp.topic] = behind.get(tp.topic, 0) + max(end - position, 0)
        for task in self.tasks.values():
            for record in task.pending[task.pending_from :]:
                behind[record.topic] = behind.get(record.topic, 0) + 1
        return behind

    def _has_pending(self) -> bool:
        return any(task.pending for task in self.tasks.values())

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit, close producers and leave the group."""
        self.stopping.set()

    def rejoin(self) -> None:
        """Ask the group again who owns what: the tasks are revoked and assigned again (stores kept, only the
        changelogs' tails read), so the service's ``on_assigned`` runs again (e.g. rewrites its views)."""
        self._rejoin = True

    async def _close(self) -> None:
        """Drop the tasks, leave the group, let the after-commit work finish: each step bounded, none fatal."""
        try:
            await asyncio.wait_for(self.lock.acquire(), CLOSE_STEP_S)
            locked = True
        except TimeoutError:  # a rebalance waiting on a broker that is gone: close without it
            locked = False
            log.warning("close_without_lock")
        try:
            await asyncio.gather(*(self._drop_task(task_id, keep=False) for task_id in list(self.tasks)))
        finally:
            if locked:
                self.lock.release()
        if self.consumer is not None:
            try:
                await asyncio.wait_for(self.consumer.stop(), CLOSE_STEP_S)
            except Exception as exc:  # the broker is away: the group sees the session expire instead
                log.warning("consumer_stop_failed", error=repr(exc))
        await self._after.put(None)
        if self._after_worker is not None:
            try:
                await asyncio.wait_for(self._after_worker, timeout=CLOSE_STEP_S)
            except TimeoutError:  # views left behind are written again when the tasks are next assigned
                log.warning("after_commit_unfinished")
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self.stats.on_gc)
        log.info("engine_stopped", **self.stats.summary())

    async def _ensure_changelogs(self) -> None:
        """Each store's compacted changelog, with as many partitions as the inputs (one per task)."""
        admin = AIOKafkaAdminClient(**self.settings.kafka_client_options(), request_timeout_ms=30000)
        await admin.start()
        try:
            described = await admin.describe_topics(self.service.inputs())
            counts = {d["topic"]: len(d["partitions"]) for d in described if d.get("partitions")}
            if len(set(counts.values())) != 1 or len(counts) != len(self.service.inputs()):
                raise RuntimeError(f"inputs of {self.service.name} are not co-partitioned (or missing): {counts}")
            self._partitions = next(iter(counts.values()))
            existing = set(await admin.list_topics())
            created = []
            for spec in self.service.stores:
                name = changelog_topic(self.settings, self.service.name, spec.name)
                if name in existing:
                    continue
                topic = NewTopic(
                    name, self._partitions, self.settings.replication_factor,
                    topic_configs=dict(CHANGELOG_CONFIG),
                )
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([topic])
                created.append(name)
            await _wait_for_leaders(admin, created)
        finally:
            await admin.close()

    # --- rebalances --------------------------------------------------------------------------------------
    async def assign(self, assigned: Iterable[TopicPartition]) -> None:
        wanted = sorted({tp.partition for tp in assigned})
        async with self.lock:
            self.generation += 1
            for task_id in [t for t in self.suspended if t not in wanted]:
                del self.suspended[task_id]  # another member owns it now: our copy would go stale
            try:
                opening = [self._open_task_when_reachable(t) for t in wanted if t not in self.tasks]
                opened = await asyncio.gather(*opening)
            except Exception as exc:  # aiokafka only logs a listener's error: make the loop fail instead
                log.error("task_open_failed", error=repr(exc), trace=traceback.format_exc(limit=8))
                self.failure = exc
                return
            for task in opened:
                if task is not None:
                    self.tasks[task.id] = task
        log.info("tasks_assigned", tasks=sorted(self.tasks))
        self.started.set()

    async def revoke(self, revoked: Iterable[TopicPartition]) -> None:
        async with self.lock:  # waits for the batch in flight: it is committed (or aborted) before we let go
            self.generation += 1
            for task_id in sorted({tp.partition for tp in revoked}):
                if task_id in self.tasks:
                    await self._drop_task(task_id, keep=True)

    async def _open_task_when_reachable(self, task_id: int) -> Task | None:
        """``_open_task``, tried again while Kafka cannot be reached (a broker restarting): the service waits for
        it instead of dying. None when a stop was asked for meanwhile."""
        delay = self.config.retry_backoff_s
        while True:
            try:
                return await self._open_task(task_id)
            except (KafkaError, OSError, TimeoutError) as exc:
                if isinstance(exc, KafkaError) and not exc.retriable:
                    raise
                if self.stopping.is_set():
                    return None
                log.warning("task_open_retrying", task=task_id, error=repr(exc), in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, OPEN_RETRY_MAX_S)

    async def _open_task(self, task_id: int) -> Task:
        assert self.consumer is not None
        producer = await self._new_producer(task_id)
        kept = self.suspended.pop(task_id, None)
        stores = kept.stores if kept else {spec.name: Store(spec) for spec in self.service.stores}
        changelog_next = dict(kept.changelog_next) if kept else {}
        started = time.monotonic()
        restored = await self._restore(task_id, stores, changelog_next)
        took = time.monotonic() - started
        self.stats.restore_seconds += took
        self.stats.restored_records += restored
        ctx = TaskContext(
            service_source=self.service.source, task=task_id, stores=stores, topic_name=self._topic_name
        )
        task = Task(task_id, producer, ctx, [TopicPartition(t, task_id) for t in self.service.inputs()])
        task.changelog_next = changelog_next
        beginnings = await self.consumer.beginning_offsets(task.inputs)
        for tp in task.inputs:
            offset = await self.consumer.committed(tp)
            start = offset if offset is not None else beginnings[tp]
            task.committed[tp] = task.next[tp] = start
            self.consumer.seek(tp, start)
        self.consumer.resume(*task.inputs)
        self.service.on_assigned(ctx)
        log.info(
            "task_restored", task=task_id, records=restored, seconds=round(took, 3), incremental=kept is not None,
            offsets={f"{tp.topic}/{tp.partition}": o for tp, o in task.committed.items()},
        )
        return task

    async def _new_producer(self, task_id: int) -> AIOKafkaProducer:
        """The task's transactional producer; once it has its id, any older owner is fenced and its
        open transaction aborted, so the committed offsets and the changelog read next are final."""
        producer = AIOKafkaProducer(
            **self.settings.kafka_client_options(),
            client_id=f"{self.group}-task-{task_id}",
            transactional_id=f"{self.group}-task-{task_id}",
            enable_idempotence=True,
            acks="all",
            linger_ms=self.config.linger_ms,
            compression_type=self.config.compression_type,
            max_batch_size=self.config.max_batch_size,
            max_request_size=max(1024 * 1024, self.config.max_batch_size * 2),
            retry_backoff_ms=self.config.retry_backoff_ms,
        )
        await producer.start()
        try:
            await producer.begin_transaction()  # waits for the producer id (InitProducerId fences the old owner)
            await producer.abort_transaction()  # empty: completes locally
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _restore(self, task_id: int, stores: dict[str, Store[Any]], changelog_next: dict[str, int]) -> int:
        """Read changelog partition ``task_id`` of each store up to its end (from the start, or from where a
        kept store stood), committed records only."""
        if not stores:
            return 0
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=20,  # the tail is a commit marker: do not let the broker wait for more
        )
        await consumer.start()
        try:
            by_tp = {TopicPartition(changelog_topic(self.settings, self.service.name, n), task_id): n for n in stores}
            consumer.assign(list(by_tp))
            ends = await consumer.end_offsets(list(by_tp))
            beginnings = await consumer.beginning_offsets(list(by_tp))
            pending = set()
            for tp, name in by_tp.items():
                start = max(changelog_next.get(name, 0), beginnings[tp])
                consumer.seek(tp, start)  # explicit offsets: seek_to_beginning's lazy reset raced position()
                if start < ends[tp]:
                    pending.add(tp)
            count = 0
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=100, max_records=20000)
                for tp, records in batch.items():
                    store = stores[by_tp[tp]]
                    for record in records:
                        if record.key is not None:
                            store.restore(record.key.decode(), record.value)
                            count += 1
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            for tp, name in by_tp.items():
                changelog_next[name] = ends[tp]
            return count
        finally:
            await consumer.stop()

    async def _drop_task(self, task_id: int, *, keep: bool) -> None:
        task = self.tasks.pop(task_id)
        task.ctx.rolled_back()
        if self.consumer is not None:
            self.consumer.pause(*[tp for tp in task.inputs if tp in self.consumer.assignment()])
        try:
            self.service.on_revoked(task_id)
        except Exception as exc:
            log.error("on_revoked_failed", task=task_id, error=repr(exc))
        try:
            await asyncio.wait_for(task.producer.stop(), CLOSE_STEP_S)
        except Exception as exc:  # a fenced producer may fail to close cleanly; it writes nothing more anyway
            log.warning("producer_stop_failed", task=task_id, error=repr(exc))
        if keep:
            self.suspended[task_id] = Suspended(task.ctx.stores, task.changelog_next)
        log.info("task_dropped", task=task_id, kept=keep)

    # --- the batch ---------------------------------------------------------------------------------------
    async def _process(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        by_task: dict[int, list[list[ConsumerRecord]]] = {}
        for tp, batch in records.items():
            if tp.partition in self.tasks:
                by_task.setdefault(tp.partition, []).append(batch)
        pending = {task.id: task.take_pending() for task in self.tasks.values() if task.pending}
        now = datetime.now(UTC)
        budget = self.config.batch_budget_s / max(len(by_task.keys() | pending.keys()), 1)
        work = []
        for task_id in by_task.keys() | pending.keys():
            ordered, start = pending.get(task_id, ([], 0))
            if task_id in by_task:
                # offset order within each partition; across the inputs, the oldest head first
                fetched = list(heapq.merge(*by_task[task_id], key=lambda r: r.timestamp))
                ordered, start = (ordered[start:] + fetched, 0) if ordered else (fetched, 0)
            work.append(self._process_task(self.tasks[task_id], ordered, now, budget, start))
        await asyncio.gather(*work)

    async def _process_task(
        self, task: Task, records: list[ConsumerRecord], now: datetime, budget_s: float, start: int = 0
    ) -> None:
        if task.isolate:
            await self._process_isolated(task, records[start:], now)
            return
        started = time.monotonic()
        if start < len(records):
            self.stats.pickup_lag_ms.append(time.time() * 1000 - records[start].timestamp)
        offsets, dead = self._apply(task, records, now, budget_s, start)
        applied = time.monotonic()
        self.observer.batch(len(records) - start)
        self.stats.apply_seconds += applied - started
        self.stats.batches += 1
        if not (offsets or dead or task.ctx.outgoing):
            return
        error = await self._commit(task, offsets, dead)
        self.stats.commit_seconds += time.monotonic() - applied
        if error is not None and unwritable(error) and self.tasks.get(task.id) is task:
            log.warning("batch_unwritable_isolating", task=task.id, records=len(records), error=repr(error))
            task.isolate = dict(offsets)

    async def _process_isolated(self, task: Task, records: list[ConsumerRecord], now: datetime) -> None:
        """One record per transaction: a record whose output cannot be written is dead-lettered alone."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset < task.next[tp]:
                continue
            offsets, dead = self._apply(task, [record], now)
            error = await self._commit(task, offsets, dead, backoff=False)
            if error is None:
                continue
            if self.tasks.get(task.id) is not task or not unwritable(error):
                return  # fenced, or Kafka's trouble: read again from the last commit
            incoming = Incoming(
                record.topic, record.partition, record.offset, record.key, record.value, record.timestamp
            )
            letter = self._dead_letter(incoming, f"its output could not be written: {error!r}")
            if await self._commit(task, {tp: record.offset + 1}, [letter], backoff=False) is not None:
                return
            task.next[tp] = record.offset + 1
            assert self.consumer is not None
            self.consumer.seek(tp, record.offset + 1)
        for tp, end in list(task.isolate.items()):
            if task.committed.get(tp, 0) >= end:
                del task.isolate[tp]

    def _apply(
        self, task: Task, records: list[ConsumerRecord], now: datetime, budget_s: float | None = None, start: int = 0
    ) -> tuple[dict[TopicPartition, int], list[Outgoing]]:
        """Hand each new record to the service; a record it cannot use is dead-lettered, never half-applied.
        Past ``budget_s`` the rest is left for the next batch (read again from where this one stops)."""
        ctx = task.ctx
        ctx.now = now
        applied: list[tuple[Envelope, Message, Incoming]] = []
        dead: list[Outgoing] = []
        offsets: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + budget_s if budget_s is not None else None
        for index in range(start, len(records)):
            record = records[index]
            if deadline is not None and applied and time.monotonic() > deadline:
                task.pending, task.pending_from = records, index  # the next batch starts here
                break
            tp = TopicPartition(record.topic, record.partition)
            if record.offset < task.next[tp]:
                continue  # read again after a seek: already in this batch or committed
            task.next[tp] = offsets[tp] = record.offset + 1
            incoming = Incoming(
                record.topic, record.partition, record.offset, record.key, record.value, record.timestamp
            )
            self.stats.inputs += 1
            try:
                envelope, message = decode(record.value, max_bytes=self._size_limits.get(record.topic),
                                           record_time=record_time(record.timestamp))
            except InvalidMessage as exc:
                dead.append(self._dead_letter(incoming, str(exc)))
                continue
            handling = time.perf_counter()
            try:
                self.service.handle(ctx, envelope, message, incoming)
            except Exception as exc:
                log.error("handler_failed", task=task.id, offset=record.offset, topic=record.topic,
                          error=repr(exc), trace=traceback.format_exc(limit=8))
                dead.append(self._dead_letter(incoming, f"handler error on {envelope.type}: {exc!r}"))
                self._reapply(ctx, applied, dead)
                continue
            self.observer.handled(envelope.type, time.perf_counter() - handling)
            applied.append((envelope, message, incoming))
        return offsets, dead

    def _reapply(
        self, ctx: TaskContext, applied: list[tuple[Envelope, Message, Incoming]], dead: list[Outgoing]
    ) -> None:
        """Roll the task back to its last commit and apply the batch's good messages again (handlers are
        deterministic); one that now fails is dropped from the batch and dead-lettered too."""
        while True:
            ctx.rolled_back()
            for index, (envelope, message, incoming) in enumerate(applied):
                try:
                    self.service.handle(ctx, envelope, message, incoming)
                except Exception as exc:
                    del applied[index]
                    dead.append(self._dead_letter(incoming, f"handler error on {envelope.type} (re-applied): {exc!r}"))
                    break
            else:
                return

    def _dead_letter(self, incoming: Incoming, reason: str) -> Outgoing:
        payload = incoming.value or b""
        letter = DeadLettered(
            service=self.service.source or self.service.name,
            topic=incoming.topic,
            partition=incoming.partition,
            offset=incoming.offset,
            reason=reason,
            payload=payload.decode("utf-8", errors="replace")[:100_000],
        )
        key = f"{incoming.topic}/{incoming.partition}/{incoming.offset}"
        envelope = envelope_for(
            letter, source=self.service.source or self.service.name, correlationid=key, causationid=None,
            event_id=f"dlq:{key}",
        )
        self.stats.dead_lettered += 1
        self.observer.dead_lettered(incoming.topic)
        log.warning("dead_lettered", topic=incoming.topic, offset=incoming.offset, reason=reason[:500])
        return Outgoing(self._dead_letter_topic, key.encode(), encode(envelope))

    async def _commit(
        self, task: Task, offsets: dict[TopicPartition, int], dead: list[Outgoing], *, backoff: bool = True
    ) -> BaseException | None:
        """One transaction: changelog records, records sent, consumed offsets. None when it committed, else
        the error (the task is then rolled back to its last commit, or dropped when fenced)."""
        stores = task.ctx.stores
        changes = {name: store.changelog() for name, store in stores.items()}
        outgoing, after = task.ctx.take()
        changelog_of = [name for name, store_changes in changes.items() for _ in store_changes]
        changelog = [
            Outgoing(changelog_topic(self.settings, self.service.name, name), key.encode(), raw, task.id)
            for name, store_changes in changes.items()
            for key, raw in store_changes
        ]
        records = [*changelog, *outgoing, *dead]
        gap = task.last_commit + self.config.min_commit_gap_s - time.monotonic()
        if gap > 0:
            await asyncio.sleep(gap)
        began = time.monotonic()
        try:
            delivered = await asyncio.wait_for(
                self._transaction(task.producer, records, offsets), timeout=self.config.commit_timeout_s
            )
        except FENCED as exc:
            self.observer.transaction(time.monotonic() - began, committed=False)
            await self._fenced(task, exc)
            return exc
        except Exception as exc:
            self.observer.transaction(time.monotonic() - began, committed=False)
            log.error("commit_failed", task=task.id, error=repr(exc), trace=traceback.format_exc(limit=8))
            await self._abort(task, backoff=backoff)
            task.last_commit = time.monotonic()
            return exc
        task.last_commit = time.monotonic()
        for name, store in stores.items():
            store.committed(changes[name])
        for store_name, meta in zip(changelog_of, delivered, strict=False):
            task.changelog_next[store_name] = max(task.changelog_next.get(store_name, 0), meta.offset + 1)
        task.committed.update(offsets)
        self.observer.transaction(time.monotonic() - began, committed=True)
        self.stats.transactions += 1
        self.stats.records_written += len(records)
        self.stats.changelog_records += len(changelog)
        for work in after:
            self._after.put_nowait(work)
        return None

    async def _transaction(
        self, producer: AIOKafkaProducer, records: list[Outgoing], offsets: dict[TopicPartition, int]
    ) -> list[Any]:
        t0 = time.monotonic()
        await producer.begin_transaction()
        sent = [await producer.send(r.topic, r.value, key=r.key, partition=r.partition) for r in records]
        t1 = time.monotonic()
        # the records are delivered before the offsets are added: the broker checks a transaction's first write to
        # each partition with the transaction coordinator (KIP-890), which answers CONCURRENT_TRANSACTIONS while
        # the offsets' partition is being added; aiokafka hears it as NotEnoughReplicas and sends again after a
        # back-off. Overlapping the two made a third of the transactions of a bench retry a produce (decision 0001)
        delivered = await asyncio.gather(*sent)  # a record whose delivery failed fails the batch
        t2 = time.monotonic()
        if offsets:
            await producer.send_offsets_to_transaction(offsets, self.group)
        t3 = time.monotonic()
        await producer.commit_transaction()
        t4 = time.monotonic()
        phases = self.stats.phase_seconds
        for index, took in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[index] += took
        return delivered

    async def _fenced(self, task: Task, error: BaseException) -> None:
        """Another producer took the task's transactional id: this process must never write for it again.
        The group decides who owns it: rejoin, and take it back (with a new producer) only if assigned."""
        log.warning("task_fenced", task=task.id, error=repr(error))
        await self._drop_task(task.id, keep=False)
        self._rejoin = True

    async def _abort(self, task: Task, *, backoff: bool = True) -> None:
        """Discard the batch: abort (or replace a producer that cannot), roll back, read again from the commit."""
        self.stats.aborted += 1
        task.ctx.rolled_back()
        try:
            await asyncio.wait_for(task.producer.abort_transaction(), timeout=self.config.commit_timeout_s)
        except FENCED as exc:
            await self._fenced(task, exc)
            return
        except Exception as exc:
            # the transaction's outcome is unknown (it may even have committed after a timeout): take the task
            # again from what Kafka holds, as a new owner would (a new producer, the changelog, the offsets)
            log.warning("abort_failed_reopening_task", task=task.id, error=repr(exc))
            await self._drop_task(task.id, keep=True)
            reopened = await self._open_task_when_reachable(task.id)
            if reopened is not None:
                self.tasks[task.id] = reopened
            if backoff:
                await asyncio.sleep(self.config.retry_backoff_s)
            return
        assert self.consumer is not None
        task.take_pending()
        for tp, offset in task.committed.items():
            task.next[tp] = offset
            self.consumer.seek(tp, offset)
        if backoff:
            await asyncio.sleep(self.config.retry_backoff_s)

    # --- timers and after-commit work -------------------------------------------------------------------
    async def _run_timers(self) -> None:
        now = datetime.now(UTC)
        work = []
        for task in list(self.tasks.values()):
            task.ctx.now = now
            try:
                self.service.on_timer(task.ctx)
            except Exception as exc:
                log.error("timer_failed", task=task.id, error=repr(exc), trace=traceback.format_exc(limit=8))
                task.ctx.rolled_back()
                continue
            if task.ctx.outgoing or any(store.changed() for store in task.ctx.stores.values()):
                work.append(self._commit(task, {}, []))
            else:
                for work_item in task.ctx.take()[1]:  # after-commit work with nothing to commit: run it now
                    self._after.put_nowait(work_item)
                for store in task.ctx.stores.values():
                    store.committed([])
        if work:
            await asyncio.gather(*work)

    async def _run_after_commit(self) -> None:
        """After-commit work in commit order, in the background: it never blocks the loop nor stops it."""
        while True:
            work = await self._after.get()
            if work is None:
                return
            try:
                await work()
            except Exception as exc:
                log.warning("after_commit_failed", error=repr(exc))

    def _topic_name(self, name: str, location: str | None) -> str:
        return full_topic_name(self.settings, spec_named(name), location)


__all__ = ["Engine", "EngineConfig", "EngineStats", "changelog_topic"]
