"""A person works a location's queue (no auto-workers): list, claim, confirm a pick from the CLI, a second
worker is refused, the node's HTTP API takes the pack, and the order ships with a tracking number."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from baton.processes import ServiceSet
from baton.publish import Publisher
from schemas.topics import ORDERS_INBOUND
from services.runtime.admin import ensure_topics
from services.runtime.settings import Settings
from services.wms_node.views import NodeViews
from tests.support import availability, load_network_and_stock, order_statuses, ship_order, wait_for, warehouse

pytestmark = pytest.mark.e2e
LOC = "WH-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def node(settings: Settings) -> Iterator[int]:
    asyncio.run(ensure_topics(settings, [LOC]))
    asyncio.run(load_network_and_stock(settings, [warehouse(LOC)], {(LOC, "TEE"): 10}))
    port = _free_port()
    running = ServiceSet(settings, [LOC], auto_workers=False)
    running.services[f"wms-{LOC}"].args += ["--web-port", str(port)]
    running.start()
    try:
        asyncio.run(running.wait_ready())
        yield port
    finally:
        running.stop()


def baton(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {"BATON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "BATON_REDIS_URL": settings.redis_url,
           "BATON_HOME": str(settings.home), "BATON_NAMESPACE": settings.namespace, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "baton", *args], capture_output=True, env=env, timeout=60)


def http(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def open_task(settings: Settings, kind: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        views = NodeViews(settings.redis_url, settings.namespace, LOC)
        try:
            return next((t for t in await views.tasks() if t["kind"] == kind), None)
        finally:
            await views.close()

    found: dict[str, Any] = {}

    async def appeared() -> bool:
        task = await find()
        found.update(task or {})
        return task is not None

    asyncio.run(wait_for(appeared, 60, f"a {kind} task at {LOC}"))
    return found


def test_a_person_works_the_queue_and_the_order_moves_on(settings: Settings, node: int) -> None:
    asyncio.run(_place(settings))
    pick = open_task(settings, "pick")["task_id"]

    listed = baton(settings, "wms", "tasks", "list", "-l", LOC, "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    [task] = orjson.loads(listed.stdout)["tasks"]
    assert task["task_id"] == pick and [(ln["sku"], ln["qty"]) for ln in task["lines"]] == [("TEE", 2)]

    claimed = baton(settings, "wms", "tasks", "claim", pick, "-l", LOC, "-w", "ann", "--json")
    assert claimed.returncode == 0, claimed.stderr.decode()
    assert (orjson.loads(claimed.stdout)["status"], orjson.loads(claimed.stdout)["worker"]) == ("claimed", "ann")
    status, refused = http(node, "/wms/tasks/claim", {"task_id": pick, "worker": "bob"})
    assert status == 409 and refused["refused"].startswith("claimed by ann")
    not_yours = baton(settings, "wms", "tasks", "confirm", pick, "-l", LOC, "-w", "bob")
    assert not_yours.returncode == 1 and b"claimed by ann" in not_yours.stderr

    done = baton(settings, "wms", "tasks", "confirm", pick, "-l", LOC, "-w", "ann")
    assert done.returncode == 0, done.stderr.decode()
    assert b"done" in done.stdout

    pack = open_task(settings, "pack")
    assert pack["parcels"] and pack["parcels"][0]["box"] == "S"
    status, reply = http(node, "/wms/tasks/confirm", {"task_id": pack["task_id"], "worker": "ann"})
    assert status == 200 and reply["status"] == "done"
    status, queue = http(node, "/wms/tasks")
    assert status == 200 and [t["kind"] for t in queue["tasks"]] == ["ship"]

    ship = open_task(settings, "ship")["task_id"]
    assert baton(settings, "wms", "tasks", "confirm", ship, "-l", LOC, "-w", "ann").returncode == 0

    async def shipped() -> bool:
        return (await order_statuses(settings, ["O-1"]))["O-1"] == "shipped"

    asyncio.run(wait_for(shipped, 60, "the order to ship"))
    shown = baton(settings, "orders", "show", "O-1", "--json")
    assert shown.returncode == 0, shown.stderr.decode()
    [shipment] = orjson.loads(shown.stdout)["view"]["shipments"]
    assert shipment["location"] == LOC and shipment["tracking"].startswith("BT")

    # a cycle count by a person finds one unit fewer than the books: the bin and the ledger follow
    assert baton(settings, "wms", "count", "-l", LOC, "--sku", "TEE").returncode == 0
    count = open_task(settings, "count")
    [line] = count["lines"]
    assert (line["sku"], line["qty"]) == ("TEE", 10 - 2)
    counted = baton(settings, "wms", "tasks", "confirm", count["task_id"], "-l", LOC, "-w", "ann",
                    "--counted", f"TEE@{line['bin']}=7")
    assert counted.returncode == 0, counted.stderr.decode()

    async def adjusted() -> bool:
        return (await availability(settings, "TEE"))[LOC]["on_hand"] == 10 - 2 - 1

    asyncio.run(wait_for(adjusted, 60, "the ledger to follow the count"))

    slotting = baton(settings, "wms", "slotting", "-l", LOC, "--json")
    assert slotting.returncode == 0, slotting.stderr.decode()
    proposal = orjson.loads(slotting.stdout)
    assert proposal["skus_with_demand"] == 1 and proposal["saved_m"] > 0


async def _place(settings: Settings) -> None:
    async with Publisher(settings, source="tests") as publisher:
        await publisher.publish(ORDERS_INBOUND, "O-1", ship_order("O-1", {"TEE": 2}))
        await publisher.flush()
