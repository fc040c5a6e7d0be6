"""Fulfilment: accept or reject a request, release it in waves, pick (short picks reported at once), then
pack and ship, or prepare it for a pickup in store (BOPIS, ROPIS) and hand it over; withdraw it on cancel."""

from __future__ import annotations

from collections import defaultdict

from schemas.inventory import AdjustStock, PickShortfall
from schemas.wms import (
    CancelFulfilment,
    ConfirmTask,
    FulfilmentAccepted,
    FulfilmentCancelled,
    FulfilmentLine,
    FulfilmentRejected,
    FulfilOrder,
    HandedOver,
    HandOver,
    ItemsPicked,
    Parcel,
    ParcelShipped,
    ReadyForPickup,
    ShortPicked,
    ShortPickLine,
    TaskLine,
)
from services.wms_node.domain.cartons import carrier_for, cartonize, dock_door, parcel_ids, tracking_number
from services.wms_node.domain.model import FINISHED_STAGES, OrderWork, Pending, Request, Task
from services.wms_node.domain.stock import (
    allocate_pick,
    expect_incoming,
    picked_from,
    plan_put_away,
    release_allocation,
)
from services.wms_node.domain.waves import waves_due
from services.wms_node.domain.work import Work

PACKING_BENCH = "PACK"
MAX_WAVES_AT_ONCE = 5
COUNTER = "COUNTER"


class Fulfilment(Work):
    # ------------------------------------------------------------------ accept or reject

    def fulfil(self, request: FulfilOrder) -> None:
        order = self.order(request.order_id, create=True)
        assert order is not None
        if request.request_id in order.requests:
            return
        rid = request.request_id
        req = Request(request_id=rid, lines=request.lines, mode=request.delivery_mode, accepted_at=self.now)
        order.requests[rid] = req
        reason = self._refusal(request)
        if reason is not None:
            req.stage, req.reason = "rejected", reason
            self.event(FulfilmentRejected(request_id=rid, order_id=order.order_id, location=self.location,
                                          reason=reason), rid, "rejected")
            return
        for line in request.lines:
            self.sku(line.sku)  # met now, with the ledger's on-hand as of now, even if picked in a later wave
        site = self.site()
        day = self.now.date().isoformat()
        site.accepted = {d: n for d, n in site.accepted.items() if d >= day}
        site.accepted[day] = site.accepted.get(day, 0) + 1
        site.pending.append(Pending(order_id=order.order_id, request_id=rid, at=self.now,
                                    units=sum(ln.qty for ln in request.lines), cause=self.message_id))
        self.event(FulfilmentAccepted(request_id=rid, order_id=order.order_id, location=self.location), rid, "accepted")
        self.release_waves()

    def _refusal(self, request: FulfilOrder) -> str | None:
        info = self.ctx.info
        if info is not None and not info.open:
            return f"{self.location} is closed"
        if info is not None and request.delivery_mode not in info.capabilities:
            return f"{self.location} does not offer {request.delivery_mode}"
        if self.config.reject_all:
            return f"rejected by the staff of {self.location}"
        capacity = info.daily_capacity if info else None
        if capacity is not None and self.site().accepted.get(self.now.date().isoformat(), 0) >= capacity:
            return f"{self.location} is at capacity ({capacity} requests a day)"
        return None

    # ------------------------------------------------------------------ waves and picking

    def release_waves(self) -> None:
        site = self.site()
        # At most a few waves per message: what one message emits is stored with it (and a record has a size
        # limit); when more are due, the node's timer sends another tick at once.
        for batch in waves_due(site.pending, site.waves, self.now)[:MAX_WAVES_AT_ONCE]:
            site.wave_seq += 1
            wave_id = f"{self.location}-W{site.wave_seq:05d}"
            del site.pending[: len(batch)]
            tasks = []
            for pending in batch:
                order = self.order(pending.order_id)
                req = order.requests.get(pending.request_id) if order else None
                if order is not None and req is not None and req.stage == "waiting":
                    tasks.append((self._pick_task(order, req, wave_id), pending.cause))
            for task, cause in sorted(tasks, key=lambda tc: self.layout.path_key(tc[0].lines[0].bin)):
                self.offer(task, causationid=cause or None)

    def _pick_task(self, order: OrderWork, req: Request, wave_id: str) -> Task:
        lines = []
        for line in req.lines:
            stock = self.sku(line.sku)
            for bin_id, qty in allocate_pick(stock, line.qty, self.bins(), self.layout):
                lines.append(TaskLine(sku=line.sku, qty=qty, bin=bin_id, reservation_id=line.reservation_id))
        lines.sort(key=lambda ln: self.layout.path_key(ln.bin))
        task = self.new_task(f"{req.request_id}/pick", "pick", "order", order.order_id, req.request_id, lines,
                             wave_id=wave_id)
        req.stage, req.open_task, req.wave_id = "picking", task.task_id, wave_id
        return task

    def picked(self, task: Task, confirm: ConfirmTask) -> None:
        order, req = self._request_of(task)
        if order is None or req is None:
            return
        asked: dict[str, int] = {ln.reservation_id: 0 for ln in req.lines}  # the request's line order
        sku_of: dict[str, str] = {ln.reservation_id: ln.sku for ln in req.lines}
        for line in task.lines:
            rid = line.reservation_id or line.sku
            asked[rid] = asked.get(rid, 0) + line.qty
            sku_of[rid] = line.sku
        asked = {r: q for r, q in asked.items() if q}
        found = _found(asked, sku_of, confirm)
        for line in task.lines:
            stock = self.sku(line.sku)
            picked_from(stock, line.bin, line.qty, self.bins())
            stock.picks += 1
        for rid, qty in found.items():
            self.sku(sku_of[rid]).units_picked += qty
        short = [ShortPickLine(sku=sku_of[r], missing=asked[r] - found[r], reservation_id=r)
                 for r in asked if found[r] < asked[r]]
        if short:
            self.event(ShortPicked(request_id=req.request_id, order_id=order.order_id, location=self.location,
                                   lines=short), task.task_id, "short")
            self._report_short(task, short, found, {ln.reservation_id for ln in req.lines})
        req.picked = [FulfilmentLine(sku=sku_of[r], qty=found[r], reservation_id=r) for r in asked if found[r] > 0]
        if not req.picked:
            req.stage, req.open_task, req.reason = "short", "", "nothing found at the bins"
            return
        self.event(ItemsPicked(request_id=req.request_id, order_id=order.order_id, location=self.location,
                               lines=req.picked, task_id=task.task_id), req.request_id, "picked")
        if req.mode == "ship":
            self._next(order, req, self._pack_task(order, req))
        else:
            self._next(order, req, self._prepare_task(order, req))

    def _report_short(self, task: Task, short: list[ShortPickLine], found: dict[str, int], holds: set[str]) -> None:
        """One adjustment per SKU for the ledger, naming each hold picked short and what was found for it, so
        that the ledger shrinks exactly those holds (not the newest of the location) and writes off only the
        units its books still counted for them."""
        by_sku: dict[str, list[ShortPickLine]] = defaultdict(list)
        for line in short:
            by_sku[line.sku].append(line)
        for sku, lines in sorted(by_sku.items()):
            shortfalls = [PickShortfall(reservation_id=ln.reservation_id, picked=found[ln.reservation_id],
                                        missing=ln.missing) for ln in lines if ln.reservation_id in holds]
            adjust = AdjustStock(adjustment_id=f"{self.location}:{task.task_id}:short:{sku}", sku=sku,
                                 location=self.location, delta=-sum(ln.missing for ln in lines), reason="short_pick",
                                 shortfalls=shortfalls)
            self.to_inventory(adjust, task.task_id, "adjust", sku)

    def _next(self, order: OrderWork, req: Request, task: Task) -> None:
        req.open_task = task.task_id
        self.offer(task)

    # ------------------------------------------------------------------ pack and ship

    def _pack_task(self, order: OrderWork, req: Request) -> Task:
        items = [(ln.sku, ln.qty, self.item(ln.sku).weight_g, self.item(ln.sku).volume_cm3) for ln in req.picked]
        cartons = cartonize(items)
        parcels = [Parcel(parcel_id=pid, box=c.box.name, weight_g=c.weight_g, volume_cm3=c.volume_cm3)
                   for pid, c in zip(parcel_ids(req.request_id, len(cartons)), cartons, strict=True)]
        lines = [TaskLine(sku=ln.sku, qty=ln.qty, bin=PACKING_BENCH, reservation_id=ln.reservation_id)
                 for ln in req.picked]
        req.stage = "packing"
        return self.new_task(f"{req.request_id}/pack", "pack", "order", order.order_id, req.request_id, lines,
                             wave_id=req.wave_id, parcels=parcels)

    def packed(self, task: Task, confirm: ConfirmTask) -> None:
        order, req = self._request_of(task)
        if order is None or req is None:
            return
        req.parcels = task.parcels
        carrier = carrier_for(sum(p.weight_g for p in req.parcels), len(req.parcels))
        door = dock_door(carrier, self.layout.docks) if self.site().kind != "store" else "STORE-BACK"
        lines = [TaskLine(sku=ln.sku, qty=ln.qty, bin=door, reservation_id=ln.reservation_id) for ln in req.picked]
        req.stage = "shipping"
        self._next(order, req, self.new_task(f"{req.request_id}/ship", "ship", "order", order.order_id,
                                             req.request_id, lines, wave_id=req.wave_id, parcels=req.parcels))

    def shipped(self, task: Task, confirm: ConfirmTask) -> None:
        order, req = self._request_of(task)
        if order is None or req is None:
            return
        parcels = req.parcels or task.parcels
        carrier = carrier_for(sum(p.weight_g for p in parcels), len(parcels))
        door = task.lines[0].bin if task.lines else dock_door(carrier, self.layout.docks)
        shipped = ParcelShipped(
            request_id=req.request_id,
            order_id=order.order_id,
            location=self.location,
            parcel=parcels[0],
            parcels=parcels,
            carrier=carrier.name,
            tracking=tracking_number(self.location, req.request_id),
            dock_door=door,
            lines=req.picked,
        )
        self.event(shipped, req.request_id, "shipped")
        req.stage, req.open_task = "shipped", ""

    # ------------------------------------------------------------------ stores: pickup and reserve

    def _prepare_task(self, order: OrderWork, req: Request) -> Task:
        shelf = self._free_shelf(req.request_id)
        req.staged_bin = shelf
        lines = [TaskLine(sku=ln.sku, qty=ln.qty, bin=shelf, reservation_id=ln.reservation_id) for ln in req.picked]
        req.stage = "preparing"
        return self.new_task(f"{req.request_id}/prepare_pickup", "prepare_pickup", "order", order.order_id,
                             req.request_id, lines, wave_id=req.wave_id)

    def _free_shelf(self, request_id: str) -> str:
        shelves = self.bins().shelves
        for b in self.layout.zone_bins("pickup"):
            if b.id not in shelves:
                shelves[b.id] = request_id
                return b.id
        return COUNTER

    def prepared(self, task: Task, confirm: ConfirmTask) -> None:
        order, req = self._request_of(task)
        if order is None or req is None:
            return
        req.stage, req.open_task = "ready", ""
        self.event(ReadyForPickup(request_id=req.request_id, order_id=order.order_id, location=self.location,
                                  lines=req.picked), req.request_id, "ready")
        if req.hand_over_asked:
            self._hand_over(order, req)

    def hand_over(self, command: HandOver) -> None:
        order = self.order(command.order_id)
        if order is None:
            return
        for req in list(order.requests.values()):
            if command.request_id is not None and req.request_id != command.request_id:
                continue
            if req.stage == "ready":
                self._hand_over(order, req)
            elif req.stage not in FINISHED_STAGES and req.mode != "ship":
                req.hand_over_asked = True

    def _hand_over(self, order: OrderWork, req: Request) -> None:
        self._free_shelf_of(req)
        req.stage = "handed_over"
        self.event(HandedOver(request_id=req.request_id, order_id=order.order_id, location=self.location,
                              lines=req.picked), req.request_id, "handed_over")

    def _free_shelf_of(self, req: Request) -> None:
        if req.staged_bin is not None and self.bins().shelves.get(req.staged_bin) == req.request_id:
            del self.bins().shelves[req.staged_bin]
        req.staged_bin = None

    # ------------------------------------------------------------------ cancel

    def cancel(self, command: CancelFulfilment) -> None:
        order = self.order(command.order_id, create=True)
        assert order is not None
        rid = command.request_id
        req = order.requests.get(rid)
        if req is None:
            order.requests[rid] = Request(request_id=rid, lines=[], stage="cancelled", reason=command.reason)
            self._cancelled(order, rid)
            return
        if req.stage in FINISHED_STAGES:
            return  # shipped or handed over: too late; already withdrawn, rejected or found short: nothing to do
        site = self.site()
        site.pending = [p for p in site.pending if p.request_id != rid]
        task = self.task(req.open_task) if req.open_task else None
        if task is not None and task.status in ("open", "claimed"):
            if task.kind == "pick":
                for line in task.lines:
                    release_allocation(self.sku(line.sku), line.bin, line.qty)
            self.withdraw_task(task)
        if req.picked and req.stage != "picking":
            self._restock(order, req)
        self._free_shelf_of(req)
        req.stage, req.open_task, req.reason = "cancelled", "", command.reason
        self._cancelled(order, rid)

    def _cancelled(self, order: OrderWork, rid: str) -> None:
        self.event(FulfilmentCancelled(request_id=rid, order_id=order.order_id, location=self.location),
                   rid, "cancelled")

    def _restock(self, order: OrderWork, req: Request) -> None:
        """Units already picked go back to their bins: a put-away task."""
        lines = []
        for picked in req.picked:
            stock = self.sku(picked.sku)
            plan = plan_put_away(stock, picked.qty, self.bins(), self.layout)
            expect_incoming(stock, plan)
            lines += [TaskLine(sku=picked.sku, qty=q, bin=b, reservation_id=picked.reservation_id) for b, q in plan]
        task = self.new_task(f"{req.request_id}/restock", "put_away", "restock", order.order_id, req.request_id,
                             lines, wave_id=req.wave_id)
        self.offer(task)

    # ------------------------------------------------------------------ helpers

    def _request_of(self, task: Task) -> tuple[OrderWork | None, Request | None]:
        order = self.order(task.subject)
        req = order.requests.get(task.request_id) if order else None
        if req is None or req.open_task != task.task_id:
            return order, None
        return order, req


def _found(asked: dict[str, int], sku_of: dict[str, str], confirm: ConfirmTask) -> dict[str, int]:
    """Units really picked per reservation: ``missing`` lines (by reservation, or by SKU when the reservation
    is unknown, spread over that SKU's lines), else exact ``picked`` quantities, else everything asked."""
    if confirm.missing:
        missing: dict[str, int] = defaultdict(int)
        for m in confirm.missing:
            if m.reservation_id in asked:
                missing[m.reservation_id] += m.missing
                continue
            left = m.missing
            for rid in asked:
                if sku_of[rid] == m.sku and left:
                    take = min(left, asked[rid] - missing[rid])
                    missing[rid] += take
                    left -= take
        return {rid: max(0, qty - missing[rid]) for rid, qty in asked.items()}
    if confirm.picked:
        got: dict[str, int] = defaultdict(int)
        for p in confirm.picked:
            got[p.reservation_id] += p.qty
        return {rid: min(qty, got[rid]) for rid, qty in asked.items()}
    return dict(asked)
