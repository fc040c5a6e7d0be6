"""The stock ledger of one SKU across every location: positions, reservations, applied commands.

Pure: the inventory agent loads the ledger of the command's SKU, calls ``apply``, stores the ledger and
sends what ``apply`` returned. One writer per SKU partition makes check-and-reserve atomic.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from baton.runtime.outbox import AppliedLog, Emit
from schemas.base import Message
from schemas.envelope import derived_id
from schemas.inventory import (
    AvailabilityChanged,
    ConsumeReservation,
    CountStock,
    MovementKind,
    ReleaseReservation,
    ReservationConsumed,
    ReservationRefused,
    ReservationReleased,
    ReserveStock,
    StockMoved,
    StockReserved,
)
from schemas.topics import INVENTORY_AVAILABILITY, INVENTORY_MOVEMENTS, INVENTORY_RESERVATIONS

ReservationStatus = Literal["held", "refused", "released", "consumed", "expired"]


class Position(BaseModel):
    on_hand: int = 0
    reserved: int = 0
    safety_stock: int = 0
    incoming: int = 0

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.safety_stock - self.reserved)


class Reservation(BaseModel):
    reservation_id: str
    order_id: str
    location: str
    qty: int
    status: ReservationStatus
    available_when_refused: int = 0
    ended_by: str | None = None
    shipped: int = 0
    on_hand_after: int = 0
    late_shipment: str | None = None


class SkuLedger(BaseModel):
    sku: str
    positions: dict[str, Position] = {}
    reservations: dict[str, Reservation] = {}
    applied: AppliedLog = AppliedLog()
    version: int = 0

    def position(self, location: str) -> Position:
        return self.positions.setdefault(location, Position())

    def apply(self, command: Message, command_id: str) -> list[Emit]:
        """Apply a command once; a repeated command id returns what the first delivery emitted.

        The emits of only the most recent commands are kept; for an older repeated reservation command the
        reservation record (stored in this same ledger value) re-derives its decision or end event, with the
        same event id, so a send lost in a crash is never lost for good.
        """
        if self.applied.seen(command_id):
            if self.applied.remembers_emits(command_id):
                return self.applied.replay(command_id)
            return self._rederive(command)
        emits = self._dispatch(command, command_id)
        self.applied.record(command_id, emits)
        self.version += 1
        return emits

    def _dispatch(self, command: Message, command_id: str) -> list[Emit]:
        match command:
            case ReserveStock():
                return self._reserve(command)
            case ReleaseReservation():
                return self._release(command)
            case ConsumeReservation():
                return self._consume(command)
            case CountStock():
                return self._count(command, command_id)
        raise ValueError(f"the inventory ledger does not handle {command.event_type}")

    def _reserve(self, cmd: ReserveStock) -> list[Emit]:
        existing = self.reservations.get(cmd.reservation_id)
        if existing is not None:
            return [self._decision_of(existing)]
        position = self.position(cmd.location)
        available = position.available
        if cmd.qty > available:
            refused = Reservation(
                reservation_id=cmd.reservation_id,
                order_id=cmd.order_id,
                location=cmd.location,
                qty=cmd.qty,
                status="refused",
                available_when_refused=available,
            )
            self.reservations[cmd.reservation_id] = refused
            return [self._decision_of(refused)]
        held = Reservation(
            reservation_id=cmd.reservation_id,
            order_id=cmd.order_id,
            location=cmd.location,
            qty=cmd.qty,
            status="held",
        )
        self.reservations[cmd.reservation_id] = held
        position.reserved += cmd.qty
        return [self._decision_of(held), self._availability(cmd.location, cmd.reservation_id)]

    def _decision_of(self, res: Reservation) -> Emit:
        event_id = derived_id(res.reservation_id, "decision")
        if res.status == "refused":
            refused = ReservationRefused(
                reservation_id=res.reservation_id,
                order_id=res.order_id,
                sku=self.sku,
                location=res.location,
                qty=res.qty,
                available=res.available_when_refused,
                reason=f"only {res.available_when_refused} available at {res.location}",
            )
            return Emit.to(INVENTORY_RESERVATIONS, res.order_id, refused, event_id)
        reserved = StockReserved(
            reservation_id=res.reservation_id,
            order_id=res.order_id,
            sku=self.sku,
            location=res.location,
            qty=res.qty,
        )
        return Emit.to(INVENTORY_RESERVATIONS, res.order_id, reserved, event_id)

    def _release(self, cmd: ReleaseReservation) -> list[Emit]:
        res = self.reservations.get(cmd.reservation_id)
        if res is None or res.status != "held":
            return []
        res.status, res.ended_by = "released", cmd.reason
        self.position(res.location).reserved -= res.qty
        return [self._end_event(res), self._availability(res.location, res.reservation_id + ":end")]

    def _consume(self, cmd: ConsumeReservation) -> list[Emit]:
        """The goods left: on hand drops (never below zero) and the reservation ends, once.

        A reservation released before its parcel shipped (a late cancellation) stays released, but the units
        physically left the building, so on hand follows them (once).
        """
        res = self.reservations.get(cmd.reservation_id)
        if res is None or res.status not in ("held", "released") or res.late_shipment:
            return []
        if res.status == "released":
            return self._ship_released(res, cmd)
        self._end_by_shipment(res, cmd)
        return [
            self._end_event(res),
            self._moved(res.location, "shipped", -res.shipped, res.on_hand_after, cause_id=res.reservation_id),
            self._availability(res.location, res.reservation_id + ":end"),
        ]

    def _end_event(self, res: Reservation) -> Emit:
        event_id = derived_id(res.reservation_id, "end")
        if res.status == "consumed":
            consumed = ReservationConsumed(
                reservation_id=res.reservation_id,
                order_id=res.order_id,
                sku=self.sku,
                location=res.location,
                qty=max(1, res.shipped),
                shipment_id=res.ended_by or "",
            )
            return Emit.to(INVENTORY_RESERVATIONS, res.order_id, consumed, event_id)
        released = ReservationReleased(
            reservation_id=res.reservation_id,
            order_id=res.order_id,
            sku=self.sku,
            location=res.location,
            qty=res.qty,
            reason=res.ended_by or "released",
        )
        return Emit.to(INVENTORY_RESERVATIONS, res.order_id, released, event_id)

    def _rederive(self, command: Message) -> list[Emit]:
        reservation_id = getattr(command, "reservation_id", None)
        res = self.reservations.get(reservation_id) if reservation_id else None
        if res is None:
            return []
        if isinstance(command, ReserveStock):
            return [self._decision_of(res)]
        return [self._end_event(res)] if res.status in ("released", "consumed") else []

    def _ship_released(self, res: Reservation, cmd: ConsumeReservation) -> list[Emit]:
        position = self.position(res.location)
        res.late_shipment = cmd.shipment_id
        res.shipped = min(cmd.qty, res.qty, position.on_hand)
        if not res.shipped:
            return []
        position.on_hand -= res.shipped
        res.on_hand_after = position.on_hand
        return [
            self._moved(res.location, "shipped", -res.shipped, res.on_hand_after, cause_id=res.reservation_id),
            self._availability(res.location, res.reservation_id + ":shipped-after-release"),
        ]

    def _end_by_shipment(self, res: Reservation, cmd: ConsumeReservation) -> None:
        position = self.position(res.location)
        if res.status == "held":
            position.reserved -= res.qty
        res.status, res.ended_by = "consumed", cmd.shipment_id
        res.shipped = min(cmd.qty, res.qty, position.on_hand)
        position.on_hand -= res.shipped
        res.on_hand_after = position.on_hand

    def _count(self, cmd: CountStock, command_id: str) -> list[Emit]:
        position = self.position(cmd.location)
        if cmd.safety_stock is not None:
            position.safety_stock = cmd.safety_stock
        emits = []
        delta = cmd.qty - position.on_hand
        if delta:
            emits.append(self._move(cmd.location, "counted", delta, cause_id=cmd.count_id))
        emits.append(self._availability(cmd.location, command_id))
        return emits

    def _move(self, location: str, kind: MovementKind, delta: int, cause_id: str) -> Emit:
        position = self.position(location)
        position.on_hand += delta
        return self._moved(location, kind, delta, position.on_hand, cause_id)

    def _moved(self, location: str, kind: MovementKind, delta: int, on_hand_after: int, cause_id: str) -> Emit:
        moved = StockMoved(
            movement_id=derived_id(cause_id, kind, location),
            sku=self.sku,
            location=location,
            kind=kind,
            delta=delta,
            on_hand_after=on_hand_after,
            cause_id=cause_id,
        )
        return Emit.to(INVENTORY_MOVEMENTS, self.sku, moved, moved.movement_id)

    def availability(self, location: str) -> AvailabilityChanged:
        position = self.position(location)
        return AvailabilityChanged(
            sku=self.sku,
            location=location,
            on_hand=position.on_hand,
            reserved=position.reserved,
            safety_stock=position.safety_stock,
            available=position.available,
            incoming=position.incoming,
            version=self.version + 1,
        )

    def _availability(self, location: str, cause: str) -> Emit:
        key = f"{self.sku}@{location}"
        return Emit.to(INVENTORY_AVAILABILITY, key, self.availability(location), derived_id(cause, "avail", key))
