"""Chaos: kill -9 services at random moments while orders flow, restart them at once, time their return.

``KillPlan.parse("orchestrator:3")`` (or ``inventory:2``, ``wms:2`` for a random node each time,
``wms:WH-PAR:2`` for that node) says which service dies and how often; ``Chaos.run`` spreads the kills over
the load's duration (never two kills of one service closer than ``min_gap_s``) and restarts each victim
at once, as a supervisor would. A restart is *back* when its consumer group's committed offsets move past
where they stood at the kill (it handled a message again), measured on Kafka, not in the logs; a service
that had nothing to handle is back once its new process beats (its heartbeat) with no backlog waiting.

The stack's own parts die too, when the bench runs on a stack ``baton stack up`` started (its home's PID files):
``broker:N`` kills -9 a random Kafka node (``broker-2:N`` that one), waits ``BROKER_DOWN_S`` and starts it again;
it is back when it is in the ISR of every partition again, and the pipeline is committing again when every
service's group has committed past where it stood at the kill on every partition with records waiting.
``redis:N`` restarts Redis (empty); it is back once every service noticed and is writing its views again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from baton.processes import ServiceSet
from baton.stack.local import LocalStack, redis_answers
from services.runtime.admin import LagProbe, subscriptions
from services.runtime.readmodel import ReadModel
from services.runtime.replay import topic_partitions
from services.runtime.settings import Settings

SERVICES = ("orchestrator", "inventory", "wms", "payments")
STACK_PARTS = ("broker", "redis")  # broker = a random node; broker-K = node K
BROKER_DOWN_S = 3.0  # a killed broker stays down this long before it is started again (a supervisor's delay)
REDIS_DOWN_S = 2.0


class KillPlanError(ValueError):
    """A ``--kill`` value that does not say SERVICE:N."""


@dataclass(frozen=True)
class KillPlan:
    """Kill ``service`` ``times`` times: orchestrator | inventory | payments | wms (a random node) | wms:LOCATION."""

    service: str
    times: int

    @classmethod
    def parse(cls, text: str) -> KillPlan:
        head, _, count = text.strip().rpartition(":")
        if not head or not count.isdigit() or int(count) < 1:
            raise KillPlanError(f"--kill {text!r}: give SERVICE:N with N >= 1, e.g. orchestrator:3 or wms:WH-PAR:2")
        kind, _, location = head.partition(":")
        if re.fullmatch(r"broker(-[1-9])?|redis", head):
            return cls(head, int(count))
        if kind not in SERVICES or (location and kind != "wms") or (kind == "wms" and head.endswith(":")):
            raise KillPlanError(f"--kill {text!r}: the service is one of orchestrator, inventory, payments, wms, "
                                "wms:LOCATION, broker, broker-K (node K), redis")
        return cls(head, int(count))

    @property
    def stack_part(self) -> bool:
        """A part of the stack (a Kafka node, Redis), not a service."""
        return self.service.split("-")[0] in STACK_PARTS

    def candidates(self, names: Iterable[str]) -> list[str]:
        """The processes (``ServiceSet`` names) this plan may kill."""
        names = list(names)
        if self.service == "wms":
            return sorted(n for n in names if n.startswith("wms-"))
        if self.service == "broker":
            return sorted(n for n in names if n.startswith("broker-"))
        wanted = "wms-" + self.service.split(":", 1)[1] if self.service.startswith("wms:") else self.service
        return [wanted] if wanted in names else []


def split_plans(plans: Sequence[KillPlan]) -> tuple[list[KillPlan], list[KillPlan]]:
    """Each plan's kills in two halves: (while the orders flow, while the refunds do). An odd kill goes to the
    refunds: ``orchestrator:1`` is a kill among refunds in flight."""
    first = [KillPlan(p.service, p.times // 2) for p in plans if p.times // 2]
    second = [KillPlan(p.service, p.times - p.times // 2) for p in plans]
    return first, second


@dataclass(frozen=True)
class Restart:
    service: str  # the process killed: orchestrator, inventory, wms-LOCATION
    killed_at: float  # epoch seconds
    back_at: float | None  # the first message handled again (None: not back in time)
    measured_by: str = "offsets"  # offsets: its committed offsets moved; idle: it beat with nothing to handle;
    # isr: a broker back in every partition's ISR; views: every service noticed a Redis restart (rewrites its views)
    answering_at: float | None = None  # a broker or Redis: its process answers again (after the pause)
    committing_at: float | None = None  # a broker: every group committed past the kill where records waited

    @property
    def seconds(self) -> float | None:
        return self._since(self.back_at)

    def _since(self, at: float | None) -> float | None:
        return None if at is None else round(at - self.killed_at, 3)

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "killed_at": self.killed_at, "back_at": self.back_at,
                "seconds": self.seconds, "measured_by": self.measured_by,
                "answering_s": self._since(self.answering_at), "committing_s": self._since(self.committing_at)}


def schedule(plans: Sequence[KillPlan], names: Iterable[str], duration_s: float, seed: int,
             min_gap_s: float = 2.0) -> list[tuple[float, str]]:
    """(seconds after the start, process to kill), in time order, spread over the middle of the load.

    Each plan's moments are drawn uniformly in [10 %, 90 %] of ``duration_s``; a kill closer than
    ``min_gap_s`` to the previous kill of the same process moves later.
    """
    rng = random.Random(seed)
    names = list(names)
    drawn: list[tuple[float, str]] = []
    for plan in plans:
        victims = plan.candidates(names)
        if not victims:
            raise KillPlanError(f"--kill {plan.service}:{plan.times}: no such service in this run")
        for _ in range(plan.times):
            drawn.append((rng.uniform(0.1, 0.9) * duration_s, rng.choice(victims)))
    last: dict[str, float] = {}
    out = []
    for at, name in sorted(drawn):
        at = max(at, last.get(name, -min_gap_s) + min_gap_s)
        last[name] = at
        out.append((round(at, 3), name))
    return sorted(out)


@dataclass
class Chaos:
    services: ServiceSet
    plan: KillPlan | Sequence[KillPlan]
    seed: int = 0
    duration_s: float = 20.0  # how long the load lasts: the kills are spread over it
    min_gap_s: float = 2.0
    back_timeout_s: float = 60.0
    restarts: list[Restart] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # kills not done: the load ended first
    stack: LocalStack | None = None  # the stack's parts to kill (default: the one the settings' home started)
    # one part of the stack down at a time: a second broker killed before the first is back in every ISR would
    # leave one in sync, below min.insync.replicas (a different fault: the cluster refusing writes)
    stack_turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def plans(self) -> list[KillPlan]:
        return [self.plan] if isinstance(self.plan, KillPlan) else list(self.plan)

    def victims(self) -> list[str]:
        """Every process a plan may name: the services, and the stack's nodes and Redis when a plan kills those."""
        names = list(self.services.services)
        if any(plan.stack_part for plan in self.plans):
            if self.stack is None:
                self.stack = LocalStack(self.services.settings)
            names += [f"broker-{node.node_id}" for node in self.stack.nodes] + ["redis"]
        return names

    async def run(self, until: asyncio.Event) -> list[Restart]:
        """Play the kills until ``until`` is set (the load is over), then wait for every victim to be back."""
        moments = schedule(self.plans, self.victims(), self.duration_s, self.seed, self.min_gap_s)
        started = time.monotonic()
        async with BackClock(self.services.settings, self.services.locations) as clock:
            watches = []
            for at, name in moments:
                if await _set_within(until, at - (time.monotonic() - started)):
                    self.skipped.append(name)
                    continue
                watches.append(asyncio.create_task(self._kill(clock, name)))
            self.restarts.extend(await asyncio.gather(*watches))
        return self.restarts

    async def _kill(self, clock: BackClock, name: str) -> Restart:
        if name.startswith("broker-") or name == "redis":
            assert self.stack is not None
            async with self.stack_turn:
                if name == "redis":
                    return await restart_redis_and_time(self.stack, self.services, self.back_timeout_s)
                return await kill_broker_and_time(self.stack, clock, int(name.split("-")[1]), self.back_timeout_s)
        return await kill_and_time(self.services, clock, name, self.back_timeout_s)


async def kill_broker_and_time(stack: LocalStack, clock: BackClock, node_id: int, timeout_s: float = 120.0,
                               down_s: float = BROKER_DOWN_S) -> Restart:
    """kill -9 Kafka node ``node_id``, start it again after ``down_s``; time it back in every ISR and the pipeline
    committing again."""
    at_kill = {group: await clock.committed_group(group) for group in clock.partitions}
    await asyncio.to_thread(stack.kill_node, node_id)
    killed_at = time.time()
    committing = asyncio.create_task(clock.wait_committing(at_kill, timeout_s))
    await asyncio.sleep(down_s)
    await asyncio.to_thread(stack.start_node, node_id)
    answering_at = time.time()
    in_isr_at = await wait_in_every_isr(stack, node_id, killed_at + timeout_s)
    return Restart(f"broker-{node_id}", killed_at, in_isr_at, "isr", answering_at, await committing)


async def restart_redis_and_time(stack: LocalStack, services: ServiceSet, timeout_s: float = 60.0,
                                 down_s: float = REDIS_DOWN_S) -> Restart:
    """Restart Redis (it comes back empty); back once every service has noticed (set its views marker again) and
    so is writing its views again."""
    killed_at = time.time()
    await asyncio.to_thread(stack.restart_redis, down_s)
    answering_at = time.time() if redis_answers(stack.settings.redis_url) else None
    read_model = ReadModel(services.settings.redis_url, services.settings.namespace)
    try:
        deadline = killed_at + timeout_s
        waiting = set(services.services)
        while waiting and time.time() < deadline:
            with contextlib.suppress(Exception):  # connections the restart broke
                waiting = {name for name in waiting if not await read_model.views_marked(name)}
            await asyncio.sleep(0.2)
    finally:
        await read_model.close()
    return Restart("redis", killed_at, None if waiting else time.time(), "views", answering_at)


async def wait_in_every_isr(stack: LocalStack, node_id: int, deadline: float) -> float | None:
    """When ``node_id`` is in the ISR of every partition it replicates (None: not by ``deadline``, epoch s)."""
    settings = stack.admin_settings()
    while time.time() < deadline:
        admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=10000)
        try:
            await admin.start()
            described = await admin.describe_topics(await admin.list_topics())
            partitions = [p for topic in described for p in topic["partitions"]]
            if partitions and all(node_id in p["isr"] for p in partitions if node_id in p["replicas"]):
                return time.time()
        except Exception:  # a cluster still electing leaders: ask again
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    return None


async def kill_and_time(services: ServiceSet, clock: BackClock, name: str, timeout_s: float = 60.0) -> Restart:
    """kill -9 ``name``, restart it at once, and wait until it handles messages again."""
    killed_at = services.kill_and_restart(name)
    return await clock.wait_back(name, killed_at, lambda: services.services[name].pid, timeout_s)


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    if seconds <= 0:
        return event.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


class BackClock:
    """Tells when a restarted service handles messages again, from its consumer group's offsets on Kafka."""

    def __init__(self, settings: Settings, locations: Iterable[str], poll_s: float = 0.1) -> None:
        self.settings = settings
        self.inputs = subscriptions(settings, list(locations))
        self.poll_s = poll_s
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30000)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                         isolation_level="read_committed")
        self.read_model = ReadModel(settings.redis_url, settings.namespace)
        self.partitions: dict[str, list[TopicPartition]] = {}
        self.gaps = LagProbe(settings, [], {})  # tells a gap of aborted records and markers from a backlog

    async def __aenter__(self) -> BackClock:
        await self.admin.start()
        await self.consumer.start()
        await self.gaps.__aenter__()
        topics = {t for ts in self.inputs.values() for t in ts}
        found = await topic_partitions(self.settings, topics)
        self.partitions = {
            group: [TopicPartition(t, p) for t in ts for p in found.get(t, [])] for group, ts in self.inputs.items()
        }
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.read_model.close()
        await self.gaps.__aexit__()
        await self.consumer.stop()
        await self.admin.close()

    async def committed(self, name: str) -> dict[TopicPartition, int]:
        return await self.committed_group(self.settings.group(name))

    async def committed_group(self, group: str, attempts: int = 20) -> dict[TopicPartition, int]:
        """The group's committed offsets; asked again while a broker is away (its coordinator may be moving)."""
        for attempt in range(attempts):
            try:
                offsets = await self.admin.list_consumer_group_offsets(group)
                return {TopicPartition(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def wait_committing(self, at_kill: dict[str, dict[TopicPartition, int]], timeout_s: float) -> float | None:
        """When every group has committed past ``at_kill`` on each partition where records wait (epoch s)."""
        deadline = time.time() + timeout_s
        waiting = dict(at_kill)
        while waiting and time.time() < deadline:
            for group, before in list(waiting.items()):
                with contextlib.suppress(Exception):  # a coordinator moving to another broker: ask again
                    if await self._committing(group, before):
                        del waiting[group]
            if waiting:
                await asyncio.sleep(self.poll_s)
        return None if waiting else time.time()

    async def _committing(self, group: str, before: dict[TopicPartition, int]) -> bool:
        now = await self.committed_group(group)
        tps = self.partitions.get(group, [])
        ends = await self.consumer.end_offsets(tps) if tps else {}
        # a partition is fine once its offsets moved, or when nothing but a transaction marker lies past them
        return all(now.get(tp, -1) > before.get(tp, -1) or end - max(before.get(tp, 0), 0) <= 1
                   for tp, end in ends.items())

    async def wait_back(
        self, name: str, killed_at: float, current_pid: Callable[[], int | None], timeout_s: float
    ) -> Restart:
        """Poll until the group's committed offsets move past where the kill left them.

        ``current_pid`` gives the service's newest process (killed again before it came back, the service is
        back once its next incarnation is).
        """
        at_kill = await self.committed(name)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            await asyncio.sleep(self.poll_s)
            now = await self.committed(name)
            if any(offset > at_kill.get(tp, -1) for tp, offset in now.items()):
                return Restart(name, killed_at, time.time())
            if await self._idle(name, at_kill, current_pid()):
                return Restart(name, killed_at, time.time(), measured_by="idle")
        return Restart(name, killed_at, None)

    async def _idle(self, name: str, at_kill: dict[TopicPartition, int], pid: int | None) -> bool:
        """Its newest process beats and nothing waits for it: past its committed offsets only transaction markers
        or the records of a transaction the kill aborted (which a read-committed consumer never gets)."""
        beat = (await self.read_model.services()).get(name, {})
        if pid is None or beat.get("pid") != pid:
            return False
        tps = self.partitions.get(self.settings.group(name), [])
        ends = await self.consumer.end_offsets(tps) if tps else {}
        for tp, end in ends.items():
            start = max(0, at_kill.get(tp, 0))
            if end - start > 1 and not await self.gaps.nothing_committed_between(tp, start, end):
                return False
        return True
