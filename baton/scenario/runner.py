"""Play a scenario against the real services on real Kafka and Redis, and collect what became of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from baton.bench.chaos import BackClock, Restart, kill_and_time
from baton.feeds import wait_stock_loaded, wait_views_current
from baton.invariants import (
    SETTLED_STATUSES,
    WAITING_STATUSES,
    check_invariants_from_topics,
    initial_count_prefix,
)
from baton.processes import ServiceSet
from baton.publish import Publisher
from baton.scenario.generate import generated_orders, generated_returns
from baton.scenario.model import (
    ArrivalStep,
    CancelStep,
    CollectedStep,
    OrderPlacedStep,
    ReturnStep,
    Scenario,
    ServiceKilledStep,
    Step,
    StockCountedStep,
    supply_arrivals,
)
from baton.stack.local import LocalStack, ensured_stack
from schemas.catalog import SkuConfigured
from schemas.inventory import CountStock, RecordSupply
from schemas.network import Location, LocationConfigured, RuleSetPublished
from schemas.orders import OrderCancelRequested, OrderPlaced, PickupCollected, ReturnRequested
from schemas.topics import (
    CATALOG,
    DEAD_LETTERS,
    INVENTORY_COMMANDS,
    NETWORK,
    ORDERS_INBOUND,
    RULES,
    WMS_COMMANDS,
)
from schemas.wms import SupplyArrived
from services.orchestrator.domain.rules import parse_rule_set
from services.runtime.admin import ensure_topics, purge_namespace, wait_caught_up
from services.runtime.readmodel import ReadModel
from services.runtime.replay import read_topic
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

SETTLED = SETTLED_STATUSES
# waiting on something outside the run once the whole timeline is played and every service caught up
WAITING = WAITING_STATUSES
EXIT_COMPLETED, EXIT_TIMEOUT = 0, 3
Progress = Callable[[str, int, int], None]


@dataclass
class RunOptions:
    timeout_s: float = 120.0
    namespace: str | None = None
    keep: bool = False
    purge: bool = False
    progress: Progress | None = None


@dataclass
class RunOutcome:
    result: dict[str, Any]
    exit_code: int
    services: ServiceSet | None = field(default=None, repr=False)


def run_scenario(scenario: Scenario, base: Settings, options: RunOptions) -> RunOutcome:
    namespace = options.namespace or f"run-{uuid.uuid4().hex[:6]}"
    settings = base.with_namespace(namespace)
    with stack_for(settings, keep=options.keep):
        return asyncio.run(ScenarioRun(scenario, settings, options).play())


@contextlib.contextmanager
def stack_for(settings: Settings, keep: bool) -> Iterator[None]:
    """Kafka and Redis up for a run: left running with ``keep``, else stopped after if this run started them."""
    if keep:
        LocalStack(settings).up()
        yield
        return
    with ensured_stack(settings):
        yield


class ScenarioRun:
    def __init__(self, scenario: Scenario, settings: Settings, options: RunOptions) -> None:
        self.scenario = scenario
        self.settings = settings
        self.options = options
        arrivals = supply_arrivals(scenario)
        generated = generated_orders(scenario)
        self.steps: list[Step | ArrivalStep] = sorted(
            [*scenario.events, *generated, *generated_returns(scenario, generated), *arrivals], key=lambda s: s.at_s
        )
        self.order_ids = list(dict.fromkeys(s.order.order_id for s in self.steps if isinstance(s, OrderPlacedStep)))
        self.locations = [loc.id for loc in scenario.locations]
        self.services = ServiceSet(settings, self.locations, payments_fail_first=scenario.payments.fail_first)
        self.return_ids = {(s.order_id, s.return_id) for s in self.steps if isinstance(s, ReturnStep)}
        self.read_model = ReadModel(settings.redis_url, settings.namespace)
        self.kills: list[dict[str, Any]] = []  # the service.killed steps played: service, seconds into the run
        self.comebacks: list[asyncio.Task[Restart]] = []  # each killed service's return, timed on Kafka
        self.resources = contextlib.AsyncExitStack()
        self.back_clock: BackClock | None = None

    def _progress(self, phase: str, done: int, total: int) -> None:
        if self.options.progress:
            self.options.progress(phase, done, total)

    async def play(self) -> RunOutcome:
        started = time.monotonic()
        try:
            async with Publisher(self.settings, source="baton/scenario") as publisher:
                await self.bring_up(publisher)
                completed = await self._play_timeline(publisher, started)
            result = await self._result(started, completed)
            return RunOutcome(result, EXIT_COMPLETED if completed else EXIT_TIMEOUT, self.services)
        finally:
            await self.finish()

    async def bring_up(self, publisher: Publisher) -> None:
        """Topics, network, catalog, rules and stock published, then the services started and the stock loaded."""
        await ensure_topics(self.settings, self.locations)
        await self._load_network_and_stock(publisher)
        self.services.start(orjson.dumps([w.model_dump() for w in self.scenario.workers]).decode())
        self._progress("starting services", 0, len(self.services.services))
        await self.services.wait_ready()
        await self._wait_stock_loaded()
        await wait_views_current(self.settings, self.services.services)

    async def finish(self) -> None:
        """Stop the services unless ``keep``; purge the namespace when asked."""
        for comeback in self.comebacks:
            comeback.cancel()
        await self.resources.aclose()
        if not self.options.keep:
            self.services.stop()
        if self.options.purge and not self.options.keep:
            await purge_namespace(self.settings)
        await self.read_model.close()

    async def _load_network_and_stock(self, publisher: Publisher) -> None:
        for loc in self.scenario.locations:
            configured = LocationConfigured(location=Location(**loc.model_dump()), network_version=1)
            await publisher.publish(NETWORK, loc.id, configured)
        for item in self.scenario.skus:  # unit weight and volume: the WMS nodes pack by them
            master = SkuConfigured(sku=item.sku, weight_g=item.weight_g, volume_cm3=item.volume_cm3, price=item.price)
            await publisher.publish(CATALOG, item.sku, master)
        if self.scenario.rules:
            rules = parse_rule_set(self.scenario.rules, "rules")
            published = RuleSetPublished(name=rules.name, version=rules.version, document=self.scenario.rules)
            await publisher.publish(RULES, rules.name, published)
        for row in self.scenario.supply:
            eta = datetime.fromisoformat(row.eta.replace("Z", "+00:00"))
            supply = RecordSupply(supply_id=row.id, sku=row.sku, location=row.location, qty=row.qty, eta=eta)
            await publisher.publish(INVENTORY_COMMANDS, row.sku, supply, correlationid=row.id)
        for (location, sku), (qty, safety) in self._initial_positions().items():
            count = CountStock(count_id=f"{initial_count_prefix(self.settings.namespace)}{location}:{sku}", sku=sku,
                               location=location, qty=qty, safety_stock=safety)
            await publisher.publish(INVENTORY_COMMANDS, sku, count, correlationid=count.count_id)
        await publisher.flush()

    def _initial_positions(self) -> dict[tuple[str, str], tuple[int, int | None]]:
        positions: dict[tuple[str, str], tuple[int, int | None]] = {}
        for row in self.scenario.stock:
            qty, safety = positions.get((row.location, row.sku), (0, None))
            positions[(row.location, row.sku)] = (qty + row.qty, safety)
        for row in self.scenario.safety_stock:
            qty, _ = positions.get((row.location, row.sku), (0, None))
            positions[(row.location, row.sku)] = (qty, row.qty)
        return positions

    async def _wait_stock_loaded(self) -> None:
        expected = {position: qty for position, (qty, _) in self._initial_positions().items()}
        await wait_stock_loaded(self.read_model, expected, progress=self._progress)

    async def _play_timeline(self, publisher: Publisher, started: float) -> bool:
        t0 = time.monotonic()
        for n, step in enumerate(self.steps, 1):
            delay = step.at_s - (time.monotonic() - t0)
            if delay > 0:
                await publisher.flush()
                await asyncio.sleep(delay)
            if isinstance(step, ServiceKilledStep):
                await self._kill(publisher, step, time.monotonic() - t0)
            elif isinstance(step, ReturnStep) and step.after_settled:
                await publisher.flush()
                await self._order_settled(step.order_id, started)
                await self._publish_step(publisher, step)
            else:
                await self._publish_step(publisher, step)
            if n % 50 == 0 or n == len(self.steps):
                self._progress("publishing", n, len(self.steps))
        await publisher.flush()
        return await self._wait_settled(started)

    async def _kill(self, publisher: Publisher, step: ServiceKilledStep, at_s: float) -> None:
        """kill -9 the service and restart it at once; what the timeline published before it is sent first."""
        await publisher.flush()
        if self.back_clock is None:
            self.back_clock = await self.resources.enter_async_context(BackClock(self.settings, self.locations))
        self.comebacks.append(asyncio.create_task(kill_and_time(self.services, self.back_clock, step.process)))
        self.kills.append({"service": step.service, "at_s": round(at_s, 2)})

    async def _timed_kills(self) -> list[dict[str, Any]]:
        """The kills played, each with the seconds its service took to handle a message again."""
        restarts = await asyncio.gather(*self.comebacks)
        await self.resources.aclose()
        return [{**kill, "back_after_s": restart.seconds} for kill, restart in zip(self.kills, restarts, strict=True)]

    async def _publish_step(self, publisher: Publisher, step: Step | ArrivalStep) -> None:
        match step:
            case OrderPlacedStep():
                placed = OrderPlaced(**step.order.model_dump())
                await publisher.publish(ORDERS_INBOUND, placed.order_id, placed)
            case CancelStep():
                cancel = OrderCancelRequested(order_id=step.order_id, reason=step.reason)
                await publisher.publish(ORDERS_INBOUND, step.order_id, cancel)
            case CollectedStep():
                await publisher.publish(ORDERS_INBOUND, step.order_id, PickupCollected(order_id=step.order_id))
            case ArrivalStep():
                arrived = SupplyArrived(supply_id=step.supply_id, location=step.location, lines=step.lines)
                await publisher.publish(WMS_COMMANDS, step.supply_id, arrived, location=step.location)
            case ReturnStep():
                fields = step.model_dump(exclude={"at_s", "type", "after_settled"})
                await publisher.publish(ORDERS_INBOUND, step.order_id, ReturnRequested(**fields))
            case StockCountedStep():
                count_id = f"{self.settings.namespace}:count:{step.at_s}:{step.location}:{step.sku}"
                count = CountStock(count_id=count_id, sku=step.sku, location=step.location, qty=step.qty)
                await publisher.publish(INVENTORY_COMMANDS, step.sku, count, correlationid=count_id)

    async def _wait_settled(self, started: float) -> bool:
        while True:
            views = await self.read_model.read_orders(self.order_ids)
            self._follow_exchanges(views)
            views.update(await self.read_model.read_orders([o for o in self.order_ids if o not in views]))
            settled = sum(1 for v in views.values() if v and v["status"] in SETTLED | WAITING)
            self._progress("settling", settled, len(self.order_ids))
            ready = settled == len(self.order_ids) and _returns_settled(views, self.return_ids)
            ready = ready and await self._arrivals_received()
            if ready and await self._quiescent():
                return True
            if time.monotonic() - started > self.options.timeout_s:
                return False
            await asyncio.sleep(0.25)

    async def _order_settled(self, order_id: str, started: float) -> None:
        """Wait until the order settled (or the run's timeout: the return is then sent, and most likely rejected)."""
        if order_id not in self.order_ids:
            return  # not an order of this run: nothing to wait for, the OMS rejects the return
        while time.monotonic() - started < self.options.timeout_s:
            view = (await self.read_model.read_orders([order_id])).get(order_id)
            if view is not None and view["status"] in SETTLED:
                return
            await asyncio.sleep(0.2)

    def _follow_exchanges(self, views: dict[str, dict[str, Any] | None]) -> None:
        """A received exchange placed a replacement order: it is one of the run's orders from then on."""
        for view in list(views.values()):
            for case in (view or {}).get("returns", []):
                replacement = case.get("exchange_order_id")
                if replacement and replacement not in self.order_ids:
                    self.order_ids.append(replacement)

    async def _arrivals_received(self) -> bool:
        """Every delivery that reached a dock in this run was received into stock.

        Receiving runs on the WMS node's own pace (tasks, put-away), with lulls in which no message is in
        flight, so "everyone caught up" alone could call a backorder settled that this run's supply fills.
        """
        arrivals = [s for s in self.steps if isinstance(s, ArrivalStep)]
        if not arrivals:
            return True
        docs = await self.read_model.read_availability(line.sku for a in arrivals for line in a.lines)
        for arrival in arrivals:
            for line in arrival.lines:
                supplies = docs.get(line.sku, {}).get(arrival.location, {}).get("supplies", [])
                outstanding = {s["supply_id"]: s["outstanding"] for s in supplies}
                if outstanding.get(arrival.supply_id, 0) >= line.qty:
                    return False
        return True

    async def _quiescent(self) -> bool:
        """Every service has caught up: the follow-up work of settled orders (consumed stock) is done."""
        return await wait_caught_up(self.settings, self.locations, timeout_s=30)

    async def _result(self, started: float, completed: bool) -> dict[str, Any]:
        self._follow_exchanges(await self.read_model.read_orders(self.order_ids))
        views = await self.read_model.read_orders(self.order_ids)
        orders = {oid: _order_result(view) for oid, view in views.items()}
        stock = await self._stock()
        invariants = await check_invariants_from_topics(self.settings, self.scenario, orders=orders, stock=stock)
        return {
            "scenario": self.scenario.name,
            "namespace": self.settings.namespace,
            "elapsed_s": round(time.monotonic() - started, 2),
            "completed": completed,
            "orders": orders,
            "stock": stock,
            "dead_letters": await count_messages(self.settings, full_topic_name(self.settings, DEAD_LETTERS)),
            "invariants": invariants.summary(),
            **({"kills": await self._timed_kills()} if self.kills else {}),
        }

    async def _stock(self) -> dict[str, dict[str, dict[str, int]]]:
        skus = sorted({s.sku for s in self.scenario.skus})
        docs = await self.read_model.read_availability(skus)
        out: dict[str, dict[str, dict[str, int]]] = {}
        for location in self.locations:
            for sku in skus:
                doc = docs.get(sku, {}).get(location)
                if doc is None:
                    continue
                out.setdefault(location, {})[sku] = {
                    k: int(doc.get(k, 0)) for k in ("on_hand", "reserved", "available", "incoming", "safety_stock")
                }
        return out


def _returns_settled(views: dict[str, dict[str, Any] | None], return_ids: set[tuple[str, str]]) -> bool:
    """Every return of the timeline is rejected, refunded, or received with nothing (more) to pay."""
    cases = {(order_id, case["return_id"]): case for order_id, view in views.items()
             for case in (view or {}).get("returns", [])}
    for key in return_ids:
        case = cases.get(key)
        if case is None and views.get(key[0]) is None:
            continue  # a return of an order the OMS never took: rejected on the status topic, nothing to wait for
        if case is None or not _return_settled(case):
            return False
    return True


def _return_settled(case: dict[str, Any]) -> bool:
    refund = case.get("refund")
    if case["status"] in ("rejected", "refunded"):
        return True
    return case["status"] == "received" and (refund is None or refund.get("status") == "failed")


def _return_result(case: dict[str, Any]) -> dict[str, Any]:
    """A return as the contract shows it: status, destination, disposition, lines; and what inspection found."""
    return {
        "return_id": case["return_id"],
        "status": case["status"],
        "method": case.get("method"),
        "destination": case.get("destination"),
        "disposition": case.get("disposition"),
        "lines": case.get("lines", []),
        "received": case.get("received", []),
        "reason": case.get("reason"),
        **({"label": case["label"]} if case.get("label") else {}),
        **({"exchange_order_id": case["exchange_order_id"]} if case.get("exchange_order_id") else {}),
    }


def _refund_result(refund: dict[str, Any]) -> dict[str, Any]:
    return {"return_id": refund["return_id"], "amount": refund["amount"], "status": refund.get("status"),
            "attempts": refund.get("attempts", 1), "idempotency_key": refund.get("idempotency_key")}


def _order_result(view: dict[str, Any] | None) -> dict[str, Any]:
    if view is None:
        return {"status": "unknown", "lines": [], "shipments": [], "promised_date": None, "returns": [], "refunds": []}
    return {
        "status": view["status"],
        "reason": view.get("reason"),
        "lines": view["lines"],
        "shipments": [
            {"location": s["location"], "lines": s["lines"], "tracking": s["tracking"], "carrier": s.get("carrier")}
            for s in view["shipments"]
        ],
        "promised_date": view.get("promised_date"),
        "returns": [_return_result(case) for case in view.get("returns", [])],
        "refunds": [_refund_result(refund) for refund in view.get("refunds", [])],
    }


async def count_messages(settings: Settings, topic: str) -> int:
    """How many committed messages a topic holds (end offsets would count transaction markers too)."""
    return len(await read_topic(settings, topic))


__all__ = ["CollectedStep", "RunOptions", "run_scenario"]
