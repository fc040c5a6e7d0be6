"""The simulated workers of a location: they read its task topic and confirm each task through its inbox.

They confirm as the auto-workers do (``services.wms_node.domain.workers.AutoWorker`` builds every confirmation,
short picks and receiving counts included), at their own pace, sometimes twice (a worker's retry): what the
timeline asked of them (a short pick, a damaged delivery, a cycle count's drift) applies to their next such task.
"""

from __future__ import annotations

import heapq
import random
from datetime import datetime, timedelta

from baton.sim.broker import SimBroker
from schemas.envelope import Envelope, decode
from schemas.wms import ConfirmTask, CountedLine, TaskCreated
from services.wms_node.domain.workers import AutoWorker, SkuQty, WorkerBehaviour


class SimWorkers:
    def __init__(self, location: str, tasks_topic: str, broker: SimBroker, rng: random.Random) -> None:
        self.location = location
        self.tasks_topic = tasks_topic
        self.broker = broker
        self.rng = rng
        self.positions: dict[int, int] = {}
        self.queue: list[tuple[datetime, int, Envelope, TaskCreated]] = []  # (when done, seq, envelope, task)
        self.seq = 0
        self.short_picks: dict[str, int] = {}  # sku -> units the next pick of it misses
        self.receiving: dict[str, tuple[int, int]] = {}  # supply id -> (short, damaged)
        self.drifts: dict[str, int] = {}  # count id -> units found more (or fewer) in its first bin
        self.pace_s = 0.0
        self.partitions = [(tasks_topic, p) for p in range(broker.partitions(tasks_topic))]

    def read_new_tasks(self, now: datetime) -> None:
        for partition in range(self.broker.partitions(self.tasks_topic)):
            start = self.positions.get(partition, 0)
            records = self.broker.read((self.tasks_topic, partition), start)
            self.positions[partition] = start + len(records)
            for record in records:
                envelope, message = decode(record.value)
                if isinstance(message, TaskCreated):
                    pace = self.rng.choice((0.0, 0.1, 0.5, 2.0)) + self.pace_s
                    heapq.heappush(self.queue, (now + timedelta(seconds=pace), self.seq, envelope, message))
                    self.seq += 1

    def next_due(self) -> datetime | None:
        return self.queue[0][0] if self.queue else None

    def has_unread(self) -> bool:
        return any(self.broker.end(tp) > self.positions.get(tp[1], 0) for tp in self.partitions)

    def take(self, now: datetime) -> tuple[Envelope, ConfirmTask] | None:
        """The confirmation of the next task done by ``now`` (with the envelope of the task it confirms)."""
        if not self.queue or self.queue[0][0] > now:
            return None
        _, _, envelope, task = heapq.heappop(self.queue)
        return envelope, self.confirm(task)

    def confirm(self, task: TaskCreated) -> ConfirmTask:
        behaviour = WorkerBehaviour(location=self.location)
        if task.kind == "pick":
            shorts = [SkuQty(sku=ln.sku, qty=self.short_picks.pop(ln.sku)) for ln in task.lines
                      if ln.sku in self.short_picks]
            behaviour = WorkerBehaviour(location=self.location, short_pick=shorts)
        elif task.kind == "receive" and task.order_id in self.receiving:
            short, damaged = self.receiving.pop(task.order_id)
            skus = {ln.sku for ln in task.lines}
            behaviour = WorkerBehaviour(location=self.location,
                                        short_receive=[SkuQty(sku=s, qty=short) for s in skus if short],
                                        damaged=[SkuQty(sku=s, qty=damaged) for s in skus if damaged])
        confirm = AutoWorker(self.location, behaviour).confirm(task)
        if task.kind == "count" and task.lines:
            drift = self.drifts.pop(task.order_id, 0)
            first = task.lines[0]
            counted = [CountedLine(sku=first.sku, qty=max(0, first.qty + drift), bin=first.bin)]
            confirm = confirm.model_copy(update={"counted": counted})
        return confirm


__all__ = ["SimWorkers"]
