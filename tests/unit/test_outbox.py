"""The outbox records: Emit stored/restored round trips, and the bounded log of applied messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.inventory import CountStock, ReserveStock, StockReserved
from schemas.network import Location
from schemas.orders import OrderLine, OrderPlaced, ShipTo
from schemas.topics import INVENTORY_COMMANDS, INVENTORY_RESERVATIONS, WMS_COMMANDS
from schemas.wms import ConfirmTask, FulfilmentLine, FulfilOrder
from services.inventory.domain.ledger import SkuLedger
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import OrderSaga
from services.runtime.outbox import AppliedLog, Emit
from services.wms_node.domain.model import Unit, WaveRules
from services.wms_node.domain.node import Node
from services.wms_node.domain.work import Context, NodeConfig


def reserved(n: int) -> Emit:
    message = StockReserved(reservation_id=f"R{n}", order_id="O-1", sku="X", location="WH-A", qty=n + 1)
    return Emit.to(INVENTORY_RESERVATIONS, "O-1", message, f"evt-{n}")


def emits_of_every_core() -> list[Emit]:
    """Real emits of the three domain cores: most message kinds, with nested models, lists and dates."""
    out: list[Emit] = []
    ledger = SkuLedger(sku="X")
    out += ledger.apply(CountStock(count_id="c", sku="X", location="WH-A", qty=5), "m1")
    out += ledger.apply(
        ReserveStock(reservation_id="R1", order_id="O", sku="X", location="WH-A", qty=9), "m2"
    )
    view = NetworkView()
    view.apply(Location(id="WH-A", kind="warehouse", lat=48.8, lon=2.3), 1)
    placed = OrderPlaced(
        order_id="O",
        channel="b2b",
        customer_id="C",
        lines=[OrderLine(sku="X", qty=1)],
        delivery=ShipTo(lat=48.0, lon=2.0),
    )
    out += OrderSaga(view, {"X": {"WH-A": 3}}).handle(None, placed, "m3").emits
    node, table = Node("WH-A", NodeConfig(waves=WaveRules(max_orders=1))), dict[str, str | None]()
    ctx = Context(now=datetime(2026, 12, 1, tzinfo=UTC), ledger={"X": 5})
    request = FulfilOrder(
        request_id="O/a1/WH-A",
        order_id="O",
        location="WH-A",
        lines=[FulfilmentLine(sku="X", qty=1, reservation_id="O/a1/0")],
    )
    confirms = [ConfirmTask(task_id=f"O/a1/WH-A/{kind}", order_id="O", request_id="O/a1/WH-A", location="WH-A")
                for kind in ("pick", "pack", "ship")]
    for n, message in enumerate([request, *confirms]):
        unit = Unit(table.get)
        out += node.handle(unit, message, f"m-{n}", ctx)
        table.update(unit.changes())
    return out


def test_stored_and_restored_round_trip_for_every_core_emit() -> None:
    emits = emits_of_every_core()
    assert len({type(e.message) for e in emits}) >= 9
    for emit in emits:
        stored = json.loads(json.dumps(emit.stored()))  # what the state table really keeps
        assert stored["type"] == emit.message.event_type
        restored = Emit.restored(stored)
        assert restored == emit
        assert type(restored.message) is type(emit.message)


def test_emit_keeps_its_location() -> None:
    request = FulfilOrder(
        request_id="r",
        order_id="O",
        location="ST-1",
        lines=[FulfilmentLine(sku="X", qty=1, reservation_id="R")],
    )
    emit = Emit.to(WMS_COMMANDS, "O", request, "e", location="ST-1")
    assert Emit.restored(emit.stored()).location == "ST-1"
    stored = emit.stored()
    del stored["location"]  # records written before the field existed
    assert Emit.restored(stored).location is None


def test_restoring_an_unknown_type_fails() -> None:
    stored = reserved(1).stored() | {"type": "nope.v1"}
    with pytest.raises(ValueError, match="unknown stored message type"):
        Emit.restored(stored)


def test_emit_topic_is_the_catalog_name() -> None:
    emit = Emit.to(
        INVENTORY_COMMANDS,
        "X",
        ReserveStock(reservation_id="R", order_id="O", sku="X", location="L", qty=1),
        "e",
    )
    assert emit.topic == INVENTORY_COMMANDS.name


def test_applied_log_replays_what_was_recorded() -> None:
    log = AppliedLog()
    assert not log.seen("m1")
    log.record("m1", [reserved(1), reserved(2)])
    log.record("m2", [])
    assert log.seen("m1") and log.seen("m2") and not log.seen("m3")
    assert log.replay("m1") == [reserved(1), reserved(2)]
    assert log.replay("m2") == []


def test_applied_log_bounds_its_ids_and_emits() -> None:
    log = AppliedLog(keep_ids=10, keep_emits=3)
    for n in range(25):
        log.record(f"m{n}", [reserved(n)])
    assert log.ids == [f"m{n}" for n in range(15, 25)]
    assert not log.seen("m14") and log.seen("m15")
    assert list(log.emits) == ["m22", "m23", "m24"]
    assert log.replay("m24") == [reserved(24)]


def test_applied_log_evicts_the_oldest_emits_after_a_json_round_trip() -> None:
    log = AppliedLog(keep_ids=100, keep_emits=3)
    for n in range(3):
        log.record(f"m{n}", [reserved(n)])
    log = AppliedLog.model_validate_json(log.model_dump_json())
    log.record("m3", [reserved(3)])
    assert list(log.emits) == ["m1", "m2", "m3"]
    assert log.replay("m1") == [reserved(1)]


def test_applied_logs_do_not_share_state() -> None:
    a, b = AppliedLog(), AppliedLog()
    a.record("m1", [reserved(1)])
    assert b.ids == [] and b.emits == {}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=60))
def test_recent_messages_are_always_seen_and_replayable(ids: list[str]) -> None:
    log = AppliedLog(keep_ids=20, keep_emits=5)
    recorded: list[str] = []
    for n, mid in enumerate(ids):
        if log.seen(mid):
            continue
        log.record(mid, [reserved(n)])
        recorded.append(mid)
    assert len(log.ids) <= 20 and len(log.emits) <= 5
    for mid in recorded[-20:]:
        assert log.seen(mid)
    for mid in recorded[-5:]:
        assert mid in log.emits
        assert len(log.replay(mid)) == 1
    assert all(log.seen(mid) for mid in log.emits)
