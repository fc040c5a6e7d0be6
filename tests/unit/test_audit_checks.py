"""The audit's record checks on hand-made logs: each tamper named at its topic, partition and offset."""

from __future__ import annotations

from typing import Any

import orjson

from baton.audit.checks import Window, audit_records, in_time_order
from baton.audit.log import LogRecord
from baton.invariants import Expected, Facts, movements_balance, positions_never_negative, refunds_within_paid
from schemas.inventory import StockMoved


class Log:
    """A log built record by record; offsets per (topic, partition) as Kafka would give them."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []
        self.clock = 1_000
        count = {"count_id": "c", "sku": "A", "location": "W", "qty": 10}  # what the movements say caused them
        self.add("inventory.commands.v1", "inventory.count_stock.v1", count, id_="count")

    def add(self, topic: str, type_: str, data: dict[str, Any], *, id_: str, cause: str | None = None,
            partition: int = 0) -> LogRecord:
        offset = sum(1 for r in self.records if r.topic == topic and r.partition == partition)
        doc = {"id": id_, "type": type_, "source": "t", "time": "2026-01-01T00:00:00Z", "data": data,
               "correlationid": data.get("order_id", "x")}
        if cause is not None:
            doc["causationid"] = cause
        self.clock += 1
        record = LogRecord.parsed(topic, partition, offset, self.clock, orjson.dumps(doc))
        self.records.append(record)
        return record


def _moved(log: Log, id_: str, delta: int, after: int, cause: str | None = None) -> LogRecord:
    data = {"movement_id": f"m-{id_}", "sku": "A", "location": "W", "kind": "counted", "delta": delta,
            "on_hand_after": after, "cause_id": "c"}
    return log.add("inventory.movements.v1", "inventory.stock_moved.v1", data, id_=id_, cause=cause)


def _availability(log: Log, on_hand: int, version: int) -> None:
    data = {"sku": "A", "location": "W", "on_hand": on_hand, "reserved": 0, "safety_stock": 0,
            "available": on_hand, "version": version}
    log.add("inventory.availability.v1", "inventory.availability_changed.v1", data, id_=f"av{version}")


def test_a_clean_ledger_audits_clean() -> None:
    log = Log()
    _moved(log, "1", 10, 10)
    _moved(log, "2", -3, 7)
    _moved(log, "2", -3, 7)  # the same movement delivered again: one effect
    _availability(log, 7, 2)
    assert audit_records(log.records).violations == []


def test_a_broken_chain_a_missing_cause_and_a_reused_id_are_named_where_they_are() -> None:
    log = Log()
    _moved(log, "1", 10, 10)
    bad = _moved(log, "2", 5, 10)  # +5 that does not move on hand: breaks the chain and the balance
    orphan = _moved(log, "3", 0, 10, cause="nowhere")
    log.add("inventory.movements.v1", "inventory.stock_moved.v1", {"other": 1}, id_="1")  # id 1 reused
    _availability(log, 10, 3)
    report = audit_records(log.records)
    found = {(v.check, v.offset) for v in report.violations}
    assert ("movement_chain", bad.offset) in found
    assert ("cause_exists", orphan.offset) in found
    assert ("id_unique", 3) in found
    assert any(v.check == "invariant:movements_balance" for v in report.violations)


def test_a_movement_no_command_caused_is_named() -> None:
    log = Log()
    _moved(log, "1", 10, 10)
    data = {"movement_id": "m-x", "sku": "A", "location": "W", "kind": "adjusted", "delta": 2, "on_hand_after": 12,
            "cause_id": "made-up"}
    forged = log.add("inventory.movements.v1", "inventory.stock_moved.v1", data, id_="x")
    _availability(log, 10, 2)
    report = audit_records(log.records)
    assert ("movement_cause", forged.offset) in {(v.check, v.offset) for v in report.violations}
    balance = [v for v in report.violations if v.check == "invariant:movements_balance"]
    assert [(v.topic, v.offset) for v in balance] == [("inventory.movements.v1", forged.offset)]


def test_a_window_reports_only_the_records_stamped_in_it() -> None:
    log = Log()
    _moved(log, "1", 10, 10, cause="nowhere")
    late = _moved(log, "2", 0, 10, cause="nowhere")
    report = audit_records(log.records, Window(start_ms=late.timestamp_ms))
    assert [v.offset for v in report.violations if v.check == "cause_exists"] == [late.offset]


def test_time_order_keeps_each_partition_in_offset_order() -> None:
    a = [LogRecord("t", 0, i, ts, None) for i, ts in enumerate([5, 3, 9])]
    b = [LogRecord("u", 0, i, ts, None) for i, ts in enumerate([1, 4, 6])]
    merged = in_time_order(a + b)
    assert [r.offset for r in merged if r.topic == "t"] == [0, 1, 2]
    assert [(r.topic, r.offset) for r in merged][:2] == [("u", 0), ("u", 1)]


def test_log_invariants_balance_negative_and_refunds() -> None:
    moves = [StockMoved(movement_id=f"m{i}", sku="A", location="W", kind="adjusted", delta=d, on_hand_after=0,
                        cause_id="c") for i, d in enumerate([2, -3])]
    facts = Facts(orders={}, stock={"W": {"A": {"on_hand": 0, "reserved": 0}}}, movements=moves)
    expected = Expected(order_ids=())
    assert movements_balance(facts, expected).culprits == ("A@W",)
    assert positions_never_negative(facts, expected).culprits == ("A@W",)
    assert refunds_within_paid({"O-1": 10.0}, [("O-1", 6.0), ("O-1", 4.0)]).held
    assert refunds_within_paid({"O-1": 10.0}, [("O-1", 6.0), ("O-1", 5.0)]).culprits == ("O-1",)


def test_an_order_still_moving_at_the_end_of_the_log_is_in_flight_not_stuck() -> None:
    log = Log()
    placed = {"order_id": "O-1", "channel": "web", "customer_id": "C", "lines": [{"sku": "A", "qty": 1}],
              "delivery": {"mode": "ship", "lat": 1.0, "lon": 2.0}}
    order = log.add("orders.inbound.v1", "order.placed.v1", placed, id_="p")
    log.add("orders.events.v1", "order.accepted.v1", {"order_id": "O-1"}, id_="a", cause="p")
    reserve = {"reservation_id": "O-1/a1/0", "order_id": "O-1", "sku": "A", "location": "W", "qty": 1}
    log.add("inventory.commands.v1", "inventory.reserve_stock.v1", reserve, id_="r", cause=order.id)
    assert audit_records(log.records).violations == []  # the ledger's answer may still be on its way
    stuck = audit_records(log.records, Window(in_flight_ms=0))
    assert {v.check for v in stuck.violations} == {"story", "invariant:settled"}


def test_refunds_count_once_per_key_and_never_beyond_what_was_paid() -> None:
    log = Log()
    placed = {"order_id": "O-1", "channel": "web", "customer_id": "C", "lines": [{"sku": "A", "qty": 2,
              "unit_price": 10.0}], "shipping_price": 5.0, "delivery": {"mode": "ship", "lat": 1.0, "lon": 2.0}}
    log.add("orders.inbound.v1", "order.placed.v1", placed, id_="p")

    def refund(id_: str, key: str, amount: float) -> LogRecord:
        data = {"refund_id": key, "idempotency_key": key, "return_id": "R", "order_id": "O-1", "amount": amount}
        return log.add("payments.events.v1", "payments.refund_succeeded.v1", data, id_=id_)

    refund("s1", "k1", 20.0)
    refund("s1", "k1", 20.0)  # delivered again: nothing
    again = refund("s2", "k1", 20.0)  # the same key paid out twice
    within = audit_records(log.records)
    assert [(v.check, v.offset) for v in within.violations if "refund" in v.check] == [("refund_once", again.offset)]
    beyond = refund("s3", "k2", 6.0)  # 20 + 6 > 25 paid
    found = {(v.check, v.offset) for v in audit_records(log.records).violations}
    assert ("refunds_within_paid", beyond.offset) in found
