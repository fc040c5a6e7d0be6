"""The inventory service's adapter pieces without Kafka: commands in offset order (repeats dropped, holes
reported), batches that load and store each ledger once and roll back a command that fails, timed holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.envelope import envelope_for
from schemas.inventory import CountStock, ExpireReservation, ReserveStock
from services.inventory.app import EXPIRY_GRACE, Batch, Expiries, dump, load
from services.inventory.domain.ledger import SkuLedger
from services.runtime.inorder import InOrder, Tails

TP = ("commands", 0)


def test_commands_are_admitted_in_offset_order_from_the_committed_offset() -> None:
    order = InOrder(lambda tp: 100)
    assert order.check(TP, 99) == ("repeat", 100)  # below what was committed: already applied
    assert order.check(TP, 100) == ("apply", 100)
    assert order.check(TP, 101) == ("apply", 101)
    assert order.check(TP, 101) == ("repeat", 102)  # handed over twice
    assert order.check(TP, 105) == ("hole", 102)  # 102..104 never came: read them, then apply 105
    assert order.check(TP, 106) == ("apply", 106)
    order.forget([TP])  # a rebalance: start again from the committed offset
    assert order.check(TP, 100) == ("apply", 100)


def test_without_a_committed_offset_the_first_command_seen_starts_the_partition() -> None:
    order = InOrder(lambda tp: None)
    assert order.check(TP, 7) == ("apply", 7)
    assert order.check(TP, 8) == ("apply", 8)


def test_a_partition_behind_its_log_end_at_the_same_offset_on_two_looks_is_stuck() -> None:
    tails = Tails()
    assert tails.stuck({TP: 10}, {TP: 12}) == []  # first look: maybe on its way
    assert tails.stuck({TP: 11}, {TP: 12}) == []  # progress since
    assert tails.stuck({TP: 11}, {TP: 12}) == [(TP, 11, 12)]  # no progress for a whole look: skipped
    assert tails.stuck({TP: 12}, {TP: 12}) == []  # caught up
    assert tails.stuck({TP: None}, {TP: 5}) == []  # nothing known of the partition yet


class FakeTable(dict[str, bytes]):
    pass


def event(offset: int, command: Any) -> tuple[Any, Any]:
    envelope = envelope_for(command, source="tests", correlationid="c", causationid=None, event_id=f"e{offset}")
    return envelope, SimpleNamespace(message=SimpleNamespace(partition=0, offset=offset, topic="commands"))


def test_a_batch_loads_and_stores_each_ledger_once_and_keeps_the_last_availability_per_position() -> None:
    table = FakeTable()
    batch = Batch(table)
    for n, command in enumerate([
        CountStock(count_id="c1", sku="A", location="W", qty=5),
        ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=2),
        CountStock(count_id="c2", sku="B", location="W", qty=1),
        ReserveStock(reservation_id="R2", order_id="O2", sku="A", location="W", qty=1),
    ]):
        envelope, ev = event(n, command)
        batch.apply(envelope, command, ev)
    assert set(batch.changed()) == {"A", "B"}
    assert batch.last_event["A"].message.offset == 3
    latest = {(a.sku, a.location): a for a in batch.availability()}
    assert len(batch.availability()) == 2 and latest[("A", "W")].reserved == 3


def test_a_command_that_fails_leaves_the_ledger_as_the_batch_had_it() -> None:
    table = FakeTable(A=dump(SkuLedger(sku="A")))
    batch = Batch(table)
    count = CountStock(count_id="c1", sku="A", location="W", qty=5)
    envelope, ev = event(0, count)
    batch.apply(envelope, count, ev)
    before = batch.ledgers["A"].model_dump()

    class Exploding(ReserveStock):
        pass

    original = SkuLedger._reserve

    def explode(self: SkuLedger, cmd: ReserveStock) -> Any:
        self.position("W").reserved += 99
        raise RuntimeError("boom")

    SkuLedger._reserve = explode  # type: ignore[method-assign]
    try:
        bad = Exploding(reservation_id="R", order_id="O", sku="A", location="W", qty=1)
        envelope, ev = event(1, bad)
        with pytest.raises(RuntimeError):
            batch.apply(envelope, bad, ev)
    finally:
        SkuLedger._reserve = original  # type: ignore[method-assign]
    assert batch.ledgers["A"].model_dump() == before
    assert load(dump(batch.ledgers["A"]), "A").model_dump() == before


def test_lapsed_holds_are_expired_once_after_the_grace_period() -> None:
    ledger = SkuLedger(sku="A")
    ledger.apply(CountStock(count_id="c", sku="A", location="W", qty=3), "m1")
    at = datetime(2026, 12, 1, tzinfo=UTC)
    ledger.apply(ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=1, expires_at=at), "m2")
    expiries = Expiries()
    expiries.track(ledger)
    assert expiries.due(at) == []
    due = expiries.due(at + EXPIRY_GRACE + timedelta(seconds=1))
    assert [(e.key, e.message) for e in due] == [("A", ExpireReservation(reservation_id="R1", order_id="O1",
                                                                          sku="A"))]
    expiries.sent.add("R1")
    assert expiries.due(at + timedelta(hours=1)) == []
    ledger.apply(ExpireReservation(reservation_id="R1", order_id="O1", sku="A"), "m3")
    expiries.track(ledger)
    assert expiries.by_sku == {} and expiries.sent == set()
