"""kill -9 the inventory service twice while a few hundred orders flow, restarted at once each time (as a
supervisor would): every order ships, no reservation is decided or ended twice, no stock moves twice, reserved
is back to 0 and on hand exact."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator

import pytest

from baton.processes import ServiceSet
from schemas.inventory import StockMoved
from schemas.topics import INVENTORY_MOVEMENTS, INVENTORY_RESERVATIONS
from services.runtime.admin import consumer_lag
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from tests.e2e.steady import Pace, place_steadily
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
ORDERS = 300
KILLS, FIRST_KILL_AT = 2, ORDERS // 4  # the first kill once this many orders got past reservation
PACE = Pace(per_tick=5, tick_s=0.35)  # about 14 orders a second, once the first ones went through
SKUS = ("TEE", "MUG", "CAP")
STOCK = 400


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    with running_services(settings, [warehouse("WH-1")], {("WH-1", sku): STOCK for sku in SKUS}) as running:
        yield running


def test_inventory_killed_twice_mid_run_loses_and_doubles_nothing(settings: Settings, services: ServiceSet) -> None:
    ordered = asyncio.run(_place_orders_and_kill(settings, services))
    ids = list(ordered)
    statuses = asyncio.run(order_statuses(settings, ids))
    assert Counter(statuses.values()) == {"shipped": ORDERS}
    _assert_ledger_exact(settings, ordered)


async def _place_orders_and_kill(settings: Settings, services: ServiceSet) -> dict[str, dict[str, int]]:
    ordered = {f"K-{n:04d}": {SKUS[n % 3]: 1 + n % 2, SKUS[(n + 1) % 3]: 1} for n in range(ORDERS)}
    orders = [ship_order(order_id, lines) for order_id, lines in ordered.items()]
    placing = asyncio.create_task(place_steadily(settings, orders, PACE))
    ids = list(ordered)

    async def past_reservation() -> int:
        statuses = (await order_statuses(settings, ids)).values()
        return sum(s not in (None, "accepted") for s in statuses)

    progress = FIRST_KILL_AT
    for kill in range(1, KILLS + 1):
        await wait_for(lambda p=progress: _at_least(past_reservation, p), 90, f"{progress} orders allocated")
        services.services["inventory"].kill9()
        at_kill = await past_reservation()
        print(f"\nkill {kill}: inventory killed with {at_kill} of {ORDERS} orders past reservation")
        assert at_kill < ORDERS, "the orders were all through before the kill"
        services.restart("inventory")  # at once, as a supervisor would
        progress = at_kill + ORDERS // 10  # the next kill once the restarted service is back at work
    await placing

    async def all_done() -> bool:
        statuses = set((await order_statuses(settings, ids)).values())
        return statuses == {"shipped"} and await quiescent(settings, ["WH-1"])

    async def explain() -> str:
        statuses = Counter((await order_statuses(settings, ids)).values())
        return f"statuses {dict(statuses)}, lag {await consumer_lag(settings, ['WH-1'])}"

    await wait_for(all_done, 120, "every order to ship after the restarts", explain=explain)
    return ordered


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


def _assert_ledger_exact(settings: Settings, ordered: dict[str, dict[str, int]]) -> None:
    shipped: Counter[str] = Counter()
    for lines in ordered.values():
        shipped.update(lines)
    for sku in SKUS:
        position = asyncio.run(availability(settings, sku))["WH-1"]
        assert position["reserved"] == 0, f"{sku}: a reservation was never ended or ended twice"
        assert position["on_hand"] == STOCK - shipped[sku], f"{sku}: stock moved twice or not at all"
    movements = asyncio.run(read_topic(settings, full_topic_name(settings, INVENTORY_MOVEMENTS)))
    distinct = {env.id: StockMoved.model_validate(env.data) for env, _ in movements if env is not None}
    per_cause: defaultdict[tuple[str, str], int] = defaultdict(int)
    for moved in distinct.values():
        per_cause[(moved.cause_id, moved.kind)] += 1
    assert max(per_cause.values()) == 1, "one cause moved stock twice"
    decisions = asyncio.run(read_topic(settings, full_topic_name(settings, INVENTORY_RESERVATIONS)))
    by_reservation: defaultdict[str, set[str]] = defaultdict(set)
    for env, _ in decisions:
        if env is not None and env.type in ("inventory.stock_reserved.v1", "inventory.reservation_refused.v1"):
            by_reservation[env.data["reservation_id"]].add(env.id)
    assert all(len(ids) == 1 for ids in by_reservation.values()), "a reservation was decided twice"
