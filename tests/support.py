"""Helpers for the integration and end-to-end tests: publish, wait, read topics back."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from baton.feeds import wait_stock_loaded, wait_views_current
from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.envelope import Envelope
from schemas.inventory import CountStock
from schemas.network import Location, LocationConfigured
from schemas.orders import OrderLine, OrderPlaced, ShipTo
from schemas.topics import INVENTORY_COMMANDS, NETWORK
from services.runtime import replay
from services.runtime.admin import ensure_topics, wait_caught_up
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings


def warehouse(location_id: str, lat: float = 48.86, lon: float = 2.35, handling_cost: float = 1.0) -> Location:
    return Location(id=location_id, kind="warehouse", lat=lat, lon=lon, capabilities=["ship"],
                    handling_cost=handling_cost)


async def load_network_and_stock(
    settings: Settings, locations: Iterable[Location], stock: dict[tuple[str, str], int]
) -> None:
    async with Publisher(settings, source="tests") as publisher:
        for loc in locations:
            await publisher.publish(NETWORK, loc.id, LocationConfigured(location=loc, network_version=1))
        for (location, sku), qty in stock.items():
            count = CountStock(count_id=f"initial:{location}:{sku}", sku=sku, location=location, qty=qty)
            await publisher.publish(INVENTORY_COMMANDS, sku, count)
        await publisher.flush()


def ship_order(order_id: str, lines: dict[str, int], lat: float = 48.8, lon: float = 2.3) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        channel="web",
        customer_id="C-test",
        lines=[OrderLine(sku=sku, qty=qty, unit_price=10.0) for sku, qty in lines.items()],
        delivery=ShipTo(lat=lat, lon=lon),
    )


async def wait_for(
    predicate: Any, timeout_s: float, what: str, interval: float = 0.25, explain: Any = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    detail = f": {await explain()}" if explain else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")


async def order_statuses(settings: Settings, order_ids: list[str]) -> dict[str, str | None]:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        views = await read_model.read_orders(order_ids)
        return {oid: (view["status"] if view else None) for oid, view in views.items()}
    finally:
        await read_model.close()


async def availability(settings: Settings, sku: str) -> dict[str, dict[str, Any]]:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        return (await read_model.read_availability([sku])).get(sku, {})
    finally:
        await read_model.close()


async def quiescent(settings: Settings, locations: list[str]) -> bool:
    return await wait_caught_up(settings, locations, timeout_s=20)


async def read_topic(settings: Settings, topic: str) -> list[tuple[Envelope | None, bytes]]:
    return await replay.read_topic(settings, topic)


@contextlib.contextmanager
def running_services(
    settings: Settings, locations: list[Location], stock: dict[tuple[str, str], int]
) -> Iterator[ServiceSet]:
    """Topics, network and stock loaded, then every service as its own process; stopped on exit."""
    ids = [loc.id for loc in locations]
    asyncio.run(ensure_topics(settings, ids))
    asyncio.run(load_network_and_stock(settings, locations, stock))
    running = ServiceSet(settings, ids)
    running.start()
    try:
        asyncio.run(running.wait_ready())
        asyncio.run(_wait_stock_seen(settings, running, stock))
        yield running
    finally:
        running.stop()


async def _wait_stock_seen(settings: Settings, running: ServiceSet, stock: dict[tuple[str, str], int]) -> None:
    """The stock in the inventory's read model, then in every service's views: a test's first order must not
    meet an orchestrator a fetch behind (it would be rejected for want of stock that is there)."""
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        await wait_stock_loaded(read_model, stock)
    finally:
        await read_model.close()
    await wait_views_current(settings, running.services)


def run_bench(
    settings: Settings, out: Any, *args: str, timeout_s: int, process_timeout_s: int
) -> subprocess.CompletedProcess[bytes]:
    """``baton bench ... --json`` in the test's namespace, as a user would run it (its own process)."""
    env = {
        "BATON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BATON_REDIS_URL": settings.redis_url,
        "BATON_HOME": str(settings.home),
        "PATH": "/usr/bin:/bin",
    }
    command = [sys.executable, "-m", "baton", "bench", *args, "--json", "--out", str(out),
               "--namespace", settings.namespace, "--timeout", str(timeout_s)]
    return subprocess.run(command, capture_output=True, env=env, timeout=process_timeout_s)
