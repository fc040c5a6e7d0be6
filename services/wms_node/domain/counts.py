"""Cycle counts: a count task lists bins and what the books say they hold; the count sets the bin, and any
difference goes to the ledger as ``AdjustStock(reason="cycle_count")``."""

from __future__ import annotations

from collections import defaultdict

from schemas.inventory import AdjustStock
from schemas.wms import ConfirmTask, RequestCount, TaskLine
from services.wms_node.domain.model import Task
from services.wms_node.domain.stock import counted
from services.wms_node.domain.work import Work


def count_task_id(count_id: str) -> str:
    return f"count/{count_id}"


class Counting(Work):
    def request_count(self, request: RequestCount) -> None:
        task_id = count_task_id(request.count_id)
        if self.task(task_id) is not None:
            return
        wanted: dict[tuple[str, str], int] = {}
        for sku in request.skus:
            stock = self.known_sku(sku)
            if stock is None:
                continue
            for bin_id, qty in stock.bins.items():
                wanted[(sku, bin_id)] = qty
        owners = self.bins().owner
        for bin_id in request.bins:
            owner = owners.get(bin_id)
            owned = self.known_sku(owner) if owner else None
            if owned is not None:
                wanted[(owned.sku, bin_id)] = owned.bins.get(bin_id, 0)
        lines = [TaskLine(sku=sku, qty=qty, bin=bin_id) for (sku, bin_id), qty in wanted.items() if qty > 0]
        if not lines:
            return
        lines.sort(key=lambda ln: self.layout.path_key(ln.bin))
        self.offer(self.new_task(task_id, "count", "count", request.count_id, request.count_id, lines))

    def count_done(self, task: Task, confirm: ConfirmTask) -> None:
        found: dict[tuple[str, str], int] = {(ln.sku, ln.bin): ln.qty for ln in task.lines}
        bins_of: dict[str, list[str]] = defaultdict(list)
        for ln in task.lines:
            bins_of[ln.sku].append(ln.bin)
        for line in confirm.counted:
            bin_id = line.bin or (bins_of[line.sku][0] if len(bins_of[line.sku]) == 1 else "")
            if bin_id:
                found[(line.sku, bin_id)] = line.qty
        deltas: dict[str, int] = defaultdict(int)
        for (sku, bin_id), qty in found.items():
            deltas[sku] += counted(self.sku(sku), bin_id, qty, self.bins())
        for sku, delta in sorted(deltas.items()):
            if delta:
                adjust = AdjustStock(adjustment_id=f"{self.location}:{task.task_id}:{sku}", sku=sku,
                                     location=self.location, delta=delta, reason="cycle_count")
                self.to_inventory(adjust, task.task_id, "count", sku)
