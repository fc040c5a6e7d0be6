"""A location's WMS node, pure: every command of its inbox, decided in the order of its one-partition log.

The agent builds a ``Unit`` over its table, calls ``Node.handle`` with the message and a ``Context`` (the
message's time, the location's master data, the ledger's on-hand for SKUs met for the first time, the SKUs'
weights and volumes), writes the entities that changed (the message's primary entity last) and sends what
came back.
"""

from __future__ import annotations

from schemas.base import Message
from schemas.wms import (
    CancelFulfilment,
    ClaimTask,
    ConfirmTask,
    FulfilOrder,
    HandOver,
    NodeTick,
    ReceiveReturn,
    ReleaseTask,
    RequestCount,
    SupplyArrived,
)
from services.runtime.outbox import Emit
from services.wms_node.domain import claims
from services.wms_node.domain.counts import Counting
from services.wms_node.domain.fulfilment import Fulfilment
from services.wms_node.domain.model import (
    Applied,
    Journal,
    Task,
    Unit,
    entity_type,
    order_key,
    return_key,
    supply_key,
    task_key,
)
from services.wms_node.domain.receiving import Receiving
from services.wms_node.domain.returns import Returns
from services.wms_node.domain.stock import put_away_done
from services.wms_node.domain.work import Context, NodeConfig

WORKER_COMMANDS = (ClaimTask, ReleaseTask, ConfirmTask)


def primary_key(message: Message) -> str:
    """The entity that records a message as applied (written last, so it is applied only if all of it is)."""
    match message:
        case FulfilOrder() | CancelFulfilment() | HandOver():
            return order_key(message.order_id)
        case ConfirmTask() | ClaimTask() | ReleaseTask():
            return task_key(message.task_id)
        case SupplyArrived():
            return supply_key(message.supply_id)
        case ReceiveReturn():
            return return_key(message.return_id)
        case NodeTick() | RequestCount():
            return "journal"
    raise ValueError(f"the WMS node does not handle {message.event_type}")


def skus_of(message: Message) -> set[str]:
    """SKUs a message may meet for the first time (the adapter fetches their on-hand from the ledger)."""
    match message:
        case FulfilOrder():
            return {ln.sku for ln in message.lines}
        case SupplyArrived() | ReceiveReturn():
            return {ln.sku for ln in message.lines}
        case ConfirmTask():
            return {ln.sku for ln in message.counted}
    return set()


class Node:
    def __init__(self, location: str, config: NodeConfig | None = None) -> None:
        self.location = location
        self.config = config or NodeConfig()

    def handle(self, unit: Unit, message: Message, message_id: str, ctx: Context) -> list[Emit]:
        key = primary_key(message)
        kind = entity_type(key)
        primary = unit.get(key, kind)
        if isinstance(primary, Applied) and primary.seen(message_id):
            return []  # what it sent was committed with the entity that recorded it
        run = Run(self.location, self.config, unit, ctx, message_id)
        run.dispatch(message)
        primary = unit.get(key, kind)
        if primary is None and kind is Journal:
            primary = Journal()
            unit.add(key, primary)
        if isinstance(primary, Applied):
            primary.record(message_id)
        return run.emits


class Run(Fulfilment, Receiving, Returns, Counting):
    def dispatch(self, message: Message) -> None:
        match message:
            case FulfilOrder():
                self.fulfil(message)
            case ConfirmTask():
                self.confirm(message)
            case ClaimTask():
                self.claim(message)
            case ReleaseTask():
                self.release(message)
            case CancelFulfilment():
                self.cancel(message)
            case HandOver():
                self.hand_over(message)
            case SupplyArrived():
                self.arrived(message)
            case ReceiveReturn():
                self.return_arrived(message)
            case RequestCount():
                self.request_count(message)
            case NodeTick():
                self.tick()
            case _:
                raise ValueError(f"the WMS node does not handle {message.event_type}")

    # ------------------------------------------------------------------ workers

    def confirm(self, confirm: ConfirmTask) -> None:
        task = self.task(confirm.task_id)
        if task is None:
            return
        refused = claims.refuse_confirm(task, confirm.worker, self.now)
        if refused is not None:
            self.task_update(task, self.message_id, refused)
            return
        self.finish_task(task, confirm.worker)
        self.task_update(task, self.message_id)
        self._done(task, confirm)

    def _done(self, task: Task, confirm: ConfirmTask) -> None:
        match (task.purpose, task.kind):
            case ("order", "pick"):
                self.picked(task, confirm)
            case ("order", "pack"):
                self.packed(task, confirm)
            case ("order", "ship"):
                self.shipped(task, confirm)
            case ("order", "prepare_pickup"):
                self.prepared(task, confirm)
            case ("supply", "receive"):
                self.counted_in(task, confirm)
            case ("supply", "put_away"):
                self.put_away(task, confirm)
            case ("restock", "put_away"):
                self.restocked(task)
            case ("return", "receive_return"):
                self.return_inspected(task, confirm)
            case ("return", "put_away"):
                self.return_put_away(task)
            case ("count", "count"):
                self.count_done(task, confirm)

    def restocked(self, task: Task) -> None:
        for line in task.lines:
            put_away_done(self.sku(line.sku), line.bin, line.qty)

    def claim(self, command: ClaimTask) -> None:
        task = self.task(command.task_id)
        if task is None:
            return
        ttl_s = min(command.ttl_s, self.config.claim_ttl_s)
        refused = claims.claim(task, command.worker, self.now, ttl_s, self.message_id)
        if refused is None and task.claimed_until is not None:
            self.site().claims[task.task_id] = task.claimed_until
        self.task_update(task, self.message_id, refused)

    def release(self, command: ReleaseTask) -> None:
        task = self.task(command.task_id)
        if task is None:
            return
        refused = claims.release(task, command.worker, self.now)
        if refused is None:
            self.site().claims.pop(task.task_id, None)
        self.task_update(task, self.message_id, refused)

    # ------------------------------------------------------------------ the node's timer

    def tick(self) -> None:
        self.release_waves()
        site = self.site()
        for task_id, until in sorted(site.claims.items()):
            if until > self.now:
                continue
            del site.claims[task_id]
            task = self.task(task_id)
            lapsed_claim = task.claim_id if task is not None else None
            if task is not None and claims.lapse(task, self.now):
                # caused by the claim it ends: the timer tick that notices is never written to the log
                self.task_update(task, causationid=lapsed_claim)
