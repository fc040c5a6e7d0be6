"""The simulated broker: topics of partitions, each an append-only list of committed records.

Only what a transaction committed is ever appended (the simulated services append a batch's outputs when
the batch commits, all at once), so every reader sees committed records only, as ``read_committed`` does.
Partitioning is a fixed hash of the key (crc32), so a run replays identically in any process.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None
    at: datetime  # when it was appended (simulated time): the record's timestamp


TopicPartition = tuple[str, int]


class SimBroker:
    def __init__(self, partitions_of: dict[str, int], default_partitions: int) -> None:
        self.partitions_of = partitions_of  # topic -> partition count (others: ``default_partitions``)
        self.default_partitions = default_partitions
        self.logs: dict[TopicPartition, list[Record]] = {}
        self.appended = 0
        self.all: list[Record] = []  # every record in the order it was appended (the log as time saw it)

    def partitions(self, topic: str) -> int:
        return self.partitions_of.get(topic, self.default_partitions)

    def partition_for(self, topic: str, key: bytes) -> int:
        return zlib.crc32(key) % self.partitions(topic)

    def append(self, topic: str, key: bytes, value: bytes | None, at: datetime, partition: int | None = None) -> Record:
        part = self.partition_for(topic, key) if partition is None else partition
        log = self.logs.setdefault((topic, part), [])
        record = Record(topic, part, len(log), key, value, at)
        log.append(record)
        self.all.append(record)
        self.appended += 1
        return record

    def end(self, tp: TopicPartition) -> int:
        log = self.logs.get(tp)
        return 0 if log is None else len(log)

    def read(self, tp: TopicPartition, start: int, stop: int | None = None) -> list[Record]:
        return self.logs.get(tp, [])[start:stop]

    def topic_records(self, topic: str) -> list[Record]:
        """Every record of a topic, partition by partition (each in offset order)."""
        return [r for p in range(self.partitions(topic)) for r in self.logs.get((topic, p), ())]


__all__ = ["Record", "SimBroker", "TopicPartition"]
