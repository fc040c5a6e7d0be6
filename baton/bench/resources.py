"""CPU seconds and peak memory (RSS) per process while the bench runs: services, broker, Redis, the bench.

Processes are sampled by PID with psutil. A service restarted under chaos is a new PID under the same
name: its CPU counts from its birth, the dead one's up to its last sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from baton.processes import ServiceSet
from baton.stack.local import KAFKA, REDIS, LocalStack
from services.runtime.settings import Settings

PidsByName = Callable[[], dict[str, int | None]]
SAMPLE_EVERY_S = 0.5


def bench_pids(settings: Settings, services: ServiceSet) -> PidsByName:
    """The service processes as they are now (PIDs change on restarts), the stack's broker and Redis, the bench."""
    stack = LocalStack(settings)
    fixed = {"kafka": stack.owned_pid(KAFKA), "redis": stack.owned_pid(REDIS), "bench": os.getpid()}

    def pids() -> dict[str, int | None]:
        return {**{name: s.pid if s.alive() else None for name, s in services.services.items()}, **fixed}

    return pids


@dataclass
class _Seen:
    first_cpu_s: float
    last_cpu_s: float


@dataclass
class ResourceSampler:
    """Samples every named process until stopped; processes alive at the start count from that moment."""

    pids: PidsByName
    seen: dict[tuple[str, int], _Seen] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    started: bool = False

    def sample(self) -> None:
        for name, pid in self.pids().items():
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
                cpu_s = times.user + times.system
                entry = self.seen.get((name, pid))
                if entry is None:
                    # a process met after the first sample was born during the run: all its CPU is the run's
                    entry = self.seen[(name, pid)] = _Seen(cpu_s if not self.started else 0.0, cpu_s)
                entry.last_cpu_s = cpu_s
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
        self.started = True

    async def run(self, until: asyncio.Event) -> None:
        self.sample()
        while not until.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), SAMPLE_EVERY_S)
            self.sample()

    def cpu_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, _pid), entry in self.seen.items():
            out[name] = out.get(name, 0.0) + max(0.0, entry.last_cpu_s - entry.first_cpu_s)
        return dict(sorted(out.items()))
