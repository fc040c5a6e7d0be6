"""The ledger stays bounded however many orders its SKU sees: it is stored whole after every batch, and a
Kafka record has a size limit (1 MB by default), so old ended reservations are forgotten; held ones never."""

from __future__ import annotations

from schemas.base import Message
from schemas.inventory import ConsumeReservation, CountStock, ReserveStock
from services.inventory.domain.ledger import ENDED_SLACK, KEEP_ENDED, SkuLedger, rebuild


def commands(orders: int, keep_held_every: int = 0) -> list[tuple[str, Message]]:
    out: list[tuple[str, Message]] = [("count", CountStock(count_id="c", sku="A", location="W", qty=1_000_000))]
    for n in range(orders):
        rid = f"O-{n:06d}/r1"
        out.append((f"reserve-{n}", ReserveStock(reservation_id=rid, order_id=f"O-{n:06d}", sku="A", location="W",
                                                 qty=1)))
        if not keep_held_every or n % keep_held_every:
            out.append((f"consume-{n}", ConsumeReservation(reservation_id=rid, order_id=f"O-{n:06d}", sku="A", qty=1,
                                                           shipment_id=f"P-{n}")))
    return out


def test_old_ended_reservations_are_forgotten_held_ones_kept() -> None:
    ledger = rebuild(commands(3000, keep_held_every=100))["A"]
    held = [r for r in ledger.reservations.values() if r.status == "held"]
    ended = [r for r in ledger.reservations.values() if r.status != "held"]
    assert len(held) == 30 and ledger.position("W").reserved == 30  # every open hold is still there
    assert KEEP_ENDED <= len(ended) <= KEEP_ENDED + ENDED_SLACK
    assert "O-002999/r1" in ledger.reservations and "O-000001/r1" not in ledger.reservations  # the newest kept
    assert len(ledger.model_dump_json()) < 300_000  # about 1 MB after 5,000 orders before


def test_a_repeated_reservation_of_a_kept_one_changes_nothing_and_gives_the_same_decision() -> None:
    history = commands(1000)
    ledger = SkuLedger(sku="A")
    decisions = {}
    for command_id, command in history:
        emits = ledger.apply(command, command_id)
        if isinstance(command, ReserveStock):
            decisions[command.reservation_id] = emits[0].event_id
    reserve = next(c for _, c in reversed(history) if isinstance(c, ReserveStock))
    again = ledger.apply(reserve, "a-new-command-id")  # the same reservation asked again under a new id
    assert [e.event_id for e in again] == [decisions[reserve.reservation_id]]
    assert ledger.position("W").reserved == 0 and ledger.position("W").on_hand == 1_000_000 - 1000
