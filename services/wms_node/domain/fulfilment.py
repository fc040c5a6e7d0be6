"""A location's fulfilment work: accept a request, then pick, pack and ship it as tasks people confirm.

Pure: the node's agent loads the state of the request's order, calls ``FulfilmentDesk.handle``, stores
the state and sends what came back (events for the OMS, tasks for the location's workers).
"""

from __future__ import annotations

import zlib
from typing import Literal

from pydantic import BaseModel

from baton.runtime.outbox import AppliedLog, Emit
from schemas.base import Message
from schemas.envelope import derived_id
from schemas.topics import WMS_EVENTS, WMS_TASKS
from schemas.wms import (
    ConfirmTask,
    FulfilmentAccepted,
    FulfilmentLine,
    FulfilOrder,
    ItemsPicked,
    Parcel,
    ParcelShipped,
    TaskCreated,
    TaskKind,
    TaskLine,
)

RequestStage = Literal["picking", "packing", "shipping", "shipped"]
NEXT_TASK: dict[TaskKind, TaskKind | None] = {"pick": "pack", "pack": "ship", "ship": None}
CARRIER = "baton-post"
BOXES = ((2, "S", 300), (5, "M", 600), (10**9, "L", 1200))


class Request(BaseModel):
    request_id: str
    lines: list[FulfilmentLine]
    stage: RequestStage = "picking"
    open_task: str
    parcel_id: str | None = None


class LocationOrder(BaseModel):
    """Everything this location does for one order (usually one request; more after re-sourcing)."""

    order_id: str
    location: str
    requests: dict[str, Request] = {}
    applied: AppliedLog = AppliedLog(keep_ids=200, keep_emits=32)


def bin_of(sku: str) -> str:
    """Placeholder slotting until the node has a real bin layout: a stable aisle-bay-level per SKU."""
    h = zlib.crc32(sku.encode())
    return f"A{h % 20 + 1:02d}-B{h // 20 % 30 + 1:02d}-L{h // 600 % 4 + 1}"


class FulfilmentDesk:
    def handle(self, state: LocationOrder, message: Message, message_id: str) -> list[Emit]:
        if state.applied.seen(message_id):
            return state.applied.replay(message_id)
        emits = self._dispatch(state, message)
        state.applied.record(message_id, emits)
        return emits

    def _dispatch(self, state: LocationOrder, message: Message) -> list[Emit]:
        match message:
            case FulfilOrder():
                return self._accept(state, message)
            case ConfirmTask():
                return self._confirm(state, message)
        raise ValueError(f"the WMS node does not handle {message.event_type}")

    def _accept(self, state: LocationOrder, request: FulfilOrder) -> list[Emit]:
        if request.request_id in state.requests:
            return []
        task_id = f"{request.request_id}/pick"
        state.requests[request.request_id] = Request(request_id=request.request_id, lines=request.lines,
                                                     open_task=task_id)
        accepted = FulfilmentAccepted(request_id=request.request_id, order_id=state.order_id, location=state.location)
        return [
            Emit.to(WMS_EVENTS, state.order_id, accepted, derived_id(request.request_id, "accepted")),
            self._task(state, request.request_id, "pick", request.lines),
        ]

    def _task(self, state: LocationOrder, request_id: str, kind: TaskKind, lines: list[FulfilmentLine]) -> Emit:
        task_id = f"{request_id}/{kind}"
        ordered = sorted(lines, key=lambda ln: bin_of(ln.sku)) if kind == "pick" else lines
        task = TaskCreated(
            task_id=task_id,
            kind=kind,
            order_id=state.order_id,
            request_id=request_id,
            location=state.location,
            lines=[TaskLine(sku=ln.sku, qty=ln.qty, bin=bin_of(ln.sku)) for ln in ordered],
        )
        return Emit.to(WMS_TASKS, task_id, task, derived_id(task_id, "created"), location=state.location)

    def _confirm(self, state: LocationOrder, confirm: ConfirmTask) -> list[Emit]:
        request = state.requests.get(confirm.request_id)
        if request is None or request.open_task != confirm.task_id:
            return []
        kind: TaskKind = confirm.task_id.rsplit("/", 1)[-1]  # type: ignore[assignment]
        emits = self._done(state, request, kind, confirm)
        following = NEXT_TASK[kind]
        if following is None:
            request.stage, request.open_task = "shipped", ""
        else:
            request.stage = {"pack": "packing", "ship": "shipping"}[following]  # type: ignore[assignment]
            request.open_task = f"{request.request_id}/{following}"
            emits.append(self._task(state, request.request_id, following, request.lines))
        return emits

    def _done(self, state: LocationOrder, request: Request, kind: TaskKind, confirm: ConfirmTask) -> list[Emit]:
        rid = request.request_id
        if kind == "pick":
            picked = ItemsPicked(request_id=rid, order_id=state.order_id, location=state.location,
                                 lines=request.lines, task_id=confirm.task_id)
            return [Emit.to(WMS_EVENTS, state.order_id, picked, derived_id(rid, "picked"))]
        if kind == "pack":
            request.parcel_id = f"P-{zlib.crc32(rid.encode()):08X}"
            return []
        return [self._ship(state, request)]

    def _ship(self, state: LocationOrder, request: Request) -> Emit:
        rid = request.request_id
        units = sum(ln.qty for ln in request.lines)
        box = next(name for limit, name, _ in BOXES if units <= limit)
        parcel = Parcel(parcel_id=request.parcel_id or f"P-{zlib.crc32(rid.encode()):08X}", box=box)
        checksum = zlib.crc32(f"{state.location}|{rid}".encode())
        shipped = ParcelShipped(
            request_id=rid,
            order_id=state.order_id,
            location=state.location,
            parcel=parcel,
            carrier=CARRIER,
            tracking=f"BT{checksum:010d}{state.location[:3].upper()}",
            dock_door=f"D{checksum % 4 + 1}",
            lines=request.lines,
        )
        return Emit.to(WMS_EVENTS, state.order_id, shipped, derived_id(rid, "shipped"))
