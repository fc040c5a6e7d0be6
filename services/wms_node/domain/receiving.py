"""Receiving: a delivery arrives, is counted against what was announced, put away, and only then becomes stock.

SupplyArrived -> a ``receive`` task at the dock (the announced lines) -> the count (received, damaged of
them; a line not counted is taken as announced) -> a ``put_away`` task (good units by the put-away rules,
damaged ones to quarantine) -> once put away: ``ReceiveStock`` per SKU to the inventory service (good units,
damaged reported) and ``GoodsReceived`` with expected, received and damaged per line.
"""

from __future__ import annotations

from collections import defaultdict

from schemas.inventory import ReceiveStock
from schemas.wms import ConfirmTask, GoodsReceived, ReceivedLine, SupplyArrived, TaskLine
from services.wms_node.domain.layout import RECEIVING_DOCK
from services.wms_node.domain.model import Received, Supply, Task, supply_key
from services.wms_node.domain.stock import expect_incoming, plan_put_away, plan_quarantine, put_away_done
from services.wms_node.domain.work import Work


class Receiving(Work):
    def arrived(self, delivery: SupplyArrived) -> None:
        if self.supply(delivery.supply_id) is not None:
            return
        expected: dict[str, int] = defaultdict(int)
        for line in delivery.lines:
            expected[line.sku] += line.qty
            self.sku(line.sku)
        supply = Supply(supply_id=delivery.supply_id, expected=delivery.lines)
        self.unit.add(supply_key(supply.supply_id), supply)
        lines = [TaskLine(sku=sku, qty=qty, bin=RECEIVING_DOCK) for sku, qty in expected.items()]
        self.offer(self.new_task(f"{supply.supply_id}/receive", "receive", "supply", supply.supply_id,
                                 supply.supply_id, lines))

    def counted_in(self, task: Task, confirm: ConfirmTask) -> None:
        supply = self.supply(task.subject)
        if supply is None or supply.stage != "receiving":
            return
        expected = _expected(supply)
        counts: dict[str, Received] = {sku: Received(received=qty) for sku, qty in expected.items()}
        reported: dict[str, list[int]] = {}
        for line in confirm.counted:
            got = reported.setdefault(line.sku, [0, 0])
            got[0] += line.qty
            got[1] += line.damaged
        for sku, (received, damaged) in reported.items():
            counts[sku] = Received(received=received, damaged=min(damaged, received))
        supply.received = counts
        lines = []
        quarantine = plan_quarantine(self.layout)
        for sku, count in counts.items():
            stock = self.sku(sku)
            good = count.received - count.damaged
            plan = plan_put_away(stock, good, self.bins(), self.layout) if good else []
            expect_incoming(stock, plan)
            lines += [TaskLine(sku=sku, qty=qty, bin=b) for b, qty in plan]
            if count.damaged:
                lines.append(TaskLine(sku=sku, qty=count.damaged, bin=quarantine))
        if not lines:
            self._received(supply)
            return
        supply.stage = "putting_away"
        self.offer(self.new_task(f"{supply.supply_id}/put_away", "put_away", "supply", supply.supply_id,
                                 supply.supply_id, lines))

    def put_away(self, task: Task, confirm: ConfirmTask) -> None:
        supply = self.supply(task.subject)
        if supply is None or supply.stage != "putting_away":
            return
        for line in task.lines:
            stock = self.sku(line.sku)
            if self.layout.bin(line.bin).zone == "quarantine":
                stock.damaged[line.bin] = stock.damaged.get(line.bin, 0) + line.qty
            else:
                put_away_done(stock, line.bin, line.qty)
        self._received(supply)

    def _received(self, supply: Supply) -> None:
        expected = _expected(supply)
        lines = []
        for sku in sorted(set(expected) | set(supply.received)):
            got = supply.received.get(sku, Received(received=0))
            lines.append(ReceivedLine(sku=sku, expected=expected.get(sku, 0), received=got.received,
                                      damaged=got.damaged))
            receipt = ReceiveStock(receipt_id=f"{self.location}:{supply.supply_id}:{sku}", sku=sku,
                                   location=self.location, qty=got.received - got.damaged,
                                   supply_id=supply.supply_id, damaged=got.damaged)
            self.to_inventory(receipt, supply.supply_id, "receipt", sku)
        self.event(GoodsReceived(supply_id=supply.supply_id, location=self.location, lines=lines),
                   supply.supply_id, "received", self.location)
        supply.stage = "received"


def _expected(supply: Supply) -> dict[str, int]:
    expected: dict[str, int] = defaultdict(int)
    for line in supply.expected:
        expected[line.sku] += line.qty
    return dict(expected)
