"""Broker faults under load: the services wait, carry on, and lose or double nothing.

On a three-broker cluster of its own (replication 3, ``min.insync.replicas=2``): one broker killed -9 while
orders flow and started again; then each broker bounced in turn (clean stop, start, back in every ISR), the
shape of Kafka's own transactions system test. On a single broker of its own: the broker killed -9 and started
again, Redis restarted (empty: the views are rebuilt from the services' stores), and SIGTERM to every service
while the broker is down (each exits within 10 s). After every fault all the orders so far are shipped and the
invariants of ``baton/invariants.py`` hold, read from the topics and the read model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from baton.feeds import wait_views_current
from baton.invariants import Expected, check_invariants_from_topics
from baton.processes import ServiceSet
from baton.publish import Publisher
from baton.stack.local import LocalStack, StackError
from schemas.topics import ORDERS_INBOUND
from services.runtime.settings import Settings, project_root
from tests.support import availability, order_statuses, quiescent, running_services, ship_order, wait_for, warehouse

pytestmark = [pytest.mark.e2e, pytest.mark.long]  # minutes of broker faults: `make test-long`

CLUSTER_PORT = 27092  # nodes on 27092-27094, controllers on 27192-27194
CLUSTER_REDIS = 27379
SINGLE_PORT = 27292  # its controller on 27293
SINGLE_REDIS = 27380
SKUS = ("TEE", "MUG", "CAP")
LOCATIONS = [warehouse("WH-1"), warehouse("WH-2", lat=45.76, lon=4.83)]
STOCK = {(loc.id, sku): 5000 for loc in LOCATIONS for sku in SKUS}
ORDERS_PER_S = 25.0
SETTLE_S = 240.0
SIGTERM_LIMIT_S = 10.0


@dataclass
class Rig:
    """A stack of the module's own, its services, and every order placed on it so far."""

    stack: LocalStack
    settings: Settings
    services: ServiceSet
    order_ids: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _rig(tmp: Path, port: int, redis_port: int, brokers: int) -> Iterator[Rig]:
    settings = Settings(home=tmp, kafka_bootstrap=f"127.0.0.1:{port}", redis_url=f"redis://127.0.0.1:{redis_port}/0",
                        namespace=f"bf-{uuid.uuid4().hex[:6]}", replication_factor=brokers)
    stack = LocalStack(settings, brokers=brokers, jars_dir=project_root() / ".baton" / "kafka-jars", timeout=120)
    try:
        stack.up()
        settings = settings.model_copy(update={"kafka_bootstrap": stack.bootstrap})
        with running_services(settings, LOCATIONS, STOCK) as services:
            asyncio.run(_stock_seen(settings, services))
            yield Rig(stack, settings, services)
    finally:
        for node in stack.nodes:  # its data is wiped next: no controlled shutdown to wait for
            with contextlib.suppress(StackError):
                stack.kill_node(node.node_id)
        stack.down(wipe=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with _rig(tmp_path_factory.mktemp("faults-cluster"), CLUSTER_PORT, CLUSTER_REDIS, brokers=3) as rig:
        yield rig


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with _rig(tmp_path_factory.mktemp("faults-single"), SINGLE_PORT, SINGLE_REDIS, brokers=1) as rig:
        yield rig


# --- the three-broker cluster ---------------------------------------------------------------------------------


def test_a_broker_killed_while_orders_flow_loses_nothing(cluster: Rig) -> None:
    async def kill_one_broker() -> None:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(cluster.stack.kill_node, 1)  # the first address of every client's bootstrap
        await asyncio.sleep(3.0)
        await asyncio.to_thread(cluster.stack.start_node, 1)
        await wait_for(lambda: every_replica_in_sync(cluster.settings), 120, "broker 1 back in every ISR")

    asyncio.run(_orders_during(cluster, "KILL", 250, kill_one_broker))


def test_each_broker_bounced_in_turn_while_orders_flow_loses_nothing(cluster: Rig) -> None:
    async def bounce_each_broker() -> None:
        for node in (1, 2, 3):
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.stack.stop_node, node)
            await asyncio.to_thread(cluster.stack.start_node, node)
            await wait_for(lambda: every_replica_in_sync(cluster.settings), 120, f"broker {node} back in every ISR")

    asyncio.run(_orders_during(cluster, "BOUNCE", None, bounce_each_broker))


# --- one broker --------------------------------------------------------------------------------------------


def test_the_single_broker_restarted_while_orders_flow_the_services_wait_and_carry_on(single: Rig) -> None:
    async def restart_the_broker() -> None:
        await asyncio.sleep(2.0)
        # a clean stop: a lone broker killed -9 comes back through an unclean leader recovery (decision 0012)
        await asyncio.to_thread(single.stack.stop_node, 1)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(single.stack.start_node, 1)

    asyncio.run(_orders_during(single, "BROKER", 150, restart_the_broker))


def test_redis_restarted_while_orders_flow_the_views_are_rebuilt(single: Rig) -> None:
    async def restart_redis() -> None:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(single.stack.restart_redis, 2.0)

    # the invariants read every order so far from Redis, those settled before it lost its memory included
    asyncio.run(_orders_during(single, "REDIS", 150, restart_redis))


def test_sigterm_stops_every_service_within_10_s_while_the_broker_is_down(single: Rig) -> None:
    services = single.services
    services.kill_and_restart("orchestrator")  # as tried by a new user: a service restarted after a kill
    asyncio.run(services.wait_ready())
    asyncio.run(_place(single.settings, "STOP", 100, None))  # transactions in flight when the broker goes
    single.stack.stop_node(1)
    time.sleep(3.0)  # the services notice: commits hang, the clients retry
    took = _sigterm_all(services)
    assert all(seconds <= SIGTERM_LIMIT_S for seconds in took.values()), took


# --- helpers -----------------------------------------------------------------------------------------------


Fault = Callable[[], Coroutine[Any, Any, None]]


async def _orders_during(rig: Rig, prefix: str, count: int | None, fault: Fault) -> None:
    """Orders at a steady pace while ``fault`` plays (``count`` of them, or until the fault is over), then every
    order so far shipped, every service caught up and every invariant held."""
    faulting = asyncio.create_task(fault())
    placed = await _place(rig.settings, prefix, count, faulting)
    await faulting
    rig.order_ids.extend(placed)

    async def all_shipped() -> bool:
        return set((await order_statuses(rig.settings, rig.order_ids)).values()) == {"shipped"}

    async def not_shipped() -> dict[str, str | None]:
        statuses = await order_statuses(rig.settings, rig.order_ids)
        return {oid: status for oid, status in statuses.items() if status != "shipped"}

    await wait_for(all_shipped, SETTLE_S, "every order shipped", interval=1.0, explain=not_shipped)
    assert await quiescent(rig.settings, [loc.id for loc in LOCATIONS])
    report = await check_invariants_from_topics(rig.settings, Expected(order_ids=tuple(rig.order_ids), skus=SKUS))
    assert report.ok, report.violations
    assert {c.name for c in report.checks} >= {"settled", "no_oversell", "reserved_matches_holds", "shipped_once"}


async def _place(settings: Settings, prefix: str, count: int | None, fault: asyncio.Task[None] | None) -> list[str]:
    """``count`` orders (or until ``fault`` is done), at a steady pace unless there is no fault to pace against."""
    placed: list[str] = []
    async with Publisher(settings, source="tests") as publisher:
        while (len(placed) < count) if count is not None else fault is not None and not fault.done():
            order_id = f"{prefix}-{len(placed):04d}"
            lines = {SKUS[len(placed) % 3]: 1 + len(placed) % 2}
            await publisher.publish(ORDERS_INBOUND, order_id, ship_order(order_id, lines))
            placed.append(order_id)
            if len(placed) % 5 == 0 and fault is not None:
                await publisher.flush()
                await asyncio.sleep(5 / ORDERS_PER_S)
        await publisher.flush()
    return placed


async def _stock_seen(settings: Settings, services: ServiceSet) -> None:
    """The loaded stock is on the ledger and in every service's views (an order placed earlier finds none)."""
    async def loaded() -> bool:
        positions = {sku: await availability(settings, sku) for sku in SKUS}
        return all(positions[sku].get(loc, {}).get("on_hand") == qty for (loc, sku), qty in STOCK.items())

    await wait_for(loaded, 60, "the stock loaded")
    await wait_views_current(settings, services.services)


async def every_replica_in_sync(settings: Settings) -> bool:
    """Every partition of the cluster (internal topics too) has its whole replica set in sync again."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=10000)
    try:
        await admin.start()
        described = await admin.describe_topics(await admin.list_topics())
    except Exception:  # a broker still starting: not yet
        return False
    finally:
        await admin.close()
    return all(sorted(p["isr"]) == sorted(p["replicas"]) for topic in described for p in topic["partitions"])


def _sigterm_all(services: ServiceSet) -> dict[str, float]:
    """SIGTERM every service at once; the seconds each took to exit (the limit + 5 s for one that did not)."""
    started = time.monotonic()
    for service in services.services.values():
        assert service.process is not None and service.alive()
        service.process.terminate()
    took: dict[str, float] = {}
    deadline = started + SIGTERM_LIMIT_S + 5.0
    while len(took) < len(services.services) and time.monotonic() < deadline:
        for name, service in services.services.items():
            if name not in took and not service.alive():
                took[name] = round(time.monotonic() - started, 2)
        time.sleep(0.05)
    for name, service in services.services.items():
        if name not in took:
            took[name] = SIGTERM_LIMIT_S + 5.0
            service.kill9()
    return took
