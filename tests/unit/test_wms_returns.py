"""A location's returns, on the pure node: a receive-return task, the inspection (conditions per unit, fewer units
than authorised), the disposition policy, quarantine, the put-away of sellable units and their restock; a
repeated announcement or confirmation changes nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schemas.inventory import ReceiveStock
from schemas.orders import ReturnLine
from schemas.topics import INVENTORY_COMMANDS, WMS_EVENTS
from schemas.wms import CountedLine, ReceiveReturn, ReturnedLine, ReturnReceived, TaskCreated
from services.wms_node.domain.model import ReturnWork
from services.wms_node.domain.return_policy import ReturnsPolicy
from services.wms_node.domain.returns import inspect
from services.wms_node.domain.workers import AutoWorker, SkuQty, WorkerBehaviour
from services.wms_node.janitor import finished
from services.wms_node.service import bundle_of
from tests.unit.wms_support import LOCATION, NodeHarness, of_type, one_task

RECEIVE = "R-1/receive_return"
PUT_AWAY = "R-1/put_away"


def announce(return_id: str = "R-1", *lines: tuple[str, int], declared: str | None = None) -> ReceiveReturn:
    return ReceiveReturn(return_id=return_id, order_id="O-1", location=LOCATION,
                         lines=[ReturnLine(sku=s, qty=q) for s, q in (lines or (("TEE-M", 2),))],
                         expected_condition=declared)  # type: ignore[arg-type]


def node() -> NodeHarness:
    return NodeHarness(ledger={"TEE-M": 5, "MUG-1": 3})


def returned(n: NodeHarness, return_id: str = "R-1") -> ReturnWork:
    doc = n.store.get(f"return:{return_id}")
    assert doc is not None
    return ReturnWork.model_validate_json(doc)


def test_a_return_announced_is_a_receive_return_task_at_the_dock() -> None:
    n = node()
    task = one_task(n.send(announce("R-1", ("TEE-M", 2), ("MUG-1", 1))))
    assert (task.task_id, task.kind, task.order_id) == (RECEIVE, "receive_return", "R-1")
    assert sorted((ln.sku, ln.qty, ln.bin) for ln in task.lines) == [("MUG-1", 1, "DOCK-IN"), ("TEE-M", 2, "DOCK-IN")]
    assert returned(n).stage == "receiving"


def test_a_return_announced_twice_makes_one_task() -> None:
    n = node()
    n.send(announce(), "cmd-1")
    assert n.send(announce(), "cmd-1") == []  # the same command delivered again
    assert of_type(n.send(announce(), "cmd-2"), TaskCreated) == []  # the OMS sent it again under a new id


def test_a_sellable_return_is_reported_then_put_away_and_restocked_once() -> None:
    n = node()
    n.send(announce())
    on_hand_before = n.stock("TEE-M").on_hand
    emits = n.send(n.confirm(RECEIVE))
    [received] = of_type(emits, ReturnReceived)
    assert received == ReturnReceived(return_id="R-1", order_id="O-1", location=LOCATION, lines=[
        ReturnedLine(sku="TEE-M", qty=2, condition="sellable", disposition="restock")])
    assert next(e for e in emits if isinstance(e.message, ReturnReceived)).topic == WMS_EVENTS.name
    assert of_type(emits, ReceiveStock) == []  # not stock before it is on a shelf
    put_away = one_task(emits)
    assert put_away.task_id == PUT_AWAY and put_away.kind == "put_away" and sum(ln.qty for ln in put_away.lines) == 2
    assert returned(n).stage == "putting_away"

    emits = n.send(n.confirm(PUT_AWAY))
    [restock] = of_type(emits, ReceiveStock)
    assert restock == ReceiveStock(receipt_id=f"{LOCATION}:R-1:TEE-M", sku="TEE-M", location=LOCATION, qty=2,
                                   return_id="R-1")
    assert next(e for e in emits if isinstance(e.message, ReceiveStock)).topic == INVENTORY_COMMANDS.name
    assert n.stock("TEE-M").on_hand == on_hand_before + 2
    assert returned(n).stage == "received"
    assert of_type(n.send(n.confirm(PUT_AWAY)), ReceiveStock) == []  # confirmed again: restocked once


def test_a_confirmation_sent_twice_inspects_once() -> None:
    n = node()
    n.send(announce())
    first = n.send(n.confirm(RECEIVE), "confirm-1")
    assert of_type(first, ReturnReceived)
    assert n.send(n.confirm(RECEIVE), "confirm-1") == []
    assert of_type(n.send(n.confirm(RECEIVE), "confirm-2"), ReturnReceived) == []


def test_a_damaged_return_is_quarantined_never_restocked() -> None:
    n = node()
    n.send(announce(declared="damaged"))
    before = n.stock("TEE-M")
    emits = n.send(n.confirm(RECEIVE))
    [received] = of_type(emits, ReturnReceived)
    assert received.lines == [ReturnedLine(sku="TEE-M", qty=2, condition="damaged", disposition="refurbish")]
    assert of_type(emits, TaskCreated) == [] and of_type(emits, ReceiveStock) == []
    after = n.stock("TEE-M")
    assert after.on_hand == before.on_hand
    assert sum(after.damaged.values()) == sum(before.damaged.values()) + 2
    assert returned(n).stage == "received"


def test_inspection_counts_per_unit_and_fewer_than_authorised() -> None:
    n = node()
    n.send(announce("R-1", ("TEE-M", 3), ("MUG-1", 2)))
    counted = [CountedLine(sku="TEE-M", qty=2, damaged=1), CountedLine(sku="MUG-1", qty=2, defective=1)]
    emits = n.send(n.confirm(RECEIVE, counted=counted))
    [received] = of_type(emits, ReturnReceived)
    assert received.lines == [
        ReturnedLine(sku="MUG-1", qty=1, condition="sellable", disposition="restock"),
        ReturnedLine(sku="MUG-1", qty=1, condition="defective", disposition="scrap"),
        ReturnedLine(sku="TEE-M", qty=1, condition="sellable", disposition="restock"),
        ReturnedLine(sku="TEE-M", qty=1, condition="damaged", disposition="refurbish"),
    ]
    put_away = one_task(emits)
    assert sorted((ln.sku, ln.qty) for ln in put_away.lines) == [("MUG-1", 1), ("TEE-M", 1)]
    restocks = of_type(n.send(n.confirm(PUT_AWAY)), ReceiveStock)
    assert sorted((r.sku, r.qty) for r in restocks) == [("MUG-1", 1), ("TEE-M", 1)]


def test_nothing_arrived_reports_no_units_and_moves_nothing() -> None:
    n = node()
    n.send(announce())
    emits = n.send(n.confirm(RECEIVE, counted=[CountedLine(sku="TEE-M", qty=0)]))
    [received] = of_type(emits, ReturnReceived)
    assert received.lines == []
    assert of_type(emits, TaskCreated) == [] and returned(n).stage == "received"


def test_the_policy_decides_where_damaged_units_go() -> None:
    n = NodeHarness(ledger={"TEE-M": 5})
    n.node.config = replace(n.node.config, returns=ReturnsPolicy(damaged="repair"))
    n.send(announce(declared="damaged"))
    [received] = of_type(n.send(n.confirm(RECEIVE)), ReturnReceived)
    assert [ln.disposition for ln in received.lines] == ["repair"]


@pytest.mark.parametrize(("counted", "declared", "expected"), [
    ([], None, {"sellable": 2}),
    ([], "defective", {"defective": 2}),
    ([CountedLine(sku="TEE-M", qty=5, damaged=1)], "defective", {"sellable": 1, "damaged": 1, "defective": 0}),
    ([CountedLine(sku="TEE-M", qty=1, damaged=3, defective=3)], None, {"sellable": 0, "damaged": 1, "defective": 0}),
])
def test_inspect_caps_at_what_was_authorised(counted: list[CountedLine], declared: str | None,
                                             expected: dict[str, int]) -> None:
    assert inspect({"TEE-M": 2}, counted, declared) == {"TEE-M": expected}  # type: ignore[arg-type]


def test_a_return_lives_with_its_tasks_and_is_finished_once_received() -> None:
    assert bundle_of("return:R-1") == bundle_of(f"task:{RECEIVE}") == bundle_of(f"task:{PUT_AWAY}") == "work:R-1"
    ret = ReturnWork(return_id="R-1", order_id="O-1", lines=[ReturnLine(sku="TEE-M", qty=1)])
    assert not finished("return:R-1", ret)
    ret.stage = "received"
    assert finished("return:R-1", ret)
    assert finished("return:R-1", ret.model_dump_json())


def test_simulated_workers_find_damaged_and_short_returns_once_per_sku() -> None:
    behaviour = WorkerBehaviour(location=LOCATION, damaged=[SkuQty(sku="TEE-M", qty=1)],
                                short_receive=[SkuQty(sku="MUG-1", qty=1)])
    worker = AutoWorker(LOCATION, behaviour)
    n = node()
    task = one_task(n.send(announce("R-1", ("TEE-M", 2), ("MUG-1", 2))))
    confirm = worker.confirm(task)
    assert [(c.sku, c.qty, c.damaged) for c in confirm.counted] == [("TEE-M", 2, 1)]
    assert [(m.sku, m.missing) for m in confirm.missing] == [("MUG-1", 1)]
    [received] = of_type(n.send(confirm), ReturnReceived)
    assert sorted((ln.sku, ln.condition, ln.qty) for ln in received.lines) == [
        ("MUG-1", "sellable", 1), ("TEE-M", "damaged", 1), ("TEE-M", "sellable", 1)]
    again = one_task(n.send(announce("R-2", ("TEE-M", 1))))
    assert worker.confirm(again).counted == []  # once per SKU: the next return is as declared


def test_the_cli_reports_damaged_and_defective_units_of_a_return() -> None:
    from baton.wms_cli import _counted_lines

    task = {"lines": [{"sku": "TEE-M", "qty": 3}, {"sku": "MUG-1", "qty": 1}]}
    lines = _counted_lines(task, [("MUG-1", "", 0)], [("TEE-M", "", 1)], [("TEE-M", "", 1)])
    assert sorted((ln.sku, ln.qty, ln.damaged, ln.defective) for ln in lines) == [("MUG-1", 0, 0, 0),
                                                                                   ("TEE-M", 3, 1, 1)]


def test_a_return_declared_damaged_and_received_short_is_damaged_units_only() -> None:
    worker = AutoWorker(LOCATION, WorkerBehaviour(location=LOCATION, short_receive=[SkuQty(sku="TEE-M", qty=1)]))
    n = node()
    task = one_task(n.send(announce("R-1", ("TEE-M", 3), declared="damaged")))
    emits = n.send(worker.confirm(task))
    [received] = of_type(emits, ReturnReceived)
    assert received.lines == [ReturnedLine(sku="TEE-M", qty=2, condition="damaged", disposition="refurbish")]
    assert of_type(emits, TaskCreated) == []  # nothing to put away


def test_units_missing_from_the_parcel_are_not_received() -> None:
    n = node()
    n.send(announce("R-1", ("TEE-M", 3)))
    emits = n.send(n.confirm(RECEIVE, missing={"TEE-M": 2}))
    [received] = of_type(emits, ReturnReceived)
    assert received.lines == [ReturnedLine(sku="TEE-M", qty=1, condition="sellable", disposition="restock")]
