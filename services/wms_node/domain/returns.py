"""Returns: a customer's return arrives at the location, is received and inspected, and each unit goes where the
disposition policy says.

ReceiveReturn -> a ``receive_return`` task at the dock (the authorised lines) -> its confirmation is the
inspection: per SKU, units received (at most those authorised; fewer when fewer came) and of them ``damaged``
and ``defective``, the rest sellable; a line not counted arrived in the condition the customer declared
(sellable when none), all its authorised units but those reported ``missing`` (not in the parcel) ->
``ReturnReceived`` with units per condition and disposition; damaged and defective units go to quarantine
(counted by the node, never available) -> a ``put_away`` task for the sellable units -> once put away,
``ReceiveStock`` with the return's id per SKU: the ledger restocks them (on hand and available grow at this
location, a ``restocked`` movement caused by the return).
"""

from __future__ import annotations

from collections import defaultdict

from schemas.inventory import ReceiveStock
from schemas.orders import ReturnCondition
from schemas.wms import ConfirmTask, CountedLine, ReceiveReturn, ReturnedLine, ReturnReceived, TaskLine
from services.wms_node.domain.layout import RECEIVING_DOCK
from services.wms_node.domain.model import ReturnWork, Task, return_key
from services.wms_node.domain.return_policy import ReturnsPolicy
from services.wms_node.domain.stock import expect_incoming, plan_put_away, plan_quarantine, put_away_done
from services.wms_node.domain.work import Work

CONDITIONS: tuple[ReturnCondition, ...] = ("sellable", "damaged", "defective")


Found = dict[ReturnCondition, int]


def inspect(authorised: dict[str, int], counted: list[CountedLine], declared: ReturnCondition | None,
            missing: dict[str, int] | None = None) -> dict[str, Found]:
    """Units per SKU and condition. A counted SKU: what came (capped at what was authorised), ``damaged`` and
    ``defective`` of it, the rest sellable. A SKU not counted: what was authorised less the units ``missing``
    from the parcel, as the customer declared."""
    reported: dict[str, list[int]] = {}
    for line in counted:
        got = reported.setdefault(line.sku, [0, 0, 0])
        got[0] += line.qty
        got[1] += line.damaged
        got[2] += line.defective
    found: dict[str, Found] = {}
    for sku, qty in authorised.items():
        if sku not in reported:
            found[sku] = {declared or "sellable": max(0, qty - (missing or {}).get(sku, 0))}
            continue
        received, damaged, defective = reported[sku]
        received = min(received, qty)
        damaged = min(damaged, received)
        defective = min(defective, received - damaged)
        found[sku] = {"sellable": received - damaged - defective, "damaged": damaged, "defective": defective}
    return found


def returned_lines(found: dict[str, Found], policy: ReturnsPolicy) -> list[ReturnedLine]:
    return [ReturnedLine(sku=sku, qty=units[condition], condition=condition,
                         disposition=policy.disposition(condition))
            for sku, units in sorted(found.items()) for condition in CONDITIONS if units.get(condition)]


def authorised_units(ret: ReturnWork) -> dict[str, int]:
    units: dict[str, int] = defaultdict(int)
    for line in ret.lines:
        units[line.sku] += line.qty
    return dict(units)


class Returns(Work):
    def returned(self, return_id: str) -> ReturnWork | None:
        return self.unit.get(return_key(return_id), ReturnWork)

    def return_arrived(self, command: ReceiveReturn) -> None:
        """A return announced here: a receive-return task at the dock (once, however often it is announced)."""
        if self.returned(command.return_id) is not None:
            return
        ret = ReturnWork(return_id=command.return_id, order_id=command.order_id, lines=command.lines,
                         method=command.method, declared=command.expected_condition)
        self.unit.add(return_key(ret.return_id), ret)
        lines = [TaskLine(sku=sku, qty=qty, bin=RECEIVING_DOCK) for sku, qty in authorised_units(ret).items()]
        for line in lines:
            self.sku(line.sku)
        self.offer(self.new_task(f"{ret.return_id}/receive_return", "receive_return", "return", ret.return_id,
                                 ret.return_id, lines))

    def return_inspected(self, task: Task, confirm: ConfirmTask) -> None:
        """The inspection: conditions and dispositions reported to the OMS; damaged and defective units to
        quarantine; sellable ones to put away."""
        ret = self.returned(task.subject)
        if ret is None or ret.stage != "receiving":
            return
        missing: dict[str, int] = defaultdict(int)
        for short in confirm.missing:
            missing[short.sku] += short.missing
        found = inspect(authorised_units(ret), confirm.counted, ret.declared, missing)
        ret.found = returned_lines(found, self.config.returns)
        self.event(ReturnReceived(return_id=ret.return_id, order_id=ret.order_id, location=self.location,
                                  lines=ret.found), ret.return_id, "return-received")
        quarantine = plan_quarantine(self.layout)
        put_away: list[TaskLine] = []
        for sku, units in sorted(found.items()):
            stock = self.sku(sku)
            unsellable = units.get("damaged", 0) + units.get("defective", 0)
            if unsellable:
                stock.damaged[quarantine] = stock.damaged.get(quarantine, 0) + unsellable
            if units.get("sellable"):
                plan = plan_put_away(stock, units["sellable"], self.bins(), self.layout)
                expect_incoming(stock, plan)
                put_away += [TaskLine(sku=sku, qty=qty, bin=b) for b, qty in plan]
        if not put_away:
            ret.stage = "received"
            return
        ret.stage = "putting_away"
        self.offer(self.new_task(f"{ret.return_id}/put_away", "put_away", "return", ret.return_id, ret.return_id,
                                 put_away))

    def return_put_away(self, task: Task) -> None:
        """Sellable units are on the shelves: the ledger restocks them, one receipt per SKU caused by the return."""
        ret = self.returned(task.subject)
        if ret is None or ret.stage != "putting_away":
            return
        units: dict[str, int] = defaultdict(int)
        for line in task.lines:
            put_away_done(self.sku(line.sku), line.bin, line.qty)
            units[line.sku] += line.qty
        for sku, qty in sorted(units.items()):
            receipt = ReceiveStock(receipt_id=f"{self.location}:{ret.return_id}:{sku}", sku=sku,
                                   location=self.location, qty=qty, return_id=ret.return_id)
            self.to_inventory(receipt, ret.return_id, "restock", sku)
        ret.stage = "received"
