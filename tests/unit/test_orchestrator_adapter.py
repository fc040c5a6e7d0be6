"""The orchestrator's adapter on the processing model, driven in memory: what a batch puts in the stores, what it
sends, what reaches the read model after the commit, deadlines and capacity across commits and roll-backs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.base import Message
from schemas.envelope import decode, encode, envelope_for
from schemas.inventory import AvailabilityChanged, StockReserved
from schemas.network import Location, LocationConfigured
from schemas.orders import OrderLine, OrderPlaced, ShipTo
from schemas.topics import INVENTORY_RESERVATIONS, ORDERS_INBOUND, WMS_EVENTS
from schemas.wms import ItemsPicked
from services.orchestrator.app import CAPACITY, ORDER_STORE, ORDERS, REFIRE_AFTER_S, Orchestrator
from services.orchestrator.domain.order import Deadline, OrderState
from services.runtime.processing import Incoming, Outgoing, Store, TaskContext
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, spec_named
from tests.unit.engine_driver import commit_in_memory

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(namespace="unit")


class FakeReadModel:
    """The read model's order writes, recorded per call (one call = one Redis pipeline)."""

    def __init__(self) -> None:
        self.writes: list[list[dict[str, Any]]] = []
        self.resynced: list[dict[str, Any]] = []

        self.shown: dict[str, dict[str, Any]] = {}  # what Redis holds, by order id

    async def write_orders(self, views: Iterable[Mapping[str, Any]]) -> None:
        self.writes.append([dict(v) for v in views])
        self.shown.update((v["order_id"], dict(v)) for v in views)

    async def write_orders_if_newer(self, views: Iterable[Mapping[str, Any]]) -> None:
        self.resynced.extend(dict(v) for v in views)

    async def read_orders(self, order_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        return {order_id: self.shown.get(order_id) for order_id in order_ids}

    async def close(self) -> None:
        pass


class Driver:
    """One task of the orchestrator, its stores and batches, as the engine would run them (minus Kafka)."""

    def __init__(self, service: Orchestrator, task: int = 0) -> None:
        self.service = service
        self.stores: dict[str, Store[Any]] = {spec.name: Store(spec) for spec in service.stores}
        self.ctx = TaskContext(
            service_source=service.source,
            task=task,
            stores=self.stores,
            topic_name=lambda name, location: full_topic_name(SETTINGS, spec_named(name), location),
            now=T0,
        )
        self.offset = 0
        self.changelogs: dict[str, list[tuple[str, bytes | None]]] = {}

    def assign(self) -> None:
        """As the engine does, inside the event loop (its background work is cancelled when the loop ends)."""

        async def assign() -> None:
            self.service.on_assigned(self.ctx)

        asyncio.run(assign())

    def feed(self, message: Message, topic: str, at: datetime = T0, event_id: str | None = None) -> None:
        """``message`` handled in a batch at ``at`` (sent then too)."""
        self.ctx.now = at
        envelope = envelope_for(message, source="tests", correlationid=message.subject(), causationid=None,
                                event_id=event_id, time=at)
        raw = encode(envelope)
        self.offset += 1
        record = Incoming(SETTINGS.topic(topic), 0, self.offset, message.subject().encode(), raw, 0)
        parsed_envelope, parsed = decode(raw)
        self.service.handle(self.ctx, parsed_envelope, parsed, record)

    def commit(self) -> list[Outgoing]:
        self.changelogs, out = commit_in_memory(self.ctx)
        return out

    def roll_back(self) -> None:
        self.ctx.rolled_back()

    def timer(self, now: datetime) -> None:
        self.ctx.now = now
        self.service.on_timer(self.ctx)


def sent(out: list[Outgoing], type_name: str) -> list[dict[str, Any]]:
    found = []
    for record in out:
        envelope, _ = decode(record.value)
        if envelope.type == type_name:
            found.append(envelope.data)
    return found


def orchestrator(*locations: Location, stock: dict[tuple[str, str], int] | None = None) -> tuple[Orchestrator, Any]:
    read_model = FakeReadModel()
    service = Orchestrator(SETTINGS, read_model)  # type: ignore[arg-type]
    for n, location in enumerate(locations, start=1):
        service.master.on_message(LocationConfigured(location=location, network_version=n))
    for n, ((location_id, sku), qty) in enumerate((stock or {}).items(), start=1):
        service.stock.on_message(AvailabilityChanged(sku=sku, location=location_id, on_hand=qty, reserved=0,
                                                     safety_stock=0, available=qty, version=n))
    return service, read_model


def warehouse(location_id: str, lat: float, daily_capacity: int | None = None) -> Location:
    return Location(id=location_id, kind="warehouse", lat=lat, lon=2.35, daily_capacity=daily_capacity)


def placed(order_id: str, sku: str = "TEE", qty: int = 1) -> OrderPlaced:
    return OrderPlaced(order_id=order_id, channel="web", customer_id="C-1",
                       lines=[OrderLine(sku=sku, qty=qty, unit_price=10.0)], delivery=ShipTo(lat=48.8, lon=2.3))


NEAR, FAR = warehouse("WH-NEAR", 48.86), warehouse("WH-FAR", 43.3)


def test_an_order_is_planned_against_the_availability_feed_and_stored_once_per_batch() -> None:
    service, read_model = orchestrator(NEAR, FAR, stock={("WH-NEAR", "TEE"): 0, ("WH-FAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    assert read_model.writes == []  # nothing reaches Redis before the commit
    out = driver.commit()
    [reserve] = sent(out, "inventory.reserve_stock.v1")
    assert reserve["location"] == "WH-FAR"  # the near warehouse has none in the view
    assert [key for key, _ in driver.changelogs[ORDERS]] == ["O-1"]
    assert [[view["order_id"] for view in write] for write in read_model.writes] == [["O-1"]]


def test_several_messages_of_one_order_in_a_batch_make_one_changelog_record_and_one_view() -> None:
    service, read_model = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    driver.feed(placed("O-2"), ORDERS_INBOUND.name)
    reserve = [r for r in driver.ctx.outgoing if decode(r.value)[0].type == "inventory.reserve_stock.v1"]
    first = decode(reserve[0].value)[1]
    driver.feed(StockReserved(reservation_id=first.reservation_id, order_id="O-1", sku="TEE",  # type: ignore[attr-defined]
                              location="WH-NEAR", qty=1), INVENTORY_RESERVATIONS.name)
    out = driver.commit()
    assert sorted(key for key, _ in driver.changelogs[ORDERS]) == ["O-1", "O-2"]
    [write] = read_model.writes
    views = {view["order_id"]: view for view in write}
    assert sorted(views) == ["O-1", "O-2"] and views["O-1"]["status"] == "allocated"
    assert len(sent(out, "wms.fulfil_order.v1")) == 1


def test_a_message_delivered_again_sends_the_same_events_and_changes_no_state() -> None:
    service, read_model = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name, event_id="evt-1")
    first = driver.commit()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name, event_id="evt-1")
    again = driver.commit()
    assert [decode(r.value)[0].id for r in again] == [decode(r.value)[0].id for r in first]
    assert driver.changelogs[ORDERS] == []
    assert len(read_model.writes) == 1


def test_a_rolled_back_batch_leaves_no_view_no_state_and_no_deadline() -> None:
    service, read_model = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    driver.roll_back()
    driver.commit()
    assert read_model.writes == [] and driver.changelogs[ORDERS] == []
    assert service.deadlines[0].due == {}
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)  # the batch again, as the engine re-reads it
    driver.commit()
    assert [[v["order_id"] for v in w] for w in read_model.writes] == [["O-1"]]
    assert "O-1" in service.deadlines[0].due


def placed_with_a_deadline() -> tuple[Orchestrator, Driver, list[float], datetime]:
    """An orchestrator on a clock the test moves (``clock[0]``), order O-1 placed and committed, and when its
    first deadline is due."""
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    clock = [100.0]
    service.clock = lambda: clock[0]
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    driver.commit()
    return service, driver, clock, service.deadlines[0].due["O-1"].due


def test_a_due_deadline_is_sent_in_the_timers_transaction_and_again_only_if_that_transaction_rolled_back() -> None:
    _, driver, clock, due = placed_with_a_deadline()
    driver.timer(due - timedelta(seconds=1))
    assert driver.commit() == []
    driver.timer(due + timedelta(seconds=1))
    driver.roll_back()  # the first send's transaction aborted
    clock[0] += 1
    driver.timer(due + timedelta(seconds=2))
    assert driver.commit() == []  # sent: not again at once
    clock[0] += REFIRE_AFTER_S
    driver.timer(due + timedelta(seconds=12))
    out = driver.commit()  # never committed, still open after a while: sent again
    [reached] = sent(out, "order.deadline_reached.v1")
    assert reached["order_id"] == "O-1" and reached["kind"] == "reserve"
    assert out[0].topic == SETTINGS.topic("orders.timers.v1")


def test_a_deadline_whose_message_committed_is_not_sent_again_however_long_it_waits_to_be_handled() -> None:
    """Once committed, the message is in the task's own input and will be read: sending it again behind an input
    backlog longer than the re-send delay fed on itself (millions of copies with 100,000 orders due)."""
    service, driver, clock, due = placed_with_a_deadline()
    driver.timer(due + timedelta(seconds=1))
    assert len(sent(driver.commit(), "order.deadline_reached.v1")) == 1
    for step in range(1, 6):
        clock[0] += REFIRE_AFTER_S
        driver.timer(due + timedelta(seconds=1 + step * REFIRE_AFTER_S))
        assert driver.commit() == []
    assert service.deadlines[0].sent == {}


def test_a_deadline_handled_is_not_sent_again() -> None:
    service, driver, clock, due = placed_with_a_deadline()
    driver.timer(due + timedelta(seconds=1))
    [record] = driver.commit()
    envelope, message = decode(record.value)
    driver.service.handle(driver.ctx, envelope, message, Incoming(record.topic, 0, 99, record.key, record.value, 0))
    driver.commit()
    assert service.deadlines[0].due.get("O-1") != Deadline(kind="reserve", due=due)
    clock[0] += 2 * REFIRE_AFTER_S
    driver.timer(due + timedelta(seconds=30))
    assert sent(driver.commit(), "order.deadline_reached.v1") == []


def test_deadlines_are_rebuilt_from_the_restored_store() -> None:
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    driver.commit()
    changelog = driver.changelogs[ORDERS]
    restarted, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    fresh = Driver(restarted)
    for key, raw in changelog:
        fresh.stores[ORDERS].restore(key, raw)
    fresh.assign()
    assert restarted.deadlines[0].due == service.deadlines[0].due


def test_a_location_at_its_daily_capacity_is_not_planned_and_the_count_is_committed_with_the_batch() -> None:
    small = warehouse("WH-NEAR", 48.86, daily_capacity=1)
    service, _ = orchestrator(small, FAR, stock={("WH-NEAR", "TEE"): 5, ("WH-FAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    [reserve] = sent(driver.commit(), "inventory.reserve_stock.v1")
    assert reserve["location"] == "WH-NEAR"
    driver.feed(StockReserved(reservation_id=reserve["reservation_id"], order_id="O-1", sku="TEE",
                              location="WH-NEAR", qty=1), INVENTORY_RESERVATIONS.name)
    assert len(sent(driver.commit(), "wms.fulfil_order.v1")) == 1
    assert driver.changelogs[CAPACITY] == [(f"WH-NEAR@{T0.date().isoformat()}", b"1")]
    driver.feed(placed("O-2"), ORDERS_INBOUND.name)
    [second] = sent(driver.commit(), "inventory.reserve_stock.v1")
    assert second["location"] == "WH-FAR"


def test_other_tasks_committed_counts_are_seen_and_next_day_starts_afresh() -> None:
    small = warehouse("WH-NEAR", 48.86, daily_capacity=1)
    service, _ = orchestrator(small, FAR, stock={("WH-NEAR", "TEE"): 5, ("WH-FAR", "TEE"): 5})
    other, mine = Driver(service, task=1), Driver(service, task=0)
    other.assign()
    mine.assign()
    other.feed(placed("O-1"), ORDERS_INBOUND.name)
    [reserve] = sent(other.commit(), "inventory.reserve_stock.v1")
    other.feed(StockReserved(reservation_id=reserve["reservation_id"], order_id="O-1", sku="TEE",
                             location="WH-NEAR", qty=1), INVENTORY_RESERVATIONS.name)
    other.commit()
    mine.feed(placed("O-2"), ORDERS_INBOUND.name)
    assert sent(mine.commit(), "inventory.reserve_stock.v1")[0]["location"] == "WH-FAR"
    mine.feed(placed("O-3"), ORDERS_INBOUND.name, at=T0 + timedelta(days=1))
    assert sent(mine.commit(), "inventory.reserve_stock.v1")[0]["location"] == "WH-NEAR"


def test_a_message_the_saga_never_acts_on_writes_no_changelog_record_and_no_view() -> None:
    service, read_model = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    [reserve] = sent(driver.commit(), "inventory.reserve_stock.v1")
    driver.feed(StockReserved(reservation_id=reserve["reservation_id"], order_id="O-1", sku="TEE",
                              location="WH-NEAR", qty=1), INVENTORY_RESERVATIONS.name)
    [request] = sent(driver.commit(), "wms.fulfil_order.v1")
    writes = len(read_model.writes)
    driver.feed(ItemsPicked(request_id=request["request_id"], order_id="O-1", location="WH-NEAR",
                            lines=request["lines"], task_id="O-1/pick"), WMS_EVENTS.name)
    assert driver.commit() == [] and driver.changelogs[ORDERS] == [] and len(read_model.writes) == writes


def test_views_are_written_again_from_the_restored_store_once_a_task_is_assigned() -> None:
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    driver.feed(placed("O-2"), ORDERS_INBOUND.name)
    driver.commit()  # then a crash before the views reached Redis
    restarted, read_model = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    fresh = Driver(restarted)
    for key, raw in driver.changelogs[ORDERS]:
        fresh.stores[ORDERS].restore(key, raw)

    async def assign_and_let_the_resync_run() -> None:
        restarted.on_assigned(fresh.ctx)
        await asyncio.gather(*restarted.background)

    asyncio.run(assign_and_let_the_resync_run())
    assert sorted(view["order_id"] for view in read_model.resynced) == ["O-1", "O-2"]


def test_views_already_current_in_redis_are_not_rebuilt_after_an_assignment() -> None:
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    driver.feed(placed("O-2"), ORDERS_INBOUND.name)
    driver.commit()
    restarted, read_model = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    fresh = Driver(restarted)
    for key, raw in driver.changelogs[ORDERS]:
        fresh.stores[ORDERS].restore(key, raw)
    current = fresh.stores[ORDERS].committed_value("O-1")
    assert current is not None
    read_model.shown["O-1"] = current.view()  # O-1's view reached Redis before the crash, O-2's did not

    async def assign_and_let_the_resync_run() -> None:
        restarted.on_assigned(fresh.ctx)
        await asyncio.gather(*restarted.background)

    asyncio.run(assign_and_let_the_resync_run())
    assert [view["order_id"] for view in read_model.resynced] == ["O-2"]


def test_a_deadline_runs_from_when_the_order_was_handled_not_from_when_it_was_placed() -> None:
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    envelope = envelope_for(placed("O-1"), source="tests", correlationid="O-1", causationid=None,
                            time=T0 - timedelta(minutes=5))  # placed during a backlog
    raw = encode(envelope)
    driver.ctx.now = T0
    service.handle(driver.ctx, *decode(raw), Incoming("x", 0, 1, b"O-1", raw, 0))
    driver.commit()
    assert service.deadlines[0].due["O-1"].due > T0


def test_a_stored_order_keeps_every_applied_id_but_the_emits_of_its_last_message_only() -> None:
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name, event_id="evt-placed")
    [reserve] = sent(driver.commit(), "inventory.reserve_stock.v1")
    driver.feed(StockReserved(reservation_id=reserve["reservation_id"], order_id="O-1", sku="TEE",
                              location="WH-NEAR", qty=1), INVENTORY_RESERVATIONS.name, event_id="evt-reserved")
    driver.commit()
    [(_, raw)] = driver.changelogs[ORDERS]
    assert raw is not None
    stored = OrderState.model_validate_json(raw)
    assert stored.applied.ids == ["evt-placed", "evt-reserved"] and list(stored.applied.emits) == ["evt-reserved"]


def test_a_stored_order_leaves_out_its_defaults_and_reads_back_equal() -> None:
    service, _ = orchestrator(NEAR, stock={("WH-NEAR", "TEE"): 5})
    driver = Driver(service)
    driver.assign()
    driver.feed(placed("O-1"), ORDERS_INBOUND.name)
    [reserve] = sent(driver.commit(), "inventory.reserve_stock.v1")
    states = [driver.stores[ORDERS].committed_value("O-1")]
    driver.feed(StockReserved(reservation_id=reserve["reservation_id"], order_id="O-1", sku="TEE",
                              location="WH-NEAR", qty=1), INVENTORY_RESERVATIONS.name)
    driver.commit()
    states.append(driver.stores[ORDERS].committed_value("O-1"))
    for state in states:
        assert state is not None
        raw = ORDER_STORE.encode(state)
        assert len(raw) < len(state.model_dump_json())
        assert ORDER_STORE.decode(raw) == state
        assert ORDER_STORE.decode(raw).model_dump() == state.model_dump()
