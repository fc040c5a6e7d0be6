"""Returns at a WMS node on real services (the node and the ledger, no orchestrator): an announced return is
received and inspected by the simulated workers; sellable units are put away and restocked in the ledger once
(on hand and available grow, a ``restocked`` movement caused by the return), however often the return is
announced; damaged units stay in quarantine, never available; a return received short restocks what came."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.inventory import StockMoved
from schemas.orders import ReturnLine
from schemas.topics import INVENTORY_MOVEMENTS, WMS_COMMANDS, WMS_EVENTS
from schemas.wms import ReceiveReturn, ReturnReceived
from services.runtime.admin import ensure_topics
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from services.wms_node.views import NodeViews
from tests.support import availability, load_network_and_stock, read_topic, wait_for, warehouse

pytestmark = pytest.mark.e2e
LOC = "WH-1"
WORKERS = [{"location": LOC, "short_receive": [{"sku": "SOCK", "qty": 1}]}]
STOCK = {(LOC, "TEE"): 5, (LOC, "MUG"): 4, (LOC, "SOCK"): 0}


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    asyncio.run(ensure_topics(settings, [LOC]))
    asyncio.run(load_network_and_stock(settings, [warehouse(LOC)], STOCK))
    running = ServiceSet(settings, [LOC])
    del running.services["orchestrator"]  # a return's receipt needs the node and the ledger only
    running.start(orjson.dumps(WORKERS).decode())
    try:
        asyncio.run(running.wait_ready())
        yield running
    finally:
        running.stop()


def test_returns_are_inspected_and_only_sellable_units_restocked_once(settings: Settings,
                                                                      services: ServiceSet) -> None:
    asyncio.run(_returns(settings))


def _return(return_id: str, sku: str, qty: int, declared: str | None = None) -> ReceiveReturn:
    return ReceiveReturn(return_id=return_id, order_id=f"O-{return_id}", location=LOC,
                         lines=[ReturnLine(sku=sku, qty=qty)], expected_condition=declared)  # type: ignore[arg-type]


async def _returns(settings: Settings) -> None:
    async def loaded() -> bool:
        return (await _position(settings, "TEE")).get("on_hand") == 5

    await wait_for(loaded, 60, "the stock to be loaded")
    async with Publisher(settings, source="tests") as out:
        for command in (_return("R-1", "TEE", 2), _return("R-1", "TEE", 2),  # announced twice
                        _return("R-2", "MUG", 2, "damaged"), _return("R-3", "SOCK", 2)):
            await out.publish(WMS_COMMANDS, command.order_id, command, location=LOC)
        await out.flush()

    async def reports() -> list[ReturnReceived]:
        events = await read_topic(settings, full_topic_name(settings, WMS_EVENTS))
        return [ReturnReceived.model_validate(env.data) for env, _ in events
                if env is not None and env.type == ReturnReceived.event_type]

    async def settled() -> bool:
        tee, sock = await _position(settings, "TEE"), await _position(settings, "SOCK")
        returned = {r.return_id for r in await reports()}
        return tee.get("on_hand") == 7 and sock.get("on_hand") == 1 and len(returned) == 3

    async def explain() -> str:
        return f"TEE {await _position(settings, 'TEE')}, SOCK {await _position(settings, 'SOCK')}, " \
               f"reports {await reports()}"

    await wait_for(settled, 90, "the returns to be inspected and restocked", explain=explain)
    await asyncio.sleep(1.0)  # anything sent twice would have landed by now

    tee, mug, sock = [await _position(settings, sku) for sku in ("TEE", "MUG", "SOCK")]
    assert (tee["on_hand"], tee["available"]) == (7, 7)
    assert (mug["on_hand"], mug["available"]) == (4, 4), "damaged units never become available"
    assert (sock["on_hand"], sock["available"]) == (1, 1), "a return received short restocks what came"

    found = {r.return_id: [(ln.sku, ln.qty, ln.condition, ln.disposition) for ln in r.lines] for r in await reports()}
    assert len(await reports()) == 3, "one report per return, however often it was announced"
    assert found == {"R-1": [("TEE", 2, "sellable", "restock")], "R-2": [("MUG", 2, "damaged", "refurbish")],
                     "R-3": [("SOCK", 1, "sellable", "restock")]}

    movements = [StockMoved.model_validate(env.data)
                 for env, _ in await read_topic(settings, full_topic_name(settings, INVENTORY_MOVEMENTS))
                 if env is not None and env.type == StockMoved.event_type]
    restocked = sorted((m.sku, m.delta, m.cause_id) for m in movements if m.kind == "restocked")
    assert restocked == [("SOCK", 1, "R-3"), ("TEE", 2, "R-1")]

    views = NodeViews(settings.redis_url, settings.namespace, LOC)
    try:
        bins = await views.skus()
        assert sum(bins["MUG"]["damaged"].values()) == 2 and sum(bins["MUG"]["bins"].values()) == 4
        assert sum(bins["TEE"]["bins"].values()) == 7
        assert await views.tasks() == []
        assert {t["kind"] for t in await views.done()} == {"receive_return", "put_away"}
    finally:
        await views.close()


async def _position(settings: Settings, sku: str) -> dict[str, Any]:
    return (await availability(settings, sku)).get(LOC, {})
