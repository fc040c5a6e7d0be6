"""Ops audits on the real stack: a clean scenario run audits clean and every decision replays the same; a log
tampered with by a plain aiokafka producer is caught record by record; what-if with the rules in force changes
nothing, and with cost-first rules shows the differences."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from baton.audit.log import LogRecord, read_log
from services.runtime.admin import purge_namespace
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"
COST_FIRST = {"name": "cost-first", "version": 1, "fallback": "backorder",
              "rules": [{"name": "cheapest", "rank": ["cost", "distance"]}]}


def _baton(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    env = {"BATON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "BATON_REDIS_URL": settings.redis_url,
           "BATON_HOME": str(settings.home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "baton", *args, "--namespace", settings.namespace],
                          capture_output=True, env=env, timeout=timeout)


def _json(done: subprocess.CompletedProcess[bytes]) -> Any:
    assert done.stdout, done.stderr.decode()[-2000:]
    return orjson.loads(done.stdout)


@pytest.fixture(scope="module")
def played(stack_settings: Settings) -> Iterator[Settings]:
    """The omnichannel scenario (splits, BOPIS, ship to store, ROPIS kept and lapsed, endless aisle, a
    cancellation, an invalid order) played once for the module, in its own namespace."""
    settings = stack_settings.with_namespace(f"test-audit-{uuid.uuid4().hex[:6]}")
    done = _baton(settings, "scenario", "run", str(SCENARIOS / "omnichannel.yaml"), "--json")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    yield settings
    asyncio.run(purge_namespace(settings))


def test_a_clean_run_audits_clean_and_every_decision_replays_the_same(played: Settings) -> None:
    audit = _baton(played, "audit", "--json")
    report = _json(audit)
    assert audit.returncode == 0, report["violations"]
    assert report["ok"] and report["orders"] == 9 and report["records"] > 100
    assert all(check["held"] for check in report["invariants"])

    replay = _baton(played, "replay", "decision", "--all", "--json")
    replays = _json(replay)
    assert replay.returncode == 0, replays["disagree"]
    assert replays["orders"] == 9 and replays["agree"] == 9

    one = _json(_baton(played, "replay", "decision", "O-SPLIT", "--json"))
    assert one["agree"] and one["decisions"][0]["planned"]
    assert one["decisions"][0]["recorded"] == one["decisions"][0]["replayed"]
    assert _baton(played, "replay", "decision", "O-NOPE").returncode == 3


def test_export_gives_an_orders_events_with_their_causes(played: Settings, tmp_path: Path) -> None:
    out = tmp_path / "o-split.csv"
    assert _baton(played, "export", "--order", "O-SPLIT", "--format", "csv", "--out", str(out)).returncode == 0
    assert out.read_text().splitlines()[0].startswith("topic,partition,offset")
    rows = [orjson.loads(line) for line in _baton(played, "export", "--order", "O-SPLIT").stdout.splitlines()]
    assert rows[0]["type"] == "order.placed.v1"
    ids = {row["id"] for row in rows}
    assert all(row["causationid"] in ids for row in rows[1:] if row["topic"] != "inventory.availability.v1")
    assert {"wms.parcel_shipped.v1", "inventory.reservation_consumed.v1"} <= {row["type"] for row in rows}


def test_a_tampered_log_is_caught_record_by_record(played: Settings) -> None:
    """Runs last in the module: it spoils the namespace's log."""
    records = asyncio.run(read_log(played))
    placed = asyncio.run(_tamper(played, records))
    audit = _baton(played, "audit", "--json")
    assert audit.returncode == 1
    found = {(v["check"], v["topic"], v["partition"], v["offset"]) for v in _json(audit)["violations"]}
    for check, where in placed.items():
        assert any(c.startswith(check) and (t, p, o) == where for c, t, p, o in found), (check, where, found)


async def _tamper(settings: Settings, records: list[LogRecord]) -> dict[str, tuple[str, int, int]]:
    """Four forged events, written with a plain aiokafka producer; where each landed, by the check that
    must name it."""
    def first(type_: str, **match: Any) -> LogRecord:
        return next(r for r in records if r.type == type_ and all(r.data.get(k) == v for k, v in match.items()))

    def forged(record: LogRecord, data: dict[str, Any] | None = None, **envelope: Any) -> dict[str, Any]:
        doc = dict(record.doc or {})
        doc.update(id=str(uuid.uuid4()), **envelope)
        if data is not None:
            doc["data"] = data
        return doc

    accepted = first("order.accepted.v1", order_id="O-WHOLE")
    reserved = first("inventory.stock_reserved.v1", order_id="O-WHOLE")
    parcel = first("wms.parcel_shipped.v1", order_id="O-SPLIT")
    moved = [r for r in records if r.type == "inventory.stock_moved.v1" and r.data["sku"] == "TEE-M"
             and r.data["location"] == "WH-LYO"][-1]
    extra = dict(moved.data, movement_id=str(uuid.uuid4()), kind="adjusted", delta=5,
                 on_hand_after=moved.data["on_hand_after"] + 5, cause_id="forged-adjustment")
    again = dict(parcel.data, parcel=dict(parcel.data["parcel"], parcel_id="P-FORGED"), tracking="FORGED-1")
    plan = {
        "cause_exists": (accepted, forged(accepted, causationid=str(uuid.uuid4()))),
        "reserved_once": (reserved, forged(reserved)),
        "movement_cause": (moved, forged(moved, extra)),
        "no_overship": (parcel, forged(parcel, again)),
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        landed = {}
        for check, (original, doc) in plan.items():
            topic = settings.topic(original.topic)
            meta = await producer.send_and_wait(topic, orjson.dumps(doc), key=str(doc.get("subject")).encode(),
                                                partition=original.partition)
            landed[check] = (original.topic, meta.partition, meta.offset)
        return landed
    finally:
        await producer.stop()


def test_whatif_with_the_rules_in_force_changes_nothing_and_cost_first_shows_differences(
    settings: Settings, tmp_path: Path
) -> None:
    scenario = SCENARIOS / "rules.yaml"
    done = _baton(settings, "scenario", "run", str(scenario), "--json")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    in_force = tmp_path / "in-force.yaml"
    in_force.write_text(yaml.safe_dump(yaml.safe_load(scenario.read_text())["rules"]))
    same = _baton(settings, "whatif", "--rules", str(in_force), "--json")
    result = _json(same)
    assert same.returncode == 0
    assert result["orders"] == 4 and result["baseline_agrees_with_recorded"] == 4
    assert result["zero_difference"] and not any(result["differences"].values())

    cost_first = tmp_path / "cost-first.yaml"
    cost_first.write_text(yaml.safe_dump(COST_FIRST))
    plot = tmp_path / "whatif.png"
    other = _json(_baton(settings, "whatif", "--rules", str(cost_first), "--json", "--plot", str(plot)))
    assert not other["zero_difference"] and other["changed_orders"]
    assert any(other["differences"].values()) or any(other["shipments_per_location_differences"].values())
    assert plot.stat().st_size > 10_000
    assert _baton(settings, "replay", "decision", "--all").returncode == 0


@pytest.mark.long  # half a minute; the clean run and the tamper test stay in `make test`
def test_a_run_with_every_service_killed_audits_clean_and_replays_the_same(settings: Settings) -> None:
    """kill -9 of the orchestrator, the inventory and a WMS node while 40 orders flow: aborted transactions and
    re-delivered confirmations are no violation, and every decision still replays the same."""
    done = _baton(settings, "scenario", "run", str(SCENARIOS / "kill_mid_flow.yaml"), "--json")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    audit = _baton(settings, "audit", "--json")
    report = _json(audit)
    assert audit.returncode == 0, report["violations"]
    assert report["orders"] == 40
    replays = _json(_baton(settings, "replay", "decision", "--all", "--json"))
    assert replays["agree"] == 40, replays["disagree"]


@pytest.mark.long  # half a minute; the clean run and the tamper test stay in `make test`
def test_a_run_with_returns_and_refunds_audits_clean(settings: Settings) -> None:
    """Returns in store and by mail, restocks, refunds (one failing first, retried with its key), an exchange:
    every refund paid once per key and within what was paid, every restock caused by its return."""
    done = _baton(settings, "scenario", "run", str(SCENARIOS / "returns.yaml"), "--json")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    audit = _baton(settings, "audit", "--json")
    report = _json(audit)
    assert audit.returncode == 0, report["violations"]
    assert report["returns"] > 0 and report["refunds"] > 0
    replays = _json(_baton(settings, "replay", "decision", "--all", "--json"))
    assert replays["agree"] == replays["orders"], replays["disagree"]
