"""Cancellation on real services: before shipment it releases everything; after shipment it is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.inventory import RecordSupply
from schemas.orders import OrderCancelRequested
from schemas.topics import INVENTORY_COMMANDS, ORDERS_EVENTS, ORDERS_INBOUND
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from tests.support import (
    availability,
    order_statuses,
    quiescent,
    read_topic,
    running_services,
    ship_order,
    wait_for,
    warehouse,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    with running_services(settings, [warehouse("WH-1")], {("WH-1", "TEE"): 3}) as running:
        yield running


def test_cancel_before_shipment_releases_and_after_shipment_is_refused(
    settings: Settings, services: ServiceSet
) -> None:
    asyncio.run(_story(settings))


async def _story(settings: Settings) -> None:
    eta = datetime.now(UTC) + timedelta(days=3)
    async with Publisher(settings, source="tests") as publisher:
        await publisher.publish(INVENTORY_COMMANDS, "TEE", RecordSupply(supply_id="PO-1", sku="TEE", location="WH-1",
                                                                        qty=10, eta=eta))
        await publisher.publish(ORDERS_INBOUND, "O-SHIP", ship_order("O-SHIP", {"TEE": 3}))
        await publisher.flush()

        async def first_shipped() -> bool:
            return (await order_statuses(settings, ["O-SHIP"]))["O-SHIP"] == "shipped"

        await wait_for(first_shipped, 90, "the first order to ship")  # then the second finds no stock left
        await publisher.publish(ORDERS_INBOUND, "O-WAIT", ship_order("O-WAIT", {"TEE": 4}))
        await publisher.flush()

        async def settled() -> bool:
            return await order_statuses(settings, ["O-SHIP", "O-WAIT"]) == {"O-SHIP": "shipped",
                                                                             "O-WAIT": "backordered"}

        await wait_for(settled, 90, "one order shipped and one backordered")
        held = (await availability(settings, "TEE"))["WH-1"]
        assert held["incoming_unreserved"] == 6  # 4 of the 10 incoming promised to O-WAIT
        for order_id in ("O-SHIP", "O-WAIT"):
            await publisher.publish(ORDERS_INBOUND, order_id, OrderCancelRequested(order_id=order_id))
        await publisher.flush()

    async def cancelled() -> bool:
        statuses = await order_statuses(settings, ["O-SHIP", "O-WAIT"])
        return statuses == {"O-SHIP": "shipped", "O-WAIT": "cancelled"} and await quiescent(settings, ["WH-1"])

    await wait_for(cancelled, 60, "the backordered order cancelled, the shipped one not")
    position = (await availability(settings, "TEE"))["WH-1"]
    assert position["incoming_unreserved"] == 10 and position["reserved"] == 0 and position["on_hand"] == 0
    events = await read_topic(settings, full_topic_name(settings, ORDERS_EVENTS))
    refusals = [env.data for env, _ in events if env and env.type == "order.cancel_refused.v1"]
    assert [r["order_id"] for r in refusals] == ["O-SHIP"] and "shipped" in refusals[0]["reason"]
