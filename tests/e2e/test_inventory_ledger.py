"""The inventory service alone on real Kafka and Redis: supply, backorders, receipts (short ones too), expiries,
adjustments and duplicates, driven through ``inventory.commands.v1`` and read back from
``inventory.reservations.v1``, the movements, Redis, HTTP and ``baton stock show`` (live and ``--as-of``);
then the ledger rebuilt from the commands equals the live one.

One service run for the module (a namespace of its own); each test checks one side of what it did.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from baton.processes import ServiceProcess, ServiceSet
from baton.publish import Publisher
from baton.stock_cli import stock_app
from baton.stock_history import live_ledgers, rebuilt_ledgers
from schemas.base import Message
from schemas.envelope import Envelope
from schemas.inventory import (
    AdjustStock,
    ConsumeReservation,
    CountStock,
    ExpireReservation,
    ReceiveStock,
    RecordSupply,
    ReleaseReservation,
    ReserveStock,
    StockMoved,
)
from schemas.network import Location, LocationConfigured
from schemas.topics import INVENTORY_COMMANDS, INVENTORY_MOVEMENTS, INVENTORY_RESERVATIONS, NETWORK
from services.runtime.admin import ensure_topics, purge_namespace
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from tests.support import availability, read_topic, wait_for

pytestmark = pytest.mark.e2e
SKU = "BOOT-42"
D1 = datetime(2026, 12, 1, tzinfo=UTC)
D2 = datetime(2026, 12, 15, tzinfo=UTC)
runner = CliRunner()


@dataclass
class Run:
    settings: Settings
    port: int
    snapshots: dict[str, tuple[datetime, dict[str, Any]]] = field(default_factory=dict)
    events: dict[str, list[Envelope]] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def run(stack_settings: Settings) -> Iterator[Run]:
    settings = stack_settings.with_namespace(f"test-{uuid.uuid4().hex[:8]}")
    port = _free_port()
    asyncio.run(ensure_topics(settings))
    services = ServiceSet(settings, [])
    logs = services.log_dir()
    services.services = {"inventory": ServiceProcess("inventory", ["inventory", "--web-port", str(port)],
                                                     logs / "inventory.log")}
    services.start()
    try:
        asyncio.run(services.wait_ready())
        played = Run(settings, port)
        asyncio.run(_play(played))
        yield played
    finally:
        services.stop()
        asyncio.run(purge_namespace(settings))


def cmd(reservation: str, qty: int, backorder: bool = True, **extra: Any) -> ReserveStock:
    return ReserveStock(reservation_id=reservation, order_id=f"O-{reservation}", sku=SKU, location="WH-A",
                        qty=qty, backorder=backorder, **extra)


async def _play(run: Run) -> None:
    """The timeline (decisions noted in comments; the tests check them):

    stock 2 at WH-A; ASN-1 brings 3 on D1, PO-2 brings 5 on D2 (a purchase order)
    R1 2 on hand; R2 3 backordered on ASN-1; R3 2 on PO-2 (ASN-1 is fully promised); R4 4 refused (PO-2 has 3
    left); R5 1 on PO-2, timed.                                                        -> snapshot "promised"
    ASN-1 lands short (2 good, 1 damaged; an ASN ends with its receipt): on hand 4, available 2: R2 (3) does
    not fit; R3 (2) does and is filled; R2 moves to PO-2 (a new promise, D2).         -> snapshot "short"
    R1 released: available 2 -> R5 filled. PO-2 lands (5): R2 filled. R3 expires. R2 ships (3).
    A short pick adjusts -1; the same receipt is delivered again (same command id) and sent again (new id).
    R6 holds 1 with a time limit already past: the service's own timer expires it.   -> snapshot "end"
    """
    async with Publisher(run.settings, source="tests") as out:
        send = _sender(out)
        await out.publish(NETWORK, "WH-A", LocationConfigured(
            location=Location(id="WH-A", kind="warehouse", lat=48.86, lon=2.35, capabilities=["ship"]),
            network_version=1))
        await send(CountStock(count_id="c-1", sku=SKU, location="WH-A", qty=2))
        await send(RecordSupply(supply_id="ASN-1", sku=SKU, location="WH-A", qty=3, eta=D1))
        await send(RecordSupply(supply_id="PO-2", sku=SKU, location="WH-A", qty=5, eta=D2, kind="purchase_order"))
        await send(cmd("R1", 2, backorder=False))
        await send(cmd("R2", 3))
        await send(cmd("R3", 2))
        await send(cmd("R4", 4))
        await send(cmd("R5", 1, expires_at=datetime(2030, 1, 1, tzinfo=UTC)))
        await _settle(run, "promised", lambda d: d["backordered"] == 6)
        receipt = ReceiveStock(receipt_id="rcpt-1", sku=SKU, location="WH-A", qty=2, damaged=1, supply_id="ASN-1")
        receipt_id = await send(receipt)
        await _settle(run, "short", lambda d: d["on_hand"] == 4)
        await send(ReleaseReservation(reservation_id="R1", order_id="O-R1", sku=SKU, reason="cancelled"))
        await send(ReceiveStock(receipt_id="rcpt-2", sku=SKU, location="WH-A", qty=5, supply_id="PO-2"))
        await send(ExpireReservation(reservation_id="R3", order_id="O-R3", sku=SKU))
        await send(ConsumeReservation(reservation_id="R2", order_id="O-R2", sku=SKU, qty=3, shipment_id="P-1"))
        await send(AdjustStock(adjustment_id="adj-1", sku=SKU, location="WH-A", delta=-1, reason="short_pick"))
        await out.publish(INVENTORY_COMMANDS, SKU, receipt, event_id=receipt_id)  # redelivered
        await send(receipt)  # the same receipt under a new command id
        await send(cmd("R6", 1, backorder=False, expires_at=datetime.now(UTC) - timedelta(seconds=10)))
        await _settle(run, "end", lambda d: d["version"] >= 16 and d["reserved"] == 1)
    records = await read_topic(run.settings, full_topic_name(run.settings, INVENTORY_RESERVATIONS))
    by_reservation: dict[str, list[Envelope]] = defaultdict(list)
    for envelope, _ in records:
        assert envelope is not None
        by_reservation[envelope.data["reservation_id"]].append(envelope)
    run.events = dict(by_reservation)


def _sender(out: Publisher) -> Any:
    async def send(message: Message) -> str:
        return await out.publish(INVENTORY_COMMANDS, SKU, message, correlationid=SKU)

    return send


async def _settle(run: Run, name: str, done: Any) -> None:
    async def reached() -> bool:
        doc = (await availability(run.settings, SKU)).get("WH-A")
        return doc is not None and done(doc)

    await wait_for(reached, 60, f"the position to reach {name!r}")
    await asyncio.sleep(0.3)
    doc = (await availability(run.settings, SKU))["WH-A"]
    run.snapshots[name] = (datetime.now(UTC), doc)
    await asyncio.sleep(1.1)  # the next commands are stamped clearly after this moment


def _types(run: Run, reservation: str) -> list[str]:
    return [e.type.removeprefix("inventory.").removesuffix(".v1") for e in _distinct(run.events[reservation])]


def _distinct(envelopes: list[Envelope]) -> list[Envelope]:
    seen: dict[str, Envelope] = {}
    for envelope in envelopes:
        seen.setdefault(envelope.id, envelope)
    return list(seen.values())


def test_backorders_are_promised_on_supply_and_filled_when_it_lands(run: Run) -> None:
    assert _types(run, "R1") == ["stock_reserved", "reservation_released"]
    assert _types(run, "R2") == ["stock_reserved", "stock_reserved", "backorder_filled", "reservation_consumed"]
    first, moved = (e.data for e in _distinct(run.events["R2"])[:2])
    assert (first["against_supply"], first["eta"]) == ("ASN-1", "2026-12-01T00:00:00Z")
    assert (moved["against_supply"], moved["eta"]) == ("PO-2", "2026-12-15T00:00:00Z")  # the ASN came short
    assert _distinct(run.events["R2"])[2].data["supply_id"] == "PO-2"
    assert _types(run, "R3") == ["stock_reserved", "backorder_filled", "reservation_expired"]
    assert _distinct(run.events["R3"])[1].data["supply_id"] == "ASN-1"  # filled from the short ASN's units
    assert _types(run, "R4") == ["reservation_refused"]
    assert "no incoming supply" in run.events["R4"][0].data["reason"]
    assert _types(run, "R5") == ["stock_reserved", "backorder_filled"]
    assert _types(run, "R6") == ["stock_reserved", "reservation_expired"]  # by the service's own timer


def test_availability_in_redis_follows_supply_and_holds(run: Run) -> None:
    _, promised = run.snapshots["promised"]
    assert (promised["on_hand"], promised["reserved"], promised["available"]) == (2, 2, 0)
    assert (promised["incoming"], promised["incoming_unreserved"], promised["backordered"]) == (8, 2, 6)
    assert promised["next_eta"].startswith("2026-12-01")
    _, short = run.snapshots["short"]
    assert (short["on_hand"], short["reserved"], short["incoming"], short["backordered"]) == (4, 4, 5, 4)
    assert short["next_eta"].startswith("2026-12-15")
    _, end = run.snapshots["end"]
    # 2 counted + 2 received + 5 received - 3 shipped - 1 short pick; R5 (1) still held; nothing incoming
    assert (end["on_hand"], end["reserved"], end["available"], end["incoming"], end["backordered"]) == (5, 1, 4, 0, 0)


def test_every_movement_happens_once_and_adds_up(run: Run) -> None:
    records = asyncio.run(read_topic(run.settings, full_topic_name(run.settings, INVENTORY_MOVEMENTS)))
    moves = {e.id: StockMoved.model_validate(e.data) for e, _ in records if e and e.type.endswith("stock_moved.v1")}
    kinds = sorted((m.kind, m.delta) for m in moves.values())
    assert kinds == [("adjusted", -1), ("counted", 2), ("received", 2), ("received", 5), ("shipped", -3)]
    assert sum(m.delta for m in moves.values()) == run.snapshots["end"][1]["on_hand"]


def test_stock_show_as_of_a_past_moment_replays_the_ledger(run: Run) -> None:
    for name in ("promised", "short"):
        moment, doc = run.snapshots[name]
        result = runner.invoke(stock_app, ["show", SKU, "--namespace", run.settings.namespace, "--json",
                                           "--as-of", moment.isoformat()])
        assert result.exit_code == 0, result.output
        past = orjson.loads(result.stdout)["locations"]["WH-A"]
        for number in ("on_hand", "reserved", "available", "incoming", "incoming_unreserved", "backordered"):
            assert past[number] == doc[number], (name, number, past, doc)
    before = runner.invoke(stock_app, ["show", SKU, "--namespace", run.settings.namespace, "--json",
                                       "--as-of", "2020-01-01T00:00:00Z"])
    assert before.exit_code == 1 and "unknown SKU" in before.stderr


def test_stock_show_live_with_atp_by_date_and_distance(run: Run) -> None:
    result = runner.invoke(stock_app, ["show", SKU, "--namespace", run.settings.namespace, "--json",
                                       "--near", "45.76,4.83", "--by", "2027-01-01"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    row = doc["locations"]["WH-A"]
    assert row["on_hand"] == 5 and row["available"] == 4 and 380 < row["distance_km"] < 400
    assert doc["atp"]["network"] == 4 and doc["atp"]["by_mode"]["ship"] == 4
    text = runner.invoke(stock_app, ["show", SKU, "--namespace", run.settings.namespace])
    assert text.exit_code == 0 and "ATP now: network 4" in text.stdout


def test_http_view_answers_from_the_live_ledger(run: Run) -> None:
    base = f"http://127.0.0.1:{run.port}/stock"
    doc = orjson.loads(urllib.request.urlopen(f"{base}/{SKU}?by=2026-12-20T00:00:00Z", timeout=10).read())
    assert doc["locations"]["WH-A"]["on_hand"] == 5 and doc["atp"]["network"] == 4
    assert doc["atp"]["network_by"] == 4  # nothing incoming any more
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/NOPE-1", timeout=10)
    assert missing.value.code == 404


def test_a_ledger_rebuilt_from_the_commands_equals_the_live_one(run: Run) -> None:
    deadline = time.monotonic() + 30
    while True:  # the changelog of the last batch may still be on its way
        live = asyncio.run(live_ledgers(run.settings))
        rebuilt = asyncio.run(rebuilt_ledgers(run.settings))
        if live.get(SKU) == rebuilt.get(SKU) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(live) == {SKU}, live
    assert set(rebuilt) == {SKU}, rebuilt
    assert rebuilt[SKU].model_dump() == live[SKU].model_dump()
    redis = asyncio.run(availability(run.settings, SKU))["WH-A"]
    published = rebuilt[SKU].availability("WH-A").model_dump(mode="json")
    assert {k: redis[k] for k in published if k != "version"} == {k: v for k, v in published.items() if k != "version"}
