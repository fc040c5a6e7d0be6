"""The envelope's fast path writes exactly what the pydantic model does, and reads back the same."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from schemas.envelope import Envelope, decode, derived_id, encode, encode_message, envelope_for
from schemas.inventory import StockReserved
from schemas.orders import OrderLine, OrderPlaced, PickupAt, ShipTo

MOMENTS = [
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 30, 5, 123456, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 30, 5, 4500, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 6, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(2026, 6, 1, 12, 30, 5, 7),
]
MESSAGES = [
    OrderPlaced(order_id="O-1", channel="web", customer_id="C-1",
                lines=[OrderLine(sku="TEE", qty=2, unit_price=9.5)], delivery=ShipTo(lat=48.8, lon=2.3)),
    OrderPlaced(order_id="O-2", channel="b2b", customer_id="C-2", lines=[OrderLine(sku="MUG", qty=1, unit_price=3)],
                delivery=PickupAt(location="ST-PAR")),
    StockReserved(reservation_id="O-1/a1/0", order_id="O-1", sku="TEE", location="WH-PAR", qty=2),
]


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("causationid", [None, "cause-1"])
def test_encode_message_writes_the_bytes_of_the_envelope_model(
    moment: datetime, message: OrderPlaced | StockReserved, causationid: str | None
) -> None:
    fields = {"source": "baton/test", "correlationid": "O-1", "causationid": causationid, "event_id": "e-1",
              "time": moment}
    assert encode_message(message, **fields) == encode(envelope_for(message, **fields))  # type: ignore[arg-type]


def test_encode_message_without_an_id_or_time_makes_them_as_the_model_does() -> None:
    raw = encode_message(MESSAGES[2], source="s", correlationid="c", causationid=None)
    envelope, _ = decode(raw)
    assert envelope.id and envelope.time.tzinfo is not None
    assert encode(envelope) == raw


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("message", MESSAGES)
def test_what_the_fast_path_writes_decodes_to_the_same_envelope_and_message(
    moment: datetime, message: OrderPlaced | StockReserved
) -> None:
    raw = encode_message(message, source="s", correlationid="c", causationid="x", event_id="e", time=moment)
    envelope, parsed = decode(raw)
    assert envelope == Envelope.model_validate(orjson.loads(raw))
    assert parsed == message
    assert encode(envelope) == raw


@pytest.mark.parametrize(
    ("cause", "parts"),
    [("", ()), ("e-1", ("inventory.reserve_stock.v1", "O-1/a1/0")), ("é ✓", (3, None, 2.5)), ("x" * 500, ("y",))],
)
def test_derived_id_is_the_uuid5_of_its_parts(cause: str, parts: tuple[object, ...]) -> None:
    expected = str(uuid.uuid5(uuid.UUID("6f1c7a52-2b7e-4c41-9d55-6a0c1f0b7a11"), "|".join([cause, *map(str, parts)])))
    assert derived_id(cause, *parts) == expected
