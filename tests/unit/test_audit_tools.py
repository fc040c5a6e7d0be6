"""The offline audit tools on a hand-made log: history as of a moment, what-if, decision replay, export."""

from __future__ import annotations

import importlib.util
import io
from typing import Any

import orjson
import pytest

from baton.audit.decisions import DecisionReplayer
from baton.audit.export import ExportError, rows, select, write
from baton.audit.history import History
from baton.audit.log import LogRecord
from baton.audit.whatif import what_if
from schemas.envelope import derived_id
from services.orchestrator.domain.rules import DEFAULT_RULES, parse_rule_set

PARIS = {"id": "WH-PAR", "kind": "warehouse", "lat": 48.86, "lon": 2.35, "capabilities": ["ship"],
         "handling_cost": 1.2}
LYON = {"id": "WH-LYO", "kind": "warehouse", "lat": 45.76, "lon": 4.83, "capabilities": ["ship"],
        "handling_cost": 0.9}


class Log:
    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    def add(self, topic: str, type_: str, data: dict[str, Any], at_ms: int, *, id_: str | None = None,
            cause: str | None = None) -> LogRecord:
        offset = sum(1 for r in self.records if r.topic == topic)
        doc: dict[str, Any] = {"id": id_ or f"{type_}-{offset}", "type": type_, "source": "t",
                               "time": "2026-01-01T00:00:00Z", "data": data,
                               "correlationid": data.get("order_id", "x")}
        if cause:
            doc["causationid"] = cause
        record = LogRecord.parsed(topic, 0, offset, at_ms, orjson.dumps(doc))
        self.records.append(record)
        return record


def _network_and_stock(log: Log) -> None:
    for configured in (PARIS, LYON):
        log.add("network.v1", "network.location_configured.v1", {"location": configured, "network_version": 1}, 1)
    for version, (location, available) in enumerate((("WH-PAR", 5), ("WH-LYO", 5)), start=1):
        log.add("inventory.availability.v1", "inventory.availability_changed.v1",
                {"sku": "TEE-M", "location": location, "on_hand": available, "reserved": 0, "safety_stock": 0,
                 "available": available, "version": version}, 2)


def _placed_and_decided(log: Log, order_id: str, at_ms: int, location: str) -> None:
    """An order placed near Paris, and the reservation the orchestrator recorded for it (its first line)."""
    placed = {"order_id": order_id, "channel": "web", "customer_id": "C", "delivery": {"mode": "ship", "lat": 48.8,
              "lon": 2.3}, "lines": [{"sku": "TEE-M", "qty": 2, "unit_price": 10.0}]}
    record = log.add("orders.inbound.v1", "order.placed.v1", placed, at_ms, id_=f"in-{order_id}")
    reservation_id = f"{order_id}/a1/0"
    reserve = {"reservation_id": reservation_id, "order_id": order_id, "sku": "TEE-M", "location": location,
               "qty": 2, "backorder": False}
    log.add("inventory.commands.v1", "inventory.reserve_stock.v1", reserve, at_ms + 5, cause=record.id,
            id_=derived_id(record.id, "inventory.reserve_stock.v1", reservation_id))


def test_history_gives_what_was_published_by_then() -> None:
    log = Log()
    _network_and_stock(log)
    log.add("rules.v1", "network.rule_set_published.v1", {"name": "r", "version": 3, "document": {"name": "r",
            "version": 3}}, 50)
    history = History(log.records)
    assert history.network_as_of(0).locations == {}
    assert set(history.network_as_of(5).locations) == {"WH-PAR", "WH-LYO"}
    assert history.rules_as_of(10).published_ms is None and history.rules_as_of(60).rules.version == 3
    availability, _ = history.stock_as_of({"TEE-M"}, 5)
    assert availability == {"TEE-M": {"WH-PAR": 5, "WH-LYO": 5}}


def test_whatif_with_the_same_rules_is_zero_and_other_rules_move_orders() -> None:
    log = Log()
    _network_and_stock(log)
    _placed_and_decided(log, "O-1", 100, "WH-PAR")  # the default rule: one location; Paris is nearer, Lyon cheaper
    same = what_if(log.records, DEFAULT_RULES)
    assert same.baseline_agrees == 1 and same.zero_difference
    lyon_only = parse_rule_set({"name": "lyon", "rules": [{"name": "lyon", "filters": {"only_locations": ["WH-LYO"]}}]})
    other = what_if(log.records, lyon_only)
    assert [(oid, c.locations) for oid, _, c in other.changed_orders()] == [("O-1", ["WH-LYO"])]
    assert other.location_differences() == {"WH-LYO": 1, "WH-PAR": -1}
    assert other.differences()["distance_km"] > 300


def test_a_decision_replays_the_same_and_a_forged_one_does_not() -> None:
    log = Log()
    _network_and_stock(log)
    _placed_and_decided(log, "O-1", 100, "WH-PAR")
    _placed_and_decided(log, "O-2", 200, "WH-LYO")  # the recorded decision says Lyon: not what the rules give
    replayer = DecisionReplayer(log.records)
    assert replayer.order_ids() == ["O-1", "O-2"]
    assert replayer.replay("O-1").agree
    forged = replayer.replay("O-2")
    assert not forged.agree
    step = forged.decisions[0]
    assert step.planned and step.availability["TEE-M"] == {"WH-PAR": 5, "WH-LYO": 5}
    assert not replayer.replay("O-NONE").found


def test_export_selects_an_orders_events_with_their_causes() -> None:
    log = Log()
    _network_and_stock(log)
    _placed_and_decided(log, "O-1", 100, "WH-PAR")
    chosen = select(log.records, order_id="O-1")
    table = rows(chosen, log.records)
    assert [r["type"] for r in table] == ["order.placed.v1", "inventory.reserve_stock.v1"]
    assert table[1]["cause_type"] == "order.placed.v1"
    assert [r.type for r in select(log.records, order_id=None, since=None, until=None)][:1] == [
        "network.location_configured.v1"]
    out = io.BytesIO()
    write(table, "csv", out)
    assert out.getvalue().decode().splitlines()[0].startswith("topic,partition,offset,kafka_time,id")
    out = io.BytesIO()
    write(table, "jsonl", out)
    assert [orjson.loads(line)["type"] for line in out.getvalue().splitlines()] == [r["type"] for r in table]


def test_parquet_is_written_with_pyarrow_and_without_it_says_how_to_get_it() -> None:
    out = io.BytesIO()
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(ExportError, match="pip install pyarrow"):
            write([], "parquet", out)
    else:
        write([], "parquet", out)
        assert out.getvalue().startswith(b"PAR1")
