"""Inventory: commands to the stock ledger (keyed by SKU) and the facts it records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import Command, EntityId, Frozen, LocationId, Message, PositiveQuantity, Quantity, Sku


class ReserveStock(Command):
    event_type = "inventory.reserve_stock.v1"
    summary = "Hold qty units of a SKU at a location for an order line (check-and-reserve, atomic)."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    backorder: bool = False
    expires_at: AwareDatetime | None = None

    def subject(self) -> str:
        return self.sku


class ExpireReservation(Command):
    event_type = "inventory.expire_reservation.v1"
    summary = "A timed hold (ROPIS, uncollected pickup) lapsed: give its units back."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku

    def subject(self) -> str:
        return self.sku


class RecordSupply(Command):
    event_type = "inventory.record_supply.v1"
    summary = "Goods are on their way to a location (purchase order, transfer, ASN) with an ETA."

    supply_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    eta: AwareDatetime
    kind: Literal["purchase_order", "transfer", "asn"] = "asn"

    def subject(self) -> str:
        return self.sku


class ReceiveStock(Command):
    event_type = "inventory.receive_stock.v1"
    summary = "A location received and put away goods: they become stock on hand (sent by the WMS node)."

    receipt_id: EntityId
    sku: Sku
    location: LocationId
    qty: Quantity
    supply_id: EntityId | None = None
    damaged: Quantity = 0
    closes_supply: bool | None = Field(
        default=None,
        description="Whether this receipt ends the supply (nothing more will come). Unset: an ASN ends with its "
        "first receipt; a purchase order or transfer when every announced unit has arrived.",
    )
    return_id: EntityId | None = Field(
        default=None,
        description="For returned units put back to stock: the return they came from (the movement's cause, kind "
        "restocked); no supply is involved.",
    )

    def subject(self) -> str:
        return self.sku


class PickShortfall(Frozen):
    """One reservation's pick that came up short: the units the picker found, and those not at the bins."""

    reservation_id: EntityId
    picked: Quantity
    missing: PositiveQuantity


class AdjustStock(Command):
    event_type = "inventory.adjust_stock.v1"
    summary = "A location corrects its stock by a delta (short pick, damage, cycle count, restock of a return)."

    adjustment_id: EntityId
    sku: Sku
    location: LocationId
    delta: int
    reason: Literal["short_pick", "damaged", "cycle_count", "return_restocked", "correction"]
    shortfalls: list[PickShortfall] = Field(
        default_factory=list,
        description="For a short pick: the reservations being picked and what was found for each. The ledger "
        "shrinks exactly those holds to the units found and writes off only what its books still counted for "
        "them (a count may already have), instead of releasing the newest holds of the location.",
    )

    def subject(self) -> str:
        return self.sku


class ReleaseReservation(Command):
    event_type = "inventory.release_reservation.v1"
    summary = "Give a reservation's units back to available stock (cancelled, re-sourced)."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    reason: str = "released"

    def subject(self) -> str:
        return self.sku


class ConsumeReservation(Command):
    event_type = "inventory.consume_reservation.v1"
    summary = "The reserved units left the building: on hand and reserved both drop."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    qty: PositiveQuantity
    shipment_id: EntityId

    def subject(self) -> str:
        return self.sku


class CountStock(Command):
    event_type = "inventory.count_stock.v1"
    summary = "A stock feed: the absolute quantity counted at a location; the ledger adjusts to it."

    count_id: EntityId
    sku: Sku
    location: LocationId
    qty: Quantity
    safety_stock: Quantity | None = None

    def subject(self) -> str:
        return self.sku


class StockReserved(Message):
    event_type = "inventory.stock_reserved.v1"
    summary = "The ledger holds the units of a reservation (on hand, or on incoming supply for a backorder)."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    against_supply: EntityId | None = None
    eta: datetime | None = None

    def subject(self) -> str:
        return self.order_id


class BackorderFilled(Message):
    event_type = "inventory.backorder_filled.v1"
    summary = "The supply a backordered reservation waited for was received: the units are now held on hand."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    supply_id: EntityId

    def subject(self) -> str:
        return self.order_id


class ReservationExpired(Message):
    event_type = "inventory.reservation_expired.v1"
    summary = "A timed hold lapsed and its units are available again."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: Quantity

    def subject(self) -> str:
        return self.order_id


class ReservationRefused(Message):
    event_type = "inventory.reservation_refused.v1"
    summary = "The ledger could not hold the units: not enough available at that location."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    available: Quantity
    reason: str

    def subject(self) -> str:
        return self.order_id


class ReservationReleased(Message):
    event_type = "inventory.reservation_released.v1"
    summary = "A reservation ended by release: its units are available again."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: Quantity
    reason: str

    def subject(self) -> str:
        return self.order_id


class ReservationReduced(Message):
    event_type = "inventory.reservation_reduced.v1"
    summary = "A held reservation gave back part of its units (stock lost under it, a short pick); it holds qty."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity = Field(description="Units the reservation still holds.")
    released: PositiveQuantity = Field(description="Units it gave back with this change.")
    reason: str

    def subject(self) -> str:
        return self.order_id


class ReservationConsumed(Message):
    event_type = "inventory.reservation_consumed.v1"
    summary = "A reservation ended by shipment: its units left on hand."

    reservation_id: EntityId
    order_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    shipment_id: EntityId

    def subject(self) -> str:
        return self.order_id


MovementKind = Literal["received", "shipped", "counted", "adjusted", "restocked"]


class SupplyRecorded(Message):
    event_type = "inventory.supply_recorded.v1"
    summary = "Incoming supply is known to the ledger (counts toward ATP by date from its ETA)."

    supply_id: EntityId
    sku: Sku
    location: LocationId
    qty: PositiveQuantity
    eta: datetime

    def subject(self) -> str:
        return self.sku


class StockMoved(Message):
    event_type = "inventory.stock_moved.v1"
    summary = "On hand at a location changed, with the movement's kind and cause (the ledger's audit trail)."

    movement_id: EntityId
    sku: Sku
    location: LocationId
    kind: MovementKind
    delta: int
    on_hand_after: Quantity
    cause_id: EntityId

    def subject(self) -> str:
        return self.sku


class IncomingSupply(Frozen):
    """One open supply of a position: what is still expected, and how much of it no backorder has claimed."""

    supply_id: EntityId
    eta: datetime
    outstanding: Quantity
    unreserved: Quantity


class AvailabilityChanged(Message):
    event_type = "inventory.availability_changed.v1"
    summary = "The availability of a SKU at a location (compacted: the latest value per key)."

    sku: Sku
    location: LocationId
    on_hand: Quantity
    reserved: Quantity
    safety_stock: Quantity
    available: Quantity
    incoming: Quantity = 0
    incoming_unreserved: Quantity = 0
    next_eta: datetime | None = None
    version: int = 0
    backordered: Quantity = Field(default=0, description="Units of backorders still waiting for their goods.")
    backordered_unsupplied: Quantity = Field(
        default=0, description="Of those, units no open supply covers yet (they wait for the next one)."
    )
    supplies: list[IncomingSupply] = Field(
        default=[], description="The open supplies, earliest ETA first (for ATP by date)."
    )

    def subject(self) -> str:
        return f"{self.sku}@{self.location}"
