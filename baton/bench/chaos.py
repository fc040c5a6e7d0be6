"""Chaos: kill -9 services at random moments while orders flow, restart them at once, time their return.

``KillPlan.parse("orchestrator:3")`` (or ``inventory:2``, ``wms:2`` for a random node each time,
``wms:WH-PAR:2`` for that node) says which service dies and how often; ``Chaos.run`` spreads the kills over
the load's duration (never two kills of one service closer than ``min_gap_s``) and restarts each victim
at once, as a supervisor would. A restart is *back* when its consumer group's committed offsets move past
where they stood at the kill (it handled a message again), measured on Kafka, not in the logs; a service
that had nothing to handle is back once its new process beats (its heartbeat) with no backlog waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from baton.processes import ServiceSet
from services.runtime.admin import LagProbe, subscriptions
from services.runtime.readmodel import ReadModel
from services.runtime.replay import topic_partitions
from services.runtime.settings import Settings

SERVICES = ("orchestrator", "inventory", "wms", "payments")


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
        if kind not in SERVICES or (location and kind != "wms") or (kind == "wms" and head.endswith(":")):
            raise KillPlanError(f"--kill {text!r}: the service is one of orchestrator, inventory, payments, wms, "
                                "wms:LOCATION")
        return cls(head, int(count))

    def candidates(self, names: Iterable[str]) -> list[str]:
        """The processes (``ServiceSet`` names) this plan may kill."""
        names = list(names)
        if self.service == "wms":
            return sorted(n for n in names if n.startswith("wms-"))
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
    measured_by: str = "offsets"  # offsets: its committed offsets moved; idle: it beat with nothing to handle

    @property
    def seconds(self) -> float | None:
        return None if self.back_at is None else round(self.back_at - self.killed_at, 3)

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "killed_at": self.killed_at, "back_at": self.back_at,
                "seconds": self.seconds, "measured_by": self.measured_by}


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

    @property
    def plans(self) -> list[KillPlan]:
        return [self.plan] if isinstance(self.plan, KillPlan) else list(self.plan)

    async def run(self, until: asyncio.Event) -> list[Restart]:
        """Play the kills until ``until`` is set (the load is over), then wait for every victim to be back."""
        moments = schedule(self.plans, self.services.services, self.duration_s, self.seed, self.min_gap_s)
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
        return await kill_and_time(self.services, clock, name, self.back_timeout_s)


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
        offsets = await self.admin.list_consumer_group_offsets(self.settings.group(name))
        return {TopicPartition(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

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
