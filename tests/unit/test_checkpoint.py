"""A task's local checkpoint: written atomically, read back whole, never trusted when damaged or out of range."""

from __future__ import annotations

from pathlib import Path

from services.runtime.checkpoint import Checkpoint, checkpoint_path, read_checkpoint, write_checkpoint


def test_a_checkpoint_reads_back_every_store_with_its_offsets(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, "orchestrator", 2)
    entries = {"orders": [("O-1", b'{"a":1}'), ("O-é", b"")], "capacity": []}

    write_checkpoint(path, {"orders": 42, "capacity": 0}, entries)
    loaded = read_checkpoint(path)

    assert loaded == Checkpoint({"orders": 42, "capacity": 0}, {"orders": entries["orders"], "capacity": []})
    assert not path.with_suffix(".tmp").exists()


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
