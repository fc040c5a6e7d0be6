"""A location's fulfilment: accept, pick, pack and ship as tasks workers confirm; short picks, rejections,
cancellations, and the stores' pickup and reserve flows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.inventory import AdjustStock
from schemas.topics import INVENTORY_COMMANDS, WMS_EVENTS, WMS_TASKS
from schemas.wms import (
    CancelFulfilment,
    ConfirmTask,
    FulfilmentAccepted,
    FulfilmentCancelled,
    FulfilmentRejected,
    HandedOver,
    HandOver,
    ItemsPicked,
    ParcelShipped,
    ReadyForPickup,
    ShortPicked,
    TaskCreated,
    TaskUpdated,
)
from services.wms_node.domain.cartons import CARRIERS
from services.wms_node.domain.work import SiteInfo, SkuData
from tests.unit.wms_support import LOCATION, NodeHarness, created, of_type, one_task

REQUEST = f"O-1/a1/{LOCATION}"
SKUS = ["TEE-M", "MUG-1", "CAP-9", "SOCK-2", "BAG-7"]
STOCKED = {s: 40 for s in SKUS}


def node(**kw: object) -> NodeHarness:
    kw.setdefault("ledger", STOCKED)
    return NodeHarness(**kw)  # type: ignore[arg-type]


def events(emits: list) -> list[type]:  # type: ignore[type-arg]
    return [type(e.message) for e in emits if not isinstance(e.message, TaskCreated | TaskUpdated)]


def run_through(n: NodeHarness, *kinds: str, request: str = REQUEST) -> list:  # type: ignore[type-arg]
    out = []
    for kind in kinds:
        out = n.send(n.confirm(f"{request}/{kind}"))
    return out


def test_fulfil_order_is_accepted_with_a_pick_task() -> None:
    n = node()
    emits = n.send(n.fulfil("O-1", ("TEE-M", 2)))
    assert events(emits) == [FulfilmentAccepted]
    accepted = emits[0]
    assert accepted.topic == WMS_EVENTS.name and accepted.key == "O-1"
    assert accepted.message == FulfilmentAccepted(request_id=REQUEST, order_id="O-1", location=LOCATION)
    pick = one_task(emits)
    task_emit = next(e for e in emits if isinstance(e.message, TaskCreated))
    assert task_emit.topic == WMS_TASKS.name and task_emit.location == LOCATION and task_emit.key == pick.task_id
    assert (pick.kind, pick.task_id, pick.request_id, pick.order_id) == ("pick", f"{REQUEST}/pick", REQUEST, "O-1")
    home = n.stock("TEE-M").home
    assert [(ln.sku, ln.qty, ln.bin, ln.reservation_id) for ln in pick.lines] == [("TEE-M", 2, home, "O-1/a1/0")]
    assert pick.wave_id == f"{LOCATION}-W00001"
    assert n.request("O-1", REQUEST)["stage"] == "picking"


def test_pick_task_lists_lines_in_pick_path_order() -> None:
    n = node()
    pick = one_task(n.send(n.fulfil("O-1", *((s, 1) for s in SKUS))))
    positions = [ln.bin for ln in pick.lines]
    aisles = [int(b[1:3]) for b in positions]
    assert aisles == sorted(aisles)
    for aisle in set(aisles):
        bays = [int(b[5:7]) for b in positions if int(b[1:3]) == aisle]
        assert bays == (sorted(bays) if aisle % 2 else sorted(bays, reverse=True))
    assert sorted(ln.sku for ln in pick.lines) == sorted(SKUS)


def test_pick_pack_ship_in_order() -> None:
    n = node(catalog={"TEE-M": SkuData(200, 900), "MUG-1": SkuData(400, 1500)})
    n.send(n.fulfil("O-1", ("TEE-M", 2), ("MUG-1", 1)))

    emits = n.send(n.confirm(f"{REQUEST}/pick"))
    assert events(emits) == [ItemsPicked]
    picked = of_type(emits, ItemsPicked)[0]
    assert picked.task_id == f"{REQUEST}/pick"
    assert [(ln.sku, ln.qty) for ln in picked.lines] == [("TEE-M", 2), ("MUG-1", 1)]
    pack = one_task(emits)
    assert pack.kind == "pack" and [p.box for p in pack.parcels] == ["S"]
    assert n.request("O-1", REQUEST)["stage"] == "packing"
    assert of_type(emits, TaskUpdated)[0].status == "done"

    emits = n.send(n.confirm(f"{REQUEST}/pack"))
    ship = one_task(emits)
    assert ship.kind == "ship" and events(emits) == []
    assert {ln.bin for ln in ship.lines} == {"D1"}  # baton-post's door

    emits = n.send(n.confirm(f"{REQUEST}/ship"))
    assert events(emits) == [ParcelShipped]
    shipped = of_type(emits, ParcelShipped)[0]
    assert shipped.parcel == pack.parcels[0] and shipped.parcels == pack.parcels
    assert shipped.parcel.weight_g == 2 * 200 + 400 + 150
    assert shipped.carrier == "baton-post" and shipped.dock_door == "D1"
    assert shipped.tracking.startswith("BT") and shipped.tracking.endswith("WH-")
    assert [(ln.sku, ln.qty, ln.reservation_id) for ln in shipped.lines] == [
        ("TEE-M", 2, "O-1/a1/0"), ("MUG-1", 1, "O-1/a1/1")]
    assert n.request("O-1", REQUEST)["stage"] == "shipped"
    assert n.stock("TEE-M").on_hand == 38 and n.stock("TEE-M").allocated == {}


def test_a_heavy_order_ships_in_several_cartons_with_a_heavier_carrier() -> None:
    n = node(catalog={"TEE-M": SkuData(weight_g=3000, volume_cm3=20_000)})
    n.send(n.fulfil("O-1", ("TEE-M", 5)))
    shipped = of_type(run_through(n, "pick", "pack", "ship"), ParcelShipped)[0]
    assert len(shipped.parcels) == 3 and {p.box for p in shipped.parcels} <= {"M", "L"}
    assert len({p.parcel_id for p in shipped.parcels}) == 3
    assert shipped.carrier == CARRIERS[1].name and shipped.dock_door == "D2"


@pytest.mark.parametrize("kind", ["pack", "ship"])
def test_confirming_a_task_that_does_not_exist_yet_has_no_effect(kind: str) -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 1)))
    before = dict(n.table)
    confirm = ConfirmTask(task_id=f"{REQUEST}/{kind}", order_id="O-1", request_id=REQUEST, location=LOCATION)
    assert n.send(confirm) == []
    assert n.table == before


def test_confirming_a_done_task_again_is_refused_and_changes_nothing() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 1)))
    n.send(n.confirm(f"{REQUEST}/pick"))
    again = n.send(n.confirm(f"{REQUEST}/pick"))  # a new message id: a second worker's click
    assert events(again) == []
    assert [(u.status, u.refused) for u in of_type(again, TaskUpdated)] == [("done", "task is done")]
    assert n.request("O-1", REQUEST)["open_task"] == f"{REQUEST}/pack"
    run_through(n, "pack", "ship")
    assert events(n.send(n.confirm(f"{REQUEST}/ship"))) == []
    assert n.request("O-1", REQUEST)["stage"] == "shipped"


def test_a_repeated_message_id_acts_once_and_sends_nothing_again() -> None:
    """What the first delivery sent was committed with the entity that recorded its id (one transaction)."""
    n = node()
    assert n.send(n.fulfil("O-1", ("TEE-M", 1)), "f-1")
    assert n.send(n.fulfil("O-1", ("TEE-M", 1)), "f-1") == []
    assert n.send(n.confirm(f"{REQUEST}/pick"), "c-1")
    before = dict(n.table)
    assert n.send(n.confirm(f"{REQUEST}/pick"), "c-1") == []
    assert n.table == before
    assert n.request("O-1", REQUEST)["open_task"] == f"{REQUEST}/pack"


def test_same_request_under_a_new_message_id_is_not_accepted_twice() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 1)), "f-1")
    n.send(n.confirm(f"{REQUEST}/pick"))
    assert n.send(n.fulfil("O-1", ("TEE-M", 1)), "f-2") == []
    assert n.request("O-1", REQUEST)["stage"] == "packing"


def test_two_requests_of_one_order_progress_independently() -> None:
    n = node()
    other = f"O-1/a2/{LOCATION}"
    n.send(n.fulfil("O-1", ("TEE-M", 1)))
    n.send(n.fulfil("O-1", ("MUG-1", 1), request_id=other))
    run_through(n, "pick", request=other)
    assert n.request("O-1", REQUEST)["stage"] == "picking"
    assert n.request("O-1", other)["stage"] == "packing"
    b = of_type(run_through(n, "pack", "ship", request=other), ParcelShipped)[0]
    a = of_type(run_through(n, "pick", "pack", "ship"), ParcelShipped)[0]
    assert a.parcel.parcel_id != b.parcel.parcel_id and a.tracking != b.tracking


def test_unhandled_message_is_an_error() -> None:
    n = node()
    with pytest.raises(ValueError, match="does not handle"):
        n.send(FulfilmentAccepted(request_id="r", order_id="O-1", location=LOCATION))


# ---------------------------------------------------------------- short picks


def test_a_short_pick_is_reported_at_once_and_the_rest_ships() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 3), ("MUG-1", 1)))
    emits = n.send(n.confirm(f"{REQUEST}/pick", missing={"TEE-M": 2}))
    assert events(emits) == [ShortPicked, AdjustStock, ItemsPicked]
    short = of_type(emits, ShortPicked)[0]
    assert [(ln.sku, ln.missing, ln.reservation_id) for ln in short.lines] == [("TEE-M", 2, "O-1/a1/0")]
    adjust_emit = next(e for e in emits if isinstance(e.message, AdjustStock))
    assert adjust_emit.topic == INVENTORY_COMMANDS.name and adjust_emit.key == "TEE-M"
    adjust = adjust_emit.message
    assert (adjust.delta, adjust.reason, adjust.location) == (-2, "short_pick", LOCATION)
    assert n.stock("TEE-M").on_hand == 40 - 3  # the bin is corrected: 1 picked, 2 not there
    shipped = of_type(run_through(n, "pack", "ship"), ParcelShipped)[0]
    assert [(ln.sku, ln.qty) for ln in shipped.lines] == [("TEE-M", 1), ("MUG-1", 1)]


def test_a_pick_with_nothing_found_ends_the_request_without_a_parcel() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 2)))
    emits = n.send(n.confirm(f"{REQUEST}/pick", missing={"TEE-M": 2}))
    assert events(emits) == [ShortPicked, AdjustStock]
    assert created(emits) == []
    assert n.request("O-1", REQUEST)["stage"] == "short"


def test_a_pick_the_bins_cannot_cover_is_still_asked_at_the_home_bin() -> None:
    n = node(ledger={"TEE-M": 1})
    pick = one_task(n.send(n.fulfil("O-1", ("TEE-M", 3))))
    assert [(ln.bin, ln.qty) for ln in pick.lines] == [(n.stock("TEE-M").home, 3)]


# ---------------------------------------------------------------- accept or reject


@pytest.mark.parametrize(
    ("info", "reject_all", "mode", "reason"),
    [
        (SiteInfo(open=False), False, "ship", "WH-PAR is closed"),
        (SiteInfo(capabilities=("ship",)), False, "pickup", "WH-PAR does not offer pickup"),
        (None, True, "ship", "rejected by the staff of WH-PAR"),
    ],
)
def test_requests_are_rejected_with_a_reason(info: SiteInfo | None, reject_all: bool, mode: str, reason: str) -> None:
    n = node(info=info, reject_all=reject_all)
    emits = n.send(n.fulfil("O-1", ("TEE-M", 1), mode=mode))
    assert events(emits) == [FulfilmentRejected] and created(emits) == []
    assert of_type(emits, FulfilmentRejected)[0].reason == reason
    assert n.request("O-1", REQUEST)["stage"] == "rejected"


def test_a_location_over_its_daily_capacity_rejects_until_the_next_day() -> None:
    n = node(info=SiteInfo(daily_capacity=2))
    for k in range(2):
        assert events(n.send(n.fulfil(f"O-{k}", ("TEE-M", 1)))) == [FulfilmentAccepted]
    rejected = of_type(n.send(n.fulfil("O-9", ("TEE-M", 1))), FulfilmentRejected)
    assert rejected and "capacity" in rejected[0].reason
    n.advance(24 * 3600)
    assert events(n.send(n.fulfil("O-10", ("TEE-M", 1)))) == [FulfilmentAccepted]


# ---------------------------------------------------------------- cancel


def test_cancel_before_picking_withdraws_the_pick_and_frees_the_units() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 2)))
    assert n.stock("TEE-M").allocated
    emits = n.send(CancelFulfilment(request_id=REQUEST, order_id="O-1", location=LOCATION))
    assert events(emits) == [FulfilmentCancelled]
    assert [(u.task_id, u.status) for u in of_type(emits, TaskUpdated)] == [(f"{REQUEST}/pick", "cancelled")]
    assert n.stock("TEE-M").allocated == {}
    late = n.send(n.confirm(f"{REQUEST}/pick"))
    assert events(late) == [] and of_type(late, TaskUpdated)[0].refused == "task is cancelled"


def test_cancel_after_picking_puts_the_units_back() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 2)))
    n.send(n.confirm(f"{REQUEST}/pick"))
    assert n.stock("TEE-M").on_hand == 38
    emits = n.send(CancelFulfilment(request_id=REQUEST, order_id="O-1", location=LOCATION))
    assert events(emits) == [FulfilmentCancelled]
    restock = one_task(emits)
    assert restock.kind == "put_away" and sum(ln.qty for ln in restock.lines) == 2
    n.send(n.confirm(restock.task_id))
    assert n.stock("TEE-M").on_hand == 40 and n.stock("TEE-M").incoming == {}


def test_cancel_after_shipping_is_ignored() -> None:
    n = node()
    n.send(n.fulfil("O-1", ("TEE-M", 1)))
    run_through(n, "pick", "pack", "ship")
    assert n.send(CancelFulfilment(request_id=REQUEST, order_id="O-1", location=LOCATION)) == []
    assert n.request("O-1", REQUEST)["stage"] == "shipped"


def test_a_cancel_that_overtakes_its_request_keeps_the_request_out() -> None:
    n = node()
    assert events(n.send(CancelFulfilment(request_id=REQUEST, order_id="O-1", location=LOCATION))) == [
        FulfilmentCancelled]
    assert n.send(n.fulfil("O-1", ("TEE-M", 1))) == []


def test_a_request_cancelled_while_waiting_for_its_wave_never_gets_a_task() -> None:
    n = node(waves=None)
    n.send(n.fulfil("O-1", ("TEE-M", 1)))
    n.send(CancelFulfilment(request_id=REQUEST, order_id="O-1", location=LOCATION))
    assert n.site().pending == []


# ---------------------------------------------------------------- stores: BOPIS and ROPIS


@pytest.mark.parametrize("mode", ["pickup", "reserve"])
def test_a_pickup_order_is_prepared_then_handed_over(mode: str) -> None:
    n = node(location="ST-LYO", info=SiteInfo(kind="store", capabilities=("ship", "pickup", "reserve")), layout=None)
    rid = "O-1/a1/ST-LYO"
    n.send(n.fulfil("O-1", ("TEE-M", 1), mode=mode))
    emits = run_through(n, "pick", request=rid)
    prepare = one_task(emits)
    assert prepare.kind == "prepare_pickup" and prepare.lines[0].bin == "PU-01"
    emits = run_through(n, "prepare_pickup", request=rid)
    assert events(emits) == [ReadyForPickup]
    assert n.request("O-1", rid)["stage"] == "ready"
    emits = n.send(HandOver(order_id="O-1", location="ST-LYO"))
    assert events(emits) == [HandedOver]
    assert of_type(emits, HandedOver)[0].lines[0].qty == 1
    assert n.request("O-1", rid)["stage"] == "handed_over"
    assert n.entity("bins")["shelves"] == {}  # type: ignore[index]


def test_a_customer_early_at_the_counter_gets_the_order_as_soon_as_it_is_ready() -> None:
    n = node(location="ST-LYO", info=SiteInfo(kind="store", capabilities=("pickup",)), layout=None)
    rid = "O-1/a1/ST-LYO"
    n.send(n.fulfil("O-1", ("TEE-M", 1), mode="pickup"))
    assert n.send(HandOver(order_id="O-1", location="ST-LYO")) == []
    run_through(n, "pick", request=rid)
    assert events(run_through(n, "prepare_pickup", request=rid)) == [ReadyForPickup, HandedOver]


def test_an_uncollected_hold_is_withdrawn_and_restocked() -> None:
    n = node(location="ST-LYO", info=SiteInfo(kind="store", capabilities=("reserve",)), layout=None)
    rid = "O-1/a1/ST-LYO"
    n.send(n.fulfil("O-1", ("TEE-M", 2), mode="reserve"))
    run_through(n, "pick", "prepare_pickup", request=rid)
    emits = n.send(CancelFulfilment(request_id=rid, order_id="O-1", location="ST-LYO", reason="not collected"))
    assert events(emits) == [FulfilmentCancelled]
    n.send(n.confirm(one_task(emits).task_id))
    assert n.stock("TEE-M").on_hand == 40 and n.entity("bins")["shelves"] == {}  # type: ignore[index]


# ---------------------------------------------------------------- properties


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
    n = node()
    n.send(n.fulfil("O-1", *lines))
    flow = ["pick", "pack", "ship"]
    done = 0
    seen: list[type] = []
    for kind in clicks:
        if kind not in [t.rsplit("/", 1)[-1] for t in _tasks(n)]:
            continue
        emits = n.send(n.confirm(f"{REQUEST}/{kind}"))
        if done < 3 and kind == flow[done]:
            done += 1
            assert events(emits) or created(emits)
        else:
            assert events(emits) == []
        seen += events(emits)
    assert seen.count(ItemsPicked) == (done >= 1)
    assert seen.count(ParcelShipped) == (done == 3)
    assert n.request("O-1", REQUEST)["stage"] == ["picking", "packing", "shipping", "shipped"][done]
    assert n.stock(lines[0][0]).on_hand == 40 - (lines[0][1] if done else 0)


def _tasks(n: NodeHarness) -> list[str]:
    return [k.split(":", 1)[1] for k in n.table if k.startswith("task:")]
