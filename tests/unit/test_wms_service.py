"""The WMS node's adapter on the processing model, driven in memory as the engine drives it: batches of inbox
records through ``handle``, the timer, commits (changelog -> committed) and the after-commit hand-over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
import pytest

from schemas.base import Message
from schemas.envelope import decode, encode, envelope_for
from schemas.inventory import AvailabilityChanged
from schemas.network import Location, LocationConfigured
from schemas.wms import CancelFulfilment, ClaimTask, ConfirmTask, FulfilmentLine, FulfilOrder, TaskCreated
from services.runtime.processing import Incoming, Outgoing, Store, TaskContext
from services.wms_node.domain.model import WaveRules
from services.wms_node.domain.node import Node
from services.wms_node.domain.work import NodeConfig
from services.wms_node.service import ENTITIES, Bundle, CommitSink, Committed, Entities, MasterData, NodeService
from tests.unit.engine_driver import commit_in_memory
from tests.unit.wms_support import LOCATION, SMALL, T0

INBOX = f"ns.wms.{LOCATION}.commands.v1"


class Recorder(CommitSink):
    def __init__(self) -> None:
        self.batches: list[Committed] = []

    def committed(self, batch: Committed) -> None:
        self.batches.append(batch)


@dataclass
class Driver:
    service: NodeService
    store: Store[Bundle] = field(default_factory=lambda: Store(ENTITIES))
    offset: int = 0
    changelogs: list[list[tuple[str, bytes | None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctx = TaskContext(f"baton/wms/{LOCATION}", 0, {ENTITIES.name: self.store}, lambda name, loc: f"ns.{name}",
                               now=T0)

    def entity(self, key: str) -> str | None:
        return Entities(self.store).committed(key)

    def record(self, message: Message, at: datetime = T0, event_id: str | None = None) -> Incoming:
        self.offset += 1
        envelope = envelope_for(message, source="tests", correlationid="c", causationid=None,
                                event_id=event_id or f"e{self.offset}", time=at)
        return Incoming(INBOX, 0, self.offset, b"k", encode(envelope), 0)

    def batch(self, *records: Incoming, fail_at: int | None = None) -> list[Outgoing]:
        """Apply records as one batch, then commit; ``fail_at``: that record raises, the batch is re-applied
        without it (as the engine does)."""
        good = [r for n, r in enumerate(records) if n != fail_at]
        if fail_at is not None:
            for record in records[: fail_at + 1]:
                self.handle(record)
            self.ctx.rolled_back()
        for record in good:
            self.handle(record)
        return self.commit()

    def handle(self, record: Incoming) -> None:
        envelope, message = decode(record.value)
        self.service.handle(self.ctx, envelope, message, record)

    def timer(self, now: datetime) -> list[Outgoing]:
        self.ctx.now = now
        self.service.on_timer(self.ctx)
        return self.commit()

    def commit(self) -> list[Outgoing]:
        changes, out = commit_in_memory(self.ctx)
        self.changelogs.append(changes[ENTITIES.name])
        return out


def fulfil(order_id: str, qty: int = 1, sku: str = "TEE") -> FulfilOrder:
    return FulfilOrder(request_id=f"{order_id}/a1/{LOCATION}", order_id=order_id, location=LOCATION,
                       lines=[FulfilmentLine(sku=sku, qty=qty, reservation_id=f"{order_id}/a1/0")])


def make(waves: WaveRules = WaveRules(max_orders=3, max_wait_s=1), retain_s: float = 60) -> tuple[Driver, Recorder]:
    master = MasterData(LOCATION)
    master.on_availability(AvailabilityChanged(sku="TEE", location=LOCATION, on_hand=40, reserved=0, safety_stock=0,
                                               available=40, version=3))
    sink = Recorder()
    service = NodeService(LOCATION, INBOX, Node(LOCATION, NodeConfig(layout=SMALL, waves=waves)), master,
                          retain_s=retain_s, sink=sink)
    driver = Driver(service)
    service.on_assigned(driver.ctx)
    sink.batches.clear()
    return driver, sink


def types(out: list[Outgoing]) -> list[str]:
    return [orjson.loads(o.value or b"{}")["type"] for o in out]


def test_a_batch_writes_one_changelog_record_per_entity_and_hands_over_once() -> None:
    driver, sink = make()
    out = driver.batch(*(driver.record(fulfil(f"O-{k}")) for k in range(3)))
    assert types(out).count("wms.fulfilment_accepted.v1") == 3
    keys = [key for key, _ in driver.changelogs[-1]]
    assert len(keys) == len(set(keys)), "one record per key per batch"
    assert len(sink.batches) == 1
    orders = [f"O-{k}" for k in range(3)]  # the third fills a wave: their picks are released at once
    tasks = {f"task:{o}/a1/{LOCATION}/pick" for o in orders}
    entities = {"site", "bins", "sku:TEE", *(f"order:{o}" for o in orders), *tasks}
    assert {k for k, _ in sink.batches[0].changes} == entities
    # the orders waited in the intake bundle, then their wave took them and their tasks: one record for all three
    assert set(keys) == {"site", "bins", "sku:TEE", "intake", f"wave:{LOCATION}-W00001"}


def test_the_ledger_on_hand_comes_from_the_availability_view() -> None:
    driver, _ = make()
    driver.batch(driver.record(fulfil("O-1")))
    stock = orjson.loads(driver.entity("sku:TEE") or "{}")
    assert sum(stock["bins"].values()) == 40


def test_an_older_availability_never_replaces_a_newer_one() -> None:
    master = MasterData(LOCATION)
    for version, on_hand in ((5, 7), (4, 99)):
        master.on_availability(AvailabilityChanged(sku="TEE", location=LOCATION, on_hand=on_hand, reserved=0,
                                                   safety_stock=0, available=on_hand, version=version))
    master.on_availability(AvailabilityChanged(sku="TEE", location="ELSEWHERE", on_hand=1, reserved=0,
                                               safety_stock=0, available=1, version=9))
    assert master.ledger_on_hand(["TEE", "MUG"]) == {"TEE": 7, "MUG": 0}


def test_the_site_kind_comes_from_the_network_view() -> None:
    master = MasterData(LOCATION)
    master.on_network(LocationConfigured(location=Location(id=LOCATION, kind="store", lat=1, lon=2,
                                                           capabilities=["pickup"]), network_version=1))
    assert master.info is not None and master.info.kind == "store"


def test_a_failing_message_leaves_nothing_and_the_rest_of_the_batch_commits() -> None:
    driver, sink = make()
    bad = driver.record(ClaimTask(task_id="x", order_id="O-9", location=LOCATION, worker="ann"))
    records = [driver.record(fulfil("O-1")), bad, driver.record(fulfil("O-2"))]
    out = driver.batch(*records, fail_at=1)
    assert types(out).count("wms.fulfilment_accepted.v1") == 2
    assert len(sink.batches) == 1 and sink.batches[0].replies == {}


def test_a_wave_is_released_by_the_timer_in_its_transaction() -> None:
    driver, sink = make()
    driver.batch(driver.record(fulfil("O-1"), at=T0))
    assert driver.timer(T0 + timedelta(seconds=0.5)) == []
    out = driver.timer(T0 + timedelta(seconds=1.5))
    created = [TaskCreated.model_validate(orjson.loads(o.value or b"{}")["data"]) for o in out
               if orjson.loads(o.value or b"{}")["type"] == "wms.task_created.v1"]
    assert [t.task_id for t in created] == [f"O-1/a1/{LOCATION}/pick"]
    assert f"task:O-1/a1/{LOCATION}/pick" in {k for k, _ in sink.batches[-1].changes}
    assert driver.timer(T0 + timedelta(seconds=2)) == [], "released once"


def test_a_claim_is_answered_after_the_commit() -> None:
    driver, sink = make(waves=WaveRules(max_orders=1, max_wait_s=0))
    driver.batch(driver.record(fulfil("O-1")))
    driver.timer(T0 + timedelta(seconds=1))
    task_id = f"O-1/a1/{LOCATION}/pick"
    driver.batch(driver.record(ClaimTask(task_id=task_id, order_id="O-1", location=LOCATION, worker="ann"),
                               event_id="cmd-1"))
    assert sink.batches[-1].replies["cmd-1"]["status"] == "claimed"


@pytest.mark.parametrize("restart", [False, True])
def test_finished_entities_are_deleted_after_their_retention(restart: bool) -> None:
    driver, sink = make(waves=WaveRules(max_orders=1, max_wait_s=0), retain_s=60)
    driver.batch(driver.record(fulfil("O-1")))
    driver.timer(T0)
    for kind in ("pick", "pack", "ship"):
        task = orjson.loads(driver.entity(f"task:O-1/a1/{LOCATION}/{kind}") or "{}")
        confirm = {"task_id": task["task_id"], "order_id": "O-1", "request_id": task["request_id"],
                   "location": LOCATION, "worker": "auto"}
        driver.batch(driver.record(ConfirmTask.model_validate(confirm)))
    if restart:  # the janitor's clock restarts with the process: finished entities count from then
        driver.service.on_assigned(driver.ctx)
    later = datetime.now(driver.ctx.now.tzinfo) if restart else T0
    driver.timer(later + timedelta(seconds=59))
    assert driver.entity("order:O-1") is not None
    driver.timer(later + timedelta(seconds=61))
    assert driver.entity("order:O-1") is None
    assert driver.entity(f"task:O-1/a1/{LOCATION}/ship") is None
    assert driver.entity("sku:TEE") is not None
    tombstones = [k for k, v in driver.changelogs[-1] if v is None]
    assert f"wave:{LOCATION}-W00001" in tombstones
    assert (f"task:O-1/a1/{LOCATION}/ship", None) in sink.batches[-1].changes
    assert driver.timer(later + timedelta(seconds=62)) == [] and driver.changelogs[-1] == []


def test_views_are_rebuilt_from_the_store_when_the_task_is_assigned() -> None:
    driver, sink = make()
    driver.batch(driver.record(fulfil("O-1")))
    driver.service.on_assigned(driver.ctx)
    assert {k for k, _ in sink.batches[-1].changes} == {k for k, _ in Entities(driver.store).items()} >= {
        "site", "bins", "sku:TEE", "order:O-1"}


def test_a_rolled_back_batch_that_moved_orders_leaves_them_where_they_were_committed() -> None:
    driver, _ = make()
    driver.batch(driver.record(fulfil("O-1")), driver.record(fulfil("O-2")))
    driver.batch(driver.record(fulfil("O-3")), fail_at=0)  # took O-1 and O-2 into a wave, then rolled back
    entities = driver.service.entities(driver.ctx)
    assert entities.bundle_name("order:O-1") == "intake" and entities.entity("order:O-3") is None
    out = driver.batch(driver.record(fulfil("O-3")))
    assert types(out).count("wms.task_created.v1") == 3
    assert {entities.bundle_name(f"order:O-{k}") for k in (1, 2, 3)} == {f"wave:{LOCATION}-W00001"}
    assert driver.entity("order:O-1") is not None


def test_a_large_wave_is_split_over_a_few_bundles() -> None:
    driver, _ = make(waves=WaveRules(max_orders=60, max_wait_s=1))
    out = driver.batch(*(driver.record(fulfil(f"O-{k}")) for k in range(60)))
    assert types(out).count("wms.task_created.v1") == 60
    bundles = {key for key, _ in driver.changelogs[-1] if key.startswith("wave:")}
    assert bundles == {f"wave:{LOCATION}-W00001/{part}" for part in range(3)}


def test_an_order_finished_without_a_wave_leaves_the_intake() -> None:
    driver, _ = make()
    driver.batch(driver.record(fulfil("O-1")), driver.record(fulfil("O-2")))
    cancel = CancelFulfilment(request_id=f"O-1/a1/{LOCATION}", order_id="O-1", location=LOCATION, reason="asked")
    driver.batch(driver.record(cancel))
    entities = driver.service.entities(driver.ctx)
    assert entities.bundle_name("order:O-1") == "work:O-1" and entities.bundle_name("order:O-2") == "intake"


def test_a_command_sent_twice_is_answered_with_the_task_as_it_is() -> None:
    driver, sink = make(waves=WaveRules(max_orders=1, max_wait_s=0))
    driver.batch(driver.record(fulfil("O-1")))
    claim = ClaimTask(task_id=f"O-1/a1/{LOCATION}/pick", order_id="O-1", location=LOCATION, worker="ann")
    driver.batch(driver.record(claim, event_id="cmd-1"))
    assert driver.batch(driver.record(claim, event_id="cmd-1")) == []
    reply = sink.batches[-1].replies["cmd-1"]
    assert (reply["status"], reply["worker"], reply["command_id"]) == ("claimed", "ann", "cmd-1")


def test_the_bin_map_and_the_site_are_written_only_when_they_changed() -> None:
    driver, _ = make()
    driver.batch(*(driver.record(fulfil(f"O-{k}")) for k in range(3)))
    assert "bins" in {key for key, _ in driver.changelogs[-1]}  # the SKU got its home bin
    task = orjson.loads(driver.entity(f"task:O-1/a1/{LOCATION}/pick") or "{}")
    confirm = ConfirmTask(task_id=task["task_id"], order_id="O-1", request_id=task["request_id"], location=LOCATION)
    driver.batch(driver.record(confirm))
    assert {key for key, _ in driver.changelogs[-1]} == {"sku:TEE", f"wave:{LOCATION}-W00001"}
