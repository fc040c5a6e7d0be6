"""The node's entities in its faust table, written so that a crash part-way through a message is undone.

A message may change several entities (a pick changes the task, the order, the SKUs' bins), each its own table
key, hence its own changelog record. The records of one message go to the one changelog partition in order,
the message's primary entity last, and the source offset is committed only after they are flushed; so after a
crash the changelog holds a prefix of them. Each record carries the id of the message that wrote it and the
value before it: when the message is delivered again and its primary entity does not record it as applied,
the entities it already wrote are read as they were before it, and the message is simply applied again.

No faust import: the table is any mutable mapping of str to bytes (a dict in the unit tests).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson

from services.wms_node.domain.model import Unit


class UndoStore:
    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def record(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key)
        return orjson.loads(raw) if raw else None

    def current(self, key: str) -> str | None:
        """The entity's latest value (for reads outside a message: the timer, the web views, the views rebuild)."""
        rec = self.record(key)
        return rec["v"] if rec else None

    def unit(self, message_id: str, primary: str) -> Unit:
        """A unit of work for one message (one at a time: the node's agent runs with concurrency 1)."""
        self._before: dict[str, str | None] = {}
        self.undone: list[str] = []

        def load(key: str) -> str | None:
            rec = self.record(key)
            value: str | None = None
            if rec is not None:
                value = rec["v"]
                if rec["m"] == message_id and key != primary:
                    # Written by an earlier, cut-short attempt at this very message: read it as it was before.
                    value = rec["p"]
                    self.undone.append(key)
            self._before[key] = value
            return value

        return Unit(load)

    def commit(self, unit: Unit, message_id: str, primary: str) -> list[tuple[str, str | None]]:
        """Write what changed, the primary entity last. Returns the changes (for the read model)."""
        changes = unit.changes()
        ordered = [c for c in changes if c[0] != primary] + [c for c in changes if c[0] == primary]
        for key, value in ordered:
            record = {"m": message_id, "v": value, "p": self._before.get(key)}
            self.table[key] = orjson.dumps(record)
        return ordered
