"""The WMS node's pure parts: layout and pick path, put-away, pick allocation, waves, cartonization, claims,
slotting, receiving, cycle counts, the auto-workers and the commands built for workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.inventory import AdjustStock, ReceiveStock
from schemas.topics import INVENTORY_COMMANDS, WMS_EVENTS
from schemas.wms import (
    ClaimTask,
    CountedLine,
    ExpectedLine,
    GoodsReceived,
    NodeTick,
    ReleaseTask,
    RequestCount,
    SupplyArrived,
    TaskCreated,
    TaskLine,
    TaskUpdated,
)
from services.wms_node.commands import confirm_command, parse_pairs, short_lines
from services.wms_node.config import node_config
from services.wms_node.domain import claims
from services.wms_node.domain.cartons import BOXES, FILL, carrier_for, cartonize
from services.wms_node.domain.layout import OVERFLOW, STORE_LAYOUT, Layout, LayoutSpec, default_spec
from services.wms_node.domain.model import BinMap, Pending, SkuStock, Task, WaveRules
from services.wms_node.domain.slotting import propose
from services.wms_node.domain.stock import allocate_pick, plan_put_away
from services.wms_node.domain.waves import due_wave, next_due_at, waves_due
from services.wms_node.domain.work import NodeConfig
from services.wms_node.domain.workers import AutoWorker, behaviour_for
from services.wms_node.janitor import Janitor
from services.wms_node.views import ViewWriter
from tests.unit.wms_support import LOCATION, SMALL, T0, NodeHarness, created, of_type, one_task

LAYOUT = Layout(SMALL)

# ---------------------------------------------------------------- layout and pick path


def test_default_layouts_per_kind() -> None:
    warehouse, store = Layout(default_spec("warehouse")), Layout(default_spec("store"))
    assert len(warehouse.storage_by_distance) == 10 * 12 * 3
    assert len(store.storage_by_distance) == 3 * 6 * 2 and default_spec("store") == STORE_LAYOUT
    assert len(store.zone_bins("pickup")) == 24 and warehouse.zone_bins("pickup") == []
    assert {b.zone for b in warehouse.zone_bins("fast")} == {"fast"}
    assert all(b.aisle <= 2 for b in warehouse.zone_bins("fast"))


def test_bins_nearest_the_dock_come_first() -> None:
    nearest = LAYOUT.storage_by_distance[:3]
    assert [b.id for b in nearest] == ["A01-B01-L2", "A01-B01-L1", "A01-B02-L2"]
    distances = [b.distance_m for b in LAYOUT.storage_by_distance]
    assert distances == sorted(distances)
    assert LAYOUT.distance("A03-B02-L1") == pytest.approx(2 * 3.0 + 2 * 1.2)


def test_pick_path_snakes_up_odd_aisles_and_down_even_ones() -> None:
    bins = ["A02-B05-L1", "A01-B03-L1", "A02-B01-L2", "A01-B01-L1", "A03-B02-L1", "Q-01", "A02-B03-L1"]
    assert LAYOUT.pick_path(bins) == [
        "A01-B01-L1", "A01-B03-L1", "A02-B05-L1", "A02-B03-L1", "A02-B01-L2", "A03-B02-L1", "Q-01"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([b.id for b in LAYOUT.storage_by_distance]), min_size=1, max_size=12, unique=True))
def test_a_pick_path_never_walks_back_up_an_aisle(bins: list[str]) -> None:
    path = LAYOUT.pick_path(bins)
    aisles = [LAYOUT.by_id[b].aisle for b in path]
    assert aisles == sorted(aisles)
    for aisle in set(aisles):
        bays = [LAYOUT.by_id[b].bay for b in path if LAYOUT.by_id[b].aisle == aisle]
        assert bays == sorted(bays, reverse=aisle % 2 == 0)
    assert LAYOUT.route_m(path) >= 2 * max(LAYOUT.distance(b) for b in path) - 1e-9


# ---------------------------------------------------------------- put-away and pick allocation


def test_a_new_sku_gets_the_nearest_free_bulk_bin_as_its_home() -> None:
    owners = BinMap(owner={"A02-B01-L2": "OTHER"})
    stock = SkuStock(sku="TEE")
    plan = plan_put_away(stock, 10, owners, LAYOUT)
    assert plan == [("A02-B01-L1", 10)] and stock.home == "A02-B01-L1"
    assert owners.owner["A02-B01-L1"] == "TEE"


def test_put_away_fills_the_home_then_the_nearest_free_bins_of_its_zone() -> None:
    owners = BinMap()
    stock = SkuStock(sku="TEE")
    plan_put_away(stock, 0, owners, LAYOUT)
    stock.bins = {stock.home: 45}  # type: ignore[dict-item]
    plan = plan_put_away(stock, 60, owners, LAYOUT)
    assert plan == [("A02-B01-L2", 5), ("A02-B01-L1", 50), ("A02-B02-L2", 5)]
    assert all(LAYOUT.by_id[b].zone == "bulk" for b, _ in plan)
    assert {b for b, _ in plan} <= {b for b, s in owners.owner.items() if s == "TEE"}


def test_put_away_goes_to_overflow_when_no_bin_is_free() -> None:
    owners = BinMap(owner={b.id: "X" for b in LAYOUT.storage_by_distance})
    stock = SkuStock(sku="TEE")
    assert plan_put_away(stock, 7, owners, LAYOUT) == [(OVERFLOW, 7)]


def test_a_fast_mover_with_a_fast_home_spills_into_the_fast_zone_first() -> None:
    owners = BinMap()
    stock = SkuStock(sku="HOT", home="A01-B01-L2", bins={"A01-B01-L2": 50})
    owners.owner["A01-B01-L2"] = "HOT"
    plan = plan_put_away(stock, 10, owners, LAYOUT)
    assert plan == [("A01-B01-L1", 10)] and LAYOUT.by_id["A01-B01-L1"].zone == "fast"


def test_picks_take_from_the_home_first_then_the_nearest_bins_minus_open_allocations() -> None:
    owners = BinMap()
    stock = SkuStock(sku="TEE", home="A03-B01-L1", bins={"A03-B01-L1": 3, "A02-B04-L1": 5, "A04-B01-L1": 9})
    assert allocate_pick(stock, 2, owners, LAYOUT) == [("A03-B01-L1", 2)]
    assert allocate_pick(stock, 4, owners, LAYOUT) == [("A03-B01-L1", 1), ("A02-B04-L1", 3)]
    assert stock.allocated == {"A03-B01-L1": 3, "A02-B04-L1": 3}
    assert allocate_pick(stock, 20, owners, LAYOUT) == [("A02-B04-L1", 2), ("A04-B01-L1", 9), ("A03-B01-L1", 9)]


# ---------------------------------------------------------------- waves


def pending(n: int, spacing_s: float = 0.1) -> list[Pending]:
    return [Pending(order_id=f"O-{k}", request_id=f"O-{k}/r", at=T0 + timedelta(seconds=k * spacing_s), units=1)
            for k in range(n)]


def test_a_wave_is_released_when_full() -> None:
    rules = WaveRules(max_orders=3, max_wait_s=60)
    assert due_wave(pending(2), rules, T0) == []
    assert [p.order_id for p in due_wave(pending(4), rules, T0)] == ["O-0", "O-1", "O-2"]


def test_a_wave_is_released_at_its_cut_off_even_when_not_full() -> None:
    rules = WaveRules(max_orders=10, max_wait_s=2)
    waiting = pending(3)
    assert due_wave(waiting, rules, T0 + timedelta(seconds=1.9)) == []
    assert len(due_wave(waiting, rules, T0 + timedelta(seconds=2))) == 3
    assert next_due_at(waiting, rules) == T0 + timedelta(seconds=2) and next_due_at([], rules) is None


def test_a_backlog_is_released_as_several_full_waves() -> None:
    waves = waves_due(pending(7), WaveRules(max_orders=3, max_wait_s=60), T0)
    assert [len(w) for w in waves] == [3, 3]


def test_the_node_holds_requests_until_the_wave_is_due_then_releases_them_together() -> None:
    n = NodeHarness(waves=WaveRules(max_orders=3, max_wait_s=5), ledger={"TEE": 50, "MUG": 50})
    assert created(n.send(n.fulfil("O-1", ("TEE", 1)))) == []
    n.advance(1)
    assert created(n.send(n.fulfil("O-2", ("MUG", 1)))) == []
    assert created(n.send(NodeTick(location=LOCATION))) == []  # not due yet: a tick changes nothing
    n.advance(4)
    emits = n.send(NodeTick(location=LOCATION), "tick-1")
    tasks = created(emits)
    assert sorted(t.order_id for t in tasks) == ["O-1", "O-2"]
    # released by the timer, but caused by the requests: each task belongs to its order's story
    assert sorted(e.causationid or "" for e in emits if isinstance(e.message, TaskCreated)) == ["m-1", "m-2"]
    assert {t.wave_id for t in tasks} == {f"{LOCATION}-W00001"}
    for k in range(3, 6):
        emits = n.send(n.fulfil(f"O-{k}", ("TEE", 1)))
    assert len(created(emits)) == 3 and {t.wave_id for t in created(emits)} == {f"{LOCATION}-W00002"}


# ---------------------------------------------------------------- cartonization


def test_small_items_go_into_the_smallest_box() -> None:
    [carton] = cartonize([("TEE", 2, 200, 900)])
    assert carton.box.name == "S" and carton.weight_g == 400 + carton.box.tare_g


def test_volume_decides_the_box_and_splits_the_order() -> None:
    [carton] = cartonize([("MUG", 6, 400, 1500)])
    assert carton.box.name == "M"  # 9 000 cm3: more than S holds at its fill level
    cartons = cartonize([("BOX", 5, 1000, 20_000)])
    assert len(cartons) == 3 and all(c.volume_cm3 <= c.box.volume_cm3 * FILL for c in cartons)


def test_weight_splits_an_order_of_small_heavy_items() -> None:
    cartons = cartonize([("PLATE", 30, 1000, 500)])
    assert len(cartons) == 2 and all(c.content_g <= c.box.max_weight_g for c in cartons)


def test_a_unit_too_large_for_every_box_ships_alone() -> None:
    cartons = cartonize([("SOFA", 1, 40_000, 500_000), ("TEE", 1, 200, 900)])
    assert sorted(c.box.name for c in cartons) == ["S", "XL"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(1, 8), st.integers(1, 9000),
                          st.integers(1, 40_000)), min_size=1, max_size=4, unique_by=lambda t: t[0]))
def test_cartons_hold_every_unit_once_within_their_limits(items: list[tuple[str, int, int, int]]) -> None:
    cartons = cartonize(items)
    packed: dict[str, int] = {}
    for carton in cartons:
        for sku, qty in carton.skus().items():
            packed[sku] = packed.get(sku, 0) + qty
        if carton.box.name != "XL":
            assert carton.volume_cm3 <= carton.box.volume_cm3 * FILL
            assert carton.content_g <= carton.box.max_weight_g
            smaller = [b for b in BOXES if b.volume_cm3 < carton.box.volume_cm3]
            assert not any(carton.volume_cm3 <= b.volume_cm3 * FILL and carton.content_g <= b.max_weight_g
                           for b in smaller)
    assert packed == {sku: qty for sku, qty, _, _ in items}


def test_carriers_by_weight() -> None:
    assert carrier_for(1500, 1).name == "baton-post"
    assert carrier_for(12_000, 2).name == "baton-express"
    assert carrier_for(80_000, 3).name == "baton-freight"
    assert carrier_for(5_000, 4).name == "baton-freight"


# ---------------------------------------------------------------- claims


def open_task() -> Task:
    return Task(task_id="T-1", kind="pick", subject="O-1", request_id="r", lines=[TaskLine(sku="TEE", qty=1)])


def test_a_claim_blocks_other_workers_until_it_lapses() -> None:
    task = open_task()
    assert claims.claim(task, "ann", T0, 60, "c1") is None
    assert task.status == "claimed" and task.worker == "ann"
    assert claims.claim(task, "bob", T0 + timedelta(seconds=30), 60, "c2") == "claimed by ann until 09:01:00"
    assert claims.refuse_confirm(task, "bob", T0 + timedelta(seconds=30)) is not None
    assert claims.refuse_confirm(task, "ann", T0 + timedelta(seconds=30)) is None
    assert claims.claim(task, "bob", T0 + timedelta(seconds=61), 60, "c3") is None  # ann's claim lapsed
    assert task.worker == "bob"


def test_the_holder_can_extend_and_release_but_nobody_else_can_release() -> None:
    task = open_task()
    claims.claim(task, "ann", T0, 60, "c1")
    assert claims.claim(task, "ann", T0 + timedelta(seconds=50), 60, "c2") is None
    assert task.claimed_until == T0 + timedelta(seconds=110)
    assert claims.release(task, "bob", T0) == "claimed by ann, not by bob"
    assert claims.release(task, "ann", T0) is None and task.status == "open"
    assert claims.release(task, "ann", T0) == "task is open, not claimed"


def test_a_lapse_only_frees_an_expired_claim_and_done_tasks_stay_done() -> None:
    task = open_task()
    claims.claim(task, "ann", T0, 60, "c1")
    assert not claims.lapse(task, T0 + timedelta(seconds=59))
    assert claims.lapse(task, T0 + timedelta(seconds=60)) and task.status == "open"
    task.status = "done"
    assert claims.claim(task, "bob", T0, 60, "c4") == "task is done"
    assert claims.refuse_confirm(task, "bob", T0) == "task is done"


def test_claims_through_the_node_and_the_timer_making_a_lapse_official() -> None:
    n = NodeHarness(ledger={"TEE": 10})
    pick = one_task(n.send(n.fulfil("O-1", ("TEE", 1))))
    claim = of_type(n.send(ClaimTask(task_id=pick.task_id, order_id="O-1", location=LOCATION, worker="ann",
                                     ttl_s=30)), TaskUpdated)[0]
    assert (claim.status, claim.worker, claim.refused) == ("claimed", "ann", None)
    assert n.site().claims == {pick.task_id: T0 + timedelta(seconds=30)}
    refused = of_type(n.send(ClaimTask(task_id=pick.task_id, order_id="O-1", location=LOCATION, worker="bob")),
                      TaskUpdated)[0]
    assert refused.refused and refused.status == "claimed" and refused.command_id == f"m-{n.n}"
    blocked = n.send(n.confirm(pick.task_id, worker="bob"))
    assert [type(e.message) for e in blocked] == [TaskUpdated] and n.task(pick.task_id).status == "claimed"
    n.advance(31)
    lapsed = of_type(n.send(NodeTick(location=LOCATION)), TaskUpdated)
    assert [(u.task_id, u.status) for u in lapsed] == [(pick.task_id, "open")] and n.site().claims == {}
    assert n.task(pick.task_id).status == "open"
    released = n.send(ReleaseTask(task_id=pick.task_id, order_id="O-1", location=LOCATION, worker="ann"))
    assert of_type(released, TaskUpdated)[0].refused == "task is open, not claimed"
    assert len(created(n.send(n.confirm(pick.task_id, worker="bob")))) == 1


def test_a_claim_of_an_unknown_task_changes_nothing() -> None:
    n = NodeHarness()
    assert n.send(ClaimTask(task_id="nope", order_id="O-1", location=LOCATION, worker="ann")) == []
    assert n.table == {}


# ---------------------------------------------------------------- receiving


def arrive(n: NodeHarness, *lines: tuple[str, int], supply_id: str = "ASN-1") -> TaskCreated:
    delivery = SupplyArrived(supply_id=supply_id, location=LOCATION,
                             lines=[ExpectedLine(sku=s, qty=q) for s, q in lines])
    return one_task(n.send(delivery))


def test_a_short_and_damaged_delivery_is_put_away_then_received() -> None:
    n = NodeHarness(ledger={"TEE": 5})
    receive = arrive(n, ("TEE", 20), ("MUG", 4))
    assert receive.kind == "receive" and [(ln.sku, ln.qty, ln.bin) for ln in receive.lines] == [
        ("TEE", 20, "DOCK-IN"), ("MUG", 4, "DOCK-IN")]
    counted = [CountedLine(sku="TEE", qty=17, damaged=2)]
    emits = n.send(n.confirm(receive.task_id, counted=counted))
    assert of_type(emits, ReceiveStock) == [] and of_type(emits, GoodsReceived) == []  # not before put-away
    put_away = one_task(emits)
    assert put_away.kind == "put_away"
    assert sorted((ln.sku, ln.qty) for ln in put_away.lines if not ln.bin.startswith("Q-")) == [("MUG", 4), ("TEE", 15)]
    assert [(ln.sku, ln.qty) for ln in put_away.lines if ln.bin.startswith("Q-")] == [("TEE", 2)]
    assert n.stock("TEE").on_hand == 5 and sum(n.stock("TEE").incoming.values()) == 15

    emits = n.send(n.confirm(put_away.task_id))
    receipts = {r.sku: r for r in of_type(emits, ReceiveStock)}
    assert (receipts["TEE"].qty, receipts["TEE"].damaged, receipts["TEE"].supply_id) == (15, 2, "ASN-1")
    assert (receipts["MUG"].qty, receipts["MUG"].damaged) == (4, 0)
    assert {e.topic for e in emits if isinstance(e.message, ReceiveStock)} == {INVENTORY_COMMANDS.name}
    [goods] = of_type(emits, GoodsReceived)
    assert [(ln.sku, ln.expected, ln.received, ln.damaged) for ln in goods.lines] == [
        ("MUG", 4, 4, 0), ("TEE", 20, 17, 2)]
    assert next(e for e in emits if isinstance(e.message, GoodsReceived)).topic == WMS_EVENTS.name
    assert n.stock("TEE").on_hand == 20 and n.stock("TEE").damaged == {"Q-01": 2} and n.stock("TEE").incoming == {}


def test_an_over_delivery_and_a_line_not_delivered_at_all() -> None:
    n = NodeHarness()
    receive = arrive(n, ("TEE", 5), ("MUG", 3))
    counted = [CountedLine(sku="TEE", qty=7), CountedLine(sku="MUG", qty=0)]
    put_away = one_task(n.send(n.confirm(receive.task_id, counted=counted)))
    emits = n.send(n.confirm(put_away.task_id))
    goods = of_type(emits, GoodsReceived)[0]
    assert [(ln.sku, ln.expected, ln.received) for ln in goods.lines] == [("MUG", 3, 0), ("TEE", 5, 7)]
    assert {r.sku: r.qty for r in of_type(emits, ReceiveStock)} == {"MUG": 0, "TEE": 7}


def test_a_delivery_arriving_twice_is_received_once() -> None:
    n = NodeHarness()
    arrive(n, ("TEE", 5))
    again = SupplyArrived(supply_id="ASN-1", location=LOCATION, lines=[ExpectedLine(sku="TEE", qty=5)])
    assert n.send(again) == []


# ---------------------------------------------------------------- cycle counts


def test_a_cycle_count_sets_the_bin_and_adjusts_the_ledger_by_the_difference() -> None:
    n = NodeHarness(ledger={"TEE": 30, "MUG": 8})
    n.send(n.fulfil("O-1", ("TEE", 1), ("MUG", 1)))  # the node meets both SKUs
    count = one_task(n.send(RequestCount(count_id="C-1", location=LOCATION, skus=["TEE", "MUG"])))
    assert count.kind == "count" and sorted((ln.sku, ln.qty) for ln in count.lines) == [("MUG", 8), ("TEE", 30)]
    emits = n.send(n.confirm(count.task_id, counted=[CountedLine(sku="TEE", qty=27)]))
    [adjust] = of_type(emits, AdjustStock)
    assert (adjust.sku, adjust.delta, adjust.reason) == ("TEE", -3, "cycle_count")
    assert n.stock("TEE").on_hand == 27 and n.stock("MUG").on_hand == 8


def test_a_count_of_a_bin_finds_its_sku() -> None:
    n = NodeHarness(ledger={"TEE": 12})
    n.send(n.fulfil("O-1", ("TEE", 1)))
    home = n.stock("TEE").home
    assert home is not None
    count = one_task(n.send(RequestCount(count_id="C-2", location=LOCATION, bins=[home])))
    emits = n.send(n.confirm(count.task_id, counted=[CountedLine(sku="TEE", qty=14, bin=home)]))
    assert [a.delta for a in of_type(emits, AdjustStock)] == [2]


# ---------------------------------------------------------------- slotting


def test_slotting_proposes_the_nearest_bins_for_the_fast_movers() -> None:
    far = [b.id for b in reversed(LAYOUT.storage_by_distance)]
    stocks = [SkuStock(sku="HOT", home=far[0], picks=50), SkuStock(sku="WARM", home=far[1], picks=10),
              SkuStock(sku="COLD", home=LAYOUT.storage_by_distance[0].id, picks=0)]
    proposal = propose(stocks, LAYOUT)
    moves = {m.sku: m for m in proposal.moves}
    assert moves["HOT"].to_bin == LAYOUT.storage_by_distance[0].id  # takes COLD's bin, the nearest
    assert moves["WARM"].to_bin == LAYOUT.storage_by_distance[1].id
    assert moves["COLD"].to_bin == far[0]  # displaced to the back: HOT's old bin
    assert proposal.saved_m > 0 and proposal.saved_m == round(moves["HOT"].saved_m + moves["WARM"].saved_m, 1)
    assert 0 < proposal.saved_pct <= 100


def test_slotting_moves_nothing_when_the_fast_movers_are_already_nearest() -> None:
    near = LAYOUT.storage_by_distance
    stocks = [SkuStock(sku="HOT", home=near[0].id, picks=50), SkuStock(sku="WARM", home=near[1].id, picks=10)]
    proposal = propose(stocks, LAYOUT)
    assert proposal.moves == [] and proposal.saved_m == 0


def test_the_node_counts_demand_per_sku_for_slotting() -> None:
    n = NodeHarness(ledger={"TEE": 50, "MUG": 50})
    for k in range(3):
        n.send(n.fulfil(f"O-{k}", ("TEE", 1)))
        n.send(n.confirm(f"O-{k}/a1/{LOCATION}/pick"))
    assert (n.stock("TEE").picks, n.stock("TEE").units_picked) == (3, 3)


# ---------------------------------------------------------------- auto-workers, commands, config


def pick_created(*lines: tuple[str, int, str]) -> TaskCreated:
    return TaskCreated(task_id="O-1/r/pick", kind="pick", order_id="O-1", request_id="O-1/r", location=LOCATION,
                       lines=[TaskLine(sku=s, qty=q, bin=f"A0{k + 1}-B01-L1", reservation_id=r)
                              for k, (s, q, r) in enumerate(lines)])


def test_the_auto_worker_short_picks_once_per_sku() -> None:
    behaviour = behaviour_for(LOCATION, '[{"location": "WH-PAR", "short_pick": [{"sku": "TEE", "qty": 2}]}]')
    worker = AutoWorker(LOCATION, behaviour)
    first = worker.confirm(pick_created(("TEE", 1, "r0"), ("MUG", 1, "r1"), ("TEE", 3, "r2")))
    assert [(m.sku, m.missing, m.reservation_id) for m in first.missing] == [("TEE", 2, "r2")]
    assert worker.confirm(pick_created(("TEE", 3, "r0"))).missing == []


def test_the_auto_worker_counts_short_and_damaged_deliveries() -> None:
    raw = '[{"location": "WH-PAR", "short_receive": [{"sku": "TEE", "qty": 3}], "damaged": [{"sku": "TEE", "qty": 1}]}]'
    worker = AutoWorker(LOCATION, behaviour_for(LOCATION, raw))
    receive = TaskCreated(task_id="ASN/receive", kind="receive", order_id="ASN", request_id="ASN", location=LOCATION,
                          lines=[TaskLine(sku="TEE", qty=10), TaskLine(sku="MUG", qty=4)])
    assert worker.confirm(receive).counted == [CountedLine(sku="TEE", qty=7, damaged=1)]


def test_worker_behaviour_for_other_locations_and_bad_input() -> None:
    assert behaviour_for("ST-1", '[{"location": "WH-PAR", "reject_all": true}]').reject_all is False
    assert behaviour_for(LOCATION, '[{"location": "WH-PAR", "reject_all": true}]').reject_all is True
    assert behaviour_for(LOCATION, None).short_pick == []
    with pytest.raises(ValueError, match="BATON_WORKERS"):
        behaviour_for(LOCATION, '{"location": "WH-PAR"}')


def test_a_person_names_missing_units_by_sku_and_the_command_finds_the_reservations() -> None:
    task = {"task_id": "T", "subject": "O-1", "request_id": "r",
            "lines": [{"sku": "TEE", "qty": 2, "reservation_id": "a"}, {"sku": "TEE", "qty": 1, "reservation_id": "b"}]}
    assert [(s.missing, s.reservation_id) for s in short_lines(task, {"TEE": 2})] == [(1, "a"), (1, "b")]
    with pytest.raises(ValueError, match="more missing"):
        short_lines(task, {"TEE": 4})
    with pytest.raises(ValueError, match="not on this task"):
        confirm_command(task, LOCATION, "ann", missing={"MUG": 1})
    assert parse_pairs(["TEE=2", "MUG@A01-B01-L1=0"], "x") == [("TEE", "", 2), ("MUG", "A01-B01-L1", 0)]
    with pytest.raises(ValueError):
        parse_pairs(["TEE"], "--missing")


def test_node_config_from_the_environment() -> None:
    raw = '[{"location": "WH-PAR", "layout": {"aisles": 20}, "waves": {"max_orders": 50}}, {"claim_ttl_s": 60}]'
    config = node_config(LOCATION, raw)
    assert config.layout == LayoutSpec(aisles=20) and config.waves == WaveRules(max_orders=50)
    assert node_config("OTHER", raw).claim_ttl_s == 60 and node_config("OTHER", raw).layout is None
    assert node_config(LOCATION, None, reject_all=True).reject_all


def test_finished_entities_leave_after_their_retention() -> None:
    n = NodeHarness(ledger={"TEE": 10})
    n.send(n.fulfil("O-1", ("TEE", 1)))
    n.send(n.fulfil("O-2", ("TEE", 1)))
    for kind in ("pick", "pack", "ship"):
        n.send(n.confirm(f"O-1/a1/{LOCATION}/{kind}"))
    janitor = Janitor(retain_s=60)
    janitor.observe(n.table.items(), T0)
    finished = {"order:O-1", *(f"task:O-1/a1/{LOCATION}/{k}" for k in ("pick", "pack", "ship"))}
    assert set(janitor.since) == finished  # O-2 is still being picked; sites, bins and SKUs are never removed
    assert janitor.due(T0 + timedelta(seconds=59)) == []
    assert set(janitor.due(T0 + timedelta(seconds=60))) == finished
    janitor.observe([("order:O-1", None)], T0)
    assert "order:O-1" not in janitor.since


def test_a_claim_runs_no_longer_than_the_location_allows() -> None:
    n = NodeHarness(ledger={"TEE": 10})
    n.node.config = NodeConfig(layout=SMALL, waves=WaveRules(max_orders=1), claim_ttl_s=120)
    pick = one_task(n.send(n.fulfil("O-1", ("TEE", 1))))
    update = of_type(n.send(ClaimTask(task_id=pick.task_id, order_id="O-1", location=LOCATION, worker="ann",
                                      ttl_s=86_400)), TaskUpdated)[0]
    assert update.claimed_until == T0 + timedelta(seconds=120)


def test_a_sku_released_in_a_later_wave_is_slotted_with_the_ledger_stock_seen_at_acceptance() -> None:
    n = NodeHarness(waves=WaveRules(max_orders=5, max_wait_s=1), ledger={"TEE": 12})
    n.send(n.fulfil("O-1", ("TEE", 2)))
    n.advance(1)
    pick = one_task(n.send(NodeTick(location=LOCATION)))
    assert pick.lines[0].qty == 2
    assert n.stock("TEE").on_hand == 12 and n.stock("TEE").allocated == {pick.lines[0].bin: 2}


def test_a_backlog_is_released_a_few_waves_per_tick() -> None:
    n = NodeHarness(waves=WaveRules(max_orders=100, max_wait_s=1), ledger={"TEE": 10_000})
    for k in range(30):
        n.send(n.fulfil(f"O-{k}", ("TEE", 1)))
    n.node.config = NodeConfig(layout=SMALL, waves=WaveRules(max_orders=4, max_wait_s=1))
    n.site()  # the site keeps the rules it was created with: change them as a reconfigured site would
    site = n.site().model_copy(update={"waves": WaveRules(max_orders=4, max_wait_s=1)})
    n.replace("site", site.model_dump_json())
    n.advance(2)
    assert len(created(n.send(NodeTick(location=LOCATION)))) == 5 * 4
    assert len(created(n.send(NodeTick(location=LOCATION)))) == 30 - 20


def test_the_view_writer_coalesces_in_order_and_keeps_the_latest_value() -> None:
    written: list[tuple[list[tuple[str, Any]], dict[str, Any]]] = []

    class Views:
        async def write(self, changes: list[tuple[str, Any]], replies: dict[str, Any]) -> None:
            written.append((changes, replies))

    async def play() -> None:
        writer = ViewWriter(Views())  # type: ignore[arg-type]
        writer.put([("task:a", '{"n": 1}'), ("sku:X", '{"n": "x1"}'), ("order:O", '{"n": 0}')], {})
        writer.put([("task:a", '{"n": 2, "applied": ["m"]}'), ("task:b", '{"n": "b"}')], {"cmd": {"status": "done"}})
        task = asyncio.create_task(writer.run())
        while not writer.idle() or not written:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(play())
    # orders are not viewed; applied ids are left out
    assert written == [([("sku:X", {"n": "x1"}), ("task:a", {"n": 2}), ("task:b", {"n": "b"})],
                        {"cmd": {"status": "done"}})]


def _reference_pick(stock: SkuStock, qty: int, layout: Layout) -> list[tuple[str, int]]:
    """The pick plan as first written: the home bin, then every other bin by distance, taking free units."""
    assert stock.home is not None
    order = [stock.home, *sorted((b for b in stock.bins if b != stock.home), key=lambda b: (layout.distance(b), b))]
    plan, left = [], qty
    for bin_id in order:
        take = min(left, max(0, stock.free_in(bin_id)))
        if take:
            plan.append((bin_id, take))
            left -= take
        if not left:
            break
    if left:
        merged = dict(plan)
        merged[stock.home] = merged.get(stock.home, 0) + left
        plan = list(merged.items())
    return plan


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 39), st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=30),
       st.integers(1, 200))
def test_a_pick_takes_the_home_bin_then_the_nearest_free_units(bins: list[tuple[int, int, int]], qty: int) -> None:
    layout = Layout(SMALL)
    storage = layout.storage_by_distance
    stock = SkuStock(sku="TEE", home=storage[bins[0][0]].id)
    for index, units, allocated in bins:
        stock.bins[storage[index].id] = units
        if allocated:
            stock.allocated[storage[index].id] = allocated
    owners = BinMap(owner={b: "TEE" for b in stock.bins})
    expected = _reference_pick(stock.model_copy(deep=True), qty, layout)
    assert allocate_pick(stock, qty, owners, layout) == expected
