"""Orders placed steadily for the kill tests, so that a kill comes while the services work rather than after
a burst they finished in a second."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from baton.publish import Publisher
from schemas.orders import OrderPlaced
from schemas.topics import ORDERS_INBOUND
from services.runtime.settings import Settings
from tests.support import order_statuses, wait_for


@dataclass(frozen=True)
class Pace:
    per_tick: int  # orders placed together
    tick_s: float  # pause between two groups


async def place_steadily(settings: Settings, orders: list[OrderPlaced], pace: Pace) -> None:
    """The first group goes through reservation before the rest follow at ``pace`` (the services' start-up
    does not pile the orders up into one burst)."""
    first = [o.order_id for o in orders[: pace.per_tick]]
    async with Publisher(settings, source="tests") as publisher:
        for n, order in enumerate(orders, start=1):
            await publisher.publish(ORDERS_INBOUND, order.order_id, order)
            if n % pace.per_tick == 0:
                await publisher.flush()
                await asyncio.sleep(pace.tick_s)
            if n == len(first) < len(orders):
                await wait_for(lambda: past_reservation(settings, first, len(first)), 60, "the first orders reserved")
        await publisher.flush()


async def past_reservation(settings: Settings, ids: list[str], at_least: int) -> bool:
    """At least ``at_least`` of the orders got past reservation (any status beyond ``accepted``)."""
    statuses = (await order_statuses(settings, ids)).values()
    return sum(s not in (None, "accepted") for s in statuses) >= at_least
