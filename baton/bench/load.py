"""The bench's load: a realistic order mix, placed on the public inbound topic as any outside producer would.

Two shapes: a burst (every order as fast as the producer can) or an open loop (order i is due at
``start + i / rate`` whatever the system does). In the open loop each order carries its scheduled time as
its ``time``, so a producer that falls behind does not hide latency (no coordinated omission); how far it
fell behind is reported.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from baton.bench.report import percentile
from baton.scenario.model import Scenario, parse_scenario
from schemas.envelope import encode, envelope_for
from schemas.orders import OrderLine, OrderPlaced, PickupAt, ShipTo
from schemas.topics import ORDERS_INBOUND
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

DEMO_RESOURCE = "builtin/demo.yaml"
# A store beside the demo's three warehouses: it ships, and serves pickups (BOPIS) from its own shelves.
BENCH_STORE = {"id": "ST-PAR", "kind": "store", "lat": 48.8700, "lon": 2.3300,
               "capabilities": ["ship", "pickup", "reserve", "returns"], "handling_cost": 2.0}
STORE_STOCK = {"TEE-M": 40, "CAP-X": 40, "MUG-1": 40, "TOTE-1": 40}
PLANNED_ORDERS = 300  # the demo's stock covers this many orders with room to spare
PICKUP_SHARE = 0.10  # of the orders, when some location offers pickup
LATE_S = 0.05  # an order sent more than this after its due time counts as late


def default_network(orders: int) -> Scenario:
    """The demo's three warehouses plus a store, stock scaled so that ``orders`` orders are all served."""
    document: dict[str, Any] = yaml.safe_load(resources.files("baton.scenario").joinpath(DEMO_RESOURCE).read_text())
    document.pop("generate", None)
    document["name"] = "bench-three-warehouses-and-a-store"
    document["locations"].append(BENCH_STORE)
    document["stock"] += [{"location": BENCH_STORE["id"], "sku": sku, "qty": qty} for sku, qty in STORE_STOCK.items()]
    factor = max(1, math.ceil(orders / PLANNED_ORDERS))
    document["stock"] = [{**row, "qty": row["qty"] * factor} for row in document["stock"]]
    return parse_scenario(document, f"baton.scenario/{DEMO_RESOURCE} + {BENCH_STORE['id']}")


def network_only(scenario: Scenario) -> Scenario:
    """A scenario file's network, catalog, stock, rules and workers, without its timeline (the bench places orders)."""
    return scenario.model_copy(update={"events": [], "generate": None})


def order_mix(scenario: Scenario, count: int, seed: int = 8) -> list[OrderPlaced]:
    """``count`` orders of 1-3 lines (qty 1-2): shipped to random points of the network, some picked up in store."""
    rng = random.Random(seed)
    prices = {s.sku: s.price for s in scenario.skus}
    skus = sorted(prices)
    lats = [loc.lat for loc in scenario.locations]
    lons = [loc.lon for loc in scenario.locations]
    pickup_points = [loc.id for loc in scenario.locations if "pickup" in loc.capabilities]
    orders = []
    for n in range(1, count + 1):
        chosen = rng.sample(skus, k=min(len(skus), rng.randint(1, 3)))
        lines = [OrderLine(sku=sku, qty=rng.randint(1, 2), unit_price=prices[sku]) for sku in chosen]
        delivery: ShipTo | PickupAt
        if pickup_points and rng.random() < PICKUP_SHARE:
            delivery = PickupAt(location=rng.choice(pickup_points))
        else:
            delivery = ShipTo(lat=round(rng.uniform(min(lats), max(lats)), 4),
                              lon=round(rng.uniform(min(lons), max(lons)), 4))
        orders.append(OrderPlaced(order_id=f"B-{n:06d}", channel=rng.choice(["web", "web", "marketplace", "b2b"]),
                                  customer_id=f"C-{rng.randint(1, max(10, count // 3)):06d}",
                                  lines=lines, delivery=delivery))
    return orders


@dataclass(frozen=True)
class LoadReport:
    mode: str  # burst | open_loop
    orders: int
    target_per_s: float | None
    send_s: float  # first send to the last delivery confirmed
    achieved_per_s: float | None
    behind_max_s: float  # how far the producer fell behind its schedule (open loop), at worst
    behind_p99_s: float
    late_orders: int  # sent more than LATE_S after their due time

    @property
    def fell_behind(self) -> bool:
        return self.late_orders > 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fell_behind": self.fell_behind, "late_threshold_s": LATE_S}


class LoadDriver:
    """Places the orders on the public inbound topic (key: order id), burst or open loop."""

    def __init__(self, settings: Settings, orders: list[OrderPlaced], rate: float | None,
                 on_sent: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.orders = orders
        self.rate = rate
        self.on_sent = on_sent or (lambda _n: None)
        self.topic = full_topic_name(settings, ORDERS_INBOUND)

    async def run(self) -> LoadReport:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            return await self._send_all(producer)
        finally:
            await producer.stop()

    async def _send_all(self, producer: AIOKafkaProducer) -> LoadReport:
        start_mono, start_wall = time.monotonic(), time.time()
        behind: list[float] = []
        deliveries = []
        for n, order in enumerate(self.orders):
            placed_at = None
            if self.rate:
                due = n / self.rate
                wait = due - (time.monotonic() - start_mono)
                if wait > 0:
                    await asyncio.sleep(wait)
                behind.append(max(0.0, time.monotonic() - start_mono - due))
                placed_at = datetime.fromtimestamp(start_wall + due, UTC)
            envelope = envelope_for(order, source="baton/bench", correlationid=order.order_id, causationid=None,
                                    time=placed_at)
            deliveries.append(await producer.send(self.topic, key=order.order_id.encode(), value=encode(envelope)))
            if n % 100 == 99:
                self.on_sent(n + 1)
        await asyncio.gather(*deliveries)  # a record not confirmed is not placed: raise rather than count it
        self.on_sent(len(self.orders))
        send_s = time.monotonic() - start_mono
        return LoadReport(
            mode="open_loop" if self.rate else "burst",
            orders=len(self.orders),
            target_per_s=self.rate,
            send_s=send_s,
            achieved_per_s=len(self.orders) / send_s if send_s > 0 else None,
            behind_max_s=max(behind, default=0.0),
            behind_p99_s=percentile(behind, 99) or 0.0,
            late_orders=sum(1 for b in behind if b > LATE_S),
        )
