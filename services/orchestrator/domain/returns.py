"""Returns: authorisation (RMA), routing, and the refund of what came back. Pure.

The order saga keeps one ``ReturnCase`` per return id on its order and calls these functions; they decide,
the saga emits. Money is computed in cents so that sums never drift: a refund is what was received back at
the unit price paid, less the policy's restocking fee, plus the order's shipping once every unit came back,
and never more than what is left of what was paid after the order's earlier refunds.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.network import Location
from schemas.orders import (
    Disposition,
    OrderLine,
    OrderPlaced,
    PickupAt,
    ReserveAt,
    ReturnLabel,
    ReturnLine,
    ReturnRequested,
    ReturnStatus,
)
from schemas.wms import ReturnedLine
from services.orchestrator.domain.network import NetworkView, distance_km
from services.orchestrator.domain.rules import ReturnPolicy

MISSING_REASONS = frozenset({"", "unspecified", "none"})
RefundProgress = Literal["requested", "succeeded", "failed"]


class RefundCase(BaseModel):
    """The one refund of a return: its key never changes, whatever the retries."""

    refund_id: str
    idempotency_key: str
    amount: float
    currency: str = "EUR"
    status: RefundProgress = "requested"
    attempts: int = 1
    reason: str | None = None
    retry_at: datetime | None = None  # a failed attempt's retry waits until then (same key)


class ReturnCase(BaseModel):
    """A return of an order, from the request to its refund (or rejection)."""

    return_id: str
    status: ReturnStatus = "requested"
    method: str = "mail"
    reason: str = ""
    lines: list[dict[str, Any]] = Field(default_factory=list)
    destination: str | None = None
    disposition: Disposition | None = None
    rejection: str | None = None
    label: dict[str, str] | None = None
    exchange: list[dict[str, Any]] = Field(default_factory=list)
    received: list[dict[str, Any]] = Field(default_factory=list)
    refund: RefundCase | None = None
    exchange_order_id: str | None = None

    def requested_units(self) -> dict[str, int]:
        return _by_sku(self.lines)

    def received_units(self) -> dict[str, int]:
        return _by_sku(self.received)

    def units_in_flight(self) -> dict[str, int]:
        """Units this return holds against the returnable quantity: asked while on the way, then what came."""
        if self.status == "authorized":
            return self.requested_units()
        if self.status in ("received", "refunded"):
            return self.received_units()
        return {}

    def settled(self) -> bool:
        """Nothing more will happen to it in this run: rejected, refunded, or received with nothing to pay."""
        return self.status in ("rejected", "refunded") or (
            self.status == "received" and (self.refund is None or self.refund.status == "failed"))

    def view(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "status": self.status,
            "method": self.method,
            "reason": self.rejection if self.status == "rejected" else self.reason,
            "destination": self.destination,
            "disposition": self.disposition,
            "lines": self.lines,
            "received": self.received,
            "label": self.label,
            "exchange": self.exchange,
            "exchange_order_id": self.exchange_order_id,
            "refund": self.refund.model_dump() if self.refund else None,
        }


def _by_sku(lines: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for line in lines:
        out[str(line["sku"])] += int(line["qty"])
    return dict(out)


# ------------------------------------------------------------------------------------------ authorisation


@dataclass(frozen=True)
class ReturnFacts:
    """What the order knows that decides a return."""

    shipped: dict[str, int]  # units per SKU shipped or collected
    returning: dict[str, int]  # units per SKU already returned or on their way back
    fulfilled_at: datetime | None  # when the order last shipped or was collected
    origin: tuple[float, float] | None  # where the customer is (their address, or the pickup store)


@dataclass(frozen=True)
class Authorization:
    destination: str
    label: ReturnLabel | None


def authorize(
    request: ReturnRequested, facts: ReturnFacts, policy: ReturnPolicy, network: NetworkView, now: datetime,
    prices: dict[str, float] | None = None,
) -> Authorization | str:
    """Where the return goes, or why it is rejected (``prices``: the catalog's, for exchanges)."""
    problem = _refusal(request, facts, policy, now) or _unequal_exchange(request, prices or {})
    if problem:
        return problem
    if request.method == "in_store":
        return _in_store(request, network)
    destination = mail_destination(network, policy, facts.origin)
    if destination is None:
        return "no location takes mail returns"
    return Authorization(destination, ReturnLabel(carrier=policy.label_carrier,
                                                  tracking=label_tracking(request.order_id, request.return_id)))


def _refusal(request: ReturnRequested, facts: ReturnFacts, policy: ReturnPolicy, now: datetime) -> str | None:
    if policy.require_reason and request.reason.strip().lower() in MISSING_REASONS:
        return "a reason code is required"
    if not any(facts.shipped.values()):
        return "nothing of the order was shipped or collected"
    asked: dict[str, int] = defaultdict(int)
    for line in request.lines:
        asked[line.sku] += line.qty
    for sku, qty in sorted(asked.items()):
        returnable = facts.shipped.get(sku, 0) - facts.returning.get(sku, 0)
        if qty > returnable:
            return f"{sku}: {qty} asked, {max(0, returnable)} returnable (shipped {facts.shipped.get(sku, 0)})"
    if facts.fulfilled_at is not None:
        closes = facts.fulfilled_at + timedelta(days=policy.window_days)
        if (request.requested_at or now) > closes:
            return f"the return window ({policy.window_days:g} days) closed on {closes.date().isoformat()}"
    if sum(ln.qty for ln in request.exchange) > sum(asked.values()):
        return "an exchange asks for more units than are returned"
    return None


def _unequal_exchange(request: ReturnRequested, prices: dict[str, float]) -> str | None:
    """An exchange asks for a returned SKU, or another whose catalog price equals a returned one's."""
    returned = {line.sku for line in request.lines}
    for line in request.exchange:
        if line.sku in returned:
            continue
        price = prices.get(line.sku)
        if price is None:
            return f"exchange for {line.sku}: its price is unknown"
        if not any(sku in prices and abs(prices[sku] - price) < 0.005 for sku in returned):
            return f"exchange for {line.sku}: not the price of what is returned"
    return None


def _in_store(request: ReturnRequested, network: NetworkView) -> Authorization | str:
    store = network.get(request.location) if request.location else None
    if store is None:
        return f"in-store return at an unknown location {request.location!r}"
    if store.kind != "store" or "returns" not in store.capabilities or not store.open:
        return f"{store.id} does not take returns in store"
    return Authorization(store.id, None)


def mail_destination(network: NetworkView, policy: ReturnPolicy, origin: tuple[float, float] | None) -> str | None:
    """The returns rule: the first listed location taking returns, else the nearest to the customer."""
    takers = {loc.id: loc for loc in network.locations.values() if _takes_returns(loc, policy)}
    if policy.mail_destinations is not None:
        return next((loc for loc in policy.mail_destinations if loc in takers), None)
    if not takers:
        return None
    if origin is None:
        return min(takers)
    return min(takers.values(), key=lambda loc: (distance_km(origin[0], origin[1], loc.lat, loc.lon), loc.id)).id


def _takes_returns(location: Location, policy: ReturnPolicy) -> bool:
    kinds_ok = policy.mail_kinds is None or location.kind in policy.mail_kinds
    return location.open and "returns" in location.capabilities and kinds_ok


def label_tracking(order_id: str, return_id: str) -> str:
    """The return label's tracking number, the same however often the request is handled."""
    return "RT" + hashlib.sha1(f"{order_id}/{return_id}".encode()).hexdigest()[:12].upper()


def customer_origin(order: OrderPlaced, network: NetworkView) -> tuple[float, float] | None:
    delivery = order.delivery
    if isinstance(delivery, PickupAt | ReserveAt):
        store = network.get(delivery.location)
        return (store.lat, store.lon) if store else None
    return (delivery.lat, delivery.lon)


# ------------------------------------------------------------------------------------------ refund


def refund_key(order_id: str, return_id: str) -> str:
    """The idempotency key of a return's refund: derived from the return, never minted anew."""
    return f"refund:{order_id}:{return_id}"


def unit_prices_cents(order: OrderPlaced) -> dict[str, int]:
    """The unit price paid per SKU (lines of one SKU at several prices: their average, in cents)."""
    paid: dict[str, int] = defaultdict(int)
    units: dict[str, int] = defaultdict(int)
    for line in order.lines:
        paid[line.sku] += _cents(line.unit_price) * line.qty
        units[line.sku] += line.qty
    return {sku: paid[sku] // units[sku] for sku in paid}


def paid_cents(order: OrderPlaced, shipped: dict[str, int]) -> int:
    """What the customer paid for what was fulfilled: the units shipped or collected, and the shipping."""
    prices = unit_prices_cents(order)
    return sum(prices.get(sku, 0) * qty for sku, qty in shipped.items()) + _cents(order.shipping_price)


@dataclass(frozen=True)
class RefundInputs:
    order: OrderPlaced
    shipped: dict[str, int]  # units per SKU shipped or collected
    received: list[ReturnedLine]  # what this return brought back, as inspected
    exchanged_units: int  # units of this return replaced instead of refunded
    units_back_before: int  # units of the order's earlier returns received
    refunded_before_cents: int  # the order's earlier refunds (requested or paid)


def refund_cents(inputs: RefundInputs, policy: ReturnPolicy) -> int:
    """The refund of one received return, in cents (see the module's docstring)."""
    prices = unit_prices_cents(inputs.order)
    to_replace = inputs.exchanged_units
    total = 0
    for line in inputs.received:
        replaced = min(to_replace, line.qty)
        to_replace -= replaced
        unit = prices.get(line.sku, 0)
        fee = round(unit * policy.restocking_fee_rate) if line.condition in policy.fee_conditions else 0
        total += (line.qty - replaced) * (unit - fee)
    back = inputs.units_back_before + sum(line.qty for line in inputs.received)
    if policy.refund_shipping_when_all_back and inputs.exchanged_units == 0 and back >= sum(inputs.shipped.values()):
        total += _cents(inputs.order.shipping_price)
    left = paid_cents(inputs.order, inputs.shipped) - inputs.refunded_before_cents
    return max(0, min(total, left))


def retry_delay_s(policy: ReturnPolicy, attempt: int) -> float:
    """How long the ``attempt``-th request of a refund waits after the failure before it (doubling, capped)."""
    return min(policy.refund_retry_s * 2 ** max(0, attempt - 2), policy.refund_retry_max_s)


def main_disposition(received: list[ReturnedLine]) -> Disposition | None:
    """The disposition of most units (ties: the first seen), for the return's one-word summary."""
    units: dict[Disposition, int] = {}
    for line in received:
        if line.qty:
            units[line.disposition] = units.get(line.disposition, 0) + line.qty
    return max(units.items(), key=lambda item: item[1])[0] if units else None


# ------------------------------------------------------------------------------------------ exchange


def exchange_order_id(order_id: str, return_id: str) -> str:
    return f"{order_id}-EX-{return_id}"


def replacement_lines(exchange: list[dict[str, Any]], units_received: int) -> list[ReturnLine]:
    """The exchange lines, trimmed to the units that really came back (a short return replaces fewer)."""
    left, out = units_received, []
    for line in exchange:
        qty = min(int(line["qty"]), left)
        if qty > 0:
            out.append(ReturnLine(sku=str(line["sku"]), qty=qty))
        left -= qty
    return out


def replacement_order(order: OrderPlaced, return_id: str, lines: list[ReturnLine], now: datetime) -> OrderPlaced:
    """A replacement sourced like a new order, linked to its return, already paid (no price, no shipping)."""
    delivery = order.delivery
    if isinstance(delivery, ReserveAt):  # a hold to try on makes no sense for a replacement: it waits in store
        delivery = PickupAt(location=delivery.location)
    return OrderPlaced(
        order_id=exchange_order_id(order.order_id, return_id),
        channel=order.channel,
        customer_id=order.customer_id,
        lines=[OrderLine(sku=sku, qty=qty, unit_price=0.0) for sku, qty in _units_by_sku(lines).items()],
        delivery=delivery,
        currency=order.currency,
        customer_tier=order.customer_tier,
        placed_at=now,
        exchange_for=f"{order.order_id}/{return_id}",
    )


def _units_by_sku(lines: list[ReturnLine]) -> dict[str, int]:
    """One line per SKU (an order takes no SKU twice), in the order first asked."""
    units: dict[str, int] = {}
    for line in lines:
        units[line.sku] = units.get(line.sku, 0) + line.qty
    return units


def _cents(amount: float) -> int:
    return round(amount * 100)


def euros(cents: int) -> float:
    return round(cents / 100, 2)
