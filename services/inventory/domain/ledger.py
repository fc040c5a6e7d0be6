"""The stock ledger of one SKU across every location: positions, supplies, reservations, applied commands.

Pure: the inventory agent loads the ledger of the command's SKU, calls ``apply``, stores the ledger and
sends what ``apply`` returned. One writer per SKU partition makes check-and-reserve atomic. The ledger never
reads a clock: the same commands in the same order give the same state and the same events (with the same
ids), which is what makes a rebuild from ``inventory.commands.v1`` equal the live ledger.

Reservation lifecycle (``status``)::

    ReserveStock ──> held ──> consumed   (ConsumeReservation: the units shipped)
         │            ├────> released   (ReleaseReservation, or "stock lost" when a count/adjustment
         │            │                  leaves fewer units than are held, or "short pick": none found)
         │            ├────> held, fewer units (ReservationReduced: stock lost under it, or a short pick)
         │            └────> expired    (ExpireReservation: a timed hold lapsed)
         └─────> refused                (not enough available, and no supply covers it for a backorder)

A held reservation is either on hand (counted in ``Position.reserved``) or *waiting*: a backorder held
against incoming supply (``supply_id``/``eta``), or against no supply yet (``supply_id`` None) when a short
delivery left it uncovered. A waiting reservation becomes an on-hand hold (``BackorderFilled``) as soon as
units at its location cover it: those of its own supply first, then the others in arrival order. Rules kept
after every command (and checked by the stateful test):

- ``reserved`` is the sum of the on-hand holds and never exceeds ``on_hand - safety_stock``;
- no waiting reservation fits in what is available (it would have been filled);
- every open supply's outstanding units cover the waiting reservations assigned to it.

Stock lost below what is held shrinks the newest holds by exactly the missing units (a hold shrunk to nothing
is released), so no unit is freed that is still there. A short pick names the holds it was picking
(``AdjustStock.shortfalls``): each shrinks to the units found, and on hand drops only by what the books still
counted for it (a count during the pick may already have written those units off), never by a hold's units
twice and never by the units found, which ship.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, PrivateAttr

from schemas.base import Message
from schemas.envelope import derived_id
from schemas.inventory import (
    AdjustStock,
    AvailabilityChanged,
    BackorderFilled,
    ConsumeReservation,
    CountStock,
    ExpireReservation,
    IncomingSupply,
    MovementKind,
    PickShortfall,
    ReceiveStock,
    RecordSupply,
    ReleaseReservation,
    ReservationConsumed,
    ReservationExpired,
    ReservationReduced,
    ReservationRefused,
    ReservationReleased,
    ReserveStock,
    StockMoved,
    StockReserved,
    SupplyRecorded,
)
from schemas.topics import INVENTORY_AVAILABILITY, INVENTORY_MOVEMENTS, INVENTORY_RESERVATIONS
from services.runtime.outbox import AppliedLog, Emit

ReservationStatus = Literal["held", "refused", "released", "consumed", "expired"]
STOCK_LOST = "stock lost"
SAFETY_RAISED = "safety stock raised"
SHORT_PICK = "short pick"
# ends after which the books no longer count the hold's units: they were found missing
WRITTEN_OFF = (STOCK_LOST, SHORT_PICK)
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
# Ended reservations the ledger keeps (a repeated command about one re-derives its event); older ones are
# forgotten, or the ledger, stored whole after every batch, would grow with every order of its SKU (about
# 200 bytes each) until it no longer fits in a Kafka record. Pruned in steps of ENDED_SLACK.
KEEP_ENDED = 500
KEEP_EMITS = 1
ENDED_SLACK = 100
INVENTORY_COMMAND_TYPES = (
    ReserveStock,
    ReleaseReservation,
    ConsumeReservation,
    ExpireReservation,
    CountStock,
    RecordSupply,
    ReceiveStock,
    AdjustStock,
)


class Position(BaseModel):
    on_hand: int = 0
    reserved: int = 0
    safety_stock: int = 0

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.safety_stock - self.reserved)


class Supply(BaseModel):
    """Goods on their way to a location: announced quantity, what has landed, and whether more will come."""

    supply_id: str
    location: str
    qty: int
    eta: datetime
    kind: str = "asn"
    received: int = 0
    damaged: int = 0
    closed: bool = False
    revision: int = 0

    @property
    def outstanding(self) -> int:
        return 0 if self.closed else max(0, self.qty - self.received - self.damaged)


class Reservation(BaseModel):
    reservation_id: str
    order_id: str
    location: str
    qty: int
    status: ReservationStatus
    seq: int = 0
    available_when_refused: int = 0
    ended_by: str | None = None
    shipped: int = 0
    on_hand_after: int = 0
    late_shipment: str | None = None
    expires_at: datetime | None = None
    backorder: bool = False
    waiting: bool = False
    supply_id: str | None = None
    eta: datetime | None = None
    decided_supply: str | None = None
    decided_eta: datetime | None = None
    promised_supply: str | None = None
    promised_eta: datetime | None = None
    promises: int = 0
    filled_by: str | None = None
    shrunk: int = 0  # units given back while held (stock lost, safety raised, short pick): qty + shrunk was asked
    reductions: int = 0


class SkuLedger(BaseModel):
    sku: str
    positions: dict[str, Position] = {}
    supplies: dict[str, Supply] = {}
    reservations: dict[str, Reservation] = {}
    backorders: list[str] = []  # ids of the reservations still waiting for their goods, in arrival order
    # units restocked per customer return (``return id@location``): a return is put back to stock once, whatever
    # receipt id it is sent under (returns are rare next to orders: kept for good)
    restocked: dict[str, int] = {}
    # the emits of the last command only: they commit in the same transaction as the ledger, so a send is never
    # lost after the state was written; a repeated reservation command re-derives its event from the record.
    # The emits of 16 commands were a third of every stored ledger head.
    applied: AppliedLog = Field(default_factory=lambda: AppliedLog(keep_emits=KEEP_EMITS))
    version: int = 0
    # reservations changed (or forgotten) since the adapter last took them: it stores each reservation under
    # its own key, so that a batch writes the few that changed instead of every hold of the SKU
    _changed: set[str] = PrivateAttr(default_factory=set)
    _forgotten: set[str] = PrivateAttr(default_factory=set)
    _ended: int | None = PrivateAttr(default=None)  # reservations not held (None: not counted yet)

    def __eq__(self, other: object) -> bool:
        """Equal when the stored fields are (what changed since the adapter last looked is not the ledger)."""
        if not isinstance(other, SkuLedger):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, as pydantic models are

    def take_changed_reservations(self) -> tuple[list[Reservation], list[str]]:
        """The reservations changed and the ids forgotten since the last call (then cleared)."""
        changed = [self.reservations[rid] for rid in sorted(self._changed) if rid in self.reservations]
        forgotten = sorted(self._forgotten)
        self._changed.clear()
        self._forgotten.clear()
        return changed, forgotten

    def mark_reservations_changed(self) -> None:
        """Every reservation counts as changed (a ledger read in a form that did not store them apart)."""
        self._changed.update(self.reservations)

    def _touch(self, res: Reservation) -> None:
        self._changed.add(res.reservation_id)
        self._forgotten.discard(res.reservation_id)

    def position(self, location: str) -> Position:
        return self.positions.setdefault(location, Position())

    def apply(self, command: Message, command_id: str) -> list[Emit]:
        """Apply a command once; a repeated command id returns what the first delivery emitted.

        Stock movements are also idempotent by their own ids (``receipt_id``, ``adjustment_id``,
        ``count_id``): the same movement under a new command id changes nothing and emits nothing.

        The emits of only the most recent commands are kept; for an older repeated reservation command the
        reservation record (stored in this same ledger value) re-derives its decision or end event, with the
        same event id, so a send lost in a crash is never lost for good.
        """
        if self.applied.seen(command_id):
            if self.applied.remembers_emits(command_id):
                return self.applied.replay(command_id)
            return self._rederive(command)
        natural = _natural_id(command)
        if natural is not None and self.applied.seen(natural):
            return []  # the same receipt, adjustment or count sent again under a new command id
        emits = self._dispatch(command, command_id)
        self.applied.record(command_id, emits)
        if natural is not None:  # remembered like a command id, without taking a place in the emit memory
            ids = self.applied.ids
            ids.append(natural)
            del ids[: max(0, len(ids) - self.applied.keep_ids)]
        self.version += 1
        self._forget_old_ended()
        return emits

    def _forget_old_ended(self) -> None:
        """Keep the ``KEEP_ENDED`` most recent ended reservations (by creation) once there are too many."""
        if len(self.reservations) <= KEEP_ENDED + ENDED_SLACK or self._count_ended() <= KEEP_ENDED + ENDED_SLACK:
            return
        ended = [r for r in self.reservations.values() if r.status != "held"]
        ended.sort(key=lambda r: r.seq)
        for res in ended[: len(ended) - KEEP_ENDED]:
            del self.reservations[res.reservation_id]
            self._changed.discard(res.reservation_id)
            self._forgotten.add(res.reservation_id)
        self._ended = KEEP_ENDED

    def _count_ended(self) -> int:
        """Reservations no longer held: counted once per ledger object, then kept up to date as they end (a scan
        per command made a SKU with thousands of open holds cost a third of the service's time)."""
        if self._ended is None:
            self._ended = sum(1 for r in self.reservations.values() if r.status != "held")
        return self._ended

    def _ended_one(self) -> None:
        if self._ended is not None:
            self._ended += 1

    def _dispatch(self, command: Message, command_id: str) -> list[Emit]:
        match command:
            case ReserveStock():
                return self._reserve(command)
            case ReleaseReservation():
                return self._end(command.reservation_id, "released", command.reason)
            case ExpireReservation():
                return self._end(command.reservation_id, "expired", "expired")
            case ConsumeReservation():
                return self._consume(command)
            case CountStock():
                return self._count(command, command_id)
            case RecordSupply():
                return self._record_supply(command, command_id)
            case ReceiveStock() if command.return_id:
                return self._restock(command, command.return_id, command_id)
            case ReceiveStock():
                return self._receive(command, command_id)
            case AdjustStock():
                return self._adjust(command, command_id)
        raise ValueError(f"the inventory ledger does not handle {command.event_type}")

    # ------------------------------------------------------------------ reserve

    def _reserve(self, cmd: ReserveStock) -> list[Emit]:
        existing = self.reservations.get(cmd.reservation_id)
        if existing is not None:
            return [self._decision_of(existing)]
        res = Reservation(
            reservation_id=cmd.reservation_id,
            order_id=cmd.order_id,
            location=cmd.location,
            qty=cmd.qty,
            status="held",
            seq=self.version,
            expires_at=cmd.expires_at,
        )
        self.reservations[res.reservation_id] = res
        self._touch(res)
        position = self.position(cmd.location)
        available = position.available
        if cmd.qty <= available:
            position.reserved += cmd.qty
        elif cmd.backorder and (supply := self._supply_covering(cmd.location, cmd.qty)) is not None:
            res.backorder = res.waiting = True
            self.backorders.append(res.reservation_id)
            res.supply_id = res.decided_supply = res.promised_supply = supply.supply_id
            res.eta = res.decided_eta = res.promised_eta = supply.eta
        else:
            res.status, res.available_when_refused, res.backorder = "refused", available, cmd.backorder
            self._ended_one()
            return [self._decision_of(res)]
        return [self._decision_of(res), self._availability(cmd.location, cmd.reservation_id)]

    def _decision_of(self, res: Reservation) -> Emit:
        event_id = derived_id(res.reservation_id, "decision")
        if res.status == "refused":
            reason = f"only {res.available_when_refused} available at {res.location}"
            if res.backorder:
                reason += f" and no incoming supply there covers {res.qty}"
            refused = ReservationRefused(
                reservation_id=res.reservation_id,
                order_id=res.order_id,
                sku=self.sku,
                location=res.location,
                qty=res.qty,
                available=res.available_when_refused,
                reason=reason,
            )
            return Emit.to(INVENTORY_RESERVATIONS, res.order_id, refused, event_id)
        return self._reserved_event(res, res.decided_supply, res.decided_eta, event_id)

    def _reserved_event(self, res: Reservation, supply: str | None, eta: datetime | None, event_id: str) -> Emit:
        reserved = StockReserved(
            reservation_id=res.reservation_id,
            order_id=res.order_id,
            sku=self.sku,
            location=res.location,
            qty=res.qty,
            against_supply=supply,
            eta=eta,
        )
        return Emit.to(INVENTORY_RESERVATIONS, res.order_id, reserved, event_id)

    # ------------------------------------------------------------------ release, expire, consume

    def _end(self, reservation_id: str, status: ReservationStatus, reason: str) -> list[Emit]:
        res = self.reservations.get(reservation_id)
        if res is None or res.status != "held":
            return []
        self._end_hold(res, status, reason)
        return [
            self._end_event(res),
            *self._settle(res.location, cause=res.reservation_id),
            self._availability(res.location, res.reservation_id + ":end"),
        ]

    def _end_hold(self, res: Reservation, status: ReservationStatus, reason: str) -> None:
        if res.waiting:
            self.backorders.remove(res.reservation_id)
        else:
            self.position(res.location).reserved -= res.qty
        if res.status == "held":
            self._ended_one()
        res.status, res.ended_by, res.waiting = status, reason, False
        self._touch(res)

    def _consume(self, cmd: ConsumeReservation) -> list[Emit]:
        """The goods left: on hand drops (never below zero: units shipped beyond it are found first) and the
        reservation ends, once.

        A reservation released or expired before its parcel shipped (a late cancellation, a collection at the
        last second) stays ended as it was, but the units physically left the building, so on hand follows
        them (once). A backorder still waiting for its goods cannot ship: the command changes nothing.
        """
        res = self.reservations.get(cmd.reservation_id)
        if res is None or res.status not in ("held", "released", "expired") or res.late_shipment or res.waiting:
            return []
        if res.status != "held":
            return self._ship_ended(res, cmd)
        held = res.qty
        self._end_hold(res, "consumed", cmd.shipment_id)
        moved = self._ship(res, cmd)
        # more shipped than was still held (a count shrank the hold, the pickers found the units anyway)
        beyond = self._enforce_no_oversell(res.location, STOCK_LOST) if res.shipped > held else []
        return [
            self._end_event(res),
            *moved,
            *beyond,
            *self._settle(res.location, cause=res.reservation_id),
            self._availability(res.location, res.reservation_id + ":end"),
        ]

    def _end_event(self, res: Reservation) -> Emit:
        event_id = derived_id(res.reservation_id, "end")
        common = {"reservation_id": res.reservation_id, "order_id": res.order_id, "sku": self.sku,
                  "location": res.location}
        message: Message
        if res.status == "consumed":
            message = ReservationConsumed(**common, qty=max(1, res.shipped), shipment_id=res.ended_by or "")
        elif res.status == "expired":
            message = ReservationExpired(**common, qty=res.qty)
        else:
            message = ReservationReleased(**common, qty=res.qty, reason=res.ended_by or "released")
        return Emit.to(INVENTORY_RESERVATIONS, res.order_id, message, event_id)

    def _rederive(self, command: Message) -> list[Emit]:
        reservation_id = getattr(command, "reservation_id", None)
        res = self.reservations.get(reservation_id) if reservation_id else None
        if res is None:
            return []
        if isinstance(command, ReserveStock):
            return [self._decision_of(res)]
        return [self._end_event(res)] if res.status in ("released", "consumed", "expired") else []

    def _ship_ended(self, res: Reservation, cmd: ConsumeReservation) -> list[Emit]:
        res.late_shipment = cmd.shipment_id
        self._touch(res)
        return [
            *self._ship(res, cmd),
            *self._enforce_no_oversell(res.location, STOCK_LOST),
            self._availability(res.location, res.reservation_id + ":shipped-after-release"),
        ]

    def _ship(self, res: Reservation, cmd: ConsumeReservation) -> list[Emit]:
        """The parcel's units (at most what the reservation ever held) leave on hand.

        Units the books no longer counted (a count or a loss wrote them off while the pickers had them) were
        there after all: they are found first (``adjusted``, caused by the reservation), so that on hand never
        goes below zero and the shipped movements add up to the parcels.
        """
        position = self.position(res.location)
        res.shipped = min(cmd.qty, res.qty + res.shrunk)
        found = res.shipped - position.on_hand
        emits = [self._move(res.location, "adjusted", found, cause_id=res.reservation_id)] if found > 0 else []
        position.on_hand -= res.shipped
        res.on_hand_after = position.on_hand
        shipped = self._moved(res.location, "shipped", -res.shipped, res.on_hand_after, cause_id=res.reservation_id)
        return [*emits, shipped]

    # ------------------------------------------------------------------ stock movements

    def _count(self, cmd: CountStock, command_id: str) -> list[Emit]:
        position = self.position(cmd.location)
        raised_safety = cmd.safety_stock is not None and cmd.safety_stock > position.safety_stock
        if cmd.safety_stock is not None:
            position.safety_stock = cmd.safety_stock
        emits = []
        delta = cmd.qty - position.on_hand
        if delta:
            emits.append(self._move(cmd.location, "counted", delta, cause_id=cmd.count_id))
        reason = STOCK_LOST if delta < 0 or not raised_safety else SAFETY_RAISED
        settled = self._after_movement(cmd.location, reason, cause=cmd.count_id)
        return [*emits, *settled, self._availability(cmd.location, command_id)]

    def _adjust(self, cmd: AdjustStock, command_id: str) -> list[Emit]:
        position = self.position(cmd.location)
        shrunk, delta = self._pick_shortfalls(cmd) if cmd.shortfalls else ([], cmd.delta)
        delta = max(delta, -position.on_hand)
        kind: MovementKind = "restocked" if cmd.reason == "return_restocked" else "adjusted"
        emits = [self._move(cmd.location, kind, delta, cause_id=cmd.adjustment_id)] if delta else []
        settled = self._after_movement(cmd.location, STOCK_LOST, cause=cmd.adjustment_id)
        return [*shrunk, *emits, *settled, self._availability(cmd.location, command_id)]

    def _pick_shortfalls(self, cmd: AdjustStock) -> tuple[list[Emit], int]:
        """Shrink each hold being picked to the units found; the delta is what the books still counted.

        Units short beyond the named holds (the delta asks for more) are written off as they are.
        """
        emits, written_off, named = [], 0, 0
        for shortfall in cmd.shortfalls:
            named += shortfall.missing
            res = self.reservations.get(shortfall.reservation_id)
            if res is None or res.location != cmd.location:
                written_off += shortfall.missing
                continue
            lost = max(0, min(shortfall.missing, self._units_in_books(res, shortfall) - shortfall.picked))
            written_off += lost
            if lost and res.status == "held" and not res.waiting:
                emits.append(self._shrink(res, lost, SHORT_PICK))
        return emits, -(written_off + max(0, -cmd.delta - named))

    @staticmethod
    def _units_in_books(res: Reservation, shortfall: PickShortfall) -> int:
        """Units the books still count for a reservation's pick: what it holds; none once written off; else (it
        was released or expired while picked, its units free again) everything the pick asked for."""
        if res.status == "held" and not res.waiting:
            return res.qty
        if res.status == "released" and res.ended_by in WRITTEN_OFF:
            return 0
        return shortfall.picked + shortfall.missing

    def _after_movement(self, location: str, reason: str, cause: str) -> list[Emit]:
        return [*self._enforce_no_oversell(location, reason), *self._settle(location, cause)]

    def _enforce_no_oversell(self, location: str, reason: str) -> list[Emit]:
        """Fewer units than are held (a count, a loss, a raised safety stock): the newest holds give back
        exactly the units missing, so that reserved never exceeds on hand minus safety stock.

        A hold shrunk to nothing is released (``ReservationReleased`` with ``reason``), a hold shrunk in part
        says so (``ReservationReduced``); the orchestrator re-sources what its lines lost, or, for a line a
        location is already picking, waits for the pick to say what was there. Shrinking instead of releasing
        whole holds frees no unit that is still on the shelf for another order.
        """
        position = self.position(location)
        emits = []
        newest_first = sorted(self._holds_on_hand(location), key=lambda r: r.seq, reverse=True)
        for res in newest_first:
            excess = position.reserved - max(0, position.on_hand - position.safety_stock)
            if excess <= 0:
                break
            emits.append(self._shrink(res, min(excess, res.qty), reason))
        return emits

    def _shrink(self, res: Reservation, units: int, reason: str) -> Emit:
        """An on-hand hold gives back ``units``: released when nothing is left, reduced otherwise."""
        if units >= res.qty:
            self._end_hold(res, "released", reason)
            return self._end_event(res)
        self.position(res.location).reserved -= units
        res.qty -= units
        res.shrunk += units
        res.reductions += 1
        self._touch(res)
        reduced = ReservationReduced(reservation_id=res.reservation_id, order_id=res.order_id, sku=self.sku,
                                     location=res.location, qty=res.qty, released=units, reason=reason)
        event_id = derived_id(res.reservation_id, "reduced", res.reductions)
        return Emit.to(INVENTORY_RESERVATIONS, res.order_id, reduced, event_id)

    def _move(self, location: str, kind: MovementKind, delta: int, cause_id: str) -> Emit:
        position = self.position(location)
        position.on_hand += delta
        return self._moved(location, kind, delta, position.on_hand, cause_id)

    def _moved(self, location: str, kind: MovementKind, delta: int, on_hand_after: int, cause_id: str) -> Emit:
        # a return's restock is caused by the return, which may bring back several SKUs: the SKU tells them apart
        scope = (self.sku,) if kind == "restocked" else ()
        moved = StockMoved(
            movement_id=derived_id(cause_id, kind, location, *scope),
            sku=self.sku,
            location=location,
            kind=kind,
            delta=delta,
            on_hand_after=on_hand_after,
            cause_id=cause_id,
        )
        return Emit.to(INVENTORY_MOVEMENTS, self.sku, moved, moved.movement_id)

    # ------------------------------------------------------------------ supply and backorders

    def _record_supply(self, cmd: RecordSupply, command_id: str) -> list[Emit]:
        """Announce (or revise: same supply id, new quantity or ETA) goods on their way to a location.

        A supply already closed (its goods landed) stays closed: a late announcement adds nothing incoming.
        """
        supply = self.supplies.get(cmd.supply_id)
        if supply is None:
            supply = Supply(supply_id=cmd.supply_id, location=cmd.location, qty=cmd.qty, eta=cmd.eta, kind=cmd.kind)
            self.supplies[cmd.supply_id] = supply
        elif supply.closed:
            return []
        else:
            supply.qty, supply.eta, supply.kind = cmd.qty, cmd.eta, cmd.kind
            supply.revision += 1
        recorded = SupplyRecorded(
            supply_id=supply.supply_id, sku=self.sku, location=supply.location, qty=supply.qty, eta=supply.eta
        )
        event_id = derived_id(supply.supply_id, "recorded", supply.revision)
        return [
            Emit.to(INVENTORY_MOVEMENTS, self.sku, recorded, event_id),
            *self._settle(supply.location, cause=supply.supply_id),
            self._availability(supply.location, command_id),
        ]

    def _receive(self, cmd: ReceiveStock, command_id: str) -> list[Emit]:
        """Goods landed and were put away: on hand grows, the supply's outstanding drops, backorders fill.

        A receipt names its supply; an unknown supply id (never announced) is recorded as a closed supply so
        that a late announcement of it adds nothing incoming.
        """
        emits = [self._move(cmd.location, "received", cmd.qty, cause_id=cmd.receipt_id)] if cmd.qty else []
        supply = self.supplies.get(cmd.supply_id) if cmd.supply_id else None
        if cmd.supply_id and supply is None:
            supply = Supply(supply_id=cmd.supply_id, location=cmd.location, qty=cmd.qty + cmd.damaged, eta=_EPOCH,
                            received=cmd.qty, damaged=cmd.damaged, closed=True)
            self.supplies[cmd.supply_id] = supply
        own = supply.supply_id if supply is not None and supply.location == cmd.location else None
        if supply is not None and own and not supply.closed:
            supply.received += cmd.qty
            supply.damaged += cmd.damaged
            ends = cmd.closes_supply if cmd.closes_supply is not None else supply.kind == "asn"
            supply.closed = ends or supply.received + supply.damaged >= supply.qty
        settled = self._settle(cmd.location, cause=cmd.receipt_id, received_from=own)
        return [*emits, *settled, self._availability(cmd.location, command_id)]

    def _restock(self, cmd: ReceiveStock, return_id: str, command_id: str) -> list[Emit]:
        """Returned units inspected sellable and put back on the shelves: on hand (and available) grow at the
        location by a ``restocked`` movement caused by the return, once per return and location; backorders
        waiting there fill. Damaged units of a return stay in the node's quarantine: the ledger never counts them.
        """
        key = f"{return_id}@{cmd.location}"
        if key in self.restocked or not cmd.qty:
            return []
        self.restocked[key] = cmd.qty
        moved = self._move(cmd.location, "restocked", cmd.qty, cause_id=return_id)
        settled = self._settle(cmd.location, cause=return_id)
        return [moved, *settled, self._availability(cmd.location, command_id)]

    def _settle(self, location: str, cause: str, received_from: str | None = None) -> list[Emit]:
        """Fill the waiting backorders that available units now cover, then re-assign the rest to supplies.

        Filling goes in arrival order, the backorders of the supply just received first (``received_from``),
        first fit: a large backorder that does not fit does not block a smaller one behind it. Then every
        waiting backorder keeps its supply while the supply's outstanding units cover it (arrival order);
        the others move to the earliest open supply that can cover them, or wait unassigned for the next
        supply or the next units at the location. A backorder whose supply or ETA changed gets a new
        ``StockReserved`` (same reservation id, new ``against_supply``/``eta``: the promise moved).
        """
        waiting = self._waiting(location)
        if not waiting:
            return []
        emits = self._fill(location, waiting, cause, received_from)
        return emits + self._reassign(location, sorted((r for r in waiting if r.waiting), key=lambda r: r.seq))

    def _fill(self, location: str, waiting: list[Reservation], cause: str, received_from: str | None) -> list[Emit]:
        position = self.position(location)
        emits = []
        own_first = sorted(waiting, key=lambda r: (received_from is None or r.supply_id != received_from, r.seq))
        for res in own_first:
            if res.qty > position.available:
                continue
            position.reserved += res.qty
            res.waiting, res.filled_by = False, received_from or res.supply_id or cause
            self._touch(res)
            self.backorders.remove(res.reservation_id)
            filled = BackorderFilled(
                reservation_id=res.reservation_id,
                order_id=res.order_id,
                sku=self.sku,
                location=location,
                qty=res.qty,
                supply_id=res.filled_by,
            )
            event_id = derived_id(res.reservation_id, "filled")
            emits.append(Emit.to(INVENTORY_RESERVATIONS, res.order_id, filled, event_id))
        return emits

    def _reassign(self, location: str, waiting: list[Reservation]) -> list[Emit]:
        open_supplies = self._open_supplies(location)
        capacity = {s.supply_id: s.outstanding for s in open_supplies}
        moving = []
        for res in waiting:
            if res.supply_id is not None and capacity.get(res.supply_id, 0) >= res.qty:
                capacity[res.supply_id] -= res.qty
            else:
                moving.append(res)
        for res in moving:
            target = next((s for s in open_supplies if capacity[s.supply_id] >= res.qty), None)
            res.supply_id = target.supply_id if target is not None else None
            if target is not None:
                capacity[target.supply_id] -= res.qty
        emits = []
        for res in waiting:
            self._touch(res)  # its supply or ETA may move
            supply = self.supplies[res.supply_id] if res.supply_id else None
            res.eta = supply.eta if supply is not None else None
            if supply is not None and (res.supply_id, res.eta) != (res.promised_supply, res.promised_eta):
                res.promised_supply, res.promised_eta = res.supply_id, res.eta
                res.promises += 1
                event_id = derived_id(res.reservation_id, "promise", res.promises)
                emits.append(self._reserved_event(res, res.supply_id, res.eta, event_id))
        return emits

    def _open_supplies(self, location: str) -> list[Supply]:
        found = [s for s in self.supplies.values() if s.location == location and s.outstanding > 0]
        return sorted(found, key=lambda s: (s.eta, s.supply_id))

    def _supply_covering(self, location: str, qty: int) -> Supply | None:
        """The earliest open supply at the location whose units no backorder has claimed cover ``qty``."""
        claimed: dict[str, int] = {}
        for res in self._waiting(location):
            if res.supply_id:
                claimed[res.supply_id] = claimed.get(res.supply_id, 0) + res.qty
        return next(
            (s for s in self._open_supplies(location) if s.outstanding - claimed.get(s.supply_id, 0) >= qty), None
        )

    def _waiting(self, location: str) -> list[Reservation]:
        """The backorders of a location still waiting for their goods, in arrival order."""
        found = (self.reservations[rid] for rid in self.backorders)
        return [res for res in found if res.location == location]

    def _holds_on_hand(self, location: str) -> Iterable[Reservation]:
        return (r for r in self.reservations.values()
                if r.status == "held" and not r.waiting and r.location == location)

    # ------------------------------------------------------------------ availability

    def availability(self, location: str, version: int | None = None) -> AvailabilityChanged:
        """The position's numbers as published; ``version`` defaults to the ledger's current version."""
        position = self.positions.get(location) or Position()
        open_supplies = self._open_supplies(location)
        claimed: dict[str, int] = {}
        unsupplied = backordered = 0
        for res in self._waiting(location):
            backordered += res.qty
            if res.supply_id:
                claimed[res.supply_id] = claimed.get(res.supply_id, 0) + res.qty
            else:
                unsupplied += res.qty
        supplies = [
            IncomingSupply(supply_id=s.supply_id, eta=s.eta, outstanding=s.outstanding,
                           unreserved=max(0, s.outstanding - claimed.get(s.supply_id, 0)))
            for s in open_supplies
        ]
        return AvailabilityChanged(
            sku=self.sku,
            location=location,
            on_hand=position.on_hand,
            reserved=position.reserved,
            safety_stock=position.safety_stock,
            available=position.available,
            incoming=sum(s.outstanding for s in supplies),
            incoming_unreserved=max(0, sum(s.unreserved for s in supplies) - unsupplied),
            next_eta=open_supplies[0].eta if open_supplies else None,
            version=self.version if version is None else version,
            backordered=backordered,
            backordered_unsupplied=unsupplied,
            supplies=supplies,
        )

    def locations(self) -> list[str]:
        """Every location with a position or a supply, sorted."""
        return sorted({*self.positions, *(s.location for s in self.supplies.values())})

    def deadlines(self) -> list[tuple[datetime, str, str]]:
        """(expires_at, reservation id, order id) of every held reservation with a time limit."""
        return sorted(
            (r.expires_at, r.reservation_id, r.order_id)
            for r in self.reservations.values()
            if r.status == "held" and r.expires_at is not None
        )

    def _availability(self, location: str, cause: str) -> Emit:
        key = f"{self.sku}@{location}"
        message = self.availability(location, version=self.version + 1)
        return Emit.to(INVENTORY_AVAILABILITY, key, message, derived_id(cause, "avail", key))


def _natural_id(command: Message) -> str | None:
    match command:
        case ReceiveStock():
            return f"receipt:{command.receipt_id}"
        case AdjustStock():
            return f"adjustment:{command.adjustment_id}"
        case CountStock():
            return f"count:{command.count_id}"
    return None


def rebuild(commands: Iterable[tuple[str, Message]]) -> dict[str, SkuLedger]:
    """Replay (command id, command) pairs, in topic order per SKU, into fresh ledgers, as the service does.

    A command the service could not apply (it raised, so the service dead-lettered it and kept the ledger as
    it was) is skipped the same way here: the SKU's ledger is replayed again without it.
    """
    ledgers: dict[str, SkuLedger] = {}
    good: dict[str, list[tuple[str, Message]]] = {}
    for command_id, command in commands:
        if not isinstance(command, INVENTORY_COMMAND_TYPES):
            continue
        sku = command.sku
        ledger = ledgers.setdefault(sku, SkuLedger(sku=sku))
        try:
            ledger.apply(command, command_id)
        except Exception:  # the service dead-letters it and keeps the ledger as it was
            ledgers[sku] = replay(sku, good.get(sku, []))
            continue
        good.setdefault(sku, []).append((command_id, command))
    return ledgers


def replay(sku: str, commands: Iterable[tuple[str, Message]], base: SkuLedger | None = None) -> SkuLedger:
    """Apply commands that are known to apply cleanly (their emits are not wanted again)."""
    ledger = base if base is not None else SkuLedger(sku=sku)
    for command_id, command in commands:
        ledger.apply(command, command_id)
    return ledger
