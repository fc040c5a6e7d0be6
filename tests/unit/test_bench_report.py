"""The bench's arithmetic on synthetic event streams: steady rates, percentiles, per-order counts, ratios."""

from __future__ import annotations

import pytest

from baton.bench.report import (
    OrderTimeline,
    TopicTraffic,
    build_figures,
    cpu_per_thousand_orders,
    latency_summary,
    order_outcomes,
    per_second,
    percentile,
    share,
    steady_rate,
    traffic_summary,
)


def uniform(count: int, rate: float, start: float = 1_000.0) -> list[float]:
    return [start + i / rate for i in range(count)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_steady_rate_of_a_uniform_stream_is_its_rate() -> None:
    assert steady_rate(uniform(1_001, 250.0))["per_s"] == pytest.approx(250.0)


def test_steady_rate_leaves_out_a_slow_start_and_a_long_tail() -> None:
    warm_up = uniform(50, 5.0, start=0.0)  # 10 s for the first 5 %
    steady = uniform(900, 300.0, start=10.0)
    tail = uniform(50, 2.0, start=13.0)  # stragglers over 25 s
    window = steady_rate([*tail, *steady, *warm_up])  # any order
    assert window["per_s"] == pytest.approx(300.0, rel=0.02)
    assert window["window_s"] is not None and window["window_s"] < 3.0


def test_steady_rate_is_unknown_without_a_window() -> None:
    assert steady_rate([])["per_s"] is None
    assert steady_rate([5.0, 5.0, 5.0])["per_s"] is None


def test_latency_counts_only_orders_with_both_ends() -> None:
    placed = {f"O-{i}": 100.0 + i for i in range(100)}
    allocated = {f"O-{i}": 100.0 + i + (i + 1) / 100.0 for i in range(100)}  # 10 ms .. 1 s
    allocated["never-placed"] = 5.0
    summary = latency_summary(placed, allocated)
    assert summary["count"] == 100
    assert summary["p50_s"] == pytest.approx(0.50)
    assert summary["p95_s"] == pytest.approx(0.95)
    assert summary["p99_s"] == pytest.approx(0.99)
    assert summary["max_s"] == pytest.approx(1.00)


def test_every_order_counted_once_allocated_rejected_or_open() -> None:
    timeline = OrderTimeline()
    for i in range(10):
        timeline.placed[f"O-{i}"] = float(i)
    for i in range(6):  # allocated, three of them then shipped
        timeline.observe_status(f"O-{i}", "accepted", 10.0 + i)
        timeline.observe_status(f"O-{i}", "allocated", 11.0 + i)
    for i in range(3):
        timeline.observe_status(f"O-{i}", "in_fulfilment", 20.0 + i)
        timeline.observe_status(f"O-{i}", "shipped", 30.0 + i)
    timeline.observe_status("O-6", "rejected", 12.0)
    timeline.observe_status("O-7", "accepted", 12.0)  # still open, as are 8 and 9 (never seen)
    outcomes = order_outcomes(timeline)
    assert outcomes == {"placed": 10, "allocated": 6, "rejected": 1, "still_open": 3, "shipped": 3,
                        "no_status_seen": 2}
    assert outcomes["placed"] == outcomes["allocated"] + outcomes["rejected"] + outcomes["still_open"]
    assert timeline.allocated["O-0"] == 11.0 and timeline.shipped["O-0"] == 30.0


def test_the_first_status_past_allocation_is_the_allocation_time() -> None:
    timeline = OrderTimeline(placed={"O-1": 0.0, "O-2": 0.0})
    timeline.observe_status("O-1", "in_fulfilment", 2.0)  # allocated not published on its own
    timeline.observe_status("O-1", "shipped", 3.0)
    timeline.observe_status("O-2", "ready_for_pickup", 4.0)  # BOPIS: the store's work is done
    assert timeline.allocated == {"O-1": 2.0, "O-2": 4.0}
    assert timeline.shipped == {"O-1": 3.0, "O-2": 4.0}


def test_records_per_order_keep_event_and_internal_topics_apart() -> None:
    traffic = [
        TopicTraffic("ns.orders.status.v1", internal=False, records=400, bytes=400_000),
        TopicTraffic("ns.inventory.commands.v1", internal=False, records=200, bytes=100_000),
        TopicTraffic("ns-orchestrator-orders-changelog", internal=True, records=300, bytes=900_000),
    ]
    summary = traffic_summary(traffic, orders=100)
    assert summary["total"]["records_per_order"] == 9.0
    assert summary["events"]["records_per_order"] == 6.0
    assert summary["internal"]["records_per_order"] == 3.0
    assert summary["internal"]["bytes_per_order"] == 9_000.0
    assert summary["average_record_bytes"] == pytest.approx(1_400_000 / 900)
    assert list(summary["per_topic"]) == ["ns.orders.status.v1", "ns.inventory.commands.v1",
                                          "ns-orchestrator-orders-changelog"]


def test_share_of_raw_and_cpu_per_thousand_orders() -> None:
    assert share(7_000.0, 20_000.0) == pytest.approx(0.35)
    assert share(None, 20_000.0) is None and share(5.0, 0.0) is None
    cpu = cpu_per_thousand_orders({"orchestrator": 20.0, "kafka": 10.0}, orders=2_000)
    assert cpu == {"orchestrator": 10.0, "kafka": 5.0, "total": 15.0}


def test_per_second_buckets() -> None:
    assert per_second([10.0, 10.5, 11.2, 13.9], origin=10.0) == [2, 1, 0, 1]
    assert per_second([], origin=0.0) == []


def test_figures_of_a_whole_synthetic_run() -> None:
    timeline = OrderTimeline()
    for i, t in enumerate(uniform(1_000, 500.0, start=0.0)):
        order_id = f"O-{i}"
        timeline.placed[order_id] = t
        timeline.observe_status(order_id, "allocated", t + 0.020)
        timeline.observe_status(order_id, "shipped", t + 1.0)
    record_times = uniform(20_000, 10_000.0, start=0.0)
    traffic = [TopicTraffic("ns.orders.status.v1", False, 20_000, 10_000_000, record_times)]
    figures = build_figures(timeline, traffic, {"orchestrator": 4.0}, {"orchestrator": 100 * 2**20}, 40_000.0)
    assert figures["throughput"]["allocated"]["per_s"] == pytest.approx(500.0)
    assert figures["throughput"]["shipped"]["per_s"] == pytest.approx(500.0)
    assert figures["latency"]["placed_to_allocated"]["p99_s"] == pytest.approx(0.020)
    assert figures["latency"]["placed_to_shipped"]["max_s"] == pytest.approx(1.0)
    assert figures["records"]["total"]["records_per_order"] == 20.0
    assert figures["pipeline"]["share_of_raw"] == pytest.approx(0.25)
    assert figures["resources"]["cpu_seconds_per_1000_orders"]["total"] == pytest.approx(4.0)
    assert figures["resources"]["peak_rss_mb"]["orchestrator"] == pytest.approx(100.0)
    assert figures["throughput"]["allocated"]["from"] == pytest.approx(0.198 + 0.020)  # seconds after the first order


def test_event_topics_and_internal_ones_apart() -> None:
    from baton.bench.collect import is_internal
    from services.runtime.settings import Settings

    settings = Settings().with_namespace("bench-1")
    assert not is_internal(settings, "bench-1.orders.status.v1")
    assert not is_internal(settings, "bench-1.wms.WH-PAR.tasks.v1")
    assert is_internal(settings, "bench-1.orders.timers.v1")
    assert is_internal(settings, "bench-1-orchestrator-orders-changelog")
    assert is_internal(settings, "bench-1.orchestrator.store.changelog.v1")  # not in the catalog
