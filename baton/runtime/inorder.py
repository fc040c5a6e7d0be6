"""Each partition's messages once and in offset order, whatever faust hands over around a restart.

After a ``kill -9`` faust can deliver a message twice, or skip a few and go on (its commits then stall at
the hole, or pass it). An agent that applied a later message before an earlier one, or never applied one,
would break "nothing lost". ``OffsetGuard`` drops repeats and, when a message arrives past a gap, reads the
missing ones straight from Kafka so the agent applies them first, then tells faust the range is done.
(The inventory service carries its own batch-aware version of the same guard.)
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from baton.runtime.logs import get_logger

log = get_logger(__name__)


class Replayed:
    """Stands in for the faust event of a message read straight from the log (it was never delivered)."""

    def __init__(self, record: Any) -> None:
        self.value = record.value
        self.message = SimpleNamespace(topic=record.topic, partition=record.partition, offset=record.offset,
                                       value=record.value, tp=TP(record.topic, record.partition))


class OffsetGuard:
    def __init__(self, app: Any, bootstrap: str) -> None:
        self.app = app
        self.bootstrap = bootstrap
        self.expected: dict[Any, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        app.on_partitions_assigned.connect(self._forget)
        app.on_partitions_revoked.connect(self._forget)

    async def _forget(self, sender: Any = None, assigned: Any = (), revoked: Any = (), **kwargs: Any) -> None:
        for tp in [*assigned, *revoked]:
            self.expected.pop(tp, None)

    def check(self, tp: Any, offset: int) -> tuple[str, int]:
        """``apply`` the expected offset, skip a ``repeat``, or report a ``hole`` starting at the expected one."""
        expected = self.expected.get(tp)
        if expected is None:
            committed = self.app.consumer._committed_offset.get(tp)
            expected = committed if committed is not None else offset
        if offset < expected:
            return "repeat", expected
        self.expected[tp] = offset + 1
        return ("hole" if offset > expected else "apply"), expected

    async def missing(self, tp: Any, start: int, end: int) -> list[Replayed]:
        log.warning("offset_hole", partition=str(tp), missing_from=start, missing_to=end - 1)
        consumer = await self._consumer()
        partition = TopicPartition(tp.topic, tp.partition)
        consumer.assign([partition])
        consumer.seek(partition, start)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while await consumer.position(partition) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {tp.topic}[{tp.partition}] {start}..{end - 1}")
            batch = await consumer.getmany(partition, timeout_ms=1000)
            records.extend(r for r in batch.get(partition, []) if start <= r.offset < end)
        return [Replayed(r) for r in records]

    async def done(self, tp: Any, first: int, last: int) -> None:
        """faust never delivered these: mark them handled so its commits pass them."""
        await self.app.consumer._add_gap(tp, first, last)

    async def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                             enable_auto_commit=False, auto_offset_reset="earliest")
            await self.consumer.start()
        return self.consumer


_GUARDS: dict[int, OffsetGuard] = {}


def guard_for(app: Any, bootstrap: str) -> OffsetGuard:
    """One guard per app (its agents share the consumer and its committed offsets)."""
    if id(app) not in _GUARDS:
        _GUARDS[id(app)] = OffsetGuard(app, bootstrap)
    return _GUARDS[id(app)]
