"""Bad input on the public inbound topic lands on the dead-letter topic with a reason; orders after it ship."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.network import DeadLettered
from schemas.topics import DEAD_LETTERS, ORDERS_INBOUND
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from tests.support import (
    order_statuses,
    read_topic,
    running_services,
    ship_order,
    wait_for,
    warehouse,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    with running_services(settings, [warehouse("WH-1")], {("WH-1", "TEE"): 20}) as running:
        yield running


def test_garbage_and_invalid_orders_are_dead_lettered_and_later_orders_ship(
    settings: Settings, services: ServiceSet
) -> None:
    asyncio.run(_play(settings))
    letters = asyncio.run(read_topic(settings, full_topic_name(settings, DEAD_LETTERS)))
    reasons = [DeadLettered.model_validate(env.data).reason for env, _ in letters if env is not None]
    assert len(reasons) == 2, reasons
    assert any("not JSON" in r for r in reasons), reasons
    assert any("invalid order.placed.v1 data" in r and "lines" in r for r in reasons), reasons
    payloads = [DeadLettered.model_validate(env.data).payload for env, _ in letters if env is not None]
    assert "this is not an event" in payloads
    assert all(s.alive() for s in services.services.values()), "a service died on bad input"


async def _play(settings: Settings) -> None:
    invalid = orjson.loads(_envelope_bytes(settings, "O-before"))
    invalid["data"]["lines"] = []
    async with Publisher(settings, source="tests") as publisher:
        await publisher.publish(ORDERS_INBOUND, "O-before", ship_order("O-before", {"TEE": 1}))
        await publisher.publish_raw(ORDERS_INBOUND, "O-garbage", b"this is not an event")
        await publisher.publish_raw(ORDERS_INBOUND, "O-invalid", orjson.dumps(invalid))
        for n in range(3):
            await publisher.publish(ORDERS_INBOUND, f"O-after-{n}", ship_order(f"O-after-{n}", {"TEE": 2}))
        await publisher.flush()
    ids = ["O-before", "O-after-0", "O-after-1", "O-after-2"]

    async def all_shipped() -> bool:
        return set((await order_statuses(settings, ids)).values()) == {"shipped"}

    await wait_for(all_shipped, 90, "the valid orders to ship")
    assert (await order_statuses(settings, ["O-invalid", "O-garbage"])) == {"O-invalid": None, "O-garbage": None}


def _envelope_bytes(settings: Settings, order_id: str) -> bytes:
    from schemas.envelope import encode, envelope_for

    return encode(envelope_for(ship_order(order_id, {"TEE": 1}), source="tests", correlationid=order_id,
                               causationid=None))
