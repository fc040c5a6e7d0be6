"""The inventory stores a ledger in parts (its head, and each reservation under its own key): a batch writes
what it changed only, and the parts put together again always equal the ledger applied whole."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

from schemas.base import Message
from schemas.envelope import decode
from schemas.inventory import (
    ConsumeReservation,
    CountStock,
    ExpireReservation,
    ReceiveStock,
    RecordSupply,
    ReleaseReservation,
    ReserveStock,
)
from services.inventory.app import HOLDS, LEDGERS, InventoryService, dump, hold_key
from services.inventory.domain.ledger import SkuLedger
from services.runtime.settings import Settings
from tests.unit.test_inventory_adapters import Driver, FakeReadModel

SKUS = ("A", "B")
LOCATIONS = ("W1", "W2")
ETA = datetime(2026, 7, 1, tzinfo=UTC)


def new_driver() -> Driver:
    running = Driver(InventoryService(Settings(), FakeReadModel()))  # type: ignore[arg-type]
    running.assign()
    return running


def restarted(old: Driver) -> Driver:
    """A new task restored from everything the old one committed, as the engine restores it."""
    running = Driver(InventoryService(Settings(), FakeReadModel()))  # type: ignore[arg-type]
    for changes in old.changelogs:
        for key, raw in changes:
            running.store.restore(key, raw)
    for changes in old.hold_changelogs:
        for key, raw in changes:
            running.holds.restore(key, raw)
    running.changelogs, running.hold_changelogs = list(old.changelogs), list(old.hold_changelogs)
    running.assign()
    return running


def commands(seed: int, count: int) -> list[Message]:
    rng = random.Random(seed)
    out: list[Message] = [CountStock(count_id=f"c-{s}-{loc}", sku=s, location=loc, qty=40)
                          for s in SKUS for loc in LOCATIONS]
    held: list[tuple[str, str]] = []
    for n in range(count):
        sku, location, roll = rng.choice(SKUS), rng.choice(LOCATIONS), rng.random()
        if roll < 0.45 or not held:
            rid = f"O-{n}/a1/0"
            held.append((rid, sku))
            out.append(ReserveStock(reservation_id=rid, order_id=f"O-{n}", sku=sku, location=location,
                                    qty=rng.randint(1, 3), backorder=rng.random() < 0.3,
                                    expires_at=ETA if rng.random() < 0.1 else None))
        elif roll < 0.65:
            rid, sku = held.pop(rng.randrange(len(held)))
            out.append(ReleaseReservation(reservation_id=rid, order_id=rid.split("/")[0], sku=sku, reason="x"))
        elif roll < 0.8:
            rid, sku = held.pop(rng.randrange(len(held)))
            out.append(ConsumeReservation(reservation_id=rid, order_id=rid.split("/")[0], sku=sku, qty=1,
                                          shipment_id=f"P-{n}"))
        elif roll < 0.85:
            rid, sku = held.pop(rng.randrange(len(held)))
            out.append(ExpireReservation(reservation_id=rid, order_id=rid.split("/")[0], sku=sku))
        elif roll < 0.9:
            out.append(RecordSupply(supply_id=f"ASN-{n}", sku=sku, location=location, qty=rng.randint(2, 8),
                                    eta=ETA + timedelta(days=n % 5)))
        elif roll < 0.95:
            out.append(ReceiveStock(receipt_id=f"RC-{n}", sku=sku, location=location, qty=rng.randint(1, 6)))
        else:
            out.append(CountStock(count_id=f"k-{n}", sku=sku, location=location, qty=rng.randint(0, 30)))
    return out


def applied_whole(sequence: list[Message]) -> dict[str, SkuLedger]:
    """The reference: every command applied to one ledger per SKU, with the ids the driver gives them."""
    ledgers: dict[str, SkuLedger] = {}
    for n, command in enumerate(sequence, start=1):
        sku = command.sku  # type: ignore[attr-defined]
        ledgers.setdefault(sku, SkuLedger(sku=sku)).apply(command, f"e{n}")
    return ledgers


def test_parts_put_together_equal_the_ledger_applied_whole_across_batches_and_restarts() -> None:
    sequence = commands(seed=3, count=3200)  # enough ended reservations for the ledger to forget old ones
    rng = random.Random(5)
    running, start = new_driver(), 0
    while start < len(sequence):
        size = rng.randint(1, 60)
        running.batch(*sequence[start:start + size])
        start += size
        if rng.random() < 0.1:
            offset = running.offset
            running = restarted(running)
            running.offset = offset
    expected = applied_whole(sequence)
    for sku in SKUS:
        assert running.service.committed_ledger(sku) == expected[sku]
        assert restarted(running).service.committed_ledger(sku) == expected[sku]
    forgotten = [key for changes in running.hold_changelogs for key, raw in changes if raw is None]
    assert forgotten  # old ended reservations were deleted from the store too


def test_a_batch_writes_the_head_and_only_the_reservations_it_changed() -> None:
    running = new_driver()
    running.batch(CountStock(count_id="c", sku="A", location="W1", qty=500),
                  *[ReserveStock(reservation_id=f"R{n}", order_id=f"O{n}", sku="A", location="W1", qty=1)
                    for n in range(200)])
    running.batch(ReleaseReservation(reservation_id="R7", order_id="O7", sku="A", reason="cancelled"),
                  ReserveStock(reservation_id="R900", order_id="O900", sku="A", location="W1", qty=1))
    assert [key for key, _ in running.changelogs[-1]] == ["A"]
    assert sorted(key for key, _ in running.hold_changelogs[-1]) == [hold_key("A", "R7"), hold_key("A", "R900")]
    head, whole = running.changelogs[-1][0][1] or b"", dump(running.service.committed_ledger("A") or SkuLedger(sku="A"))
    assert "reservations" not in orjson.loads(head) and len(head) * 2 < len(whole)


def test_a_rolled_back_batch_puts_the_ledger_together_again_from_what_was_committed() -> None:
    running = new_driver()
    running.batch(CountStock(count_id="c", sku="A", location="W1", qty=5),
                  ReserveStock(reservation_id="R1", order_id="O1", sku="A", location="W1", qty=2))
    ctx = running.ctx
    for command in [ReleaseReservation(reservation_id="R1", order_id="O1", sku="A", reason="x"),
                                 ReserveStock(reservation_id="R2", order_id="O2", sku="A", location="W1", qty=1)]:
        record = running.record(command)
        envelope, message = decode(record.value)
        running.service.handle(ctx, envelope, message, record)
    ctx.rolled_back()
    running.batch(ReserveStock(reservation_id="R3", order_id="O3", sku="A", location="W1", qty=3))
    ledger = running.service.committed_ledger("A")
    assert ledger is not None
    assert {rid: r.status for rid, r in ledger.reservations.items()} == {"R1": "held", "R3": "held"}
    assert ledger.position("W1").reserved == 5
    assert set(running.ctx.stores) == {LEDGERS, HOLDS}


def test_a_long_lived_ledger_forgets_the_same_reservations_as_one_decoded_afresh_before_every_command() -> None:
    sequence = [c for c in commands(seed=11, count=3000) if c.sku == "A"]  # type: ignore[attr-defined]
    long_lived, fresh = SkuLedger(sku="A"), SkuLedger(sku="A")
    for n, command in enumerate(sequence, start=1):
        long_lived.apply(command, f"e{n}")
        fresh = SkuLedger.model_validate_json(dump(fresh))  # counts what has ended from scratch
        fresh.apply(command, f"e{n}")
    assert len(long_lived.reservations) < sum(isinstance(c, ReserveStock) for c in sequence)  # some forgotten
    assert long_lived == fresh
