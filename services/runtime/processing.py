"""The processing model every service stands on: tasks, their state stores, and what a handler may do.

This module holds the pieces a service is written against; ``services.runtime.engine`` runs them on Kafka.
The model is Kafka Streams' exactly-once (see ``docs/decisions/0001-processing.md``):

- a service's input topics are co-partitioned by key; partition *i* of every input forms **task i**;
- the engine takes a batch of a task's input records and hands them, in offset order, one at a time to the
  service's ``handle``; the handler reads and writes the task's **stores** and **sends** messages through
  the ``TaskContext``, and does no I/O of its own;
- after the batch, the engine writes one changelog record per changed key, every message sent and the
  consumed offsets in one Kafka transaction (a transactional producer per task fences zombies). Only once the
  commit succeeded do the ``after_commit`` callbacks run (Redis views for people's reads, replies);
- a handler that raises is never half-applied: the batch is rolled back and applied again without that
  message (handlers are deterministic: same state, same message, same ``ctx.now``), which goes to the
  dead-letter topic with the reason; input that does not parse goes there too; the loop never dies on it;
- a failed commit discards the whole batch (stores roll back to the last commit) and the task re-reads from
  its committed offsets.

Store values are objects (a pydantic model, a dict); a store turns them into bytes only when the batch is
committed. A handler must ``put`` every value it changed; it must not change a value it does not put.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from schemas.base import Message
from schemas.envelope import Envelope, encode_message
from services.runtime.feed import TopicFeed
from services.runtime.outbox import Emit

V = TypeVar("V")
_ABSENT: Any = object()


@dataclass(frozen=True)
class Incoming:
    """One input record, as the engine read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True)
class Outgoing:
    """One record to write in the task's transaction. ``partition`` None: Kafka's default partitioner by key."""

    topic: str
    key: bytes
    value: bytes | None
    partition: int | None = None


@dataclass(frozen=True)
class StoreSpec(Generic[V]):
    """A named key-value store of a service; each task has its own, backed by a compacted changelog topic."""

    name: str
    encode: Callable[[V], bytes]
    decode: Callable[[bytes], V]


class Store(Generic[V]):
    """A task's store: decoded values in memory, one changelog record per changed key per batch.

    A value a handler got may be changed in place and ``put`` back; so that a rolled-back batch leaves nothing
    behind, every key read or written by the batch is decoded afresh from the committed bytes afterwards.
    """

    def __init__(self, spec: StoreSpec[V]) -> None:
        self.spec = spec
        self._committed: dict[str, bytes] = {}
        self._cache: dict[str, V] = {}
        self._batch: dict[str, Any] = {}  # key -> value or _ABSENT (deleted) since the last commit
        self._touched: set[str] = set()  # keys read by the batch (their cached values may have been changed)
        self.revision = 0  # bumped whenever the committed values change (a commit, a restored record)

    # --- what a handler uses -------------------------------------------------------------------------
    def get(self, key: str) -> V | None:
        if key in self._batch:
            value = self._batch[key]
            return None if value is _ABSENT else value  # type: ignore[no-any-return]
        self._touched.add(key)
        if key in self._cache:
            return self._cache[key]
        raw = self._committed.get(key)
        if raw is None:
            return None
        value = self.spec.decode(raw)
        self._cache[key] = value
        return value

    def put(self, key: str, value: V) -> None:
        self._batch[key] = value

    def delete(self, key: str) -> None:
        self._batch[key] = _ABSENT

    def keys(self) -> Iterator[str]:
        """Every key with a value now (committed, then changed by this batch)."""
        for key in list(self._committed):
            if self._batch.get(key, None) is not _ABSENT:
                yield key
        for key, value in list(self._batch.items()):
            if key not in self._committed and value is not _ABSENT:
                yield key

    def items(self) -> Iterator[tuple[str, V]]:
        for key in list(self.keys()):
            value = self.get(key)
            if value is not None:
                yield key, value

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    # --- what a reader outside the batches uses (HTTP views) ------------------------------------------
    def committed_value(self, key: str) -> V | None:
        """The value as of the last commit, decoded afresh (never what a batch in flight changed)."""
        raw = self._committed.get(key)
        return None if raw is None else self.spec.decode(raw)

    def committed_raw_items(self) -> list[tuple[str, bytes]]:
        """Every key with its bytes as of the last commit, nothing decoded or cached (a fast scan at assignment)."""
        return list(self._committed.items())

    # --- what the engine uses ------------------------------------------------------------------------
    def restore(self, key: str, raw: bytes | None) -> None:
        """Apply one changelog record (None: a tombstone) while the task is restored."""
        self.revision += 1
        self._cache.pop(key, None)
        if raw is None:
            self._committed.pop(key, None)
        else:
            self._committed[key] = raw

    def changed(self) -> bool:
        """Whether this batch put or deleted anything (cheaper than encoding the changelog to find out)."""
        return bool(self._batch)

    def changelog(self) -> list[tuple[str, bytes | None]]:
        """What this batch changed, encoded once per key (None: deleted)."""
        return [(key, None if value is _ABSENT else self.spec.encode(value)) for key, value in self._batch.items()]

    def committed(self, changes: list[tuple[str, bytes | None]]) -> None:
        """The batch's transaction committed: its values become the store's truth."""
        if changes:
            self.revision += 1
        for key, raw in changes:
            value = self._batch.get(key, _ABSENT)
            if raw is None:
                self._committed.pop(key, None)
                self._cache.pop(key, None)
            else:
                self._committed[key] = raw
                if value is not _ABSENT:
                    self._cache[key] = value
        self._batch = {}
        self._touched = set()

    def rolled_back(self) -> None:
        """The batch was discarded: forget everything it did, values it may have changed in place included."""
        for key in (*self._batch, *self._touched):
            self._cache.pop(key, None)
        self._batch = {}
        self._touched = set()


AfterCommit = Callable[[], Awaitable[None]]


@dataclass
class TaskContext:
    """What a handler gets besides the message: its task's stores, a way to send, the time, after-commit work."""

    service_source: str
    task: int
    stores: dict[str, Store[Any]]
    topic_name: Callable[[str, str | None], str]  # (catalog name, location) -> full topic name
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    outgoing: list[Outgoing] = field(default_factory=list)
    after: list[AfterCommit] = field(default_factory=list)

    def store(self, name: str) -> Store[Any]:
        return self.stores[name]

    def send(self, emits: list[Emit], *, correlationid: str, causationid: str | None) -> None:
        """Send what a core returned, in CloudEvents envelopes, in this task's transaction."""
        for emit in emits:
            # a message about one order is correlated with that order, even when a batch (a wave) caused it
            order_id = getattr(emit.message, "order_id", None)
            value = encode_message(
                emit.message,
                source=self.service_source,
                correlationid=order_id if isinstance(order_id, str) and order_id else correlationid,
                causationid=emit.causationid or causationid,
                event_id=emit.event_id,
            )
            self.send_raw(self.topic_name(emit.topic, emit.location), emit.key.encode(), value)

    def send_raw(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.outgoing.append(Outgoing(topic, key, value, partition))

    def after_commit(self, work: AfterCommit) -> None:
        """Run ``work`` once this batch's transaction committed (never if it did not)."""
        self.after.append(work)

    def take(self) -> tuple[list[Outgoing], list[AfterCommit]]:
        """The batch's records and after-commit work, handed to the engine (and cleared here)."""
        out, after = self.outgoing, self.after
        self.outgoing, self.after = [], []
        return out, after

    def rolled_back(self) -> None:
        self.outgoing, self.after = [], []
        for store in self.stores.values():
            store.rolled_back()


class StreamService:
    """What a service gives the engine. Subclasses set the class attributes and override the hooks."""

    name: str = ""  # the consumer group and transactional ids derive from it (with the namespace)
    source: str = ""  # CloudEvents ``source`` of what it sends
    stores: tuple[StoreSpec[Any], ...] = ()

    def inputs(self) -> list[str]:
        """Full names of the co-partitioned input topics (same partition count, same key)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Before the first batch: follow global views (network, catalog, availability) until caught up."""

    def views(self) -> Sequence[TopicFeed]:
        """The global views it follows beside the engine (``GET /feeds`` reports how far each has read)."""
        return ()

    def on_assigned(self, ctx: TaskContext) -> None:
        """A task was restored from its changelog and is about to process (rebuild in-memory indexes here)."""

    def on_revoked(self, task: int) -> None:
        """A task left this instance (rebalance or shutdown): drop in-memory indexes of it."""

    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        """Apply one parsed input message; read and write ``ctx``'s stores, ``ctx.send`` what to emit."""
        raise NotImplementedError

    def on_timer(self, ctx: TaskContext) -> None:
        """Called every ``timer_interval_s`` for each task, inside a transaction (deadlines, waves, expiries)."""

    timer_interval_s: float = 0.5


__all__ = [
    "AfterCommit",
    "Incoming",
    "Outgoing",
    "Store",
    "StoreSpec",
    "StreamService",
    "TaskContext",
]
