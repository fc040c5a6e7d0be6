"""WMS: fulfilment requests to a location's node, the tasks its workers do, and what happened."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Command, EntityId, Frozen, LocationId, Message, PositiveQuantity, Quantity, Sku

TaskKind = Literal["pick", "pack", "ship", "receive", "put_away", "count", "prepare_pickup", "inspect_return"]
DeliveryMode = Literal["ship", "pickup", "reserve"]


class FulfilmentLine(Frozen):
    sku: Sku
    qty: PositiveQuantity
    reservation_id: EntityId


class FulfilOrder(Command):
    event_type = "wms.fulfil_order.v1"
    summary = "The OMS asks a location to pick, pack and ship (or prepare) part of an order."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: Annotated[list[FulfilmentLine], Field(min_length=1)]
    delivery_mode: DeliveryMode = "ship"

    def subject(self) -> str:
        return self.order_id


class ConfirmTask(Command):
    event_type = "wms.confirm_task.v1"
    summary = "A worker confirms a task, with the quantities really handled."

    task_id: EntityId
    order_id: EntityId
    request_id: EntityId
    location: LocationId
    worker: str = "auto"
    picked: list[FulfilmentLine] = []

    def subject(self) -> str:
        return self.order_id


class ExpectedLine(Frozen):
    sku: Sku
    qty: PositiveQuantity


class SupplyArrived(Command):
    event_type = "wms.supply_arrived.v1"
    summary = "A delivery announced by supply (ASN, PO, transfer) is at the dock: receive, count, put away."

    supply_id: EntityId
    location: LocationId
    lines: Annotated[list[ExpectedLine], Field(min_length=1)]

    def subject(self) -> str:
        return self.supply_id


class CancelFulfilment(Command):
    event_type = "wms.cancel_fulfilment.v1"
    summary = "The OMS withdraws a fulfilment request (order cancelled or re-sourced) before it ships."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    reason: str = "cancelled"

    def subject(self) -> str:
        return self.order_id


class TaskLine(Frozen):
    sku: Sku
    qty: PositiveQuantity
    bin: str = ""


class TaskCreated(Message):
    event_type = "wms.task_created.v1"
    summary = "Work for a person at a location: pick, pack or ship, in pick-path order."

    task_id: EntityId
    kind: TaskKind
    order_id: EntityId
    request_id: EntityId
    location: LocationId
    lines: list[TaskLine]

    def subject(self) -> str:
        return self.task_id


class FulfilmentAccepted(Message):
    event_type = "wms.fulfilment_accepted.v1"
    summary = "The location took the fulfilment request and released it to work."

    request_id: EntityId
    order_id: EntityId
    location: LocationId

    def subject(self) -> str:
        return self.order_id


class FulfilmentRejected(Message):
    event_type = "wms.fulfilment_rejected.v1"
    summary = "The location refused the request (closed, over capacity); the OMS re-sources it."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    reason: str

    def subject(self) -> str:
        return self.order_id


class ItemsPicked(Message):
    event_type = "wms.items_picked.v1"
    summary = "The pickers confirmed what they took off the shelves."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: list[FulfilmentLine]
    task_id: EntityId

    def subject(self) -> str:
        return self.order_id


class Parcel(Frozen):
    parcel_id: EntityId
    box: str
    weight_g: Quantity = 0


class ParcelShipped(Message):
    event_type = "wms.parcel_shipped.v1"
    summary = "A parcel left the dock with a carrier and a tracking number."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    parcel: Parcel
    carrier: str
    tracking: str
    dock_door: str
    lines: list[FulfilmentLine]

    def subject(self) -> str:
        return self.order_id


class ShortPickLine(Frozen):
    sku: Sku
    missing: PositiveQuantity
    reservation_id: EntityId


class ShortPicked(Message):
    event_type = "wms.short_picked.v1"
    summary = "Pickers found fewer units than asked; the OMS re-sources the missing quantity."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: list[ShortPickLine]

    def subject(self) -> str:
        return self.order_id


class ReceivedLine(Frozen):
    sku: Sku
    expected: Quantity
    received: Quantity
    damaged: Quantity = 0


class GoodsReceived(Message):
    event_type = "wms.goods_received.v1"
    summary = "A delivery was received and put away, with over, short and damaged quantities against the announcement."

    supply_id: EntityId
    location: LocationId
    lines: list[ReceivedLine]

    def subject(self) -> str:
        return self.supply_id


class FulfilmentCancelled(Message):
    event_type = "wms.fulfilment_cancelled.v1"
    summary = "The location withdrew a request's open tasks; nothing of it will ship."

    request_id: EntityId
    order_id: EntityId
    location: LocationId

    def subject(self) -> str:
        return self.order_id


class ReadyForPickup(Message):
    event_type = "wms.ready_for_pickup.v1"
    summary = "A store prepared a BOPIS order (or a ROPIS hold) for the customer to collect."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: list[FulfilmentLine]

    def subject(self) -> str:
        return self.order_id


class HandedOver(Message):
    event_type = "wms.handed_over.v1"
    summary = "A store handed a prepared pickup order to the customer."

    request_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: list[FulfilmentLine]

    def subject(self) -> str:
        return self.order_id
