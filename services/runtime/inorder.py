"""Each partition's messages once and in offset order, whatever faust hands over around a restart.

After a ``kill -9`` faust can deliver a message twice, or skip a few and go on (its commits then stall at
the hole, or pass it). An agent that applied a later message before an earlier one, or never applied one,
would break "nothing lost". ``OffsetGuard`` drops repeats and, when a message arrives past a gap, reads the
missing ones straight from Kafka so the agent applies them first, then tells faust the range is done.
(The inventory service uses the same pieces in its batches, plus ``Tails`` for skips at a partition's end.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from services.runtime.logs import get_logger

log = get_logger(__name__)


def _commit_bookkeeping(new_offset: Callable[[Any, Any], int | None]) -> Callable[[Any, Any], int | None]:
    """Make faust's commit pass everything done, around a restart.

    faust can record an offset as acked twice (its commit then advances one duplicate at a time): the acked
    list is deduplicated first. And the ranges this module marks done (``_add_gap``) are only folded into the
    commit when some later message is acked: at the end of a partition none may come, and the commit would
    stall there forever. Ranges that continue the committed offset are folded in here directly.
    """

    def patched(consumer: Any, tp: Any) -> int | None:
        acked = consumer._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        gaps = consumer._gap[tp]
        committed = consumer._committed_offset.get(tp)
        if not acked and gaps and committed is not None:
            following = committed + 1
            for interval in sorted(gaps, key=lambda iv: iv.begin):
                if interval.begin > following:
                    break
                acked.extend(range(max(interval.begin, following), interval.end))
                following = max(following, interval.end)
            if acked:
                gaps.chop(0, following)
        return new_offset(consumer, tp)

    return patched


FaustConsumer._new_offset = _commit_bookkeeping(FaustConsumer._new_offset)  # type: ignore[method-assign,assignment]


class InOrder:
    """Each partition's commands once and in offset order, whatever faust hands over around a restart.

    The first command expected after an assignment is at the partition's committed offset (where faust seeks
    to). ``check`` answers ``apply`` for the expected offset, ``repeat`` for one already applied, and ``hole``
    (with the first missing offset) for one past a gap: the caller reads the missing commands itself and
    applies them first. A hole at the end of a partition shows no later command: ``Tails`` finds those.
    """

    def __init__(self, committed: Callable[[Any], int | None]) -> None:
        self.committed = committed
        self.expected: dict[Any, int] = {}

    def forget(self, partitions: Any) -> None:
        for tp in partitions:
            self.expected.pop(tp, None)

    def next_offset(self, tp: Any) -> int | None:
        expected = self.expected.get(tp)
        return expected if expected is not None else self.committed(tp)

    def check(self, tp: Any, offset: int) -> tuple[str, int]:
        expected = self.expected.get(tp)
        if expected is None:
            committed = self.committed(tp)
            expected = committed if committed is not None else offset
        if offset < expected:
            return "repeat", expected
        self.expected[tp] = offset + 1
        return ("hole" if offset > expected else "apply"), expected


class Tails:
    """Partitions whose log goes further than what was applied, without progress from one look to the next
    (``TAIL_QUIET_S`` apart): faust skipped their last commands and will not deliver them."""

    def __init__(self) -> None:
        self.lagging: dict[Any, int] = {}

    def stuck(self, next_offsets: dict[Any, int | None], ends: dict[Any, int]) -> list[tuple[Any, int, int]]:
        stuck, lagging = [], {}
        for tp, start in next_offsets.items():
            end = ends.get(tp, 0)
            if start is None or end <= start:
                continue
            if self.lagging.get(tp) == start:
                stuck.append((tp, start, end))
            else:
                lagging[tp] = start
        self.lagging = lagging
        return stuck


class HoleReader:
    """Reads a range of a partition straight from Kafka (no group): the commands faust skipped."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer: AIOKafkaConsumer | None = None

    async def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                             enable_auto_commit=False, auto_offset_reset="earliest")
            await self.consumer.start()
        return self.consumer

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        consumer = await self._consumer()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic}[{partition}] {start}..{end - 1}")
            batch = await consumer.getmany(tp, timeout_ms=1000)
            records.extend(r for r in batch.get(tp, []) if start <= r.offset < end)
        return [Replayed(r) for r in records]

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        consumer = await self._consumer()
        ends = await consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in partitions])
        return {tp: int(ends[TopicPartition(tp.topic, tp.partition)]) for tp in partitions}

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


class Replayed:
    """Stands in for the faust event of a command read by ``HoleReader`` (no ack: it was never delivered)."""

    def __init__(self, record: Any) -> None:
        self.value = record.value
        self.message = SimpleNamespace(topic=record.topic, partition=record.partition, offset=record.offset,
                                       value=record.value, tp=TP(record.topic, record.partition))


class OffsetGuard:
    """``InOrder`` and ``HoleReader`` wired to a faust app, for agents that handle one message at a time."""

    def __init__(self, app: Any, bootstrap: str) -> None:
        self.app = app
        self.order = InOrder(lambda tp: app.consumer._committed_offset.get(tp))
        self.holes = HoleReader(bootstrap)
        app.on_partitions_assigned.connect(self._forget)
        app.on_partitions_revoked.connect(self._forget)

    async def _forget(self, sender: Any = None, assigned: Any = (), revoked: Any = (), **kwargs: Any) -> None:
        self.order.forget([*assigned, *revoked])

    def check(self, tp: Any, offset: int) -> tuple[str, int]:
        return self.order.check(tp, offset)

    async def missing(self, tp: Any, start: int, end: int) -> list[Replayed]:
        log.warning("offset_hole", partition=str(tp), missing_from=start, missing_to=end - 1)
        return await self.holes.read(tp.topic, tp.partition, start, end)

    async def done(self, tp: Any, first: int, last: int) -> None:
        """faust never delivered these: mark them handled so its commits pass them."""
        await self.app.consumer._add_gap(tp, first, last)


_GUARDS: dict[int, OffsetGuard] = {}


def guard_for(app: Any, bootstrap: str) -> OffsetGuard:
    """One guard per app (its agents share the consumer and its committed offsets)."""
    if id(app) not in _GUARDS:
        _GUARDS[id(app)] = OffsetGuard(app, bootstrap)
    return _GUARDS[id(app)]
