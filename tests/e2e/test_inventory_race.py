"""The oversell race on real Kafka: 1,000 single-unit orders placed at once for a SKU with 10 units over two
warehouses. Exactly 10 ship, every other order is rejected (or backordered), on hand never goes below zero,
no reservation is decided or ended twice, and the ledger rebuilt from the commands equals the live one. Then
the same race with the inventory service killed (``kill -9``) and restarted twice while it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from baton.processes import ServiceSet
from baton.stock_history import live_ledgers, rebuilt_ledgers
from schemas.envelope import Envelope
from schemas.inventory import AvailabilityChanged, StockMoved
from schemas.topics import (
    INVENTORY_AVAILABILITY,
    INVENTORY_MOVEMENTS,
    INVENTORY_RESERVATIONS,
    TopicSpec,
)
from services.runtime.admin import consumer_lag, ensure_topics
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from tests.e2e.steady import Pace, place_steadily
from tests.support import (
    availability,
    load_network_and_stock,
    order_statuses,
    quiescent,
    read_topic,
    ship_order,
    wait_for,
    warehouse,
)

pytestmark = pytest.mark.e2e
SKU = "HOT-1"
ORDERS = 1000
STOCK = {"WH-A": 5, "WH-B": 5}
LOCATIONS = list(STOCK)
NOT_SHIPPED = {"rejected", "backordered"}
DECISIONS = ("inventory.stock_reserved.v1", "inventory.reservation_refused.v1")
KILL_PACE = Pace(per_tick=25, tick_s=0.5)  # about 50 orders a second
BURST = Pace(per_tick=ORDERS, tick_s=0)
ENDS = ("inventory.reservation_consumed.v1", "inventory.reservation_released.v1", "inventory.reservation_expired.v1")


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    network = [warehouse("WH-A", 48.86, 2.35), warehouse("WH-B", 45.76, 4.83)]
    asyncio.run(ensure_topics(settings, LOCATIONS))
    asyncio.run(load_network_and_stock(settings, network, {(loc, SKU): qty for loc, qty in STOCK.items()}))
    running = ServiceSet(settings, LOCATIONS)
    running.start()
    try:
        asyncio.run(running.wait_ready())
        yield running
    finally:
        running.stop()


def test_a_thousand_orders_for_ten_units_allocate_exactly_ten(settings: Settings, services: ServiceSet) -> None:
    elapsed = asyncio.run(_race(settings, services, kills=0))
    _assert_exactly_ten(settings)
    print(f"\nrace of {ORDERS} orders for 10 units settled in {elapsed:.1f} s")


@pytest.mark.long  # the inventory's kill test proper is tests/e2e/test_kill_inventory.py; this one is half a minute
def test_the_race_with_the_inventory_killed_twice_has_the_same_outcome(
    settings: Settings, services: ServiceSet
) -> None:
    elapsed = asyncio.run(_race(settings, services, kills=2))
    _assert_exactly_ten(settings)
    print(f"\nrace of {ORDERS} orders with 2 kills settled in {elapsed:.1f} s")


async def _race(settings: Settings, services: ServiceSet, kills: int) -> float:
    ids = [f"H-{n:04d}" for n in range(ORDERS)]
    await _wait_stock_loaded(settings)
    started = time.monotonic()
    orders = [ship_order(order_id, {SKU: 1}, lat=47.0, lon=3.5) for order_id in ids]
    # with kills, placed steadily so that the kills come while the race is on; without, all at once
    placing = asyncio.create_task(place_steadily(settings, orders, KILL_PACE if kills else BURST))

    async def decided() -> int:
        statuses = (await order_statuses(settings, ids)).values()
        return sum(s in NOT_SHIPPED or s == "shipped" for s in statuses)

    if not kills:
        await placing
    progress = ORDERS // 5
    for kill in range(1, kills + 1):
        await wait_for(lambda p=progress: _at_least(decided, p), 120, f"{progress} orders decided before kill {kill}")
        services.services["inventory"].kill9()
        at_kill = await decided()
        print(f"\nkill {kill}: inventory killed with {at_kill} of {ORDERS} orders decided")
        assert at_kill < ORDERS, "the race was over before the kill"
        services.restart("inventory")  # at once, as a supervisor would
        progress = at_kill + ORDERS // 10  # the next kill once the restarted service is back at work
    await placing

    async def all_done() -> bool:
        statuses = Counter((await order_statuses(settings, ids)).values())
        settled = statuses["shipped"] + sum(statuses[s] for s in NOT_SHIPPED)
        return settled == ORDERS and statuses["shipped"] == 10 and await quiescent(settings, LOCATIONS)

    async def explain() -> str:
        statuses = Counter((await order_statuses(settings, ids)).values())
        return f"statuses {dict(statuses)}, lag {await consumer_lag(settings, LOCATIONS)}"

    await wait_for(all_done, 240, "every order to be decided and 10 to ship", interval=0.5, explain=explain)
    elapsed = time.monotonic() - started
    statuses = Counter((await order_statuses(settings, ids)).values())
    assert statuses["shipped"] == 10 and set(statuses) <= {"shipped", *NOT_SHIPPED}, statuses
    return elapsed


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def _wait_stock_loaded(settings: Settings) -> None:
    async def loaded() -> bool:
        docs = await availability(settings, SKU)
        return all(docs.get(loc, {}).get("on_hand") == qty for loc, qty in STOCK.items())

    await wait_for(loaded, 60, "the initial stock in the read model")


def _assert_exactly_ten(settings: Settings) -> None:
    positions = asyncio.run(availability(settings, SKU))
    for location in LOCATIONS:
        assert (positions[location]["on_hand"], positions[location]["reserved"]) == (0, 0), positions

    def topic(spec: TopicSpec) -> list[Envelope]:
        return [env for env, _ in asyncio.run(read_topic(settings, full_topic_name(settings, spec))) if env]

    moves = {e.id: StockMoved.model_validate(e.data) for e in topic(INVENTORY_MOVEMENTS)
             if e.type == "inventory.stock_moved.v1"}
    assert all(m.on_hand_after >= 0 for m in moves.values()), "on hand went below zero"
    shipped = [m for m in moves.values() if m.kind == "shipped"]
    assert len(shipped) == 10 and len({m.cause_id for m in shipped}) == 10, "a reservation shipped twice"
    for change in topic(INVENTORY_AVAILABILITY):  # every availability ever published: never oversold
        pos = AvailabilityChanged.model_validate(change.data)
        assert pos.on_hand >= 0 and pos.reserved <= max(0, pos.on_hand - pos.safety_stock), pos

    decided: defaultdict[str, set[str]] = defaultdict(set)
    ended: defaultdict[str, set[str]] = defaultdict(set)
    consumed = set()
    for env in topic(INVENTORY_RESERVATIONS):
        rid = env.data["reservation_id"]
        if env.type in DECISIONS:
            decided[rid].add(env.id)
        elif env.type in ENDS:
            ended[rid].add(env.id)
            if env.type == ENDS[0]:
                consumed.add(rid)
    assert all(len(ids) == 1 for ids in decided.values()), "a reservation was decided twice"
    assert all(len(ids) == 1 for ids in ended.values()), "a reservation ended twice"
    assert len(consumed) == 10

    live = asyncio.run(live_ledgers(settings))[SKU]
    rebuilt = asyncio.run(rebuilt_ledgers(settings, SKU))[SKU]
    assert rebuilt.model_dump() == live.model_dump(), "the ledger rebuilt from the commands differs from the live one"
