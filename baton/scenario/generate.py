"""``generate:``: many orders at once, reproducible from a seed."""

from __future__ import annotations

import random

from baton.scenario.model import OrderPlacedStep, ReturnStep, Scenario, ScenarioOrder
from schemas.orders import OrderLine, ReturnLine


def generated_orders(scenario: Scenario) -> list[OrderPlacedStep]:
    spec = scenario.generate
    if spec is None:
        return []
    rng = random.Random(spec.seed)
    lats = [loc.lat for loc in scenario.locations]
    lons = [loc.lon for loc in scenario.locations]
    prices = {s.sku: s.price for s in scenario.skus}
    steps = []
    for n in range(1, spec.orders + 1):
        skus = rng.sample(sorted(prices), k=min(len(prices), rng.randint(1, 3)))
        lines = [OrderLine(sku=sku, qty=rng.randint(1, 2), unit_price=prices[sku]) for sku in skus]
        delivery = dict(spec.delivery)
        if delivery.get("mode", "ship") == "ship":
            delivery.setdefault("lat", round(rng.uniform(min(lats), max(lats)), 4))
            delivery.setdefault("lon", round(rng.uniform(min(lons), max(lons)), 4))
        order = ScenarioOrder(
            order_id=f"G-{spec.seed}-{n:05d}",
            channel=spec.channel,
            customer_id=f"C-{rng.randint(1, max(10, spec.orders // 3)):05d}",
            lines=lines,
            delivery=delivery,  # type: ignore[arg-type]
        )
        steps.append(OrderPlacedStep(at_s=0, type="order.placed", order=order))
    return steps


def generated_returns(scenario: Scenario, orders: list[OrderPlacedStep]) -> list[ReturnStep]:
    """Returns of a share of the generated orders (``generate.returns``), each request sent twice."""
    spec = scenario.generate
    if spec is None or not spec.returns:
        return []
    rng = random.Random(spec.seed + 1)  # its own draw: the orders stay those of the seed
    chosen = [step.order for step in orders if rng.random() < spec.returns]
    steps = []
    for n, order in enumerate(chosen):
        line = order.lines[0]
        request = ReturnStep(at_s=spec.returns_from_s + n * spec.returns_every_s, type="return.requested",
                             order_id=order.order_id, return_id=f"R-{order.order_id}",
                             lines=[ReturnLine(sku=line.sku, qty=line.qty)], method="mail", reason="changed_mind")
        steps += [request, request]
    return steps
