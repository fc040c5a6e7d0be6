"""A WMS node on a task store driven in memory, with a clock: what the engine does with the node, minus Kafka.

Each ``send`` is one batch: the message goes through the node service (the core, through a ``Unit`` over the
task's store), then the batch commits (its changelog becomes the committed state)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.base import Message
from schemas.wms import (
    ConfirmTask,
    CountedLine,
    FulfilmentLine,
    FulfilOrder,
    ShortPickLine,
    TaskCreated,
)
from services.runtime.outbox import Emit
from services.runtime.processing import Store, TaskContext
from services.wms_node.domain.layout import LayoutSpec
from services.wms_node.domain.model import Site, SkuStock, Task, WaveRules, entity_type, sku_key, task_key
from services.wms_node.domain.node import Node
from services.wms_node.domain.work import NodeConfig, SiteInfo, SkuData
from services.wms_node.service import ENTITIES, Bundle, Entities, MasterData, NodeService, bundle_of

LOCATION = "WH-PAR"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SMALL = LayoutSpec(aisles=4, bays=5, levels=2, fast_aisles=1, bin_capacity=50)
AT_ONCE = WaveRules(max_orders=1, max_wait_s=0)


class NodeHarness:
    def __init__(
        self,
        location: str = LOCATION,
        *,
        layout: LayoutSpec | None = SMALL,
        waves: WaveRules | None = AT_ONCE,
        info: SiteInfo | None = None,
        ledger: Mapping[str, int] | None = None,
        catalog: Mapping[str, SkuData] | None = None,
        reject_all: bool = False,
    ) -> None:
        self.location = location
        self.node = Node(location, NodeConfig(layout=layout, waves=waves, reject_all=reject_all))
        self.master = MasterData(location)
        self.master.info = info
        self.master.catalog = dict(catalog or {})
        self.ledger = dict(ledger or {})
        self.service = NodeService(location, f"ns.wms.{location}.commands.v1", self.node, self.master, retain_s=3600)
        self.bundles: Store[Bundle] = Store(ENTITIES)
        self.store = Entities(self.bundles)
        self.ctx = TaskContext(f"baton/wms/{location}", 0, {ENTITIES.name: self.bundles},
                               lambda name, loc: f"ns.{name}")
        self.now = T0
        self.n = 0

    def send(self, message: Message, message_id: str | None = None) -> list[Emit]:
        """One message as a batch of its own, committed."""
        self.n += 1
        self.master.on_hand = {sku: (0, qty) for sku, qty in self.ledger.items()}
        emits = self.service.apply(self.ctx, message, message_id or f"m-{self.n}", self.now)
        self.bundles.committed(self.bundles.changelog())
        self.ctx.take()
        return emits

    @property
    def table(self) -> dict[str, str]:
        """The committed entities by key (JSON text)."""
        return {key: value for key, value in self.store.items()}

    def replace(self, key: str, value: str) -> None:
        """Overwrite an entity as a reconfiguration would (a committed value)."""
        name = bundle_of(key)
        bundle = {**(self.bundles.committed_value(name) or {}), key: entity_type(key).model_validate_json(value)}
        self.bundles.restore(name, ENTITIES.encode(bundle))

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # ---------------------------------------------------------------- state

    def entity(self, key: str) -> dict[str, Any] | None:
        value = self.store.get(key)
        return orjson.loads(value) if value else None

    def task(self, task_id: str) -> Task:
        value = self.store.get(task_key(task_id))
        assert value is not None, f"no task {task_id}"
        return Task.model_validate_json(value)

    def stock(self, sku: str) -> SkuStock:
        value = self.store.get(sku_key(sku))
        assert value is not None, f"no stock of {sku}"
        return SkuStock.model_validate_json(value)

    def site(self) -> Site:
        value = self.store.get("site")
        assert value is not None
        return Site.model_validate_json(value)

    def request(self, order_id: str, request_id: str) -> dict[str, Any]:
        order = self.entity(f"order:{order_id}")
        assert order is not None
        return order["requests"][request_id]  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- messages

    def fulfil(self, order_id: str, *lines: tuple[str, int], request_id: str | None = None,
               mode: str = "ship") -> FulfilOrder:
        rid = request_id or f"{order_id}/a1/{self.location}"
        return FulfilOrder(
            request_id=rid, order_id=order_id, location=self.location, delivery_mode=mode,  # type: ignore[arg-type]
            lines=[FulfilmentLine(sku=s, qty=q, reservation_id=f"{order_id}/a1/{n}") for n, (s, q) in enumerate(lines)],
        )

    def confirm(self, task_id: str, worker: str = "auto", missing: dict[str, int] | None = None,
                counted: list[CountedLine] | None = None) -> ConfirmTask:
        task = self.task(task_id)
        short = []
        for sku, n in (missing or {}).items():
            rid = next(ln.reservation_id for ln in task.lines if ln.sku == sku)
            short.append(ShortPickLine(sku=sku, missing=n, reservation_id=rid or sku))
        return ConfirmTask(task_id=task_id, order_id=task.subject, request_id=task.request_id, location=self.location,
                           worker=worker, missing=short, counted=counted or [])


def of_type(emits: list[Emit], kind: type[Message]) -> list[Any]:
    return [e.message for e in emits if isinstance(e.message, kind)]


def created(emits: list[Emit]) -> list[TaskCreated]:
    return of_type(emits, TaskCreated)


def one_task(emits: list[Emit]) -> TaskCreated:
    tasks = created(emits)
    assert len(tasks) == 1, f"expected one task, got {[t.task_id for t in tasks]}"
    return tasks[0]
