"""What every flow of the node shares while it handles one message: the entities, the tasks, what to send."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from schemas.base import Message
from schemas.envelope import derived_id
from schemas.topics import INVENTORY_COMMANDS, WMS_EVENTS, WMS_TASKS
from schemas.wms import Parcel, TaskCreated, TaskKind, TaskLine, TaskUpdated
from services.runtime.outbox import Emit
from services.wms_node.domain.layout import Layout, LayoutSpec, default_spec, layout_for
from services.wms_node.domain.model import (
    BinMap,
    OrderWork,
    Site,
    SkuStock,
    Supply,
    Task,
    TaskPurpose,
    Unit,
    WaveRules,
    order_key,
    sku_key,
    supply_key,
    task_key,
)
from services.wms_node.domain.return_policy import ReturnsPolicy
from services.wms_node.domain.stock import place, plan_put_away

DEFAULT_WEIGHT_G = 500
DEFAULT_VOLUME_CM3 = 1000


@dataclass(frozen=True)
class SkuData:
    weight_g: int = DEFAULT_WEIGHT_G
    volume_cm3: int = DEFAULT_VOLUME_CM3


@dataclass(frozen=True)
class SiteInfo:
    """The location's master data, from the network topic."""

    kind: str = "warehouse"
    capabilities: tuple[str, ...] = ("ship",)
    daily_capacity: int | None = None
    open: bool = True


@dataclass(frozen=True)
class NodeConfig:
    """How this node is set up: layout and wave rules (None: the default for the location's kind), and where
    returned units go."""

    layout: LayoutSpec | None = None
    waves: WaveRules | None = None
    claim_ttl_s: float = 300.0
    reject_all: bool = False
    returns: ReturnsPolicy = field(default_factory=ReturnsPolicy)


STORE_WAVES = WaveRules(max_orders=1, max_wait_s=0.0)


@dataclass
class Context:
    """What the adapter knows at the time of the message, handed to the pure core."""

    now: datetime
    info: SiteInfo | None = None
    ledger: Mapping[str, int] = field(default_factory=dict)
    catalog: Mapping[str, SkuData] = field(default_factory=dict)


class Work:
    """One message's work: loads entities through the unit, collects the messages to send."""

    def __init__(self, location: str, config: NodeConfig, unit: Unit, ctx: Context, message_id: str) -> None:
        self.location = location
        self.config = config
        self.unit = unit
        self.ctx = ctx
        self.now = ctx.now
        self.message_id = message_id
        self.emits: list[Emit] = []

    # ------------------------------------------------------------------ entities

    def site(self) -> Site:
        site = self.unit.get("site", Site)
        if site is None:
            kind = self.ctx.info.kind if self.ctx.info else "warehouse"
            default_waves = STORE_WAVES if kind == "store" else WaveRules()
            site = Site(location=self.location, kind=kind, layout=self.config.layout or default_spec(kind),
                        waves=self.config.waves or default_waves)
            self.unit.add("site", site)
        return site

    @property
    def layout(self) -> Layout:
        return layout_for(self.site().layout)

    def bins(self) -> BinMap:
        owners = self.unit.get("bins", BinMap)
        if owners is None:
            owners = BinMap()
            self.unit.add("bins", owners)
        return owners

    def sku(self, sku: str) -> SkuStock:
        """A SKU's stock; the first time the node meets it, the ledger's on hand is slotted into its home."""
        stock = self.unit.get(sku_key(sku), SkuStock)
        if stock is None:
            stock = SkuStock(sku=sku)
            self.unit.add(sku_key(sku), stock)
            on_hand = max(0, self.ctx.ledger.get(sku, 0))
            place(stock, plan_put_away(stock, on_hand, self.bins(), self.layout))
        return stock

    def known_sku(self, sku: str) -> SkuStock | None:
        return self.unit.get(sku_key(sku), SkuStock)

    def order(self, order_id: str, create: bool = False) -> OrderWork | None:
        order = self.unit.get(order_key(order_id), OrderWork)
        if order is None and create:
            order = OrderWork(order_id=order_id)
            self.unit.add(order_key(order_id), order)
        return order

    def task(self, task_id: str) -> Task | None:
        return self.unit.get(task_key(task_id), Task)

    def supply(self, supply_id: str) -> Supply | None:
        return self.unit.get(supply_key(supply_id), Supply)

    def item(self, sku: str) -> SkuData:
        return self.ctx.catalog.get(sku) or SkuData()

    # ------------------------------------------------------------------ tasks

    def new_task(
        self,
        task_id: str,
        kind: TaskKind,
        purpose: TaskPurpose,
        subject: str,
        request_id: str,
        lines: list[TaskLine],
        wave_id: str | None = None,
        parcels: list[Parcel] | None = None,
    ) -> Task:
        task = Task(task_id=task_id, kind=kind, purpose=purpose, subject=subject, request_id=request_id,
                    lines=lines, wave_id=wave_id, parcels=parcels or [], created_at=self.now)
        self.unit.add(task_key(task_id), task)
        return task

    def offer(self, task: Task, causationid: str | None = None) -> None:
        """Put a task on the location's task topic (caused by the message handled, unless said otherwise)."""
        created = TaskCreated(task_id=task.task_id, kind=task.kind, order_id=task.subject, request_id=task.request_id,
                              location=self.location, lines=task.lines, wave_id=task.wave_id, parcels=task.parcels)
        self.emits.append(Emit.to(WMS_TASKS, task.task_id, created, derived_id(task.task_id, "created"),
                                  location=self.location, causationid=causationid))

    def task_update(self, task: Task, command_id: str | None = None, refused: str | None = None,
                    causationid: str | None = None) -> None:
        update = TaskUpdated(task_id=task.task_id, location=self.location, kind=task.kind, status=task.status,
                             worker=task.worker if task.status == "claimed" else task.done_by,
                             claimed_until=task.claimed_until if task.status == "claimed" else None,
                             command_id=command_id, refused=refused)
        event_id = derived_id(self.message_id, "task", task.task_id, task.status, refused or "")
        self.emits.append(Emit.to(WMS_TASKS, task.task_id, update, event_id, location=self.location,
                                  causationid=causationid))

    def finish_task(self, task: Task, worker: str | None) -> None:
        task.status, task.done_at, task.done_by = "done", self.now, worker
        task.worker, task.claim_id, task.claimed_until = None, None, None
        self.site().claims.pop(task.task_id, None)

    def withdraw_task(self, task: Task) -> None:
        task.status, task.done_at = "cancelled", self.now
        task.worker, task.claim_id, task.claimed_until = None, None, None
        self.site().claims.pop(task.task_id, None)
        self.task_update(task)

    # ------------------------------------------------------------------ sending

    def event(self, message: Message, cause: str, *parts: object) -> None:
        """An event for the OMS (keyed by order id, or the delivery for receiving), with an id derived from
        what it is about, so however often it is re-derived it is the same event."""
        self.emits.append(Emit.to(WMS_EVENTS, message.subject(), message, derived_id(cause, *parts)))

    def to_inventory(self, message: Message, cause: str, *parts: object) -> None:
        self.emits.append(Emit.to(INVENTORY_COMMANDS, message.subject(), message, derived_id(cause, *parts)))
