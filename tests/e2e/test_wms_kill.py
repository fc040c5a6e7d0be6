"""kill -9 a WMS node mid-wave (once while requests queue up, twice while a few hundred orders flow): after each
restart no task is lost or done twice, no parcel ships twice, reserved is back to 0 and on hand exact."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.inventory import StockMoved
from schemas.topics import INVENTORY_MOVEMENTS, ORDERS_INBOUND, WMS_EVENTS, WMS_TASKS
from schemas.wms import FulfilmentAccepted, ParcelShipped, TaskCreated, TaskUpdated
from services.runtime.admin import consumer_lag, ensure_topics
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from services.wms_node.views import NodeViews
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
LOC = "WH-1"
NODE = f"wms-{LOC}"
SKUS = ("TEE", "MUG", "CAP")
STOCK = 300
BEFORE, WHILE_DOWN = 40, 20
FLOWING = 240  # orders placed at once for the kill-twice test (under 300 units of each SKU in all)
WORKERS = orjson.dumps([{"location": LOC, "pace_s": 0.02}]).decode()  # a task takes a worker 20 ms
CONFIG = orjson.dumps({"waves": {"max_orders": 8, "max_wait_s": 0.3}}).decode()


@pytest.fixture
def services(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceSet]:
    monkeypatch.setenv("BATON_WMS_CONFIG", CONFIG)
    asyncio.run(ensure_topics(settings, [LOC]))
    asyncio.run(load_network_and_stock(settings, [warehouse(LOC)], {(LOC, sku): STOCK for sku in SKUS}))
    running = ServiceSet(settings, [LOC])
    running.start(WORKERS)
    try:
        asyncio.run(running.wait_ready())
        yield running
    finally:
        running.stop()


def test_a_node_killed_twice_while_orders_flow_loses_and_doubles_nothing(
    settings: Settings, services: ServiceSet
) -> None:
    ordered = orders(0, FLOWING)
    asyncio.run(_kill_twice_while_flowing(settings, services, ordered))
    statuses = asyncio.run(order_statuses(settings, list(ordered)))
    assert Counter(statuses.values()) == {"shipped": len(ordered)}
    _assert_each_task_once_and_each_parcel_once(settings, ordered)
    _assert_ledger_exact(settings, ordered)


async def _kill_twice_while_flowing(settings: Settings, services: ServiceSet, ordered: dict[str, dict[str, int]]) \
        -> None:
    await _place(settings, ordered)
    ids = list(ordered)

    async def shipped() -> int:
        return list((await order_statuses(settings, ids)).values()).count("shipped")

    for kill, progress in enumerate((FLOWING // 6, FLOWING // 2), start=1):
        await wait_for(lambda p=progress: _at_least(shipped, p), 120, f"{progress} orders shipped")
        services.services[NODE].kill9()
        print(f"\nkill {kill}: {NODE} killed with {await shipped()} of {FLOWING} orders shipped")
        services.restart(NODE, WORKERS)  # at once, as a supervisor would
        if kill == 1:  # the node starts again and is killed again as soon as it handles anything
            await wait_for(lambda p=progress: _at_least(shipped, p + 1), 60, "the restarted node to ship")
            services.services[NODE].kill9()
            print(f"kill {kill}b: {NODE} killed again just after its restart")
            services.restart(NODE, WORKERS)

    async def all_done() -> bool:
        return await shipped() == len(ids) and await quiescent(settings, [LOC])

    async def explain() -> str:
        statuses = Counter((await order_statuses(settings, ids)).values())
        return f"statuses {dict(statuses)}, lag {await consumer_lag(settings, [LOC])}"

    await wait_for(all_done, 180, "every order to ship after the restarts", explain=explain)


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


def orders(first: int, count: int) -> dict[str, dict[str, int]]:
    return {f"K-{n:04d}": {SKUS[n % 3]: 1 + n % 2, SKUS[(n + 1) % 3]: 1} for n in range(first, first + count)}


@pytest.mark.long  # the node's kill test in `make test` is the one above (killed twice while orders flow)
def test_a_node_killed_mid_wave_loses_and_doubles_nothing(settings: Settings, services: ServiceSet) -> None:
    ordered = {**orders(0, BEFORE), **orders(BEFORE, WHILE_DOWN)}
    at_kill = asyncio.run(_kill_mid_wave(settings, services))
    assert 0 < at_kill["shipped"] < BEFORE and at_kill["open_tasks"] > 0, f"not killed mid-wave: {at_kill}"
    statuses = asyncio.run(order_statuses(settings, list(ordered)))
    assert Counter(statuses.values()) == {"shipped": len(ordered)}
    _assert_each_task_once_and_each_parcel_once(settings, ordered)
    _assert_ledger_exact(settings, ordered)


async def _place(settings: Settings, placed: dict[str, dict[str, int]]) -> None:
    async with Publisher(settings, source="tests") as publisher:
        for order_id, lines in placed.items():
            await publisher.publish(ORDERS_INBOUND, order_id, ship_order(order_id, lines))
        await publisher.flush()


async def _kill_mid_wave(settings: Settings, services: ServiceSet) -> dict[str, int]:
    first, second = orders(0, BEFORE), orders(BEFORE, WHILE_DOWN)
    await _place(settings, first)

    async def some_shipped() -> bool:
        return list((await order_statuses(settings, list(first))).values()).count("shipped") >= 8

    await wait_for(some_shipped, 90, "the first parcels to ship")
    services.services[NODE].kill9()
    views = NodeViews(settings.redis_url, settings.namespace, LOC)
    try:
        at_kill = {"shipped": list((await order_statuses(settings, list(first))).values()).count("shipped"),
                   "open_tasks": len(await views.tasks())}
    finally:
        await views.close()
    await _place(settings, second)  # requests queue up in the node's inbox while it is down
    await asyncio.sleep(1.0)
    services.restart(NODE, WORKERS)
    ids = [*first, *second]

    async def all_done() -> bool:
        return set((await order_statuses(settings, ids)).values()) == {"shipped"} and await quiescent(settings, [LOC])

    async def explain() -> str:
        statuses = Counter((await order_statuses(settings, ids)).values())
        return f"statuses {dict(statuses)}, lag {await consumer_lag(settings, [LOC])}"

    await wait_for(all_done, 120, "every order to ship after the node's restart", explain=explain)
    return at_kill


def _assert_each_task_once_and_each_parcel_once(settings: Settings, ordered: dict[str, dict[str, int]]) -> None:
    tasks = asyncio.run(read_topic(settings, full_topic_name(settings, WMS_TASKS, LOC)))
    created: defaultdict[str, set[str]] = defaultdict(set)
    done: defaultdict[str, set[str]] = defaultdict(set)
    for env, _ in tasks:
        if env is None:
            continue
        if env.type == TaskCreated.event_type:
            created[env.data["task_id"]].add(env.id)
        elif env.type == TaskUpdated.event_type:
            update = TaskUpdated.model_validate(env.data)
            if update.status == "done" and update.refused is None:
                done[update.task_id].add(env.id)
    events = asyncio.run(read_topic(settings, full_topic_name(settings, WMS_EVENTS)))
    accepted = {env.data["request_id"]: env.data["order_id"] for env, _ in events
                if env is not None and env.type == FulfilmentAccepted.event_type}
    assert sorted(accepted.values()) == sorted(ordered), "every order is one request to the node"
    requests = set(accepted)
    expected_tasks = {f"{rid}/{kind}" for rid in requests for kind in ("pick", "pack", "ship")}
    assert set(created) == expected_tasks, "a task was lost or made up"
    assert all(len(ids) == 1 for ids in created.values()), "a task was created twice"
    assert set(done) == expected_tasks and all(len(ids) == 1 for ids in done.values()), "a task was done twice"

    shipped: defaultdict[str, set[str]] = defaultdict(set)
    parcels: defaultdict[str, set[str]] = defaultdict(set)
    for env, _ in events:
        if env is not None and env.type == ParcelShipped.event_type:
            parcel = ParcelShipped.model_validate(env.data)
            shipped[parcel.request_id].add(env.id)
            parcels[parcel.request_id].add(parcel.tracking)
    assert set(shipped) == requests
    assert all(len(ids) == 1 for ids in shipped.values()), "a parcel shipped twice"
    assert all(len(t) == 1 for t in parcels.values())

    views = asyncio.run(_order_views(settings, list(ordered)))
    assert all(v is not None and len(v["shipments"]) == 1 for v in views.values()), "an order got two shipments"


async def _order_views(settings: Settings, order_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        return await read_model.read_orders(order_ids)
    finally:
        await read_model.close()


def _assert_ledger_exact(settings: Settings, ordered: dict[str, dict[str, int]]) -> None:
    shipped: Counter[str] = Counter()
    for lines in ordered.values():
        shipped.update(lines)
    books = asyncio.run(_node_books(settings))
    for sku in SKUS:
        position = asyncio.run(availability(settings, sku))[LOC]
        assert position["reserved"] == 0, f"{sku}: a reservation was never ended or ended twice"
        assert position["on_hand"] == STOCK - shipped[sku], f"{sku}: stock moved twice or not at all"
        assert sum(books[sku]["bins"].values()) == STOCK - shipped[sku], f"{sku}: the node's bins disagree"
        assert books[sku]["allocated"] == {}, f"{sku}: units still allocated to picks"
    movements = asyncio.run(read_topic(settings, full_topic_name(settings, INVENTORY_MOVEMENTS)))
    per_cause: Counter[tuple[str, str]] = Counter()
    for env in {env.id: env for env, _ in movements if env is not None}.values():
        moved = StockMoved.model_validate(env.data)
        per_cause[(moved.cause_id, moved.kind)] += 1
    assert max(per_cause.values()) == 1, "one cause moved stock twice"


async def _node_books(settings: Settings) -> dict[str, dict[str, Any]]:
    views = NodeViews(settings.redis_url, settings.namespace, LOC)
    try:
        return await views.skus()
    finally:
        await views.close()
