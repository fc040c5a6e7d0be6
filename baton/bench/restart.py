"""``baton bench --restart-after N``: how long a service takes to process again with N orders in its state.

N orders are placed with nobody working the WMS tasks, so every one of them stays in the orchestrator's state
(and its reservations in the inventory's ledgers, its tasks in the WMS nodes' entities). Once they are all
allocated, each of the orchestrator, the inventory service and one WMS node in turn is killed with SIGKILL and
restarted at once, while a trickle of new orders is placed. Two times are taken from the kill, both on Kafka:

- **back**: the service's consumer group committed offsets past where the kill left them (its tasks were
  restored and it handled a message again; ``chaos.BackClock``), never its own log line;
- **first allocated**: the first order of the trickle reached ``allocated`` on the public status topic.

Beside them, what a restore had to read: the service's changelog records and bytes (committed ones, read
from the changelog topics just before the kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from baton.bench.chaos import BackClock, kill_and_time
from baton.bench.collect import StatusTail, namespace_topics, partitions_of
from baton.bench.load import LoadDriver, order_mix
from baton.bench.report import ALLOCATED_OR_LATER
from baton.bench.run import SETTLED_WITHOUT_WORKERS, Live, code_version, machine
from baton.processes import ServiceSet
from baton.publish import Publisher
from baton.scenario.model import Scenario
from baton.scenario.runner import RunOptions, ScenarioRun
from schemas.envelope import encode, envelope_for
from schemas.orders import OrderPlaced, ShipTo
from schemas.topics import ORDERS_INBOUND
from services.runtime.admin import wait_caught_up
from services.runtime.settings import Settings, project_root
from services.runtime.topicnames import full_topic_name

TARGET_S = 10.0  # issue 9: restart to processing within 10 s with 100,000 orders in state
TRICKLE_EVERY_S = 0.2  # a new order this often from the kill on, until one is allocated
TRICKLE_ORDERS = 500  # the most a trickle places (stock is planned for them)
BACK_TIMEOUT_S = 120.0
STALL_S = 60.0  # no status change for this long: the orders left will not move (the report lists their statuses)
SETTLE_S = 900.0  # the N orders' wait for allocation, at most, beyond the time placing them took


@dataclass(frozen=True)
class ChangelogSize:
    """What a restore of one changelog topic reads: committed records and their bytes (keys + values)."""

    topic: str
    records: int
    bytes: int


@dataclass
class RestartFigure:
    """One kill -9 and restart of ``service``; every time in epoch seconds, measured on Kafka."""

    service: str
    killed_at: float
    back_at: float | None  # its group's committed offsets moved (None: not back in time)
    first_allocated_at: float | None  # a trickle order placed after the kill reached allocated
    back_measured_by: str = "offsets"
    trickle_placed: int = 0
    changelogs: list[ChangelogSize] = field(default_factory=list)

    @property
    def back_s(self) -> float | None:
        return None if self.back_at is None else round(self.back_at - self.killed_at, 3)

    @property
    def first_allocated_s(self) -> float | None:
        return None if self.first_allocated_at is None else round(self.first_allocated_at - self.killed_at, 3)

    def within(self, target_s: float = TARGET_S) -> bool:
        """Back, and allocating new orders again, within the target."""
        return all(s is not None and s <= target_s for s in (self.back_s, self.first_allocated_s))

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "killed_at": self.killed_at, "back_at": self.back_at, "back_s": self.back_s,
            "back_measured_by": self.back_measured_by, "first_allocated_at": self.first_allocated_at,
            "first_allocated_s": self.first_allocated_s, "trickle_placed": self.trickle_placed,
            "within_target": self.within(),
            "restore_read": {"records": sum(c.records for c in self.changelogs),
                             "bytes": sum(c.bytes for c in self.changelogs),
                             "topics": {c.topic: {"records": c.records, "bytes": c.bytes} for c in self.changelogs}},
        }


def first_allocated_after(allocated: dict[str, float], placed: dict[str, float], killed_at: float) -> float | None:
    """When the first order placed at or after the kill was allocated (None: none yet)."""
    times = [allocated[oid] for oid, at in placed.items() if at >= killed_at and oid in allocated]
    return min(times, default=None)


def changelog_topics_of(process: str, topics: Iterable[str], namespace: str) -> list[str]:
    """The changelog topics a process restores (orchestrator, inventory or wms-LOCATION), among ``topics``."""
    pattern = re.compile(rf"^{re.escape(namespace)}\.{re.escape(process)}-[A-Za-z0-9_]+-changelog$")
    return sorted(t for t in topics if pattern.match(t))


async def changelog_sizes(settings: Settings, process: str) -> list[ChangelogSize]:
    """Read each of the process's changelogs from beginning to end as a restore does (committed records only)."""
    out = []
    for topic in changelog_topics_of(process, await namespace_topics(settings), settings.namespace):
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                    isolation_level="read_committed", max_partition_fetch_bytes=8 * 2**20,
                                    fetch_max_wait_ms=20)
        await consumer.start()
        try:
            records, size = await _count(consumer, await partitions_of(settings, [topic], wait_s=1.0))
        finally:
            await consumer.stop()
        out.append(ChangelogSize(topic, records, size))
    return out


async def _count(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> tuple[int, int]:
    if not tps:
        return 0, 0
    ends = await consumer.end_offsets(tps)
    beginnings = await consumer.beginning_offsets(tps)
    consumer.assign(tps)
    pending = {tp for tp in tps if beginnings[tp] < ends[tp]}
    for tp in tps:
        consumer.seek(tp, beginnings[tp])
    records = size = 0
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=200, max_records=20_000)
        for records_of_tp in batch.values():
            for record in records_of_tp:
                records += 1
                size += len(record.key or b"") + len(record.value or b"")
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    return records, size


def shipped_to(orders: list[OrderPlaced], lat: float, lon: float) -> list[OrderPlaced]:
    """The same orders, every one delivered to (lat, lon)."""
    return [o.model_copy(update={"delivery": ShipTo(lat=lat, lon=lon)}) for o in orders]


class Trickle:
    """New orders, one every ``every_s``, from the kill until told to stop; remembers when each was placed."""

    def __init__(self, settings: Settings, orders: list[OrderPlaced], every_s: float = TRICKLE_EVERY_S) -> None:
        self.settings = settings
        self.orders = orders
        self.every_s = every_s
        self.placed: dict[str, float] = {}
        self.topic = full_topic_name(settings, ORDERS_INBOUND)

    async def run(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        for order in self.orders:
            if stop.is_set():
                return
            at = time.time()
            envelope = envelope_for(order, source="baton/bench", correlationid=order.order_id, causationid=None,
                                    time=datetime.fromtimestamp(at, UTC))
            await (await producer.send(self.topic, key=order.order_id.encode(), value=encode(envelope)))
            self.placed[order.order_id] = at
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)


@dataclass
class RestartBench:
    """Place ``orders`` orders without workers, wait until they are allocated, then kill and time each service."""

    scenario: Scenario
    settings: Settings
    orders: int
    command: str
    out_dir: Path | None = None
    live: Live = field(default_factory=Live)
    seed: int = 8
    keep: bool = False

    def __post_init__(self) -> None:
        mix = order_mix(self.scenario, self.orders + TRICKLE_ORDERS, self.seed)
        self.load_orders = mix[: self.orders]
        self.spare = [o.model_copy(update={"order_id": "R" + o.order_id[1:]}) for o in mix[self.orders:]]
        options = RunOptions(timeout_s=SETTLE_S, namespace=self.settings.namespace, keep=self.keep,
                             purge=not self.keep,
                             progress=lambda phase, done, total: self.live.phase(f"{phase} {done}/{total}"))
        self.runner = ScenarioRun(self.scenario, self.settings, options)
        self.runner.services = ServiceSet(self.settings, self.runner.locations, auto_workers=False)
        self.services = self.runner.services

    async def run(self) -> dict[str, Any]:
        started_at = datetime.now(UTC)
        load_start = os.getloadavg()[0]
        try:
            async with Publisher(self.settings, source="baton/bench") as publisher:
                await self.runner.bring_up(publisher)
            async with StatusTail(self.settings) as tail:
                placing = await self._place_and_allocate(tail)
                figures = [await self._restart(tail, name) for name in self._victims()]
            document = self._document(started_at, load_start, placing, figures)
            self._write(document, self.out_dir or default_out_dir(started_at))
            return document
        finally:
            self.live.phase("stopping the services" if not self.keep else "leaving the services running")
            await self.runner.finish()

    def _victims(self) -> list[str]:
        """A warehouse's node: most orders go to the warehouses, so its trickle shows when it is back."""
        nodes = sorted(f"wms-{loc.id}" for loc in self.scenario.locations if loc.kind == "warehouse")
        return ["orchestrator", "inventory", *nodes[:1]]

    async def _place_and_allocate(self, tail: StatusTail) -> dict[str, Any]:
        ids = [o.order_id for o in self.load_orders]
        started = time.monotonic()
        self.live.phase(f"placing {len(ids):,} orders")
        load = await LoadDriver(self.settings, self.load_orders, None,
                                lambda n: self.live.counts(n, tail.count_in(ids, ALLOCATED_OR_LATER), 0,
                                                           len(ids))).run()
        deadline = time.monotonic() + SETTLE_S
        while tail.count_in(ids, SETTLED_WITHOUT_WORKERS) < len(ids) and time.monotonic() < deadline:
            if time.monotonic() - tail.last_change > STALL_S:
                break
            self.live.counts(len(ids), tail.count_in(ids, ALLOCATED_OR_LATER), 0, len(ids))
            self.live.phase(f"waiting until the {len(ids):,} orders are allocated (or as far as they go)")
            await asyncio.sleep(1.0)
        finals = [tail.timeline.final_status.get(i) for i in ids]
        statuses: dict[str, int] = {}
        for status in finals:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        seconds = time.monotonic() - started
        self.live.phase("letting every service catch up")
        caught_up = await wait_caught_up(self.settings, self.runner.locations, timeout_s=15.0)
        return {"orders": len(ids), "send_s": round(load.send_s, 3), "allocated_s": round(seconds, 3),
                "orders_per_s": round(len(ids) / seconds, 1), "statuses": statuses, "caught_up": caught_up}

    async def _restart(self, tail: StatusTail, name: str) -> RestartFigure:
        self.live.phase(f"{name}: reading its changelogs")
        sizes = await changelog_sizes(self.settings, name)
        trickle = Trickle(self.settings, self._aimed(name, self.spare[: TRICKLE_ORDERS // 3]))
        self.spare = self.spare[TRICKLE_ORDERS // 3:]
        stop = asyncio.Event()
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            async with BackClock(self.settings, self.runner.locations) as clock:
                self.live.phase(f"{name}: kill -9, restart, trickle of new orders")
                back = asyncio.create_task(kill_and_time(self.services, clock, name, BACK_TIMEOUT_S))
                placing = asyncio.create_task(trickle.run(producer, stop))
                first = await self._first_allocated(tail, trickle)
                restart = await back
                stop.set()
                await placing
        finally:
            await producer.stop()
        self.live.phase(f"{name}: letting every service catch up")
        await wait_caught_up(self.settings, self.runner.locations, timeout_s=15.0)
        return RestartFigure(name, restart.killed_at, restart.back_at, first, restart.measured_by,
                             len(trickle.placed), sizes)

    def _aimed(self, name: str, orders: list[OrderPlaced]) -> list[OrderPlaced]:
        """A WMS node's trickle is shipped to its own door, so that the nearest-first rules send it there."""
        location = next((loc for loc in self.scenario.locations if f"wms-{loc.id}" == name), None)
        return orders if location is None else shipped_to(orders, location.lat, location.lon)

    async def _first_allocated(self, tail: StatusTail, trickle: Trickle) -> float | None:
        """The trickle starts once the kill is done, so its first allocated order is the first one after the kill."""
        deadline = time.monotonic() + BACK_TIMEOUT_S
        while time.monotonic() < deadline:
            first = first_allocated_after(tail.timeline.allocated, trickle.placed, 0.0)
            if first is not None:
                return first
            await asyncio.sleep(0.1)
        return None

    def _document(self, started_at: datetime, load_start: float, placing: dict[str, Any],
                  figures: list[RestartFigure]) -> dict[str, Any]:
        return {
            "bench": {"command": self.command, "kind": "restart", "network": self.scenario.name,
                      "namespace": self.settings.namespace, "orders": self.orders, "started_at": started_at.isoformat(),
                      "code": code_version(), "machine": machine(),
                      "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}},
            "target_s": TARGET_S,
            "placing": placing,
            "restarts": [f.as_json() for f in figures],
            "ok": bool(figures) and all(f.within() for f in figures),
        }

    def _write(self, document: dict[str, Any], out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "restart.json"
        document["files"] = {"json": str(path)}
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def default_out_dir(started_at: datetime) -> Path:
    return Path(os.environ.get("BATON_BENCH_DIR", project_root() / ".baton" / "bench")) / (
        started_at.strftime("%Y%m%d-%H%M%S") + "-restart")


__all__ = ["ChangelogSize", "RestartBench", "RestartFigure", "changelog_sizes", "first_allocated_after"]
