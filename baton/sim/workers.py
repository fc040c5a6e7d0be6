"""The simulated workers of a location: they read its task topic and confirm each task through its inbox.

They confirm as the auto-workers do (``services.wms_node.domain.workers.AutoWorker`` builds every confirmation,
short picks and receiving counts included), at their own pace. What they find is the location's physical stock,
which only they know: units lost (``ShortPick``) or found (a count's drift) change it, a pick takes what is
there and reports the rest missing, a count reports what is there, a receipt adds the good units announced less
the short ones. So the world stays consistent: a picker never finds units a count has just said are gone.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from baton.sim.broker import SimBroker
from schemas.envelope import Envelope, decode
from schemas.wms import ClaimTask, ConfirmTask, CountedLine, TaskCreated
from services.wms_node.domain.workers import AutoWorker, SkuQty, WorkerBehaviour

WORKERS = ("ann", "bob")


@dataclass(frozen=True)
class Step:
    kind: str  # "claim" or "confirm"
    worker: str = "auto"


class SimWorkers:
    def __init__(self, location: str, tasks_topic: str, broker: SimBroker, rng: random.Random) -> None:
        self.location = location
        self.tasks_topic = tasks_topic
        self.broker = broker
        self.rng = rng
        self.positions: dict[int, int] = {}
        self.queue: list[tuple[datetime, int, Envelope, TaskCreated, Step]] = []  # (when, seq, task's envelope...)
        self.seq = 0
        self.seen: set[str] = set()  # task ids taken
        self.confirmed: dict[str, ConfirmTask] = {}  # task id -> how it was confirmed
        self.returns: set[str] = set()  # return ids (their put-away brings units back to the shelves)
        self.physical: dict[str, int] = {}  # sku -> units really on the shelves (picked units leave)
        self.receiving: dict[str, tuple[int, int]] = {}  # supply id -> (short, damaged)
        self.pace_s = 0.0
        self.partitions = [(tasks_topic, p) for p in range(broker.partitions(tasks_topic))]

    def read_new_tasks(self, now: datetime) -> None:
        for partition in range(self.broker.partitions(self.tasks_topic)):
            start = self.positions.get(partition, 0)
            records = self.broker.read((self.tasks_topic, partition), start)
            self.positions[partition] = start + len(records)
            for record in records:
                envelope, message = decode(record.value)
                if isinstance(message, TaskCreated) and message.task_id not in self.seen:
                    self.seen.add(message.task_id)  # a task delivered twice is worked once
                    pace = self.rng.choice((0.0, 0.1, 0.5, 2.0)) + self.pace_s
                    # a third of the tasks are claimed first by a named worker (who may walk away)
                    step = Step("claim", self.rng.choice(WORKERS)) if self.rng.random() < 0.3 else Step("confirm")
                    self.push(now + timedelta(seconds=pace), envelope, message, step)

    def push(self, when: datetime, envelope: Envelope, task: TaskCreated, step: Step) -> None:
        heapq.heappush(self.queue, (when, self.seq, envelope, task, step))
        self.seq += 1

    def next_due(self) -> datetime | None:
        return self.queue[0][0] if self.queue else None

    def has_unread(self) -> bool:
        return any(self.broker.end(tp) > self.positions.get(tp[1], 0) for tp in self.partitions)

    def take(self, now: datetime) -> tuple[Envelope, ClaimTask | ConfirmTask, str] | None:
        """The next command due by ``now``: a claim or a confirmation, with the envelope of its task and what its
        id derives from."""
        if not self.queue or self.queue[0][0] > now:
            return None
        _, _, envelope, task, step = heapq.heappop(self.queue)
        if step.kind == "claim":
            ttl = self.rng.choice((5.0, 20.0))
            if self.rng.random() < 0.15:  # walks away: the claim lapses, someone else confirms after it
                self.push(now + timedelta(seconds=ttl + 0.5), envelope, task, Step("confirm"))
            else:
                self.push(now + timedelta(seconds=self.rng.uniform(0.1, ttl / 2)), envelope, task,
                          Step("confirm", step.worker))
            claim = ClaimTask(task_id=task.task_id, order_id=task.order_id, location=self.location,
                              worker=step.worker, ttl_s=ttl)
            return envelope, claim, f"claim:{step.worker}"
        if task.task_id not in self.confirmed:  # a task delivered twice is confirmed the same way again
            self.confirmed[task.task_id] = self.confirm(task)
        confirm = self.confirmed[task.task_id].model_copy(update={"worker": step.worker})
        return envelope, confirm, "auto-confirm"

    def lose(self, sku: str, qty: int) -> None:
        """Units gone from the shelves (broken, stolen, misplaced): the next picks find fewer."""
        self.physical[sku] = max(0, self.physical.get(sku, 0) - qty)

    def confirm(self, task: TaskCreated) -> ConfirmTask:
        behaviour = WorkerBehaviour(location=self.location)
        if task.kind == "pick":
            behaviour = WorkerBehaviour(location=self.location, short_pick=self.pick(task))
        elif task.kind == "receive" and task.order_id in self.receiving:
            short, damaged = self.receiving.pop(task.order_id)
            skus = {ln.sku for ln in task.lines}
            behaviour = WorkerBehaviour(location=self.location,
                                        short_receive=[SkuQty(sku=s, qty=short) for s in skus if short],
                                        damaged=[SkuQty(sku=s, qty=damaged) for s in skus if damaged])
        confirm = AutoWorker(self.location, behaviour).confirm(task)
        if task.kind == "receive":
            self.received(task, confirm)
        elif task.kind == "put_away" and task.order_id in self.returns:  # returned units back on the shelves
            for line in task.lines:
                self.physical[line.sku] = self.physical.get(line.sku, 0) + line.qty
        elif task.kind == "count":
            confirm = confirm.model_copy(update={"counted": self.count(task)})
        return confirm

    def pick(self, task: TaskCreated) -> list[SkuQty]:
        """Take what is there; the units missing per SKU (the auto-worker reports them from the last bins)."""
        asked: dict[str, int] = {}
        for line in task.lines:
            asked[line.sku] = asked.get(line.sku, 0) + line.qty
        missing = []
        for sku, qty in sorted(asked.items()):
            found = min(qty, self.physical.get(sku, 0))
            self.physical[sku] = self.physical.get(sku, 0) - found
            if found < qty:
                missing.append(SkuQty(sku=sku, qty=qty - found))
        return missing

    def received(self, task: TaskCreated, confirm: ConfirmTask) -> None:
        counted = {c.sku: c.qty - c.damaged for c in confirm.counted}
        for line in task.lines:
            self.physical[line.sku] = self.physical.get(line.sku, 0) + counted.get(line.sku, line.qty)

    def count(self, task: TaskCreated) -> list[CountedLine]:
        """What the bins really hold: the books per bin, the difference with the shelves in the first bin."""
        out: list[CountedLine] = []
        for sku in dict.fromkeys(ln.sku for ln in task.lines):
            lines = [ln for ln in task.lines if ln.sku == sku]
            left = self.physical.get(sku, 0)
            counts = []
            for line in lines[1:]:
                counts.append(min(line.qty, left))
                left -= counts[-1]
            out.append(CountedLine(sku=sku, qty=left, bin=lines[0].bin))
            out += [CountedLine(sku=sku, qty=qty, bin=ln.bin) for ln, qty in zip(lines[1:], counts, strict=True)]
        return out


__all__ = ["SimWorkers"]
