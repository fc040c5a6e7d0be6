"""A location's fulfilment desk: accept, then pick, pack and ship as tasks workers confirm."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.runtime.outbox import Emit
from schemas.topics import WMS_EVENTS, WMS_TASKS
from schemas.wms import (
    ConfirmTask,
    FulfilmentAccepted,
    FulfilmentLine,
    FulfilOrder,
    ItemsPicked,
    ParcelShipped,
    TaskCreated,
)
from services.wms_node.domain.fulfilment import CARRIER, FulfilmentDesk, LocationOrder, bin_of

LOCATION = "WH-PAR"
REQUEST = "O-1/a1/WH-PAR"
SKUS = ["TEE-M", "MUG-1", "CAP-9", "SOCK-2", "BAG-7"]


def fulfil(*lines: tuple[str, int], request_id: str = REQUEST) -> FulfilOrder:
    return FulfilOrder(
        request_id=request_id,
        order_id="O-1",
        location=LOCATION,
        lines=[FulfilmentLine(sku=s, qty=q, reservation_id=f"O-1/a1/{n}") for n, (s, q) in enumerate(lines)],
    )


def confirm(kind: str, request_id: str = REQUEST) -> ConfirmTask:
    return ConfirmTask(
        task_id=f"{request_id}/{kind}", order_id="O-1", request_id=request_id, location=LOCATION
    )


def task(emits: list[Emit]) -> TaskCreated:
    tasks = [e.message for e in emits if isinstance(e.message, TaskCreated)]
    assert len(tasks) == 1
    assert isinstance(tasks[0], TaskCreated)
    return tasks[0]


class Desk:
    def __init__(self) -> None:
        self.desk = FulfilmentDesk()
        self.state = LocationOrder(order_id="O-1", location=LOCATION)
        self.n = 0

    def send(self, message: FulfilOrder | ConfirmTask, message_id: str | None = None) -> list[Emit]:
        self.n += 1
        return self.desk.handle(self.state, message, message_id or f"m-{self.n}")


def test_fulfil_order_is_accepted_with_a_pick_task() -> None:
    desk = Desk()
    emits = desk.send(fulfil(("TEE-M", 2)))
    assert [type(e.message) for e in emits] == [FulfilmentAccepted, TaskCreated]
    assert emits[0].topic == WMS_EVENTS.name and emits[0].key == "O-1"
    assert emits[0].message == FulfilmentAccepted(request_id=REQUEST, order_id="O-1", location=LOCATION)
    pick = task(emits)
    assert emits[1].topic == WMS_TASKS.name and emits[1].location == LOCATION and emits[1].key == pick.task_id
    assert (pick.kind, pick.task_id, pick.request_id) == ("pick", f"{REQUEST}/pick", REQUEST)
    assert [(ln.sku, ln.qty, ln.bin) for ln in pick.lines] == [("TEE-M", 2, bin_of("TEE-M"))]
    assert desk.state.requests[REQUEST].stage == "picking"
    assert desk.state.requests[REQUEST].open_task == f"{REQUEST}/pick"


def test_pick_task_lists_lines_in_bin_order() -> None:
    desk = Desk()
    pick = task(desk.send(fulfil(*((s, 1) for s in SKUS))))
    bins = [ln.bin for ln in pick.lines]
    assert bins == sorted(bins) == sorted(bin_of(s) for s in SKUS)
    assert sorted(ln.sku for ln in pick.lines) == sorted(SKUS)
    assert all(ln.bin == bin_of(ln.sku) for ln in pick.lines)


def test_pick_pack_ship_in_order() -> None:
    desk = Desk()
    desk.send(fulfil(("TEE-M", 2), ("MUG-1", 1)))

    emits = desk.send(confirm("pick"))
    assert [type(e.message) for e in emits] == [ItemsPicked, TaskCreated]
    picked = emits[0].message
    assert isinstance(picked, ItemsPicked) and picked.task_id == f"{REQUEST}/pick"
    assert [(ln.sku, ln.qty) for ln in picked.lines] == [("TEE-M", 2), ("MUG-1", 1)]
    assert task(emits).kind == "pack"
    assert desk.state.requests[REQUEST].stage == "packing"

    emits = desk.send(confirm("pack"))
    assert [type(e.message) for e in emits] == [TaskCreated]
    assert task(emits).kind == "ship"
    parcel_id = desk.state.requests[REQUEST].parcel_id
    assert parcel_id and desk.state.requests[REQUEST].stage == "shipping"

    emits = desk.send(confirm("ship"))
    assert [type(e.message) for e in emits] == [ParcelShipped]
    shipped = emits[0].message
    assert isinstance(shipped, ParcelShipped)
    assert shipped.parcel.parcel_id == parcel_id
    assert shipped.carrier == CARRIER
    assert shipped.tracking.startswith("BT") and shipped.tracking.endswith("WH-")
    assert shipped.dock_door in {"D1", "D2", "D3", "D4"}
    assert shipped.parcel.box == "M"  # 3 units
    assert [(ln.sku, ln.qty, ln.reservation_id) for ln in shipped.lines] == [
        ("TEE-M", 2, "O-1/a1/0"),
        ("MUG-1", 1, "O-1/a1/1"),
    ]
    request = desk.state.requests[REQUEST]
    assert (request.stage, request.open_task) == ("shipped", "")


@pytest.mark.parametrize(("units", "box"), [(1, "S"), (2, "S"), (3, "M"), (5, "M"), (6, "L"), (40, "L")])
def test_box_size_follows_the_units(units: int, box: str) -> None:
    desk = Desk()
    desk.send(fulfil(("TEE-M", units)))
    for kind in ("pick", "pack"):
        desk.send(confirm(kind))
    shipped = desk.send(confirm("ship"))[0].message
    assert isinstance(shipped, ParcelShipped) and shipped.parcel.box == box


@pytest.mark.parametrize("kind", ["pack", "ship"])
def test_confirming_a_task_that_is_not_open_has_no_effect(kind: str) -> None:
    desk = Desk()
    desk.send(fulfil(("TEE-M", 1)))
    before = desk.state.requests[REQUEST].model_dump()
    assert desk.send(confirm(kind)) == []
    assert desk.state.requests[REQUEST].model_dump() == before


def test_confirming_a_done_task_again_has_no_effect() -> None:
    desk = Desk()
    desk.send(fulfil(("TEE-M", 1)))
    desk.send(confirm("pick"))
    assert desk.send(confirm("pick")) == []  # a new message id: a second worker's click
    assert desk.state.requests[REQUEST].open_task == f"{REQUEST}/pack"
    for kind in ("pack", "ship"):
        desk.send(confirm(kind))
    assert desk.send(confirm("ship")) == []
    assert desk.state.requests[REQUEST].stage == "shipped"


def test_confirming_a_task_of_an_unknown_request_has_no_effect() -> None:
    desk = Desk()
    desk.send(fulfil(("TEE-M", 1)))
    assert desk.send(confirm("pick", request_id="O-1/a9/WH-PAR")) == []
    assert desk.state.requests[REQUEST].stage == "picking"


def test_repeated_message_id_replays_the_same_emits() -> None:
    desk = Desk()
    first = desk.send(fulfil(("TEE-M", 1)), "f-1")
    assert desk.send(fulfil(("TEE-M", 1)), "f-1") == first
    picked = desk.send(confirm("pick"), "c-1")
    before = desk.state.model_dump()
    assert desk.send(confirm("pick"), "c-1") == picked
    assert desk.state.model_dump() == before


def test_same_request_under_a_new_message_id_is_not_accepted_twice() -> None:
    desk = Desk()
    desk.send(fulfil(("TEE-M", 1)), "f-1")
    desk.send(confirm("pick"))
    assert desk.send(fulfil(("TEE-M", 1)), "f-2") == []
    assert desk.state.requests[REQUEST].stage == "packing"


def test_two_requests_of_one_order_progress_independently() -> None:
    desk = Desk()
    other = "O-1/a2/WH-PAR"
    desk.send(fulfil(("TEE-M", 1)))
    desk.send(fulfil(("MUG-1", 1), request_id=other))
    desk.send(confirm("pick", request_id=other))
    assert desk.state.requests[REQUEST].stage == "picking"
    assert desk.state.requests[other].stage == "packing"
    for kind in ("pack", "ship"):
        desk.send(confirm(kind, request_id=other))
    for kind in ("pick", "pack"):
        desk.send(confirm(kind))
    a = desk.send(confirm("ship"))[0].message
    b_parcel = desk.state.requests[other].parcel_id
    assert isinstance(a, ParcelShipped) and a.parcel.parcel_id != b_parcel


def test_unhandled_message_is_an_error() -> None:
    desk = Desk()
    with pytest.raises(ValueError, match="does not handle"):
        desk.desk.handle(
            desk.state, FulfilmentAccepted(request_id="r", order_id="O-1", location=LOCATION), "m"
        )


def test_state_survives_json_between_messages() -> None:
    live, stored = Desk(), Desk()
    messages = [
        fulfil(("TEE-M", 2), ("CAP-9", 1)),
        confirm("pick"),
        confirm("pick"),
        confirm("pack"),
        confirm("ship"),
    ]
    for n, message in enumerate(messages):
        stored.state = LocationOrder.model_validate_json(stored.state.model_dump_json())
        assert stored.send(message, f"m-{n}") == live.send(message, f"m-{n}")
    stored.state = LocationOrder.model_validate_json(stored.state.model_dump_json())
    assert stored.state.model_dump() == live.state.model_dump()
    assert stored.send(confirm("ship"), "m-4") == live.send(confirm("ship"), "m-4")


def test_bin_of_is_stable_and_well_formed() -> None:
    assert bin_of("TEE-M") == bin_of("TEE-M")
    for sku in SKUS:
        aisle, bay, level = bin_of(sku).split("-")
        assert aisle[0] == "A" and 1 <= int(aisle[1:]) <= 20
        assert bay[0] == "B" and 1 <= int(bay[1:]) <= 30
        assert level[0] == "L" and 1 <= int(level[1:]) <= 4


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(SKUS), st.integers(1, 9)), min_size=1, max_size=5, unique_by=lambda t: t[0]
    ),
    clicks=st.lists(st.sampled_from(["pick", "pack", "ship"]), max_size=12),
)
def test_only_the_open_task_advances_and_each_event_happens_once(
    lines: list[tuple[str, int]], clicks: list[str]
) -> None:
    desk = Desk()
    desk.send(fulfil(*lines))
    flow = ["pick", "pack", "ship"]
    done = 0
    events: list[type] = []
    for kind in clicks:
        emits = desk.send(confirm(kind))
        if done < 3 and kind == flow[done]:
            done += 1
            assert emits
        else:
            assert emits == []
        events += [type(e.message) for e in emits if not isinstance(e.message, TaskCreated)]
    assert events.count(ItemsPicked) == (done >= 1)
    assert events.count(ParcelShipped) == (done == 3)
    expected_stage = ["picking", "packing", "shipping", "shipped"][done]
    assert desk.state.requests[REQUEST].stage == expected_stage
