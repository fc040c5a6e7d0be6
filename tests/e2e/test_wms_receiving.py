"""Receiving on real services: a short and partly damaged delivery is counted against its announcement, put
away, and only then becomes stock on hand in the ledger (good units only), with the differences reported."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.inventory import RecordSupply
from schemas.topics import INVENTORY_COMMANDS, WMS_COMMANDS, WMS_EVENTS
from schemas.wms import ExpectedLine, GoodsReceived, SupplyArrived
from services.runtime.admin import ensure_topics
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from services.wms_node.views import NodeViews
from tests.support import availability, load_network_and_stock, read_topic, wait_for, warehouse

pytestmark = pytest.mark.e2e
LOC = "WH-1"
WORKERS = [{"location": LOC, "short_receive": [{"sku": "TEE", "qty": 3}], "damaged": [{"sku": "TEE", "qty": 2}]}]


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    asyncio.run(ensure_topics(settings, [LOC]))
    asyncio.run(load_network_and_stock(settings, [warehouse(LOC)], {(LOC, "TEE"): 5}))
    running = ServiceSet(settings, [LOC])
    del running.services["orchestrator"]  # receiving needs the node and the ledger only
    running.start(orjson.dumps(WORKERS).decode())
    try:
        asyncio.run(running.wait_ready())
        yield running
    finally:
        running.stop()


def test_a_short_and_damaged_delivery_becomes_stock_once_put_away(settings: Settings, services: ServiceSet) -> None:
    asyncio.run(_receive(settings))


async def _receive(settings: Settings) -> None:
    eta = datetime.now(UTC) + timedelta(days=1)
    async with Publisher(settings, source="tests") as out:
        for sku, qty in (("TEE", 20), ("MUG", 4)):
            await out.publish(INVENTORY_COMMANDS, sku, RecordSupply(supply_id="ASN-1", sku=sku, location=LOC,
                                                                     qty=qty, eta=eta))
        await out.flush()

        async def announced() -> bool:
            tee, mug = await _positions(settings)
            return tee.get("on_hand") == 5 and tee.get("incoming") == 20 and mug.get("incoming") == 4

        await wait_for(announced, 60, "the supply to be known to the ledger")
        arrived = SupplyArrived(supply_id="ASN-1", location=LOC,
                                lines=[ExpectedLine(sku="TEE", qty=20), ExpectedLine(sku="MUG", qty=4)])
        await out.publish(WMS_COMMANDS, "ASN-1", arrived, location=LOC)
        await out.flush()

    async def reports() -> dict[str, GoodsReceived]:
        events = await read_topic(settings, full_topic_name(settings, WMS_EVENTS))
        return {env.id: GoodsReceived.model_validate(env.data) for env, _ in events
                if env is not None and env.type == GoodsReceived.event_type}

    async def received() -> bool:
        tee, mug = await _positions(settings)
        return tee.get("on_hand") == 20 and mug.get("on_hand") == 4 and bool(await reports())

    async def explain() -> str:
        return "TEE {}, MUG {}".format(*await _positions(settings))

    await wait_for(received, 60, "the delivery to be received and put away", explain=explain)
    tee = (await availability(settings, "TEE"))[LOC]
    assert (tee["on_hand"], tee["reserved"], tee["incoming"]) == (5 + 17 - 2, 0, 0)  # ASN closed by its receipt
    goods = await reports()
    assert len(goods) == 1, "one delivery, one report"
    [report] = goods.values()
    assert [(ln.sku, ln.expected, ln.received, ln.damaged) for ln in report.lines] == [
        ("MUG", 4, 4, 0), ("TEE", 20, 17, 2)]

    views = NodeViews(settings.redis_url, settings.namespace, LOC)
    try:
        bins = await views.skus()
        assert sum(bins["TEE"]["bins"].values()) == 20 and bins["TEE"]["damaged"] == {"Q-01": 2}
        assert sum(bins["MUG"]["bins"].values()) == 4
        assert await views.tasks() == []
        assert {t["kind"] for t in await views.done()} == {"receive", "put_away"}
    finally:
        await views.close()


async def _positions(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    return (await availability(settings, "TEE")).get(LOC, {}), (await availability(settings, "MUG")).get(LOC, {})
