"""Orders: the public inbound messages of producers, and the orchestrator's order events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.base import (
    Channel,
    Command,
    EntityId,
    Frozen,
    Latitude,
    LocationId,
    Longitude,
    Message,
    Money,
    PositiveQuantity,
    Quantity,
    Sku,
)

OrderStatus = Literal[
    "accepted",
    "backordered",
    "allocated",
    "in_fulfilment",
    "partially_shipped",
    "shipped",
    "ready_for_pickup",
    "collected",
    "reserved",
    "expired",
    "cancelled",
    "rejected",
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"shipped", "collected", "expired", "cancelled", "rejected"})
# an order of more lines is refused at the edge (dead-lettered): B2B orders run to a few dozen lines; a plan, a
# status and a pick list stay small, and one order cannot fill a record (docs/decisions/0011-bad-input.md)
MAX_ORDER_LINES = 200


class OrderLine(Frozen):
    sku: Sku
    qty: PositiveQuantity
    unit_price: Money = 0.0


class ShipTo(Frozen):
    """Deliver to the customer's address (from a warehouse, or a store that ships)."""

    mode: Literal["ship"] = "ship"
    lat: Latitude
    lon: Longitude
    address: str | None = None


class PickupAt(Frozen):
    """Buy online, pick up in store (BOPIS)."""

    mode: Literal["pickup"] = "pickup"
    location: LocationId


class ReserveAt(Frozen):
    """Reserve online, try in store (ROPIS): a timed hold, paid in store."""

    mode: Literal["reserve"] = "reserve"
    location: LocationId
    hold_s: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] = 24 * 3600


Delivery = Annotated[ShipTo | PickupAt | ReserveAt, Field(discriminator="mode")]


class OrderPlaced(Message):
    event_type = "order.placed.v1"
    summary = "A producer (web, marketplace, B2B, store, call centre) placed an order."

    order_id: EntityId
    channel: Channel
    customer_id: EntityId
    lines: Annotated[
        list[OrderLine],
        Field(min_length=1, max_length=MAX_ORDER_LINES, description="One line per SKU (a SKU twice is refused)."),
    ]
    delivery: Delivery
    store_id: LocationId | None = None
    currency: str = "EUR"
    shipping_price: Money = Field(
        default=0.0, description="What the customer paid for delivery; refunded when every unit came back."
    )
    customer_tier: str | None = None
    placed_at: datetime | None = None
    exchange_for: EntityId | None = Field(
        default=None,
        description="Set by the OMS on a replacement order: the return (``order_id/return_id``) it replaces; "
        "already paid, so no new payment is taken.",
    )
    happened_at_fields = ("placed_at",)

    @model_validator(mode="after")
    def _one_line_per_sku(self) -> OrderPlaced:
        seen: set[str] = set()
        for line in self.lines:
            if line.sku in seen:
                raise ValueError(f"SKU {line.sku!r} is on more than one line (one line per SKU, quantities summed)")
            seen.add(line.sku)
        return self

    def subject(self) -> str:
        return self.order_id


class OrderCancelRequested(Message):
    event_type = "order.cancel_requested.v1"
    summary = "The customer or customer service asked to cancel an order."

    order_id: EntityId
    reason: str = "customer_request"

    def subject(self) -> str:
        return self.order_id


class PickupCollected(Message):
    event_type = "pickup.collected.v1"
    summary = "The customer came to the store and collected a BOPIS or ROPIS order."

    order_id: EntityId
    location: LocationId | None = None

    def subject(self) -> str:
        return self.order_id


class ReturnLine(Frozen):
    sku: Sku
    qty: PositiveQuantity


ReturnMethod = Literal["in_store", "mail"]
ReturnCondition = Literal["sellable", "damaged", "defective"]
Disposition = Literal["restock", "refurbish", "repair", "scrap"]
ReturnStatus = Literal["requested", "authorized", "received", "refunded", "rejected"]


class ReturnRequested(Message):
    event_type = "return.requested.v1"
    summary = "The customer asked to return lines of an order, in store or by mail."

    order_id: EntityId
    return_id: EntityId
    lines: Annotated[list[ReturnLine], Field(min_length=1)]
    method: ReturnMethod = "mail"
    location: LocationId | None = None
    reason: str = Field(
        default="unspecified", description="The reason code; a return without one (empty or unspecified) is rejected."
    )
    condition: ReturnCondition = Field(
        default="sellable", description="What the customer declares; in scenarios, what inspection will find."
    )
    exchange: list[ReturnLine] = Field(
        default=[],
        description="Replacement lines asked instead of a refund (same SKU, or another of equal price): sourced "
        "like a new order once the return is received, linked to it, without a new payment.",
    )
    requested_at: datetime | None = Field(
        default=None, description="When the customer asked (for the return window); unset: when the OMS reads it."
    )
    happened_at_fields = ("requested_at",)

    def subject(self) -> str:
        return self.order_id


class LineStatus(Frozen):
    sku: Sku
    ordered: Quantity
    shipped: Quantity = 0
    cancelled: Quantity = 0
    open: Quantity = 0


class ShipmentView(Frozen):
    location: LocationId
    lines: list[ReturnLine]
    tracking: str
    carrier: str = ""
    parcel_id: str = ""


class OrderStatusChanged(Message):
    event_type = "order.status_changed.v1"
    summary = "The public status of an order changed (the outbound topic storefronts follow)."

    order_id: EntityId
    status: OrderStatus
    previous: OrderStatus | None = None
    reason: str | None = None
    channel: Channel | None = None
    lines: list[LineStatus] = []
    shipments: list[ShipmentView] = []
    promised_date: datetime | None = None
    version: int = 0

    def subject(self) -> str:
        return self.order_id


class OrderAccepted(Message):
    event_type = "order.accepted.v1"
    summary = "The orchestrator validated an order and took charge of it."

    order_id: EntityId
    channel: Channel

    def subject(self) -> str:
        return self.order_id


class OrderRejected(Message):
    event_type = "order.rejected.v1"
    summary = "The orchestrator refused an order: invalid, or no source and no supply."

    order_id: EntityId
    reason: str

    def subject(self) -> str:
        return self.order_id


class OrderPlacementRefused(Message):
    event_type = "order.placement_refused.v1"
    summary = "An order placed under an order id already taken by an order of other content: refused, the first stands."

    order_id: EntityId
    reason: str
    refused_event_id: str = Field(description="The CloudEvents id of the refused ``order.placed``.")

    def subject(self) -> str:
        return self.order_id


class CandidateScore(Frozen):
    """How one location fared when a line or an order was sourced: its score, or why it was out."""

    location: LocationId
    eligible: bool
    score: float | None = None
    distance_km: float | None = None
    cost: float | None = None
    reason: str | None = None


class AllocatedLine(Frozen):
    sku: Sku
    qty: PositiveQuantity
    location: LocationId
    reservation_id: EntityId


class OrderAllocated(Message):
    event_type = "order.allocated.v1"
    summary = "Every line of an order is reserved at the locations the sourcing rules chose."

    order_id: EntityId
    allocations: list[AllocatedLine]
    rule_set: str = "default"
    rule_set_version: int = 0
    rule: str = "default"
    candidates: list[CandidateScore] = []
    attempt: int = 1

    def subject(self) -> str:
        return self.order_id


class OrderCancelled(Message):
    event_type = "order.cancelled.v1"
    summary = "The order (or what was left of it) was cancelled and its reservations released."

    order_id: EntityId
    reason: str

    def subject(self) -> str:
        return self.order_id


class OrderShipped(Message):
    event_type = "order.shipped.v1"
    summary = "A shipment of the order left a location; the order is shipped or partially shipped."

    order_id: EntityId
    location: LocationId
    parcel_id: EntityId
    tracking: str
    lines: list[ReturnLine]
    complete: bool

    def subject(self) -> str:
        return self.order_id


class OrderDeadlineReached(Command):
    event_type = "order.deadline_reached.v1"
    summary = "An order step's deadline passed (reservation, acceptance, pickup window, hold, refund retry): act on it."

    order_id: EntityId
    kind: Literal["reserve", "accept", "pickup", "hold", "refund"]
    due: datetime

    def subject(self) -> str:
        return self.order_id


class CancelRefused(Message):
    event_type = "order.cancel_refused.v1"
    summary = "A cancellation came too late (something already shipped or the order is closed)."

    order_id: EntityId
    reason: str

    def subject(self) -> str:
        return self.order_id


class ReturnLabel(Frozen):
    carrier: str
    tracking: str


class ReturnAuthorized(Message):
    event_type = "return.authorized.v1"
    summary = "The OMS authorised a return (RMA): where it goes, by which method, with a label for mail returns."

    return_id: EntityId
    order_id: EntityId
    lines: list[ReturnLine]
    method: ReturnMethod
    destination: LocationId
    reason: str
    label: ReturnLabel | None = None
    exchange: list[ReturnLine] = []

    def subject(self) -> str:
        return self.order_id


class ReturnRejected(Message):
    event_type = "return.rejected.v1"
    summary = "The OMS refused a return (not shipped, more than returnable, window closed, no reason, no destination)."

    return_id: EntityId
    order_id: EntityId
    reason: str
    lines: list[ReturnLine] = []

    def subject(self) -> str:
        return self.order_id


class ReturnRefunded(Message):
    event_type = "return.refunded.v1"
    summary = "The refund of a received return was paid out (or nothing was owed: an exchange); the return is closed."

    return_id: EntityId
    order_id: EntityId
    refund_id: EntityId | None = None
    amount: Money = 0.0
    currency: str = "EUR"
    exchange_order_id: EntityId | None = None

    def subject(self) -> str:
        return self.order_id
