"""kill -9 of the engine's processes while inputs flow: every input applied once in state, one output each."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import orjson
import pytest

from services.runtime.engine import changelog_topic
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings, project_root
from tests.support_engine import TOY_IN, TOY_OUT, create_toy_topics, out_records, read_all, toy_command

INPUTS = 3000
SKUS = 40


class ToyProcess:
    """The toy counting service as its own process (``python -m tests.support_engine``)."""

    def __init__(self, settings: Settings, name: str, instance_id: str | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.log_path = settings.home / "runs" / settings.namespace / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "BATON_NAMESPACE": self.settings.namespace,
            "BATON_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "BATON_REDIS_URL": self.settings.redis_url,
        }
        if self.instance_id:
            env["BATON_INSTANCE_ID"] = self.instance_id
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support_engine"], cwd=project_root(), env=env,
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    async def wait_heartbeat(self, timeout_s: float = 60.0) -> None:
        """The runner's heartbeat in Redis carries this process's pid (what ``ServiceSet.wait_ready`` waits for)."""
        assert self.process is not None
        read_model = ReadModel(self.settings.redis_url, self.settings.namespace)
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while (await read_model.services()).get("toy-counter", {}).get("pid") != self.process.pid:
                assert asyncio.get_running_loop().time() < deadline, f"no heartbeat; see {self.log_path}"
                await asyncio.sleep(0.2)
        finally:
            await read_model.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM; the exit status (None when it had to be killed or was not running)."""
        status = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
        return status


def inputs() -> list[tuple[str, str]]:
    return [(f"k-{i}", f"SKU-{i % SKUS}") for i in range(INPUTS)]


async def feed(settings: Settings, duration_s: float) -> None:
    """Every input once (idempotent producer), spread over ``duration_s``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        chunk = 100
        for start in range(0, INPUTS, chunk):
            for count_id, sku in inputs()[start:start + chunk]:
                await producer.send(settings.topic(TOY_IN), toy_command(count_id, sku, qty=2), key=sku.encode())
            await asyncio.sleep(duration_s * chunk / INPUTS)
        await producer.flush()
    finally:
        await producer.stop()


async def settled_outputs(settings: Settings, timeout_s: float) -> list[dict[str, object]]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = out_records(await read_all(settings, settings.topic(TOY_OUT), timeout_s=30))
        if len(found) >= INPUTS or asyncio.get_running_loop().time() > deadline:
            await asyncio.sleep(2)  # anything beyond one per input (a duplicate) would show now
            return out_records(await read_all(settings, settings.topic(TOY_OUT), timeout_s=30))
        await asyncio.sleep(1)


async def state_in_changelog(settings: Settings) -> dict[str, dict[str, int]]:
    state: dict[str, dict[str, int]] = {}
    for key, value in await read_all(settings, changelog_topic(settings, "toy-counter", "counts"), timeout_s=30):
        assert key is not None
        if value is None:
            state.pop(key.decode(), None)
        else:
            state[key.decode()] = orjson.loads(value)
    return state


def check_exactly_once(outputs: list[dict[str, object]], state: dict[str, dict[str, int]], log: Path) -> None:
    ids = collections.Counter(str(o["id"]) for o in outputs)
    expected = {count_id for count_id, _ in inputs()}
    missing = expected - set(ids)
    repeated = {i: n for i, n in ids.items() if n > 1}
    assert not missing and not repeated, (
        f"{len(missing)} inputs without output, {len(repeated)} with more than one; see {log}"
    )
    per_sku = collections.Counter(sku for _, sku in inputs())
    assert state == {sku: {"n": n, "total": 2 * n} for sku, n in per_sku.items()}
    # each SKU's outputs number its inputs 1..n: no count was applied twice nor skipped
    numbers: dict[str, list[int]] = collections.defaultdict(list)
    sku_of = dict(inputs())
    for o in outputs:
        numbers[sku_of[str(o["id"])]].append(int(str(o["n"])))
    assert all(sorted(ns) == list(range(1, per_sku[sku] + 1)) for sku, ns in numbers.items())


# static membership is what the services run with; the dynamic variant is half a minute more (`make test-long`)
@pytest.mark.parametrize(
    "static_membership", [pytest.param(False, marks=pytest.mark.long), True], ids=["dynamic", "static"]
)
async def test_kill_9_twice_every_input_applied_once(settings: Settings, static_membership: bool) -> None:
    await create_toy_topics(settings)
    toy = ToyProcess(settings, "toy-1", instance_id="1" if static_membership else None)
    toy.start()
    stopped = None
    try:
        await toy.wait_heartbeat()
        feeding = asyncio.create_task(feed(settings, duration_s=15))
        for _ in range(2):
            await asyncio.sleep(5)
            toy.kill()
            toy.start()
        await feeding
        outputs = await settled_outputs(settings, timeout_s=120)
        await toy.wait_heartbeat()
    finally:
        stopped = toy.stop()
    check_exactly_once(outputs, await state_in_changelog(settings), toy.log_path)
    assert stopped == 0  # SIGTERM: the batch finished, producers closed, the group left, exit 0
    assert '"engine_stopped"' in toy.log_path.read_text()


@pytest.mark.long  # the services' own case is tests/e2e/test_orchestrator_kill.py (two orchestrators, one killed)
async def test_two_instances_one_killed_mid_flow(settings: Settings) -> None:
    await create_toy_topics(settings)
    first, second = ToyProcess(settings, "toy-a"), ToyProcess(settings, "toy-b")
    first.start()
    second.start()
    try:
        feeding = asyncio.create_task(feed(settings, duration_s=15))
        await asyncio.sleep(6)
        first.kill()
        await feeding
        outputs = await settled_outputs(settings, timeout_s=120)
    finally:
        first.stop()
        second.stop()
    check_exactly_once(outputs, await state_in_changelog(settings), second.log_path)
