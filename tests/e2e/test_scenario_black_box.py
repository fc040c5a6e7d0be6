"""``baton scenario run FILE --json`` as a black box: one warehouse, stock, 50 ship orders that fit."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from baton.scenario.generate import generated_orders
from baton.scenario.model import load_scenario
from services.runtime.settings import Settings

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {
        "BATON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BATON_REDIS_URL": settings.redis_url,
        "BATON_HOME": str(settings.home),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "baton", "scenario", "run", *args, "--namespace", settings.namespace],
        capture_output=True,
        env=env,
        timeout=300,
    )


def test_fifty_orders_that_fit_all_ship_with_the_right_final_stock(settings: Settings) -> None:
    path = SCENARIOS / "one_warehouse_50.yaml"
    done = _run(settings, str(path), "--json")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = orjson.loads(done.stdout)
    assert result["completed"] is True
    assert len(result["orders"]) == 50
    assert Counter(o["status"] for o in result["orders"].values()) == {"shipped": 50}
    assert result["dead_letters"] == 0
    assert result["invariants"] == {"ok": True, "violations": []}
    assert result["stock"] == {"WH-PAR": _expected_stock(path)}
    for order in result["orders"].values():
        assert [s["location"] for s in order["shipments"]] == ["WH-PAR"]
        assert order["shipments"][0]["tracking"]
        assert all(line["shipped"] == line["ordered"] and line["open"] == 0 for line in order["lines"])


def _expected_stock(path: Path) -> dict[str, dict[str, int]]:
    scenario = load_scenario(path)
    on_hand = {row.sku: row.qty for row in scenario.stock}
    for step in generated_orders(scenario):
        for line in step.order.lines:
            on_hand[line.sku] -= line.qty
    return {
        sku: {"on_hand": qty, "reserved": 0, "available": qty, "incoming": 0, "safety_stock": 0}
        for sku, qty in on_hand.items()
    }


def test_an_invalid_file_exits_2_naming_the_field(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nlocations: [{id: W, kind: warehouse, lat: 1, lon: 2}]\nskus: [{sku: A}]\n"
        "stock: [{location: NOPE, sku: A, qty: 1}]\n"
    )
    done = _run(settings, str(bad), "--json")
    assert done.returncode == 2
    assert b"stock[0].location" in done.stderr
