"""A task's local checkpoint: written atomically, read back whole, never trusted when damaged or out of range."""

from __future__ import annotations

from pathlib import Path

from services.runtime.checkpoint import Checkpoint, Checkpoints, checkpoint_path, read_checkpoint, write_checkpoint
from services.runtime.processing import Store, StoreSpec


def test_a_checkpoint_reads_back_every_store_with_its_offsets(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, "orchestrator", 2)
    entries = {"orders": [("O-1", b'{"a":1}'), ("O-é", b"")], "capacity": []}

    write_checkpoint(path, {"orders": 42, "capacity": 0}, entries)
    loaded = read_checkpoint(path)

    assert loaded == Checkpoint({"orders": 42, "capacity": 0}, {"orders": entries["orders"], "capacity": []})
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_missing_or_damaged_checkpoint_is_none(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, "inventory", 0)
    assert read_checkpoint(path) is None

    write_checkpoint(path, {"ledgers": 3}, {"ledgers": [("SKU", b"x" * 100)]})
    path.write_bytes(path.read_bytes()[:-10])

    assert read_checkpoint(path) is None


def test_a_checkpoint_is_usable_only_within_the_changelog() -> None:
    checkpoint = Checkpoint({"orders": 10}, {"orders": []})

    assert checkpoint.usable({"orders": 0}, {"orders": 10})
    assert checkpoint.usable({"orders": 0}, {"orders": 25})
    assert not checkpoint.usable({"orders": 0}, {"orders": 9})  # ahead of the end: the topic was made anew
    assert not checkpoint.usable({"orders": 11}, {"orders": 30})  # records it lacks were removed
    assert not checkpoint.usable({}, {})  # its changelog is gone


def _store(name: str) -> Store[bytes]:
    return Store(StoreSpec(name, lambda v: v, lambda b: b))


async def test_checkpoints_fill_fresh_stores_and_say_where_to_read_the_changelog_on(tmp_path: Path) -> None:
    async def bounds(_task: int) -> tuple[dict[str, int], dict[str, int]]:
        return {"orders": 0}, {"orders": 12}

    keeper = Checkpoints(tmp_path, bounds)
    saved = _store("orders")
    saved.restore("O-1", b"one")
    saved.restore("O-2", b"two")
    keeper.save_now(3, {"orders": 10}, {"orders": saved})

    fresh = {"orders": _store("orders")}
    offsets = await keeper.load(3, fresh)

    assert offsets == {"orders": 10}
    assert keeper.loaded_records == 2
    assert sorted(fresh["orders"].committed_raw_items()) == [("O-1", b"one"), ("O-2", b"two")]


async def test_a_checkpoint_ahead_of_the_changelog_is_ignored(tmp_path: Path) -> None:
    async def bounds(_task: int) -> tuple[dict[str, int], dict[str, int]]:
        return {"orders": 0}, {"orders": 4}  # the topic was deleted and made again since

    keeper = Checkpoints(tmp_path, bounds)
    saved = _store("orders")
    saved.restore("O-1", b"one")
    keeper.save_now(0, {"orders": 10}, {"orders": saved})

    fresh = {"orders": _store("orders")}

    assert await keeper.load(0, fresh) == {}
    assert fresh["orders"].committed_raw_items() == []
