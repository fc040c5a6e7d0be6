"""Simulated workers (``--auto``): they take every task of their location and confirm it as asked."""

from __future__ import annotations

from schemas.wms import ConfirmTask, FulfilmentLine, TaskCreated


class AutoWorker:
    def __init__(self, location: str, name: str = "auto") -> None:
        self.location = location
        self.name = name

    def confirm(self, task: TaskCreated) -> ConfirmTask:
        return ConfirmTask(
            task_id=task.task_id,
            order_id=task.order_id,
            request_id=task.request_id,
            location=self.location,
            worker=self.name,
            picked=[],
        )


__all__ = ["AutoWorker", "FulfilmentLine"]
