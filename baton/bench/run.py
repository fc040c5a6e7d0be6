"""One bench run: bring the network up (the scenario runner's machinery), place the load, wait until it
settled, read the figures back from the topics, take the raw baseline, check the invariants, draw the PNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

from baton.bench.baseline import take_baseline
from baton.bench.chaos import Chaos, KillPlan, Restart, split_plans
from baton.bench.collect import Collected, StatusTail, collect, end_offsets
from baton.bench.load import LoadDriver, LoadReport, order_mix
from baton.bench.plots import plot_run
from baton.bench.report import ALLOCATED_OR_LATER, build_figures, traffic_summary
from baton.bench.resources import ResourceSampler, bench_pids
from baton.bench.returns import ReturnDriver, plan_returns
from baton.invariants import SETTLED_STATUSES, WAITING_STATUSES, Expected, InvariantReport, check_invariants_from_topics
from baton.processes import ServiceSet
from baton.publish import Publisher
from baton.scenario.model import PaymentsBehaviour, Scenario
from baton.scenario.runner import RunOptions, ScenarioRun
from services.runtime.admin import wait_caught_up
from services.runtime.settings import Settings, project_root

EXIT_OK, EXIT_INVARIANT_BROKEN, EXIT_TIMEOUT = 0, 1, 3
SETTLED = SETTLED_STATUSES | WAITING_STATUSES
# Without workers nobody confirms a task: an order is as far as it gets once the warehouses have it.
SETTLED_WITHOUT_WORKERS = SETTLED | ALLOCATED_OR_LATER
BURST_CHAOS_ORDERS_PER_S = 100.0  # a burst has no duration of its own: kills are spread as if it flowed at this rate
MIN_CHAOS_WINDOW_S = 10.0
NO_WORKERS_CATCH_UP_S = 15.0
# With returns, half of each service's kills land while the refunds flow: spread over this many seconds from
# the first refund, at least (returns come back to the warehouses behind the orders' own tasks: late, in a burst)
RETURNS_KILL_WINDOW_S = 4.0
RETURNS_REFUNDED_PER_S = 60.0
# No status change for this long, every service caught up: the orders left are stuck (the orchestrator's own
# deadlines, reservation 30 s and acceptance 60 s by default, would have moved them by now).
STALL_S = 120.0


@dataclass
class BenchOptions:
    orders: int
    rate: float | None = None  # open loop: orders per second on a fixed schedule; None: a burst
    workers: bool = True
    kills: list[KillPlan] = field(default_factory=list)
    kill_window_s: float | None = None
    timeout_s: float = 600.0
    namespace: str | None = None
    keep: bool = False
    out_dir: Path | None = None
    seed: int = 8
    command: str = "baton bench"
    returns: float = 0.0  # the share of the orders shipped to a customer that come back once shipped
    payments_fail_first: int = 0  # the simulated payment adapter fails its first N refund requests


class Live:
    """What the bench tells its display while it runs (the display decides how to draw it)."""

    def phase(self, text: str) -> None: ...

    def counts(self, placed: int, allocated: int, shipped: int, total: int) -> None: ...


@dataclass
class Bench:
    scenario: Scenario
    settings: Settings
    options: BenchOptions
    live: Live = field(default_factory=Live)
    placed: int = 0
    caught_up: bool | None = None  # every service's group caught up with its inputs at the end
    stalled: bool = False  # the wait ended early: orders stuck with nothing left to move them

    def __post_init__(self) -> None:
        self.orders = order_mix(self.scenario, self.options.orders, self.options.seed)
        self.order_ids = [o.order_id for o in self.orders]
        if self.options.payments_fail_first:
            self.scenario = self.scenario.model_copy(
                update={"payments": PaymentsBehaviour(fail_first=self.options.payments_fail_first)})
        stores = [loc.id for loc in self.scenario.locations if loc.kind == "store" and "returns" in loc.capabilities]
        self.returns = ReturnDriver(self.settings, plan_returns(self.orders, self.options.returns, stores,
                                                                self.options.seed)) if self.options.returns else None
        self.returns_stop = asyncio.Event()  # the orders settled: the returns left to send are those shipped by now
        self.returns_task: asyncio.Task[None] | None = None
        run_options = RunOptions(timeout_s=self.options.timeout_s, namespace=self.settings.namespace,
                                 keep=self.options.keep, purge=not self.options.keep,
                                 progress=lambda phase, done, total: self.live.phase(f"{phase} {done}/{total}"))
        self.runner = ScenarioRun(self.scenario, self.settings, run_options)
        if not self.options.workers:
            self.runner.services = ServiceSet(self.settings, self.runner.locations, auto_workers=False)
        self.services = self.runner.services

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        started_at = datetime.now(UTC)
        self.load_average_start = os.getloadavg()[0]  # other work on the machine skews absolute rates: say how much
        try:
            async with Publisher(self.settings, source="baton/bench") as publisher:
                await self.runner.bring_up(publisher)
            since = await end_offsets(self.settings)
            load, completed, chaos, sampler = await self._load_and_settle()
            self.live.phase("reading the topics back")
            collected = await collect(self.settings, since)
            returns = await self.returns.figures(self.settings) if self.returns else None
            self.live.phase("checking the invariants")
            invariants = await self._invariants()
            self.live.phase("raw baseline: aiokafka, then Kafka's ProducerPerformance")
            traffic = traffic_summary(collected.traffic, len(self.orders))
            baseline = await take_baseline(self.settings, traffic["total"]["records"],
                                           round(traffic["average_record_bytes"] or 500))
            document = self._document(started_at, time.monotonic() - started, completed, load, collected, sampler,
                                      baseline, chaos, invariants)
            document["returns"] = returns and {**returns, "kills_during_refunds": kills_within(
                chaos, returns["refunds_requested_between"])}
            self._write(document, collected, self.options.out_dir or default_out_dir(started_at))
            return document
        finally:
            self.live.phase("stopping the services" if not self.options.keep else "leaving the services running")
            await self.runner.finish()

    async def _load_and_settle(self) -> tuple[LoadReport, bool, list[Chaos], ResourceSampler]:
        done = asyncio.Event()
        sampler = ResourceSampler(bench_pids(self.settings, self.services))
        sampling = asyncio.create_task(sampler.run(done))
        among_orders, among_refunds = self._chaos()
        chaos_tasks = [asyncio.create_task(among_orders.run(done))] if among_orders else []
        async with StatusTail(self.settings) as tail:
            watching = asyncio.create_task(self._watch(tail, done))
            if among_refunds:
                chaos_tasks.append(asyncio.create_task(self._chaos_among_refunds(among_refunds, tail, done)))
            if self.returns:
                self.returns_task = asyncio.create_task(self.returns.follow(tail.timeline.final_status,
                                                                            self.returns_stop))
            load = await LoadDriver(self.settings, self.orders, self.options.rate, self._on_sent).run()
            self.live.phase("settling")
            completed = await self._wait_settled(tail)
            await self._stop_sending_returns()
            done.set()
            await watching
        if chaos_tasks:
            self.live.phase("waiting for the restarted services to be back")
            await asyncio.gather(*chaos_tasks)
        await sampling
        return load, completed, [c for c in (among_orders, among_refunds) if c], sampler

    def _chaos(self) -> tuple[Chaos | None, Chaos | None]:
        """The kills among the orders; with returns, half of them (an odd one too) among the refunds."""
        if not self.options.kills:
            return None, None
        window = self.options.kill_window_s or max(
            MIN_CHAOS_WINDOW_S, len(self.orders) / (self.options.rate or BURST_CHAOS_ORDERS_PER_S))
        if not self.returns:
            return Chaos(self.services, self.options.kills, seed=self.options.seed, duration_s=window), None
        among_orders, among_refunds = split_plans(self.options.kills)
        refunds_window = max(RETURNS_KILL_WINDOW_S, len(self.returns.planned) / RETURNS_REFUNDED_PER_S)
        return (Chaos(self.services, among_orders, seed=self.options.seed, duration_s=window) if among_orders
                else None,
                Chaos(self.services, among_refunds, seed=self.options.seed + 1, duration_s=refunds_window))

    async def _chaos_among_refunds(self, chaos: Chaos, tail: StatusTail, done: asyncio.Event) -> list[Restart]:
        """The kills start with the first refund paid (those left when the run is over are skipped)."""
        while not tail.timeline.refunded and not done.is_set():
            await asyncio.sleep(0.1)
        return await chaos.run(done)

    def _on_sent(self, placed: int) -> None:
        self.placed = placed

    async def _watch(self, tail: StatusTail, done: asyncio.Event) -> None:
        while not done.is_set():
            self.live.counts(self.placed, tail.count_in(self.order_ids, ALLOCATED_OR_LATER),
                             len(tail.timeline.shipped), len(self.orders))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)

    async def _wait_settled(self, tail: StatusTail) -> bool:
        """Every order as far as it goes (settled, or with the warehouses when nobody works), all caught up."""
        target = SETTLED if self.options.workers else SETTLED_WITHOUT_WORKERS
        deadline = time.monotonic() + self.options.timeout_s
        while tail.count_in(self.order_ids, frozenset(target)) < len(self.order_ids):
            if time.monotonic() > deadline or await self._stalled(tail):
                return False
            await asyncio.sleep(0.2)
        if not self.options.workers:
            # nobody reads the task queues, so the nodes' groups never catch up on them: the orders decide
            self.caught_up = await wait_caught_up(self.settings, self.runner.locations, timeout_s=NO_WORKERS_CATCH_UP_S)
            return True
        if self.returns:
            await self._stop_sending_returns()
            self.live.phase(f"settling {len(self.returns.sent)} returns")
            if not await self.returns.wait_settled(deadline):
                return False
        self.caught_up = await wait_caught_up(self.settings, self.runner.locations,
                                              timeout_s=max(5.0, deadline - time.monotonic()))
        return self.caught_up

    async def _stop_sending_returns(self) -> None:
        """The orders settled (or the wait ended): send the returns of those that shipped, no more."""
        self.returns_stop.set()
        if self.returns_task:
            await self.returns_task

    async def _stalled(self, tail: StatusTail) -> bool:
        """No order moved for longer than any orchestrator deadline, with every service caught up: stuck."""
        if time.monotonic() - tail.last_change < STALL_S:
            return False
        self.live.phase(f"no order moved for {STALL_S:.0f} s: are the services caught up?")
        self.stalled = await wait_caught_up(self.settings, self.runner.locations, timeout_s=10.0)
        tail.last_change = time.monotonic()  # look again after another quiet spell if they were not
        return self.stalled

    async def _invariants(self) -> InvariantReport:
        expected = dataclasses.replace(
            Expected.from_scenario(self.scenario, self.settings.namespace), order_ids=tuple(self.order_ids),
            settled_statuses=frozenset(SETTLED if self.options.workers else SETTLED_WITHOUT_WORKERS))
        return await check_invariants_from_topics(self.settings, expected)

    def _document(self, started_at: datetime, elapsed_s: float, completed: bool, load: LoadReport,
                  collected: Collected, sampler: ResourceSampler, baseline: dict[str, Any], chaos: list[Chaos],
                  invariants: InvariantReport) -> dict[str, Any]:
        raw = baseline["raw_aiokafka"]["records_per_s"]
        figures = build_figures(collected.timeline, collected.traffic, sampler.cpu_seconds(), sampler.peak_rss, raw)
        dead_letters = sum(t.records for t in collected.traffic if t.topic.endswith(".deadletter.v1"))
        return {
            "bench": {
                "command": self.options.command, "network": self.scenario.name, "namespace": self.settings.namespace,
                "mode": load.mode, "orders": len(self.orders), "rate": self.options.rate,
                "workers": self.options.workers, "started_at": started_at.isoformat(), "code": code_version(),
                "machine": machine(),
                "load_average_1m": {"start": round(self.load_average_start, 2), "end": round(os.getloadavg()[0], 2)},
            },
            "completed": completed,
            "caught_up": self.caught_up,
            "stalled": self.stalled,
            "elapsed_s": elapsed_s,
            "load": load.to_dict(),
            "figures": figures,
            "baseline": baseline,
            "chaos": None if not chaos else {
                "kills": [f"{k.service}:{k.times}" for k in self.options.kills],
                "restarts": [r.as_json() for c in chaos for r in c.restarts],
                "skipped": [name for c in chaos for name in c.skipped]},
            "invariants": invariants.as_json(),
            "dead_letters": dead_letters,
        }


    def _write(self, document: dict[str, Any], collected: Collected, out_dir: Path) -> None:
        """The JSON and the PNG side by side; their paths go into the document."""
        title = (f"{document['bench']['network']}: {len(self.orders)} orders, {document['load']['mode']}"
                 f"{'' if self.options.workers else ', no workers'} (code {document['bench']['code']})")
        png = plot_run(collected.timeline, out_dir / "bench.png", title)
        document["files"] = {"json": str(out_dir / "bench.json"), "png": str(png)}
        (out_dir / "bench.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def kills_within(chaos: list[Chaos], between: list[float | None]) -> list[str]:
    """The services killed while refunds were being asked for."""
    first, last = between
    if first is None or last is None:
        return []
    return [r.service for c in chaos for r in c.restarts if first <= r.killed_at <= last]


def machine() -> dict[str, Any]:
    return {"cores": psutil.cpu_count(logical=True), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": platform.processor() or platform.machine(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def code_version() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                              text=True, check=True).stdout.strip() or None
    return None


def exit_status(document: dict[str, Any]) -> int:
    if not document["invariants"]["ok"]:
        return EXIT_INVARIANT_BROKEN
    return EXIT_OK if document["completed"] else EXIT_TIMEOUT


def default_out_dir(started_at: datetime) -> Path:
    return Path(os.environ.get("BATON_BENCH_DIR", project_root() / ".baton" / "bench")) / started_at.strftime(
        "%Y%m%d-%H%M%S")


__all__ = ["Bench", "BenchOptions", "Live", "exit_status"]
