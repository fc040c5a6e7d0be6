"""Every message type of the contract, by CloudEvents ``type``."""

from __future__ import annotations

from schemas import catalog, inventory, network, orders, payments, wms
from schemas.base import Message

ALL_MESSAGES: tuple[type[Message], ...] = (
    orders.OrderPlaced,
    orders.OrderCancelRequested,
    orders.PickupCollected,
    orders.ReturnRequested,
    orders.OrderStatusChanged,
    orders.OrderAccepted,
    orders.OrderRejected,
    orders.OrderAllocated,
    orders.OrderCancelled,
    orders.OrderShipped,
    orders.OrderDeadlineReached,
    orders.CancelRefused,
    orders.ReturnAuthorized,
    orders.ReturnRejected,
    orders.ReturnRefunded,
    orders.OrderPlacementRefused,
    inventory.ReserveStock,
    inventory.ReleaseReservation,
    inventory.ConsumeReservation,
    inventory.CountStock,
    inventory.StockReserved,
    inventory.ReservationRefused,
    inventory.ReservationReleased,
    inventory.ReservationReduced,
    inventory.ReservationConsumed,
    inventory.StockMoved,
    inventory.AvailabilityChanged,
    inventory.ExpireReservation,
    inventory.RecordSupply,
    inventory.ReceiveStock,
    inventory.AdjustStock,
    inventory.BackorderFilled,
    inventory.ReservationExpired,
    inventory.SupplyRecorded,
    wms.FulfilOrder,
    wms.ConfirmTask,
    wms.TaskCreated,
    wms.FulfilmentAccepted,
    wms.FulfilmentRejected,
    wms.ItemsPicked,
    wms.ParcelShipped,
    wms.ShortPicked,
    wms.SupplyArrived,
    wms.CancelFulfilment,
    wms.GoodsReceived,
    wms.FulfilmentCancelled,
    wms.ReadyForPickup,
    wms.HandedOver,
    wms.ClaimTask,
    wms.ReleaseTask,
    wms.HandOver,
    wms.RequestCount,
    wms.NodeTick,
    wms.TaskUpdated,
    wms.ReceiveReturn,
    wms.ReturnReceived,
    payments.RefundRequested,
    payments.RefundSucceeded,
    payments.RefundFailed,
    catalog.SkuConfigured,
    network.LocationConfigured,
    network.RuleSetPublished,
    network.DeadLettered,
)

_BY_TYPE: dict[str, type[Message]] = {m.event_type: m for m in ALL_MESSAGES}


def model_for(event_type: str) -> type[Message] | None:
    return _BY_TYPE.get(event_type)
