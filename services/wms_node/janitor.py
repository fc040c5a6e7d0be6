"""Which of the node's entities are finished, and since when: they leave the node's store after ``retain_s``.

Finished: a task done or withdrawn, an order whose every request shipped, was handed over, withdrawn,
rejected or found short, a delivery or a return received. Long after that, nothing will be delivered again
that needs them (the messages that touched them were committed long before), so the node's timer deletes them in
its transaction. Kept in memory (fed once each batch committed) and rebuilt from the store when the node's task is
assigned (an entity then counts as finished from then); pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel

from services.wms_node.domain.model import FINISHED_STAGES, OrderWork, ReturnWork, Supply, Task

DEFAULT_RETAIN_S = 6 * 3600.0


def finished(key: str, value: BaseModel | str | None) -> bool:
    """Whether an entity (or its JSON text) is finished work."""
    kind = key.split(":", 1)[0]
    if value is None or kind not in ("task", "order", "supply", "return"):
        return False
    if isinstance(value, str):
        kinds: dict[str, type[BaseModel]] = {"task": Task, "order": OrderWork, "supply": Supply, "return": ReturnWork}
        value = kinds[kind].model_validate_json(value)
    if isinstance(value, Task):
        return value.status in ("done", "cancelled")
    if isinstance(value, OrderWork):
        return bool(value.requests) and all(r.stage in FINISHED_STAGES for r in value.requests.values())
    return isinstance(value, Supply | ReturnWork) and value.stage == "received"


class Janitor:
    """``since`` is in the order entities finished, which is the order of their times (batches commit one after
    the other), so ``due`` reads only its head: the timer asks five times a second, whatever the state holds."""

    def __init__(self, retain_s: float = DEFAULT_RETAIN_S) -> None:
        self.retain = timedelta(seconds=retain_s)
        self.since: dict[str, datetime] = {}

    def observe(self, changes: Iterable[tuple[str, BaseModel | str | None]], now: datetime) -> None:
        for key, value in changes:
            if finished(key, value):
                self.since.setdefault(key, now)
            else:
                self.since.pop(key, None)

    def due(self, now: datetime) -> list[str]:
        due = []
        for key, since in self.since.items():
            if since + self.retain > now:
                break
            due.append(key)
        return sorted(due)

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.since.pop(key, None)
