"""The contract's refusals of bad input (issue 13): what the parse step dead-letters, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.envelope import MAX_TIME_AHEAD, InvalidMessage, decode, encode, envelope_for
from schemas.orders import MAX_ORDER_LINES, OrderLine, OrderPlaced, ReturnLine, ShipTo
from schemas.topics import ORDERS_INBOUND, PUBLIC_MAX_MESSAGE_BYTES
from services.orchestrator.domain.returns import replacement_order
from services.runtime.engine import input_size_limits, record_time
from services.runtime.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _order(**changes: object) -> OrderPlaced:
    order = OrderPlaced(order_id="O-1", channel="web", customer_id="C-1",
                        lines=[OrderLine(sku="TEE", qty=1, unit_price=10.0)], delivery=ShipTo(lat=48.8, lon=2.3))
    return order.model_copy(update=changes)


def _raw(order: OrderPlaced, time: datetime = NOW, **data: object) -> bytes:
    document = orjson.loads(encode(envelope_for(order, source="t", correlationid="O-1", causationid=None, time=time)))
    document["data"].update(data)
    return orjson.dumps(document)


def _refusal(raw: bytes, **kwargs: object) -> str:
    with pytest.raises(InvalidMessage) as caught:
        decode(raw, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_record_over_the_limit_is_refused_before_it_is_parsed() -> None:
    raw = b"{" + b" " * 300_000 + b"}"
    assert "record too large: 300,002 bytes, over the topic's limit of 262,144" in _refusal(
        raw, max_bytes=PUBLIC_MAX_MESSAGE_BYTES)


def test_only_the_public_inbound_topic_has_a_size_limit_and_the_broker_enforces_it_too() -> None:
    settings = Settings(namespace="ns")
    assert input_size_limits(settings) == {"ns.orders.inbound.v1": PUBLIC_MAX_MESSAGE_BYTES}
    assert int(ORDERS_INBOUND.extra_config["max.message.bytes"]) > PUBLIC_MAX_MESSAGE_BYTES


def test_invalid_utf8_is_refused_as_not_json() -> None:
    assert "UTF-8" in _refusal(b'{"specversion": "1.0", "id": "\xff\xfe"}')


@pytest.mark.parametrize("field", ["time", "placed_at"])
def test_a_time_more_than_a_day_ahead_of_the_record_is_refused(field: str) -> None:
    ahead = NOW + MAX_TIME_AHEAD + timedelta(minutes=1)
    raw = _raw(_order(placed_at=ahead)) if field == "placed_at" else _raw(_order(), time=ahead)
    assert f"time in the future: {field} " in _refusal(raw, record_time=NOW)
    decode(raw)  # no record time (a replay, a test's read): no such check


def test_a_time_just_ahead_of_the_record_is_clock_drift_and_taken() -> None:
    nearly = NOW + MAX_TIME_AHEAD - timedelta(minutes=1)
    envelope, message = decode(_raw(_order(placed_at=nearly), time=nearly), record_time=NOW)
    assert envelope.time == nearly and isinstance(message, OrderPlaced)


@pytest.mark.parametrize("price", ["Infinity", "NaN", 1e400, -1.0])
def test_a_price_that_is_not_a_finite_non_negative_number_is_refused(price: object) -> None:
    line = {"sku": "TEE", "qty": 1, "unit_price": price}
    assert "lines.0.unit_price" in _refusal(_raw(_order(), lines=[line]))


def test_the_same_sku_on_two_lines_is_refused() -> None:
    lines = [{"sku": "TEE", "qty": 1}, {"sku": "MUG", "qty": 1}, {"sku": "TEE", "qty": 2}]
    assert "SKU 'TEE' is on more than one line" in _refusal(_raw(_order(), lines=lines))


def test_more_lines_than_the_maximum_are_refused() -> None:
    lines = [{"sku": f"S-{n}", "qty": 1} for n in range(MAX_ORDER_LINES + 1)]
    assert f"at most {MAX_ORDER_LINES} items" in _refusal(_raw(_order(), lines=lines))
    decode(_raw(_order(), lines=lines[:MAX_ORDER_LINES]))


def test_an_exchange_asking_a_sku_twice_becomes_one_line_of_the_replacement_order() -> None:
    asked = [ReturnLine(sku="TEE", qty=1), ReturnLine(sku="MUG", qty=1), ReturnLine(sku="TEE", qty=2)]
    replacement = replacement_order(_order(), "R-1", asked, NOW)
    assert [(line.sku, line.qty) for line in replacement.lines] == [("TEE", 3), ("MUG", 1)]


def test_a_record_time_is_read_from_the_kafka_timestamp() -> None:
    assert record_time(int(NOW.timestamp() * 1000)) == NOW
    assert record_time(-1) is None
