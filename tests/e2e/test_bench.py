"""``baton bench --orders 60 --json`` end to end: the report is whole and consistent. No speed is asserted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from services.runtime.settings import Settings
from tests.support import run_bench

pytestmark = pytest.mark.e2e
ORDERS = 60


def test_a_small_burst_gives_a_whole_and_consistent_report(settings: Settings, tmp_path: Path) -> None:
    done = run_bench(settings, tmp_path, "--orders", str(ORDERS), timeout_s=300, process_timeout_s=540)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = orjson.loads(done.stdout)  # exactly one JSON document on stdout
    assert report["completed"] is True
    assert report["bench"]["orders"] == ORDERS and report["bench"]["namespace"] == settings.namespace
    _orders_add_up(report["figures"])
    _every_figure_present(report)
    assert report["invariants"]["ok"] is True, report["invariants"]["violations"]
    assert {c["name"] for c in report["invariants"]["checks"]} >= {"settled", "no_oversell", "no_overship"}
    assert report["dead_letters"] == 0
    assert Path(report["files"]["png"]).stat().st_size > 10_000
    assert orjson.loads(Path(report["files"]["json"]).read_bytes()) == report


def _orders_add_up(figures: dict[str, Any]) -> None:
    orders = figures["orders"]
    assert orders["placed"] == ORDERS
    assert orders["placed"] == orders["allocated"] + orders["rejected"] + orders["still_open"]
    assert orders["shipped"] <= orders["allocated"]
    assert sum(figures["statuses"].values()) == ORDERS
    assert figures["latency"]["placed_to_allocated"]["count"] == orders["allocated"]
    assert figures["latency"]["placed_to_shipped"]["count"] == orders["shipped"]


def _every_figure_present(report: dict[str, Any]) -> None:
    figures = report["figures"]
    for stage in ("placed", "allocated", "shipped"):
        assert figures["throughput"][stage]["per_s"] > 0
    for latency in figures["latency"].values():
        assert 0 < latency["p50_s"] <= latency["p95_s"] <= latency["p99_s"] <= latency["max_s"]
    records = figures["records"]
    assert records["events"]["records_per_order"] > 0 and records["internal"]["records_per_order"] > 0
    assert records["total"]["records"] == records["events"]["records"] + records["internal"]["records"]
    inbound = next(row for topic, row in records["per_topic"].items() if topic.endswith(".orders.inbound.v1"))
    assert inbound["records"] == ORDERS
    assert figures["pipeline"]["records"]["per_s"] > 0 and figures["pipeline"]["share_of_raw"] > 0
    assert report["baseline"]["raw_aiokafka"]["records_per_s"] > 0
    perf = report["baseline"]["producer_performance"]
    assert perf.get("per_s", 0) > 0 or perf.get("error")
    resources = figures["resources"]
    for service in ("orchestrator", "inventory", "wms-WH-PAR", "bench"):
        assert resources["cpu_seconds"][service] > 0
        assert resources["peak_rss_mb"][service] > 10
    assert resources["cpu_seconds_per_1000_orders"]["total"] > 0
    assert report["load"]["mode"] == "burst" and report["load"]["orders"] == ORDERS
