"""The invariants read from real topics and a real read model: committed records only, newest stock per
position, and every broken check named with its culprits."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from baton.invariants import Expected, check_invariants_from_topics
from baton.publish import Publisher
from schemas.base import Message
from schemas.envelope import encode, envelope_for
from schemas.inventory import AvailabilityChanged, ReservationConsumed, StockMoved, StockReserved
from schemas.topics import INVENTORY_AVAILABILITY, INVENTORY_MOVEMENTS, INVENTORY_RESERVATIONS, TopicSpec
from services.runtime.admin import ensure_topics
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

pytestmark = pytest.mark.integration
EXPECTED = Expected(order_ids=("O-1", "O-2"), skus=("TEE",))


def shipped(order_id: str, qty: int) -> dict[str, object]:
    return {"order_id": order_id, "status": "shipped",
            "lines": [{"sku": "TEE", "ordered": qty, "shipped": qty, "cancelled": 0, "open": 0}],
            "shipments": [{"location": "WH-1", "lines": [{"sku": "TEE", "qty": qty}], "tracking": "T"}]}


def moved(cause: str, kind: str, delta: int, after: int) -> StockMoved:
    return StockMoved(movement_id=f"{cause}:{kind}", sku="TEE", location="WH-1", kind=kind,  # type: ignore[arg-type]
                      delta=delta, on_hand_after=after, cause_id=cause)


def position(on_hand: int, reserved: int, version: int) -> AvailabilityChanged:
    return AvailabilityChanged(sku="TEE", location="WH-1", on_hand=on_hand, reserved=reserved, safety_stock=0,
                               available=on_hand - reserved, version=version)


async def _a_run(settings: Settings, consumed_twice: bool) -> None:
    """O-1 (2 units) and O-2 (1 unit) shipped from 10 on hand; O-2's shipment moved stock twice if asked."""
    await ensure_topics(settings)
    read_model = ReadModel(settings.redis_url, settings.namespace)
    await read_model.write_orders([shipped("O-1", 2), shipped("O-2", 1)])
    await read_model.close()
    events: list[tuple[TopicSpec, str, Message]] = [
        (INVENTORY_MOVEMENTS, "TEE", moved("count-1", "counted", 10, 10)),
        (INVENTORY_RESERVATIONS, "O-1", StockReserved(reservation_id="R-1", order_id="O-1", sku="TEE",
                                                      location="WH-1", qty=2)),
        (INVENTORY_RESERVATIONS, "O-2", StockReserved(reservation_id="R-2", order_id="O-2", sku="TEE",
                                                      location="WH-1", qty=1)),
        (INVENTORY_MOVEMENTS, "TEE", moved("R-1", "shipped", -2, 8)),
        (INVENTORY_RESERVATIONS, "O-1", ReservationConsumed(reservation_id="R-1", order_id="O-1", sku="TEE",
                                                            location="WH-1", qty=2, shipment_id="S-1")),
        (INVENTORY_MOVEMENTS, "TEE", moved("R-2", "shipped", -1, 7)),
        (INVENTORY_RESERVATIONS, "O-2", ReservationConsumed(reservation_id="R-2", order_id="O-2", sku="TEE",
                                                            location="WH-1", qty=1, shipment_id="S-2")),
        (INVENTORY_AVAILABILITY, "TEE@WH-1", position(7, 0, version=5)),
        (INVENTORY_AVAILABILITY, "TEE@WH-1", position(9, 1, version=4)),  # an older version, written late
    ]
    if consumed_twice:
        events += [(INVENTORY_MOVEMENTS, "TEE", moved("R-2", "shipped", -1, 6)),
                   (INVENTORY_AVAILABILITY, "TEE@WH-1", position(6, 0, version=6))]
    async with Publisher(settings, source="tests") as publisher:
        for spec, key, message in events:
            await publisher.publish(spec, key, message)
        await publisher.flush()
    await _aborted_movement(settings)


async def _aborted_movement(settings: Settings) -> None:
    """A movement written in a transaction that was aborted: it never happened."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                transactional_id=f"{settings.namespace}-aborted")
    await producer.start()
    try:
        await producer.begin_transaction()
        ghost = envelope_for(moved("R-1", "shipped", -2, 4), source="tests", correlationid="O-1", causationid=None)
        await producer.send_and_wait(full_topic_name(settings, INVENTORY_MOVEMENTS), encode(ghost), key=b"TEE")
        await producer.abort_transaction()
    finally:
        await producer.stop()


def test_a_clean_run_read_from_the_topics_holds(settings: Settings) -> None:
    asyncio.run(_a_run(settings, consumed_twice=False))
    report = asyncio.run(check_invariants_from_topics(settings, EXPECTED))
    assert report.ok, report.violations


def test_a_shipment_applied_twice_is_found_on_the_topics(settings: Settings) -> None:
    asyncio.run(_a_run(settings, consumed_twice=True))
    report = asyncio.run(check_invariants_from_topics(settings, EXPECTED))
    broken = {c.name: c.culprits for c in report.checks if not c.held}
    assert broken == {"shipped_once": ("TEE@WH-1",), "no_double_effect": ("TEE@WH-1",),
                      "conservation": ("TEE@WH-1",)}
    assert "double effect: shipped TEE@WH-1 caused by R-2 applied 2 times" in report.violations
