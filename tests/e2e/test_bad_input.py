"""The bad-input battery (issue 13): every kind of bad input on the public inbound topic is refused with its
reason, and nothing else changes.

One set of services plays the whole battery once (a module-scoped fixture): good orders interleaved with every
bad record, then each case is asserted on its own (one test id per case). A refusal lands in one of three places:
the dead-letter topic (the record does not parse, or breaks the contract), a ``rejected`` order status with its
reason (the order parses but the OMS cannot take it), or a refusal event (a duplicate order id, a cancel or a
return of an order that does not exist). Too large a record is refused by the broker on produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from baton.publish import Publisher
from schemas.envelope import encode, envelope_for
from schemas.network import DeadLettered, Location
from schemas.orders import OrderCancelRequested, OrderPlaced, PickupAt, ReturnLine, ReturnRequested
from schemas.topics import DEAD_LETTERS, ORDERS_EVENTS, ORDERS_INBOUND, ORDERS_STATUS, PUBLIC_MAX_MESSAGE_BYTES
from services.runtime.admin import purge_namespace
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from tests.support import availability, read_topic, running_services, ship_order, wait_for, warehouse

pytestmark = pytest.mark.e2e

STOCK = {("WH-1", "TEE"): 50, ("WH-1", "MUG"): 20, ("WH-1", "UNTOUCHED"): 7}
GOOD = {"G-1": {"TEE": 2}, "G-2": {"MUG": 1}, "G-3": {"TEE": 1, "MUG": 1}, "G-4": {"TEE": 3}, "G-DUP": {"TEE": 1}}
DUPLICATE = ship_order("G-DUP", {"MUG": 3})  # the same order id, other content: refused, G-DUP stands
TAKEN = {"TEE": 2 + 1 + 3 + 1, "MUG": 1 + 1}  # units the good orders take


def _order_document(order: OrderPlaced, **envelope: Any) -> dict[str, Any]:
    document = orjson.loads(encode(envelope_for(order, source="tests", correlationid=order.order_id,
                                                causationid=None)))
    document.update(envelope)
    return dict(document)


def _with_data(order_id: str, **data: Any) -> bytes:
    document = _order_document(ship_order(order_id, {"TEE": 1}))
    document["data"].update(data)
    return orjson.dumps(document)


def _line(sku: str = "TEE", qty: Any = 1, price: Any = 10.0) -> dict[str, Any]:
    return {"sku": sku, "qty": qty, "unit_price": price}


FAR = datetime.now(UTC) + timedelta(days=30)
# the dead-letter cases: the raw record, and what its reason must say
DEAD: dict[str, tuple[bytes, str]] = {
    "not_json": (b"this is not an event", "not JSON"),
    "invalid_utf8": (b'{"specversion": "1.0", "id": "\xff\xfe", "type": "order.placed.v1"}', "not valid UTF-8"),
    "json_not_a_cloudevent": (b'{"order": "O-1", "lines": 3}', "invalid CloudEvents envelope"),
    "json_array": (b"[1, 2, 3]", "not a CloudEvents object"),
    "wrong_specversion": (orjson.dumps(_order_document(ship_order("B-spec", {"TEE": 1}), specversion="0.3")),
                          "invalid CloudEvents envelope: specversion"),
    "unknown_type": (orjson.dumps(_order_document(ship_order("B-type", {"TEE": 1}), type="order.exploded.v1")),
                     "unknown event type 'order.exploded.v1'"),
    "zero_quantity": (_with_data("B-zero", lines=[_line(qty=0)]), "lines.0.qty: Input should be greater than 0"),
    "negative_quantity": (_with_data("B-neg", lines=[_line(qty=-2)]), "lines.0.qty: Input should be greater than 0"),
    "no_lines": (_with_data("B-none", lines=[]), "lines: List should have at least 1 item"),
    "ten_thousand_lines": (_with_data("B-many", lines=[{"sku": f"S{n}", "qty": 1} for n in range(10_000)]),
                           "lines: List should have at most 200 items"),
    "nan_price": (_with_data("B-nan", lines=[_line(price="NaN")]), "lines.0.unit_price"),
    "infinite_price": (_with_data("B-inf", lines=[_line(price="Infinity")]), "lines.0.unit_price"),
    "negative_price": (_with_data("B-price", lines=[_line(price=-5.0)]), "lines.0.unit_price"),
    "same_sku_on_two_lines": (_with_data("B-twice", lines=[_line(), _line("MUG"), _line(qty=2)]),
                              "SKU 'TEE' is on more than one line"),
    "time_far_in_the_future": (orjson.dumps(_order_document(ship_order("B-time", {"TEE": 1}), time=FAR.isoformat())),
                               "time in the future: time"),
    "placed_at_far_in_the_future": (_with_data("B-placed", placed_at=FAR.isoformat()),
                                    "time in the future: placed_at"),
    # compressed, it passes the broker's limit; the orchestrator's own limit refuses it
    "compressed_over_the_size_limit": (_with_data("B-big", customer_id="C" * (PUBLIC_MAX_MESSAGE_BYTES + 10)),
                                       "record too large"),
}
# orders the OMS parses but cannot take: a rejected status with the reason
REJECTED = {
    "unknown_sku": (ship_order("B-sku", {"TEE": 1, "NOPE": 1}), "unknown SKU 'NOPE'"),
    "unknown_location": (ship_order("B-loc", {"TEE": 1}).model_copy(update={"delivery": PickupAt(location="NOWHERE")}),
                         "unknown location 'NOWHERE'"),
}


@dataclass
class Played:
    """What the battery left behind, read once."""

    letters: dict[str, DeadLettered] = field(default_factory=dict)  # case -> its dead letter
    unmatched_letters: list[DeadLettered] = field(default_factory=list)
    views: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    refusals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # event type -> data of each
    stock: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> WH-1's position
    produce_errors: dict[str, BaseException | None] = field(default_factory=dict)
    alive: bool = False


@pytest.fixture(scope="module")
def battery_settings(stack_settings: Settings) -> Iterator[Settings]:
    scoped = stack_settings.with_namespace(f"test-bad-{uuid.uuid4().hex[:8]}")
    yield scoped
    asyncio.run(purge_namespace(scoped))


@pytest.fixture(scope="module")
def played(battery_settings: Settings) -> Played:
    locations: list[Location] = [warehouse("WH-1")]
    with running_services(battery_settings, locations, STOCK) as services:
        result = asyncio.run(_play(battery_settings))
        result.alive = all(s.alive() for s in services.services.values())
    return result


async def _play(settings: Settings) -> Played:
    result = Played()
    inbound = full_topic_name(settings, ORDERS_INBOUND)
    where: dict[tuple[int, int], str] = {}  # (partition, offset) -> dead-letter case
    goods = iter(GOOD.items())
    # the ledger counted the stock (written to Redis after its commit, so the orchestrator's availability view has
    # it too): an order placed before that is rightly rejected, which this battery must not mistake for a refusal
    await wait_for(lambda: _stock_counted(settings), 30, "the initial stock in the ledger")
    async with Publisher(settings, source="tests") as publisher, _producer(settings, "gzip") as gzip:
        for case, (raw, _) in DEAD.items():
            producer = gzip if case.startswith("compressed") else publisher.producer
            sent = await producer.send_and_wait(inbound, key=f"bad-{case}".encode(), value=raw)
            where[(sent.partition, sent.offset)] = case
            good = next(goods, None)
            if good is not None:
                await publisher.publish(ORDERS_INBOUND, good[0], ship_order(good[0], good[1]), wait=True)
        for order, _ in REJECTED.values():
            await publisher.publish(ORDERS_INBOUND, order.order_id, order)
        await publisher.publish(ORDERS_INBOUND, "G-DUP", ship_order("G-DUP", GOOD["G-DUP"]))  # a retry: ignored
        await publisher.publish(ORDERS_INBOUND, "G-DUP", DUPLICATE)
        await publisher.publish(ORDERS_INBOUND, "NO-SUCH-1", OrderCancelRequested(order_id="NO-SUCH-1"))
        await publisher.publish(ORDERS_INBOUND, "NO-SUCH-2", ReturnRequested(
            order_id="NO-SUCH-2", return_id="R-1", lines=[ReturnLine(sku="TEE", qty=1)], reason="changed_mind"))
        await publisher.flush()
    result.produce_errors = await _produce_oversized(settings)
    await wait_for(lambda: _settled(settings, result, where), 60, "every case refused and every good order shipped",
                   interval=1.0, explain=lambda: _progress(result))
    with contextlib.suppress(AssertionError):  # the ledger consumes shipped holds a moment after the status says so
        await wait_for(lambda: _stock_settled(settings, result), 20, "the ledger to settle", interval=0.5)
    return result


async def _stock_counted(settings: Settings) -> bool:
    positions = {sku: (await availability(settings, sku)).get("WH-1", {}) for _, sku in STOCK}
    return all(positions[sku].get("on_hand") == qty for (_, sku), qty in STOCK.items())


async def _stock_settled(settings: Settings, result: Played) -> bool:
    result.stock = {sku: (await availability(settings, sku)).get("WH-1", {}) for _, sku in STOCK}
    return all(position.get("reserved") == 0 for position in result.stock.values())


async def _settled(settings: Settings, result: Played, where: dict[tuple[int, int], str]) -> bool:
    result.letters, result.unmatched_letters = {}, []
    for envelope, _ in await read_topic(settings, full_topic_name(settings, DEAD_LETTERS)):
        assert envelope is not None, "a dead letter that does not parse"
        letter = DeadLettered.model_validate(envelope.data)
        case = where.get((letter.partition, letter.offset))
        if case is None:
            result.unmatched_letters.append(letter)
        else:
            result.letters[case] = letter
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        ids = [*GOOD, *(order.order_id for order, _ in REJECTED.values())]
        result.views = await read_model.read_orders(ids)
    finally:
        await read_model.close()
    result.refusals = {}
    for spec in (ORDERS_STATUS, ORDERS_EVENTS):
        for envelope, _ in await read_topic(settings, full_topic_name(settings, spec)):
            if envelope is not None and envelope.type.endswith(("refused.v1", "return.rejected.v1")):
                result.refusals.setdefault(envelope.type, []).append(envelope.data)
    return (len(result.letters) == len(DEAD) and len(result.refusals) == 3
            and all(result.views.get(o) and result.views[o]["status"] == "shipped" for o in GOOD)  # type: ignore[index]
            and all(result.views.get(order.order_id) for order, _ in REJECTED.values()))


async def _progress(result: Played) -> str:
    missing = sorted(set(DEAD) - set(result.letters))
    statuses = {o: ((v or {}).get("status"), (v or {}).get("reason")) for o, v in result.views.items()}
    return f"dead letters missing {missing}; statuses {statuses}; refusals {sorted(result.refusals)}"


async def _produce_oversized(settings: Settings) -> dict[str, BaseException | None]:
    """Records over the topic's limit, sent two ways: each must fail on produce, never count as sent."""
    errors: dict[str, BaseException | None] = {}
    big = os.urandom(PUBLIC_MAX_MESSAGE_BYTES + 4096)  # incompressible
    async with _producer(settings, None) as raw:
        try:
            await raw.send_and_wait(full_topic_name(settings, ORDERS_INBOUND), key=b"bad-big", value=big)
            errors["broker"] = None
        except KafkaError as exc:
            errors["broker"] = exc
    async with Publisher(settings, source="tests") as publisher:
        try:
            await publisher.publish_raw(ORDERS_INBOUND, "bad-huge", os.urandom(2 * 1024 * 1024))
            errors["client"] = None
        except KafkaError as exc:
            errors["client"] = exc
    return errors


class _producer:
    """A plain producer allowed large requests (so that the broker, not the client, decides)."""

    def __init__(self, settings: Settings, compression: str | None) -> None:
        self.producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all", compression_type=compression,
                                         max_request_size=4 * 1024 * 1024)

    async def __aenter__(self) -> AIOKafkaProducer:
        await self.producer.start()
        return self.producer

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()


# ------------------------------------------------------------------------------------------------ the cases


@pytest.mark.parametrize("case", sorted(DEAD))
def test_dead_lettered_with_its_reason(played: Played, case: str) -> None:
    letter = played.letters.get(case)
    assert letter is not None, f"{case} was not dead-lettered"
    assert letter.reason.startswith(DEAD[case][1]) or DEAD[case][1] in letter.reason, letter.reason
    assert letter.service == "baton/orchestrator" and letter.topic.endswith(ORDERS_INBOUND.name)
    raw = DEAD[case][0]
    if len(raw) <= 100_000:  # the payload is kept (cut at 100,000 characters) for whoever corrects and re-sends it
        assert letter.payload == raw.decode("utf-8", errors="replace")


def test_nothing_else_was_dead_lettered(played: Played) -> None:
    assert played.unmatched_letters == []


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected_with_its_reason_and_nothing_reserved(played: Played, case: str) -> None:
    order, reason = REJECTED[case]
    view = played.views[order.order_id]
    assert view is not None and view["status"] == "rejected", view
    assert reason in (view["reason"] or ""), view["reason"]
    assert view["shipments"] == [] and all(line["shipped"] == 0 for line in view["lines"])


@pytest.mark.parametrize("way", ["broker", "client"])
def test_a_record_over_the_size_limit_is_refused_on_produce(played: Played, way: str) -> None:
    error = played.produce_errors[way]
    assert isinstance(error, MessageSizeTooLargeError), f"the {way} took a record over the limit: {error!r}"


def test_the_same_order_id_with_other_content_is_refused_and_the_first_stands(played: Played) -> None:
    [refusal] = played.refusals["order.placement_refused.v1"]  # the identical retry is no refusal
    assert refusal["order_id"] == "G-DUP" and "already placed with other content (lines differ)" in refusal["reason"]
    view = played.views["G-DUP"]
    assert view is not None and view["status"] == "shipped"
    assert [(line["sku"], line["ordered"], line["shipped"]) for line in view["lines"]] == [("TEE", 1, 1)]


def test_a_cancel_of_an_order_that_does_not_exist_is_refused(played: Played) -> None:
    [refusal] = played.refusals["order.cancel_refused.v1"]
    assert refusal == {"order_id": "NO-SUCH-1", "reason": "cancel refused: unknown order"}


def test_a_return_of_an_order_that_does_not_exist_is_rejected(played: Played) -> None:
    [rejection] = played.refusals["return.rejected.v1"]
    assert rejection["order_id"] == "NO-SUCH-2" and rejection["reason"] == "unknown order"


def test_every_service_kept_running_and_every_good_order_shipped(played: Played) -> None:
    assert played.alive, "a service died on bad input"
    assert {order_id: played.views[order_id]["status"] for order_id in GOOD} == dict.fromkeys(GOOD, "shipped")  # type: ignore[index]


@pytest.mark.parametrize("sku", ["TEE", "MUG", "UNTOUCHED"])
def test_stock_moved_only_by_the_good_orders(played: Played, sku: str) -> None:
    position = played.stock[sku]
    start = STOCK[("WH-1", sku)]
    assert (position["on_hand"], position["reserved"], position["available"]) == (
        start - TAKEN.get(sku, 0), 0, start - TAKEN.get(sku, 0)), position
