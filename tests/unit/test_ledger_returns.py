"""The ledger's restock of returned units: on hand and available grow by a ``restocked`` movement caused by the
return, once per return however often it is sent; backorders waiting there fill; reservations are untouched."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.inventory import (
    AvailabilityChanged,
    BackorderFilled,
    CountStock,
    ReceiveStock,
    RecordSupply,
    ReserveStock,
    StockMoved,
)
from services.inventory.domain.ledger import SkuLedger, rebuild
from services.runtime.outbox import Emit

SKU = "TEE-M"
STORE = "ST-LYO"


def ledger(on_hand: int = 2, location: str = STORE) -> SkuLedger:
    book = SkuLedger(sku=SKU)
    book.apply(CountStock(count_id="init", sku=SKU, location=location, qty=on_hand), "cmd-init")
    return book


def restock(return_id: str = "R-1", qty: int = 1, location: str = STORE, receipt: str | None = None) -> ReceiveStock:
    return ReceiveStock(receipt_id=receipt or f"{location}:{return_id}:{SKU}", sku=SKU, location=location, qty=qty,
                        return_id=return_id)


def moved(emits: list[Emit]) -> list[StockMoved]:
    return [e.message for e in emits if isinstance(e.message, StockMoved)]


def test_a_restock_grows_on_hand_and_available_with_the_return_as_its_cause() -> None:
    book = ledger(on_hand=2)
    emits = book.apply(restock(qty=1), "cmd-1")
    [movement] = moved(emits)
    assert (movement.kind, movement.delta, movement.on_hand_after, movement.cause_id) == ("restocked", 1, 3, "R-1")
    assert movement.location == STORE
    [availability] = [e.message for e in emits if isinstance(e.message, AvailabilityChanged)]
    assert (availability.on_hand, availability.available) == (3, 3)
    assert book.positions[STORE].on_hand == 3


def test_the_same_return_restocks_once_under_any_command_or_receipt_id() -> None:
    book = ledger(on_hand=2)
    book.apply(restock(qty=2), "cmd-1")
    assert book.apply(restock(qty=2), "cmd-2") == []  # the WMS sent it again after a crash
    assert book.apply(restock(qty=2, receipt="another-receipt"), "cmd-3") == []
    assert book.positions[STORE].on_hand == 4
    assert book.restocked == {f"R-1@{STORE}": 2}


def test_another_return_restocks_too_and_a_repeated_command_replays_its_first_effect() -> None:
    book = ledger(on_hand=0)
    first = book.apply(restock("R-1", 1), "cmd-1")
    book.apply(restock("R-2", 2), "cmd-2")
    assert book.positions[STORE].on_hand == 3
    assert book.apply(restock("R-1", 1), "cmd-1") in ([], first)  # a re-delivered command changes nothing
    assert book.positions[STORE].on_hand == 3


def test_a_restock_of_nothing_moves_nothing() -> None:
    book = ledger(on_hand=2)
    assert book.apply(restock(qty=0), "cmd-1") == []
    assert book.positions[STORE].on_hand == 2


def test_a_restock_leaves_reservations_and_supplies_alone_but_fills_a_waiting_backorder() -> None:
    book = ledger(on_hand=0)
    eta = datetime(2026, 12, 20, tzinfo=UTC)
    book.apply(RecordSupply(supply_id="PO-1", sku=SKU, location=STORE, qty=5, eta=eta, kind="purchase_order"), "c1")
    book.apply(ReserveStock(reservation_id="H-1", order_id="O-9", sku=SKU, location=STORE, qty=1, backorder=True),
               "c2")
    assert book.reservations["H-1"].waiting
    emits = book.apply(restock(qty=1), "c3")
    assert [type(e.message) for e in emits if isinstance(e.message, BackorderFilled)] == [BackorderFilled]
    position = book.positions[STORE]
    assert (position.on_hand, position.reserved) == (1, 1)
    supply = book.supplies["PO-1"]
    assert (supply.received, supply.closed) == (0, False)  # the restock is not the supply's goods


def test_a_restock_at_another_location_is_its_own_position() -> None:
    book = ledger(on_hand=2, location="WH-PAR")
    book.apply(restock(qty=1, location=STORE), "cmd-1")
    assert book.positions["WH-PAR"].on_hand == 2
    assert book.positions[STORE].on_hand == 1


def test_a_rebuild_from_the_commands_restocks_once() -> None:
    commands = [
        ("c0", CountStock(count_id="init", sku=SKU, location=STORE, qty=1)),
        ("c1", restock(qty=2)),
        ("c2", restock(qty=2)),
        ("c1", restock(qty=2)),
    ]
    rebuilt = rebuild(commands)[SKU]
    assert rebuilt.positions[STORE].on_hand == 3


def test_a_return_of_two_skus_makes_two_movements_with_their_own_ids() -> None:
    tees, mugs = SkuLedger(sku=SKU), SkuLedger(sku="MUG-1")
    [tee] = moved(tees.apply(restock(qty=1), "cmd-1"))
    [mug] = moved(mugs.apply(ReceiveStock(receipt_id=f"{STORE}:R-1:MUG-1", sku="MUG-1", location=STORE, qty=1,
                                          return_id="R-1"), "cmd-2"))
    assert tee.cause_id == mug.cause_id == "R-1"
    assert tee.movement_id != mug.movement_id
