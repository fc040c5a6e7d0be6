"""A WMS node core on a dict instead of a faust table, with a clock: what the node's agent does, minus Kafka."""

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
from services.wms_node.domain.layout import LayoutSpec
from services.wms_node.domain.model import Site, SkuStock, Task, WaveRules, sku_key, task_key
from services.wms_node.domain.node import Node, primary_key, skus_of
from services.wms_node.domain.work import Context, NodeConfig, SiteInfo, SkuData
from services.wms_node.store import UndoStore

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
        self.table: dict[str, bytes] = {}
        self.store = UndoStore(self.table)
        self.node = Node(location, NodeConfig(layout=layout, waves=waves, reject_all=reject_all))
        self.info = info
        self.ledger = dict(ledger or {})
        self.catalog = dict(catalog or {})
        self.now = T0
        self.n = 0

    def send(self, message: Message, message_id: str | None = None) -> list[Emit]:
        self.n += 1
        message_id = message_id or f"m-{self.n}"
        key = primary_key(message)
        unit = self.store.unit(message_id, key)
        # like the node's agent: the ledger's on-hand only for the message's SKUs the node has not met yet
        ledger = {s: self.ledger.get(s, 0) for s in skus_of(message) if sku_key(s) not in self.table}
        ctx = Context(now=self.now, info=self.info, ledger=ledger, catalog=self.catalog)
        emits = self.node.handle(unit, message, message_id, ctx)
        self.store.commit(unit, message_id, key)
        return emits

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # ---------------------------------------------------------------- state

    def entity(self, key: str) -> dict[str, Any] | None:
        value = self.store.current(key)
        return orjson.loads(value) if value else None

    def task(self, task_id: str) -> Task:
        value = self.store.current(task_key(task_id))
        assert value is not None, f"no task {task_id}"
        return Task.model_validate_json(value)

    def stock(self, sku: str) -> SkuStock:
        value = self.store.current(sku_key(sku))
        assert value is not None, f"no stock of {sku}"
        return SkuStock.model_validate_json(value)

    def site(self) -> Site:
        value = self.store.current("site")
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
