"""A local checkpoint of a task's stores, so that a restart reads only the changelog's tail (Kafka Streams'
``.checkpoint`` plus the store files it stands for).

One file per task under ``settings.state_dir/<service>/``: the committed bytes of every store and, per store,
the changelog offset they cover (the offset after the last changelog record they include). It is written from
committed state only, between batches (so it never holds what a transaction in flight changed), atomically
(a temporary file renamed over the old one), every few seconds and on a clean shutdown.

On restart the engine loads it and reads each changelog from the checkpoint's offset to its end. A checkpoint
is never trusted when one of its offsets lies outside the changelog (ahead of its end: the topic was deleted
and made again; behind its beginning: records it lacks were removed): the store is then restored in full.

File layout (little endian): magic ``BATONCP1``, a u32 length and an orjson header ``{"offsets": {store: n},
"counts": {store: n}}``, then for each store in header order its entries as ``u32 key length, key, u32 value
length, value``.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime.admin import changelog_name
from services.runtime.logs import get_logger
from services.runtime.processing import Store
from services.runtime.settings import Settings

log = get_logger(__name__)
MAGIC = b"BATONCP1"
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class Checkpoint:
    """What a task's stores held as of a commit, and the changelog offsets that state covers."""

    offsets: dict[str, int]  # store -> changelog offset after the last record included
    entries: dict[str, list[tuple[str, bytes]]]  # store -> (key, committed bytes)

    def usable(self, beginnings: Mapping[str, int], ends: Mapping[str, int]) -> bool:
        """Every store's offset lies within its changelog now (else restore that task in full)."""
        return all(
            store in ends and beginnings.get(store, 0) <= offset <= ends[store]
            for store, offset in self.offsets.items()
        )


def checkpoint_path(state_dir: Path, service: str, task: int) -> Path:
    return state_dir / service / f"task-{task}.checkpoint"


def write_checkpoint(path: Path, offsets: Mapping[str, int], entries: Mapping[str, Iterable[tuple[str, bytes]]]) -> int:
    """Write atomically; returns the bytes written."""
    stores = list(entries)
    rows = {store: list(entries[store]) for store in stores}
    header = orjson.dumps({"offsets": {s: offsets[s] for s in stores}, "counts": {s: len(rows[s]) for s in stores}})
    parts = [MAGIC, _U32.pack(len(header)), header]
    for store in stores:
        for key, value in rows[store]:
            raw_key = key.encode()
            parts += [_U32.pack(len(raw_key)), raw_key, _U32.pack(len(value)), value]
    data = b"".join(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")  # two instances of a service may share the folder
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return len(data)


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none or it is damaged (then restore in full)."""
    try:
        data = path.read_bytes()
        return _parse(memoryview(data))
    except (OSError, ValueError, KeyError, struct.error, orjson.JSONDecodeError, UnicodeDecodeError):
        return None


def _parse(data: memoryview) -> Checkpoint:
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise ValueError("not a checkpoint")
    at = len(MAGIC)
    (size,) = _U32.unpack_from(data, at)
    at += _U32.size
    header = orjson.loads(bytes(data[at: at + size]))
    at += size
    entries: dict[str, list[tuple[str, bytes]]] = {}
    for store, count in header["counts"].items():
        rows = []
        for _ in range(count):
            (key_size,) = _U32.unpack_from(data, at)
            at += _U32.size
            key = bytes(data[at: at + key_size]).decode()
            at += key_size
            (value_size,) = _U32.unpack_from(data, at)
            at += _U32.size
            if at + value_size > len(data):
                raise ValueError("truncated checkpoint")
            rows.append((key, bytes(data[at: at + value_size])))
            at += value_size
        entries[store] = rows
    if at != len(data):
        raise ValueError("trailing bytes in checkpoint")
    return Checkpoint({s: int(o) for s, o in header["offsets"].items()}, entries)


# (beginning, end) offsets of each store's changelog partition of a task, as Kafka says now
ChangelogBounds = Callable[[int], Awaitable[tuple[dict[str, int], dict[str, int]]]]
CHECKPOINT_EVERY_S = 10.0


def kafka_bounds(settings: Settings, service: str, stores: Iterable[str]) -> ChangelogBounds:
    """Where each store's changelog partition of a task begins and ends on Kafka (committed records)."""
    names = list(stores)

    async def bounds(task: int) -> tuple[dict[str, int], dict[str, int]]:
        by_tp = {TopicPartition(changelog_name(settings, service, name), task): name for name in names}
        consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False,
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            beginnings = await consumer.beginning_offsets(list(by_tp))
            ends = await consumer.end_offsets(list(by_tp))
        finally:
            await consumer.stop()
        return ({by_tp[tp]: o for tp, o in beginnings.items()}, {by_tp[tp]: o for tp, o in ends.items()})

    return bounds


@dataclass
class Checkpoints:
    """The engine's side: load a task's checkpoint into fresh stores, save every task's now and then.

    ``save_due`` snapshots the committed bytes between batches (a list of references, cheap) and writes them in
    a thread, so that the loop is not held while hundreds of megabytes reach the disk.
    """

    directory: Path  # settings.state_dir / service name
    bounds: ChangelogBounds
    every_s: float = CHECKPOINT_EVERY_S
    last_saved: float = field(default_factory=time.monotonic)
    writing: asyncio.Task[None] | None = None
    loaded_records: int = 0  # store entries taken from checkpoints (not read from a changelog)

    def path(self, task: int) -> Path:
        return self.directory / f"task-{task}.checkpoint"

    async def load(self, task: int, stores: Mapping[str, Store[Any]]) -> dict[str, int]:
        """Fill ``stores`` from the task's checkpoint; the changelog offsets to read on from ({}: none usable)."""
        checkpoint = await asyncio.to_thread(read_checkpoint, self.path(task))
        if checkpoint is None or set(checkpoint.offsets) != set(stores):
            return {}
        beginnings, ends = await self.bounds(task)
        if not checkpoint.usable(beginnings, ends):
            return {}
        for name, rows in checkpoint.entries.items():
            store = stores[name]
            for key, raw in rows:
                store.restore(key, raw)
            self.loaded_records += len(rows)
        return dict(checkpoint.offsets)

    def snapshot(self, offsets: Mapping[str, int], stores: Mapping[str, Store[Any]]) -> tuple[dict[str, int], dict[
            str, list[tuple[str, bytes]]]]:
        """Committed state only: call between batches (no transaction in flight)."""
        return ({name: offsets.get(name, 0) for name in stores},
                {name: store.committed_raw_items() for name, store in stores.items()})

    def save_due(self, tasks: Mapping[int, tuple[Mapping[str, int], Mapping[str, Store[Any]]]]) -> None:
        """Every ``every_s``, write each task's checkpoint in the background (one write at a time)."""
        if time.monotonic() - self.last_saved < self.every_s or (self.writing and not self.writing.done()):
            return
        self.last_saved = time.monotonic()
        snapshots = {task: self.snapshot(offsets, stores) for task, (offsets, stores) in tasks.items()}
        self.writing = asyncio.create_task(asyncio.to_thread(self._write_all, snapshots))

    def save_now(self, task: int, offsets: Mapping[str, int], stores: Mapping[str, Store[Any]]) -> None:
        """On a clean shutdown (after the last commit): the restart reads nothing but what came after."""
        self._write(task, *self.snapshot(offsets, stores))

    def _write_all(self, snapshots: Mapping[int, tuple[dict[str, int], dict[str, list[tuple[str, bytes]]]]]) -> None:
        for task, (offsets, entries) in snapshots.items():
            self._write(task, offsets, entries)

    def _write(self, task: int, offsets: dict[str, int], entries: dict[str, list[tuple[str, bytes]]]) -> None:
        """A checkpoint that cannot be written only makes the next restore longer: never fail the loop for it."""
        try:
            write_checkpoint(self.path(task), offsets, entries)
        except OSError as exc:
            log.warning("checkpoint_not_written", task=task, error=repr(exc))


__all__ = ["Checkpoint", "Checkpoints", "checkpoint_path", "kafka_bounds", "read_checkpoint", "write_checkpoint"]
