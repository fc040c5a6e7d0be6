"""WMS: fulfilment requests to a location's node, the tasks its workers do, and what happened."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Command, EntityId, Frozen, LocationId, Message, PositiveQuantity, Quantity, Sku
from schemas.orders import Disposition, ReturnCondition, ReturnLine, ReturnMethod

TaskKind = Literal[
    "pick", "pack", "ship", "receive", "put_away", "count", "prepare_pickup", "receive_return", "inspect_return"
]
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


class ShortPickLine(Frozen):
    sku: Sku
    missing: PositiveQuantity
    reservation_id: EntityId


class CountedLine(Frozen):
    """What a worker counted: at receiving, units received per SKU (``damaged`` of them; for a return, also
    ``defective`` of them, the rest sellable); in a cycle count, units found in one bin."""

    sku: Sku
    qty: Quantity
    damaged: Quantity = 0
    defective: Quantity = 0
    bin: str = ""


class Parcel(Frozen):
    parcel_id: EntityId
    box: str
    weight_g: Quantity = 0
    volume_cm3: Quantity = 0


class ConfirmTask(Command):
    event_type = "wms.confirm_task.v1"
    summary = "A worker confirms a task, with the quantities really handled."

    task_id: EntityId
    order_id: EntityId
    request_id: EntityId
    location: LocationId
    worker: str = "auto"
    picked: list[FulfilmentLine] = []
    missing: list[ShortPickLine] = []
    counted: list[CountedLine] = []

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
    reservation_id: EntityId | None = None


class TaskCreated(Message):
    event_type = "wms.task_created.v1"
    summary = "Work for a person at a location: pick, pack or ship, in pick-path order."

    task_id: EntityId
    kind: TaskKind
    order_id: EntityId
    request_id: EntityId
    location: LocationId
    lines: list[TaskLine]
    wave_id: str | None = None
    parcels: list[Parcel] = []

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
    parcels: list[Parcel] = []

    def subject(self) -> str:
        return self.order_id



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


TaskStatus = Literal["open", "claimed", "done", "cancelled"]


class ClaimTask(Command):
    event_type = "wms.claim_task.v1"
    summary = "A worker takes a task: nobody else may claim or confirm it until the claim is released or lapses."

    task_id: EntityId
    order_id: EntityId
    location: LocationId
    worker: Annotated[str, Field(min_length=1, max_length=64)]
    ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0

    def subject(self) -> str:
        return self.order_id


class ReleaseTask(Command):
    event_type = "wms.release_task.v1"
    summary = "A worker gives a claimed task back to the queue."

    task_id: EntityId
    order_id: EntityId
    location: LocationId
    worker: Annotated[str, Field(min_length=1, max_length=64)]

    def subject(self) -> str:
        return self.order_id


class HandOver(Command):
    event_type = "wms.hand_over.v1"
    summary = "The customer came for a pickup or reserve order: hand over what the store prepared."

    order_id: EntityId
    location: LocationId
    request_id: EntityId | None = None

    def subject(self) -> str:
        return self.order_id


class RequestCount(Command):
    event_type = "wms.request_count.v1"
    summary = "Count the bins of some SKUs (or some bins) now: a cycle count task for the location's workers."

    count_id: EntityId
    location: LocationId
    skus: list[Sku] = []
    bins: list[str] = []

    def subject(self) -> str:
        return self.count_id


class NodeTick(Command):
    event_type = "wms.node_tick.v1"
    summary = "The node's own timer: something is due (a wave's cut-off, a lapsed claim); decided in the node's log."

    location: LocationId

    def subject(self) -> str:
        return self.location


class TaskUpdated(Message):
    event_type = "wms.task_updated.v1"
    summary = "A task was claimed, released, lapsed, done or withdrawn, or a worker's command on it was refused."

    task_id: EntityId
    location: LocationId
    kind: TaskKind
    status: TaskStatus
    worker: str | None = None
    claimed_until: datetime | None = None
    command_id: str | None = None
    refused: str | None = None

    def subject(self) -> str:
        return self.task_id


class ReceiveReturn(Command):
    event_type = "wms.receive_return.v1"
    summary = "The OMS announces an authorised return to its destination: receive it, inspect it, dispose of it."

    return_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: Annotated[list[ReturnLine], Field(min_length=1)]
    method: ReturnMethod = "mail"
    expected_condition: ReturnCondition | None = Field(
        default=None, description="What the customer declared (in scenarios, what the simulated inspection finds)."
    )

    def subject(self) -> str:
        return self.order_id


class ReturnedLine(Frozen):
    """Units of one SKU found in one condition at inspection, and where they go."""

    sku: Sku
    qty: Quantity
    condition: ReturnCondition
    disposition: Disposition


class ReturnReceived(Message):
    event_type = "wms.return_received.v1"
    summary = "A return arrived and was inspected: units per condition and disposition (may be fewer than announced)."

    return_id: EntityId
    order_id: EntityId
    location: LocationId
    lines: list[ReturnedLine]

    def subject(self) -> str:
        return self.order_id
