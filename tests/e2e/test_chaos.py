"""Chaos on real services: each service killed with SIGKILL while orders flow and restarted at once; every
restart is timed back from Kafka, every order settles and every invariant holds (read from the topics)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from baton.bench.chaos import Chaos, KillPlan
from baton.invariants import Expected, check_invariants_from_topics
from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.topics import ORDERS_INBOUND
from services.runtime.settings import Settings
from tests.support import order_statuses, quiescent, running_services, ship_order, wait_for, warehouse

pytestmark = pytest.mark.e2e
ORDERS = 150
LOAD_S = 6.0
SKUS = ("TEE", "MUG", "CAP")
LOCATIONS = [warehouse("WH-1"), warehouse("WH-2", lat=45.76, lon=4.83)]


@pytest.fixture
def services(settings: Settings) -> Iterator[ServiceSet]:
    stock = {(loc.id, sku): 200 for loc in LOCATIONS for sku in SKUS}
    with running_services(settings, LOCATIONS, stock) as running:
        yield running


def test_every_service_killed_while_orders_flow_comes_back_and_loses_nothing(
    settings: Settings, services: ServiceSet
) -> None:
    chaos = Chaos(services, [KillPlan.parse("orchestrator:1"), KillPlan.parse("inventory:1"),
                             KillPlan.parse("wms:1")], seed=5, duration_s=LOAD_S)
    order_ids = asyncio.run(_load_under_chaos(settings, chaos))

    assert sorted(r.service for r in chaos.restarts)[:2] == ["inventory", "orchestrator"]
    assert len(chaos.restarts) == 3 and not chaos.skipped
    assert all(r.seconds is not None and r.seconds > 0 for r in chaos.restarts), chaos.restarts
    report = asyncio.run(check_invariants_from_topics(settings, Expected(order_ids=tuple(order_ids), skus=SKUS)))
    assert report.ok, report.violations
    assert {c.name for c in report.checks} >= {"settled", "no_oversell", "reserved_matches_holds", "shipped_once"}


async def _load_under_chaos(settings: Settings, chaos: Chaos) -> list[str]:
    load_over = asyncio.Event()
    kills = asyncio.create_task(chaos.run(load_over))
    order_ids = [f"C-{n:04d}" for n in range(ORDERS)]
    async with Publisher(settings, source="tests") as publisher:
        for n, order_id in enumerate(order_ids):
            lines = {SKUS[n % 3]: 1 + n % 2}
            await publisher.publish(ORDERS_INBOUND, order_id, ship_order(order_id, lines))
            if n % 10 == 9:
                await publisher.flush()
                await asyncio.sleep(LOAD_S / (ORDERS / 10))
        await publisher.flush()
    await asyncio.sleep(1.0)  # the last kill lands inside the load
    load_over.set()
    await kills

    async def all_shipped() -> bool:
        return set((await order_statuses(settings, order_ids)).values()) == {"shipped"}

    await wait_for(all_shipped, 120, "every order shipped",
                   explain=lambda: order_statuses(settings, order_ids))
    # the shipments' follow-up (stock consumed) comes after the status: wait until every service caught up
    assert await quiescent(settings, [loc.id for loc in LOCATIONS])
    return order_ids
