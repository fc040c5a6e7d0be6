"""kill -9 the orchestrator while orders flow: every order settles, nothing lost, nothing done twice.

Two stories: one instance killed twice and restarted at once (as a supervisor would), and two instances
sharing the tasks of one consumer group, one of them killed for good (the other takes its tasks over, with
their state restored from the changelog).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.invariants import Expected, check_invariants_from_topics
from baton.processes import ServiceProcess, ServiceSet
from baton.publish import Publisher
from schemas.topics import ORDERS_EVENTS, ORDERS_INBOUND
from services.runtime.admin import consumer_lag, ensure_topics
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
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
ORDERS = 500
SKUS = ("TEE", "MUG", "CAP")
LOCATIONS = (warehouse("WH-NEAR", lat=48.86), warehouse("WH-FAR", lat=45.76, lon=4.84))
STOCK = {(loc.id, sku): 200 for loc in LOCATIONS for sku in SKUS}
SECOND = "orchestrator-b"


@contextlib.contextmanager
def services_with(settings: Settings, orchestrators: int) -> Iterator[ServiceSet]:
    """Network and stock loaded, then every service as its own process (``orchestrators`` instances)."""
    ids = [loc.id for loc in LOCATIONS]
    asyncio.run(ensure_topics(settings, ids))
    asyncio.run(load_network_and_stock(settings, LOCATIONS, STOCK))
    running = ServiceSet(settings, ids)
    if orchestrators == 2:
        running.services[SECOND] = ServiceProcess(SECOND, ["orchestrator", "--instance", "b"],
                                                  running.log_dir() / f"{SECOND}.log")
    running.start()
    try:
        asyncio.run(running.wait_ready())
        yield running
    finally:
        running.stop()


def orders() -> dict[str, dict[str, int]]:
    """Single-line orders of one or two units, the SKUs in turn."""
    return {f"K-{n:04d}": {SKUS[n % 3]: 1 + n % 2} for n in range(ORDERS)}


def test_orchestrator_killed_twice_mid_run_loses_and_doubles_nothing(settings: Settings) -> None:
    ordered = orders()
    with services_with(settings, orchestrators=1) as services:
        asyncio.run(_place(settings, ordered))
        for progressed in (ORDERS // 5, ORDERS // 2):
            asyncio.run(_wait_progress(settings, list(ordered), progressed))
            services.services["orchestrator"].kill9()
            services.restart("orchestrator")
        asyncio.run(_wait_all_shipped(settings, list(ordered)))
    _assert_nothing_lost_or_doubled(settings, ordered)


def test_two_orchestrators_share_the_work_and_one_killed_loses_and_doubles_nothing(settings: Settings) -> None:
    ordered = orders()
    with services_with(settings, orchestrators=2) as services:
        logs = {name: services.services[name].log_path for name in ("orchestrator", SECOND)}
        asyncio.run(wait_for(lambda: _split(logs), 60, "the two instances to share the tasks"))
        asyncio.run(_place(settings, ordered))
        asyncio.run(_wait_progress(settings, list(ordered), ORDERS // 4))
        services.services["orchestrator"].kill9()  # for good: the other instance takes its tasks over
        asyncio.run(_wait_all_shipped(settings, list(ordered)))
        assert _tasks_held(logs[SECOND]) == {0, 1, 2, 3}, "the survivor did not take every task over"
    _assert_nothing_lost_or_doubled(settings, ordered)


async def _place(settings: Settings, ordered: dict[str, dict[str, int]]) -> None:
    async with Publisher(settings, source="tests") as publisher:
        for order_id, lines in ordered.items():
            await publisher.publish(ORDERS_INBOUND, order_id, ship_order(order_id, lines))
        await publisher.flush()


async def _wait_progress(settings: Settings, ids: list[str], count: int) -> None:
    async def progressed() -> bool:
        statuses = (await order_statuses(settings, ids)).values()
        return sum(s not in (None, "accepted") for s in statuses) >= count

    await wait_for(progressed, 120, f"{count} orders to get past reservation")


async def _wait_all_shipped(settings: Settings, ids: list[str]) -> None:
    locations = [loc.id for loc in LOCATIONS]

    async def all_done() -> bool:
        statuses = set((await order_statuses(settings, ids)).values())
        return statuses == {"shipped"} and await quiescent(settings, locations)

    async def explain() -> str:
        statuses = Counter((await order_statuses(settings, ids)).values())
        return f"statuses {dict(statuses)}, lag {await consumer_lag(settings, locations)}"

    await wait_for(all_done, 240, "every order to ship after the kills", explain=explain)


def _assert_nothing_lost_or_doubled(settings: Settings, ordered: dict[str, dict[str, int]]) -> None:
    expected = Expected(order_ids=tuple(ordered), skus=SKUS, initial_stock=STOCK, initial_cause_prefix="initial:")
    report = asyncio.run(check_invariants_from_topics(settings, expected))
    assert report.ok, report.violations
    shipped: Counter[str] = Counter()
    for lines in ordered.values():
        shipped.update(lines)
    for sku in SKUS:
        positions = asyncio.run(availability(settings, sku))
        assert all(p["reserved"] == 0 for p in positions.values()), f"{sku}: a hold never ended: {positions}"
        on_hand = sum(p["on_hand"] for p in positions.values())
        assert on_hand == 2 * 200 - shipped[sku], f"{sku}: stock moved twice or not at all"
    events = asyncio.run(read_topic(settings, full_topic_name(settings, ORDERS_EVENTS)))
    decided: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for envelope, _ in events:
        if envelope is not None and envelope.type in ("order.accepted.v1", "order.allocated.v1"):
            decided[(envelope.type, envelope.data["order_id"])].add(envelope.id)
    assert len(decided) == 2 * ORDERS, "an order was never accepted or allocated"
    assert all(len(ids) == 1 for ids in decided.values()), "an order was accepted or allocated twice"


def _tasks_held(log: Path) -> set[int]:
    """The tasks an instance held last, from its log (the engine logs every assignment)."""
    held: set[int] = set()
    if not log.exists():
        return held
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "tasks_assigned":
                held = set(entry.get("tasks", []))
    return held


async def _split(logs: dict[str, Path]) -> bool:
    first, second = (_tasks_held(path) for path in logs.values())
    return bool(first) and bool(second) and not first & second and first | second == {0, 1, 2, 3}
