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

import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

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
    temporary = path.with_suffix(".tmp")
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


__all__ = ["Checkpoint", "checkpoint_path", "read_checkpoint", "write_checkpoint"]
