"""The whole network in one process, under one seed: the three services over the simulated broker and clock.

Each step the scheduler (``random.Random`` seeded from the run's seed, nothing else random, no wall clock) picks
one thing that can happen now: a batch of one service task, a service's timer, a view catching up on its topic,
a worker confirming a task; the timeline's events (orders, cancellations, counts, faults...) happen at their
time. Per-partition FIFO holds (a task reads its partitions in offset order); everything else interleaves at
random. Faults: a transaction that fails (the batch rolls back and is read again), a process killed -9 in the
middle of a batch (restarted from its committed stores and offsets, views re-read), a process stalled, and
outside producers (the timeline, the workers) that deliver a message twice.

The safety invariants of ``baton.invariants`` are checked after every commit that changed orders or stock, and
every invariant once the network is quiet (nothing left to do, and the timers quiet for ``settle_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog

from baton.audit.checks import audit_records
from baton.audit.log import LogRecord
from baton.invariants import (
    RESERVATION_EVENTS,
    Expected,
    Facts,
    InvariantReport,
    check_invariants,
    check_safety,
    latest_positions,
    paid_per_order,
)
from baton.sim.broker import SimBroker
from baton.sim.clock import SimClock
from baton.sim.process import Committed, Feed, SimProcess, SimTask
from baton.sim.workers import SimWorkers
from baton.sim.workload import (
    Arrive,
    Cancel,
    Collect,
    Count,
    Crash,
    Event,
    PlaceOrder,
    Return,
    SetOpen,
    ShortPick,
    Stall,
    Supply,
    Workload,
)
from schemas.base import Message
from schemas.catalog import SkuConfigured
from schemas.envelope import decode, derived_id, encode, envelope_for
from schemas.inventory import (
    AvailabilityChanged,
    CountStock,
    RecordSupply,
    StockMoved,
)
from schemas.network import LocationConfigured, RuleSetPublished
from schemas.orders import (
    OrderCancelled,
    OrderCancelRequested,
    OrderPlaced,
    OrderShipped,
    PickupCollected,
    ReturnLine,
    ReturnRequested,
)
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from schemas.topics import (
    ALL_TOPICS,
    CATALOG,
    INVENTORY_AVAILABILITY,
    INVENTORY_COMMANDS,
    INVENTORY_MOVEMENTS,
    INVENTORY_RESERVATIONS,
    NETWORK,
    ORDERS_EVENTS,
    ORDERS_INBOUND,
    PAYMENTS_COMMANDS,
    PAYMENTS_EVENTS,
    RULES,
    WMS_COMMANDS,
    WMS_TASKS,
    TopicSpec,
)
from schemas.wms import ConfirmTask, ExpectedLine, RequestCount, SupplyArrived
from services.inventory.app import InventoryService
from services.orchestrator.app import ORDERS, Orchestrator
from services.orchestrator.domain.order import OrderState
from services.payments.app import PaymentAdapter
from services.runtime.processing import Outgoing, StreamService
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, spec_named
from services.wms_node.config import node_config
from services.wms_node.domain.node import Node
from services.wms_node.janitor import DEFAULT_RETAIN_S
from services.wms_node.service import MasterData, NodeService

NAMESPACE = "sim"
INITIAL_PREFIX = f"{NAMESPACE}:initial:"
RULE_SET = {"name": "sim", "version": 1, "pickup_window_s": 90.0}
RESERVATION_TYPES = {cls.event_type for cls in RESERVATION_EVENTS}
TIME_FIELD = re.compile(rb'"time":"[^"]*"')


@dataclass(frozen=True)
class SimConfig:
    partitions: int = 2
    max_batch: int = 6
    abort_p: float = 0.03  # a transaction fails
    duplicate_p: float = 0.1  # an outside producer (the timeline, a worker) delivers a message twice
    # a service's own committed record appended twice: never under the transactions, so off by default; on, it
    # tests the handlers' idempotency (applied ids kept in the state), the brief's second line
    internal_duplicate_p: float = 0.0
    settle_s: float = 180.0  # quiet this long (timers only) and the run is over
    max_steps: int = 20_000
    safety_every_step: bool = True
    trace: bool = False


@dataclass
class SimResult:
    seed: int
    failures: list[str] = field(default_factory=list)
    steps: int = 0
    sim_seconds: float = 0.0
    digest: str = ""
    log: list[str] = field(default_factory=list)
    report: InvariantReport | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def kind(self) -> str:
        """What failed first, without the details (a shrunk trace must fail the same way)."""
        return self.failures[0].split(":", 1)[0] if self.failures else ""


class NullReadModel:
    """The Redis read model's writes, dropped: people's reads are not part of the simulated network."""

    async def write_orders(self, views: Iterable[Mapping[str, Any]]) -> None:
        return None

    async def write_orders_if_newer(self, views: Iterable[Mapping[str, Any]]) -> None:
        return None

    async def read_orders(self, order_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        return {}

    async def write_availability(self, changes: Iterable[AvailabilityChanged]) -> None:
        return None

    async def close(self) -> None:
        return None


class FactsLog:
    """What the checks read, kept up to date from every committed record (decoded once)."""

    def __init__(self, settings: Settings) -> None:
        self.reservations_topic = full_topic_name(settings, INVENTORY_RESERVATIONS)
        self.movements_topic = full_topic_name(settings, INVENTORY_MOVEMENTS)
        self.availability_topic = full_topic_name(settings, INVENTORY_AVAILABILITY)
        self.order_events_topic = full_topic_name(settings, ORDERS_EVENTS)
        self.order_events: list[Message] = []
        self.inbound_topic = full_topic_name(settings, ORDERS_INBOUND)
        self.payments_topics = (full_topic_name(settings, PAYMENTS_COMMANDS),
                                full_topic_name(settings, PAYMENTS_EVENTS))
        self.placed: list[OrderPlaced] = []
        self.refund_requests: list[RefundRequested] = []
        self.refund_answers: list[RefundSucceeded | RefundFailed] = []
        self.refund_answer_ids: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.reservation_events: list[Message] = []
        self.movements: list[StockMoved] = []
        self.availability: list[AvailabilityChanged] = []
        self.digest = hashlib.sha256()

    def record(self, topic: str, key: bytes, value: bytes | None) -> None:
        self.digest.update(topic.encode() + b"\0" + key + b"\0" + TIME_FIELD.sub(b"", value or b"") + b"\n")
        if topic not in (self.reservations_topic, self.movements_topic, self.availability_topic,
                         self.order_events_topic, self.inbound_topic, *self.payments_topics):
            return
        envelope, message = decode(value)
        if isinstance(message, OrderPlaced):
            self.placed.append(message)
        elif isinstance(message, RefundRequested):
            self.refund_requests.append(message)
        elif isinstance(message, RefundSucceeded | RefundFailed):
            # one event however often it was appended (--duplicate-internal): its readers dedupe by id
            if envelope.id not in self.refund_answer_ids:
                self.refund_answer_ids.add(envelope.id)
                self.refund_answers.append(message)
        elif topic == self.order_events_topic:
            if isinstance(message, OrderShipped | OrderCancelled):
                self.order_events.append(message)
        elif isinstance(message, AvailabilityChanged):
            self.availability.append(message)
        elif isinstance(message, StockMoved):
            self.movements.append(message)
        elif message.event_type in RESERVATION_TYPES:
            self.reservation_events.append(message)

    def order_changed(self, order_id: str, raw: bytes | None) -> None:
        if raw is not None:
            self.orders[order_id] = OrderState.model_validate_json(raw).view()

    def facts(self, expected: Expected) -> Facts:
        orders = {oid: self.orders.get(oid) or {"status": "unknown", "lines": [], "shipments": []}
                  for oid in expected.order_ids}
        stock = latest_positions(self.availability, expected.skus)
        return Facts(orders, stock, list(self.reservation_events), list(self.movements), list(self.order_events),
                     paid=paid_per_order(self.placed), refund_requests=list(self.refund_requests),
                     refund_answers=list(self.refund_answers))


class World:
    def __init__(self, workload: Workload, seed: int, config: SimConfig = SimConfig()) -> None:
        self.workload = workload
        self.seed = seed
        self.config = config
        self.rng = random.Random(f"schedule:{seed}")
        self.clock = SimClock()
        self.settings = Settings(namespace=NAMESPACE)
        locations = [loc.id for loc in workload.locations]
        single = {full_topic_name(self.settings, WMS_COMMANDS, loc): 1 for loc in locations}
        single.update({full_topic_name(self.settings, spec): spec.partitions for spec in ALL_TOPICS
                       if spec.partitions and not spec.per_location})
        self.broker = SimBroker(single, config.partitions)
        self.facts_log = FactsLog(self.settings)
        self.result = SimResult(seed)
        self.expected = Expected(
            order_ids=tuple(workload.order_ids()),
            skus=workload.skus,
            initial_stock={(loc, sku): qty for loc, sku, qty in workload.stock},
            initial_cause_prefix=INITIAL_PREFIX,
        )
        self.processes: dict[str, SimProcess] = {}
        self.workers = {loc: SimWorkers(loc, self.topic(WMS_TASKS, loc), self.broker,
                                        random.Random(f"workers:{seed}:{loc}")) for loc in locations}
        for loc, sku, qty in workload.stock:
            self.workers[loc].physical[sku] = qty
        for workers in self.workers.values():
            workers.returns = {e.return_id for e in workload.events if isinstance(e, Return)}
        self.pending: list[Event] = sorted(workload.events, key=lambda e: e.at_s)  # stable: ties in list order
        self.kill_next: dict[str, float] = {}  # service -> seconds it stays down once killed in its next batch
        self.network_version = 1
        self.open_state = {loc.id: loc.open for loc in workload.locations}
        self.t0 = self.clock.now
        self.stop = False
        self.published = 0
        self.reads = 0  # bumped whenever a process's read positions may have moved
        self.pending_reads: dict[str, tuple[tuple[int, int], list[tuple[str, str, int]]]] = {}

    # --- names and outside producers ---------------------------------------------------------------------
    def topic(self, spec: TopicSpec, location: str | None = None) -> str:
        return full_topic_name(self.settings, spec, location)

    def topic_name(self, name: str, location: str | None) -> str:
        return full_topic_name(self.settings, spec_named(name), location)

    def publish(self, spec: TopicSpec, key: str, message: Message, *, location: str | None = None,
                event_id: str | None = None, causationid: str | None = None, may_repeat: bool = True) -> None:
        """An outside producer's send (not transactional: it may deliver twice)."""
        self.published += 1
        event_id = event_id or derived_id("sim", self.seed, self.published)
        envelope = envelope_for(message, source="baton/sim", correlationid=message.subject() or key,
                                causationid=causationid, event_id=event_id, time=self.clock.now)
        value = encode(envelope)
        topic = self.topic(spec, location)
        times = 2 if may_repeat and self.rng.random() < self.config.duplicate_p else 1
        for _ in range(times):
            record = self.broker.append(topic, key.encode(), value, self.clock.now)
            self.facts_log.record(record.topic, record.key, record.value)

    # --- the services ------------------------------------------------------------------------------------
    def build_orchestrator(self) -> tuple[StreamService, list[Feed]]:
        service = Orchestrator(self.settings, cast(ReadModel, NullReadModel()))
        service.clock = self.clock.monotonic
        master, stock = service.master.on_message, service.stock.on_message
        return service, [(self.topic(NETWORK), master), (self.topic(RULES), master),
                         (self.topic(INVENTORY_AVAILABILITY), stock)]

    def build_payments(self) -> tuple[StreamService, list[Feed]]:
        return PaymentAdapter(self.settings, fail_first=self.workload.refunds_failing), []

    def build_inventory(self) -> tuple[StreamService, list[Feed]]:
        return InventoryService(self.settings, cast(ReadModel, NullReadModel())), []

    def node_builder(self, location: str) -> Any:
        reject_all = location in self.workload.reject_all

        def build() -> tuple[StreamService, list[Feed]]:
            master = MasterData(location)
            node = Node(location, node_config(location, None, reject_all=reject_all))
            service = NodeService(location, self.topic(WMS_COMMANDS, location), node, master,
                                  retain_s=DEFAULT_RETAIN_S)
            return service, [(self.topic(NETWORK), master.on_network), (self.topic(CATALOG), master.on_catalog),
                             (self.topic(INVENTORY_AVAILABILITY), master.on_availability)]

        return build

    def new_process(self, name: str, build: Any) -> SimProcess:
        return SimProcess(name, build, self.broker, self.clock, self.topic_name, self.committed, self.fail)

    def committed(self, process: SimProcess, task: int, done: Committed) -> None:
        for record in done.records:
            self.facts_log.record(record.topic, record.key, record.value)
        for order_id, raw in done.changes.get(ORDERS, []) if process.name == "orchestrator" else []:
            self.facts_log.order_changed(order_id, raw)
        changed_orders = process.name == "orchestrator" and done.changes.get(ORDERS)
        if self.config.safety_every_step and (changed_orders or (process.name == "inventory" and done.records)):
            report = check_safety(self.facts_log.facts(self.expected), self.expected)
            if not report.ok:
                for violation in report.violations:
                    self.fail(f"{violation} (after a commit of {process.name}, at {self.clock.elapsed_s:.2f}s)")

    def fail(self, why: str) -> None:
        self.result.failures.append(why)
        self.stop = True

    def note(self, line: str) -> None:
        if self.config.trace:
            self.result.log.append(f"{self.clock.elapsed_s:8.3f}s {line}")

    # --- the run -----------------------------------------------------------------------------------------
    async def run(self) -> SimResult:
        self.set_up()
        self.processes["orchestrator"] = self.new_process("orchestrator", self.build_orchestrator)
        self.processes["inventory"] = self.new_process("inventory", self.build_inventory)
        self.processes["payments"] = self.new_process("payments", self.build_payments)
        for loc in self.workload.locations:
            self.processes[f"wms-{loc.id}"] = self.new_process(f"wms-{loc.id}", self.node_builder(loc.id))
        for process in self.processes.values():
            await process.start()
        await self.loop(faults=False, until_quiet_s=2.0)  # the initial stock loaded and seen by every view
        self.t0 = self.clock.now
        await self.loop(faults=True, until_quiet_s=self.config.settle_s)
        if not self.stop:
            self.result.report = check_invariants(self.facts_log.facts(self.expected), self.expected)
            for violation in self.result.report.violations:
                self.result.failures.append(f"{violation} (at quiescence)")
            self.audit()
        if self.config.trace:
            for order_id, view in sorted(self.facts_log.orders.items()):
                self.note(f"order {order_id}: {view['status']} lines {view['lines']}")
                for entry in view.get("history", []):
                    self.note(f"    {order_id} history: {entry}")
        self.result.sim_seconds = round(self.clock.elapsed_s, 3)
        self.result.digest = self.facts_log.digest.hexdigest()[:16]
        return self.result

    def audit(self) -> None:
        """``baton audit``'s record checks over the whole simulated log (every cause present, ids unique, each
        order's story whole...): the same definitions as for a real namespace."""
        prefix = f"{NAMESPACE}."
        records = [LogRecord.parsed(r.topic.removeprefix(prefix), r.partition, r.offset, self.clock.ms(r.at), r.value)
                   for r in self.broker.all]
        with warnings.catch_warnings():  # the audit builds positions from raw documents: pydantic's warnings
            warnings.simplefilter("ignore")
            report = audit_records(records)
        for violation in report.violations:
            self.result.failures.append(f"audit {violation.check}: {violation.message} "
                                        f"({violation.topic}/{violation.partition}@{violation.offset})")

    def set_up(self) -> None:
        for site in self.workload.locations:
            self.publish(NETWORK, site.id, LocationConfigured(location=site, network_version=1), may_repeat=False)
        for sku in self.workload.skus:
            self.publish(CATALOG, sku, SkuConfigured(sku=sku, weight_g=400, volume_cm3=1500), may_repeat=False)
        rules = RuleSetPublished(name=str(RULE_SET["name"]), version=1, document=RULE_SET)
        self.publish(RULES, "sim", rules, may_repeat=False)
        for loc, sku, qty in self.workload.stock:
            count = CountStock(count_id=f"{INITIAL_PREFIX}{loc}:{sku}", sku=sku, location=loc, qty=qty)
            self.publish(INVENTORY_COMMANDS, sku, count, may_repeat=False)

    async def loop(self, *, faults: bool, until_quiet_s: float) -> None:
        quiet_since = self.clock.now
        idle_step = 0.25
        while not self.stop and self.result.steps < self.config.max_steps:
            self.result.steps += 1
            if faults:
                self.play_due_events()
            for workers in self.workers.values():
                if workers.has_unread():
                    workers.read_new_tasks(self.clock.now)
            actions = self.actions(faults)
            if actions:
                action = self.rng.choice(actions)
                busy = await self.do(action, faults)
                if busy:
                    quiet_since = self.clock.now
                    idle_step = 0.25
                self.clock.advance_to(self.clock.now + timedelta(seconds=self.rng.choice((0.0, 0.002, 0.01, 0.05))))
                continue
            if (not faults or not self.pending) and (self.clock.now - quiet_since).total_seconds() >= until_quiet_s:
                return
            self.clock.advance_to(self.next_moment(idle_step, timeline=faults))
            idle_step = min(idle_step * 2, 20.0)
        if not self.stop and self.result.steps >= self.config.max_steps:
            self.fail(f"no progress: still busy after {self.config.max_steps} steps")

    def next_moment(self, idle_step: float, *, timeline: bool) -> datetime:
        """Where an idle clock jumps: the next timeline event, worker, restart or timer, at most ``idle_step`` on."""
        candidates = [self.clock.now + timedelta(seconds=idle_step)]
        if timeline and self.pending:
            candidates.append(self.t0 + timedelta(seconds=self.pending[0].at_s))
        candidates += [due for w in self.workers.values() if (due := w.next_due()) is not None]
        candidates += [p.down_until for p in self.processes.values() if p.down_until > self.clock.now]
        return max(min(candidates), self.clock.now + timedelta(milliseconds=1))

    def actions(self, faults: bool) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        now = self.clock.now
        for name, process in self.processes.items():
            if process.down_until > now:
                continue
            out += self.reads_pending(name, process)
            if process.next_timer <= now:
                out.append(("timer", name, 0))
        for loc, workers in self.workers.items():
            due = workers.next_due()
            if due is not None and due <= now:
                out.append(("work", loc, 0))
        return out

    def reads_pending(self, name: str, process: SimProcess) -> list[tuple[str, str, int]]:
        """The process's batches and feeds with records to read; known again only once something was appended
        or read (most steps are timers that change neither)."""
        key = (self.broker.appended, self.reads)
        cached = self.pending_reads.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        out = [("batch", name, task.task) for task in process.tasks.values() if process.backlog(task)]
        if process.feeds_behind():
            out.append(("feed", name, 0))
        self.pending_reads[name] = (key, out)
        return out

    async def do(self, action: tuple[str, str, int], faults: bool) -> bool:
        """One step; whether it did anything beyond a timer that found nothing due."""
        kind, name, task_id = action
        if kind != "timer":
            self.reads += 1
        if kind == "work":
            self.work(name)
            return True
        process = self.processes[name]
        if kind == "feed":
            process.feed(self.rng.randint(1, 4))
            return True
        if kind == "timer":
            process.next_timer = self.clock.now + timedelta(seconds=process.service.timer_interval_s)
            busy = False
            for task in process.tasks.values():
                if process.timer(task):
                    busy = True
                    await self.finish(process, task, faults, "timer")
                elif task.ctx.after:
                    await process.commit(task, lambda _: False)  # nothing to write: its after-commit work runs
            return busy
        task = process.tasks[task_id]
        records = process.next_records(task, self.rng.randint(1, self.config.max_batch))
        self.note(f"{name}[{task_id}] batch of {len(records)}: " + ", ".join(
            f"{r.topic.split('.', 1)[1]}@{r.offset}" for r in records))
        process.apply(task, records)
        await self.finish(process, task, faults, "batch")
        return True

    async def finish(self, process: SimProcess, task: SimTask, faults: bool, what: str) -> None:
        """Commit the task's batch, or lose it: a failed transaction, or the process killed in the middle."""
        if faults and process.name in self.kill_next:
            down = self.kill_next.pop(process.name)
            self.note(f"{process.name} killed -9 in a {what}; back in {down}s")
            await process.kill()
            self.reads += 1
            process.down_until = self.clock.now + timedelta(seconds=down)
            return
        if faults and self.rng.random() < self.config.abort_p:
            self.note(f"{process.name}[{task.task}] transaction failed in a {what}")
            process.abort(task)
            self.reads += 1
            return
        done = await process.commit(task, self.duplicate_internal)
        if done.records:
            self.note(f"{process.name}[{task.task}] committed {len(done.records)} records: " + ", ".join(
                self.describe_record(r.value) for r in done.records[:8]) + (" ..." if len(done.records) > 8 else ""))

    def duplicate_internal(self, record: Outgoing) -> bool:
        p = self.config.internal_duplicate_p
        return p > 0 and self.rng.random() < p

    @staticmethod
    def describe_record(value: bytes | None) -> str:
        _, message = decode(value)
        return f"{message.event_type.split('.')[1]}({message.subject()})"

    # --- workers and the timeline --------------------------------------------------------------------------
    def work(self, location: str) -> None:
        taken = self.workers[location].take(self.clock.now)
        if taken is None:
            return
        task_envelope, command, derived_from = taken
        if isinstance(command, ConfirmTask):
            self.note(f"workers@{location} {command.worker} confirms {command.task_id}"
                      + (f" missing {[(m.sku, m.missing) for m in command.missing]}" if command.missing else "")
                      + (f" counted {[(c.sku, c.qty, c.damaged) for c in command.counted]}" if command.counted
                         else ""))
        else:
            self.note(f"workers@{location} {command.worker} claims {command.task_id} for {command.ttl_s}s")
        self.publish(WMS_COMMANDS, command.order_id, command, location=location,
                     event_id=derived_id(task_envelope.id, derived_from), causationid=task_envelope.id)

    def play_due_events(self) -> None:
        while self.pending and self.t0 + timedelta(seconds=self.pending[0].at_s) <= self.clock.now:
            event = self.pending.pop(0)
            self.note(f"timeline: {event.describe().strip()}")
            self.play(event)

    def play(self, event: Event) -> None:
        match event:
            case PlaceOrder(order=order):
                self.publish(ORDERS_INBOUND, order.order_id, order)
            case Cancel(order_id=order_id):
                self.publish(ORDERS_INBOUND, order_id, OrderCancelRequested(order_id=order_id))
            case Return(order_id=order_id, return_id=rid, sku=sku, qty=qty, method=method, location=loc,
                        condition=condition, reason=reason):
                lines = [ReturnLine(sku=sku, qty=qty)]
                self.publish(ORDERS_INBOUND, order_id, ReturnRequested(
                    order_id=order_id, return_id=rid, lines=lines, method=method, location=loc, condition=condition,
                    reason=reason))
            case Collect(order_id=order_id):
                self.publish(ORDERS_INBOUND, order_id, PickupCollected(order_id=order_id))
            case ShortPick(location=loc, sku=sku, qty=qty):
                self.workers[loc].lose(sku, qty)
            case Count(count_id=count_id, location=loc, sku=sku, drift=drift):
                self.workers[loc].lose(sku, -drift)
                self.publish(WMS_COMMANDS, count_id, RequestCount(count_id=count_id, location=loc, skus=[sku]),
                             location=loc)
            case Supply(supply_id=sid, location=loc, sku=sku, qty=qty, eta_s=eta_s):
                supply = RecordSupply(supply_id=sid, sku=sku, location=loc, qty=qty,
                                      eta=self.t0 + timedelta(seconds=eta_s))
                self.publish(INVENTORY_COMMANDS, sku, supply)
            case Arrive(supply_id=sid, location=loc, sku=sku, qty=qty, short=short, damaged=damaged):
                self.workers[loc].receiving[sid] = (short, damaged)
                arrived = SupplyArrived(supply_id=sid, location=loc, lines=[ExpectedLine(sku=sku, qty=qty)])
                self.publish(WMS_COMMANDS, sid, arrived, location=loc)
            case SetOpen(location=loc, open=is_open):
                self.network_version += 1
                site = next(x for x in self.workload.locations if x.id == loc)
                changed = site.model_copy(update={"open": is_open})
                self.publish(NETWORK, loc, LocationConfigured(location=changed, network_version=self.network_version),
                             may_repeat=False)
            case Crash(service=service, down_s=down_s):
                if service in self.processes:
                    self.kill_next[service] = down_s
            case Stall(service=service, for_s=for_s):
                if service in self.processes:
                    process = self.processes[service]
                    process.down_until = max(process.down_until, self.clock.now + timedelta(seconds=for_s))


def run_world(workload: Workload, seed: int, config: SimConfig = SimConfig()) -> SimResult:
    with quiet_logs():
        return asyncio.run(World(workload, seed, config).run())


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The services' logs dropped for the run (thousands of seeds), the logging set-up restored after."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**before)


__all__ = ["NullReadModel", "SimConfig", "SimResult", "World", "run_world"]
