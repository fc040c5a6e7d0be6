"""The inventory service's adapter on the processing model, without Kafka: a small in-memory driver plays the
engine (records through ``handle``, the store's changelog committed, the after-commit work run), so that the
tests see what one batch writes, sends and leaves for the read model, and how timed holds are expired."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.base import Message
from schemas.envelope import decode, encode, envelope_for
from schemas.inventory import AvailabilityChanged, CountStock, ExpireReservation, ReserveStock
from services.inventory.app import HOLD_STORE, HOLDS, LEDGER_STORE, LEDGERS, InventoryService, dump, load
from services.inventory.domain.ledger import Reservation, SkuLedger
from services.inventory.views import EXPIRY_GRACE, RESEND_AFTER, AvailabilityWriter, Expiries
from services.runtime.processing import Incoming, Outgoing, Store, TaskContext
from services.runtime.settings import Settings
from tests.unit.engine_driver import commit_in_memory

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class FakeReadModel:
    """Records each pipeline the writer sends (one list per call)."""

    def __init__(self) -> None:
        self.writes: list[list[AvailabilityChanged]] = []

    async def write_availability(self, changes: Iterable[AvailabilityChanged]) -> None:
        self.writes.append(list(changes))


@dataclass
class Driver:
    """One task of the service, driven as the engine would: batches of records, then commit or roll back."""

    service: InventoryService
    store: Store[SkuLedger] = field(default_factory=lambda: Store(LEDGER_STORE))
    holds: Store[Reservation] = field(default_factory=lambda: Store(HOLD_STORE))
    offset: int = 0
    changelogs: list[list[tuple[str, bytes | None]]] = field(default_factory=list)
    hold_changelogs: list[list[tuple[str, bytes | None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        stores: dict[str, Store[Any]] = {LEDGERS: self.store, HOLDS: self.holds}
        self.ctx = TaskContext("baton/inventory", 0, stores, lambda name, loc: f"ns.{name}", now=T0)

    def assign(self) -> None:
        async def assigned() -> None:
            self.service.on_assigned(self.ctx)
            await asyncio.gather(*self.service.rebuilds)

        asyncio.run(assigned())

    def record(self, command: Message, event_id: str | None = None) -> Incoming:
        self.offset += 1
        envelope = envelope_for(command, source="tests", correlationid="c", causationid=None,
                                event_id=event_id or f"e{self.offset}")
        return Incoming("ns.inventory.commands.v1", 0, self.offset, b"k", encode(envelope), 0)

    def batch(self, *commands: Message) -> list[Outgoing]:
        """Apply a batch and commit it; a command that raises is dropped and the batch applied again."""
        records = [self.record(c) for c in commands]
        while True:
            try:
                for record in records:
                    envelope, message = decode(record.value)
                    self.service.handle(self.ctx, envelope, message, record)
                break
            except Exception:
                self.ctx.rolled_back()
                records = records[:-1]  # in these tests the failing command is always the last one
        return self.commit()

    def timer(self, now: datetime) -> list[Outgoing]:
        self.ctx.now = now
        self.service.on_timer(self.ctx)
        return self.commit()

    def commit(self) -> list[Outgoing]:
        changes, out = commit_in_memory(self.ctx)
        self.changelogs.append(changes[LEDGERS])
        self.hold_changelogs.append(changes[HOLDS])
        return out


@pytest.fixture
def driver() -> Driver:
    service = InventoryService(Settings(), FakeReadModel())  # type: ignore[arg-type]
    running = Driver(service)
    running.assign()
    return running


def pending(service: InventoryService) -> dict[tuple[str, str], AvailabilityChanged]:
    return service.writer.pending


def types(out: list[Outgoing]) -> list[tuple[str, str]]:
    return [(o.topic, orjson.loads(o.value or b"{}")["type"]) for o in out]


def test_a_batch_writes_each_ledger_once_and_sends_what_the_ledger_emitted(driver: Driver) -> None:
    out = driver.batch(
        CountStock(count_id="c1", sku="A", location="W", qty=5),
        ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=2),
        CountStock(count_id="c2", sku="B", location="W", qty=1),
        ReserveStock(reservation_id="R2", order_id="O2", sku="A", location="W", qty=1),
    )
    assert sorted(key for key, _ in driver.changelogs[-1]) == ["A", "B"]  # one changelog record per SKU
    stored = {key: load(raw, key) for key, raw in driver.changelogs[-1]}
    assert stored["A"].position("W").reserved == 3 and stored["B"].position("W").on_hand == 1
    assert ("ns.inventory.reservations.v1", "inventory.stock_reserved.v1") in types(out)
    reserved = [orjson.loads(o.value or b"") for o in out if o.topic == "ns.inventory.reservations.v1"]
    assert [r["correlationid"] for r in reserved] == ["O1", "O2"]  # correlated with the order, not the command
    # the read model gets the newest availability of each position the batch changed, once
    latest = pending(driver.service)
    assert set(latest) == {("A", "W"), ("B", "W")} and latest[("A", "W")].reserved == 3


def test_a_batch_publishes_one_availability_per_position_the_newest(driver: Driver) -> None:
    out = driver.batch(
        CountStock(count_id="c1", sku="A", location="W", qty=5),
        ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=2),
        CountStock(count_id="c2", sku="B", location="W", qty=1),
        ReserveStock(reservation_id="R2", order_id="O2", sku="A", location="W", qty=1),
    )
    published = [orjson.loads(o.value or b"") for o in out if o.topic == "ns.inventory.availability.v1"]
    assert sorted((p["data"]["sku"], p["data"]["reserved"], p["data"]["version"]) for p in published) == [
        ("A", 3, 3), ("B", 0, 1)]
    others = [o for o in out if o.topic != "ns.inventory.availability.v1"]
    assert len(others) == 4  # 2 counts moved stock, 2 reservations decided: nothing else was dropped


def test_a_command_sent_twice_changes_nothing_and_resends_the_same_events(driver: Driver) -> None:
    driver.batch(CountStock(count_id="c1", sku="A", location="W", qty=5))
    reserve = ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=2)
    first = driver.batch(reserve)
    again = [driver.record(reserve, event_id="e2")]  # the same command id as the first delivery
    envelope, message = decode(again[0].value)
    driver.service.handle(driver.ctx, envelope, message, again[0])
    repeated = driver.commit()
    assert [orjson.loads(o.value or b"")["id"] for o in repeated] == [orjson.loads(o.value or b"")["id"] for o in first]
    ledger = driver.store.committed_value("A")
    assert ledger is not None and ledger.position("W").reserved == 2


def test_a_command_the_ledger_does_not_handle_is_refused_for_the_dead_letters(driver: Driver) -> None:
    record = driver.record(AvailabilityChanged(sku="A", location="W", on_hand=1, reserved=0, safety_stock=0,
                                               available=1, incoming=0, version=1))
    envelope, message = decode(record.value)
    with pytest.raises(ValueError, match="does not handle"):
        driver.service.handle(driver.ctx, envelope, message, record)


def test_a_rolled_back_batch_leaves_no_view_behind(driver: Driver) -> None:
    driver.batch(CountStock(count_id="c1", sku="A", location="W", qty=5))
    driver.service.writer.pending.clear()
    record = driver.record(ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=2))
    envelope, message = decode(record.value)
    driver.service.handle(driver.ctx, envelope, message, record)
    driver.ctx.rolled_back()  # the engine discarded the batch (its commit failed)
    assert driver.commit() == [] and pending(driver.service) == {}
    ledger = driver.store.committed_value("A")
    assert ledger is not None and ledger.position("W").reserved == 0
    driver.batch(CountStock(count_id="c2", sku="A", location="W", qty=4))  # the next batch flushes its own
    assert pending(driver.service)[("A", "W")].on_hand == 4


def test_a_lapsed_hold_is_expired_by_the_timer_in_a_transaction_then_left_alone(driver: Driver) -> None:
    driver.batch(
        CountStock(count_id="c1", sku="A", location="W", qty=3),
        ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=1, expires_at=T0),
    )
    assert driver.timer(T0) == []  # within the grace period: the orchestrator expires its holds first
    due = driver.timer(T0 + EXPIRY_GRACE + timedelta(seconds=1))
    assert [(o.topic, o.key) for o in due] == [("ns.inventory.commands.v1", b"A")]
    envelope, expire = decode(due[0].value)
    assert expire == ExpireReservation(reservation_id="R1", order_id="O1", sku="A")
    assert envelope.correlationid == "O1"
    assert driver.timer(T0 + EXPIRY_GRACE + timedelta(seconds=2)) == []  # sent: not again at once
    driver.batch(expire)
    assert driver.service.expiries[0].by_sku == {}  # the hold ended: nothing left to expire
    assert driver.timer(T0 + timedelta(hours=1)) == []


def test_an_expiry_lost_with_its_transaction_is_sent_again_with_the_same_id() -> None:
    ledger = SkuLedger(sku="A")
    ledger.apply(CountStock(count_id="c", sku="A", location="W", qty=3), "m1")
    ledger.apply(ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=1, expires_at=T0), "m2")
    expiries = Expiries()
    expiries.track(ledger)
    first = expiries.due(T0 + EXPIRY_GRACE)
    assert len(first) == 1 and expiries.due(T0 + EXPIRY_GRACE + timedelta(seconds=1)) == []
    again = expiries.due(T0 + EXPIRY_GRACE + RESEND_AFTER)
    assert [e.event_id for e in again] == [first[0].event_id]


def test_an_assigned_task_rebuilds_its_holds_and_the_read_model_from_the_restored_store() -> None:
    ledger = SkuLedger(sku="A")
    ledger.apply(CountStock(count_id="c", sku="A", location="W", qty=3), "m1")
    ledger.apply(ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=1, expires_at=T0), "m2")
    running = Driver(InventoryService(Settings(), FakeReadModel()))  # type: ignore[arg-type]
    running.store.restore("A", dump(ledger))
    running.assign()
    assert pending(running.service)[("A", "W")].reserved == 1
    assert [rid for _, rid, _ in running.service.expiries[0].by_sku["A"]] == ["R1"]
    assert running.service.committed_ledger("A") == ledger and running.service.committed_ledger("B") is None
    running.service.on_revoked(0)
    assert running.service.committed_ledger("A") is None and 0 not in running.service.expiries


def test_the_writer_coalesces_positions_and_keeps_the_newest_version() -> None:
    def change(version: int, on_hand: int) -> AvailabilityChanged:
        return AvailabilityChanged(sku="A", location="W", on_hand=on_hand, reserved=0, safety_stock=0,
                                   available=on_hand, incoming=0, version=version)

    async def scenario() -> list[list[AvailabilityChanged]]:
        read_model = FakeReadModel()
        writer = AvailabilityWriter(read_model)  # type: ignore[arg-type]
        writer.offer([change(2, 5), change(3, 4)])
        writer.offer([change(1, 9)])  # a replayed, older event: never replaces a newer one
        writer.start()
        await writer.drain()
        return read_model.writes

    writes = asyncio.run(scenario())
    assert [[(c.version, c.on_hand) for c in write] for write in writes] == [[(3, 4)]]


def test_ledgers_round_trip_through_the_store_encoding() -> None:
    ledger = SkuLedger(sku="A")
    ledger.apply(CountStock(count_id="c", sku="A", location="W", qty=3), "m1")
    assert LEDGER_STORE.decode(LEDGER_STORE.encode(ledger)) == ledger
    assert load(None, "Z") == SkuLedger(sku="Z")


def test_a_late_rebuild_leaves_the_holds_a_committed_batch_tracked_alone() -> None:
    older = SkuLedger(sku="A")
    older.apply(CountStock(count_id="c", sku="A", location="W", qty=3), "m1")
    older.apply(ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W", qty=1, expires_at=T0), "m2")
    newer = older.model_copy(deep=True)
    newer.apply(ExpireReservation(reservation_id="R1", order_id="O1", sku="A"), "m3")
    expiries = Expiries()
    expiries.track(newer)  # a batch committed after the assignment
    expiries.track_if_unknown(older)  # the rebuild reaches the SKU later, with what the store held before
    assert expiries.by_sku == {}
