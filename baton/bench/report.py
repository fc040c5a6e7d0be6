"""The bench's arithmetic, pure: rates over the steady part of a run, percentiles, per-order counts, ratios.

Everything here works on what the collector read back from the topics (event times in epoch seconds,
records and bytes per topic), so it can be checked on synthetic event streams.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Statuses at or past "released to the warehouses": the first of them is the allocation time.
ALLOCATED_OR_LATER = frozenset(
    {"allocated", "in_fulfilment", "partially_shipped", "shipped", "ready_for_pickup", "collected"}
)
# The warehouse or store finished its work: shipped, or ready for the customer to collect (BOPIS).
FULFILLED = frozenset({"shipped", "ready_for_pickup", "collected"})
REJECTED = "rejected"
# The steady part of a run: between these percentiles of the completion times (start-up and tail left out).
STEADY_FROM, STEADY_TO = 10.0, 90.0
PERCENTILES = (50.0, 95.0, 99.0)


@dataclass
class OrderTimeline:
    """What the topics say about every order: when it was placed, first allocated, first fulfilled."""

    placed: dict[str, float] = field(default_factory=dict)
    allocated: dict[str, float] = field(default_factory=dict)
    shipped: dict[str, float] = field(default_factory=dict)
    final_status: dict[str, str] = field(default_factory=dict)
    ever_rejected: set[str] = field(default_factory=set)
    refunded: dict[str, float] = field(default_factory=dict)  # return id -> when its ReturnRefunded was published

    def observe_status(self, order_id: str, status: str, at: float) -> None:
        """One ``OrderStatusChanged``, in the order the status topic holds them for this order."""
        self.final_status[order_id] = status
        if status in ALLOCATED_OR_LATER and order_id not in self.allocated:
            self.allocated[order_id] = at
        if status in FULFILLED and order_id not in self.shipped:
            self.shipped[order_id] = at
        if status == REJECTED:
            self.ever_rejected.add(order_id)


@dataclass(frozen=True)
class TopicTraffic:
    """Records and bytes one topic received during the run, and when (record timestamps, epoch seconds)."""

    topic: str
    internal: bool
    records: int
    bytes: int
    times: Sequence[float] = ()


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty): the smallest value with p % at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def steady_rate(times: Iterable[float]) -> dict[str, float | None]:
    """Events per second between the 10th and 90th percentile of their times.

    n events spaced 1/r apart span (n - 1)/r seconds, so the rate is (events in window - 1) / window.
    """
    ordered = sorted(times)
    lo, hi = percentile(ordered, STEADY_FROM), percentile(ordered, STEADY_TO)
    if lo is None or hi is None or hi <= lo:
        return {"per_s": None, "window_s": None, "from": lo, "to": hi}
    inside = sum(1 for t in ordered if lo <= t <= hi)
    return {"per_s": (inside - 1) / (hi - lo), "window_s": hi - lo, "from": lo, "to": hi}


def latency_summary(start: Mapping[str, float], end: Mapping[str, float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max of end - start (seconds) over the orders that have both."""
    gaps = [end[k] - start[k] for k in end if k in start]
    summary: dict[str, float | int | None] = {"count": len(gaps)}
    for p in PERCENTILES:
        summary[f"p{int(p)}_s"] = percentile(gaps, p)
    summary["max_s"] = max(gaps) if gaps else None
    summary["mean_s"] = sum(gaps) / len(gaps) if gaps else None
    return summary


def latencies(start: Mapping[str, float], end: Mapping[str, float]) -> list[float]:
    return [end[k] - start[k] for k in end if k in start]


def order_outcomes(timeline: OrderTimeline) -> dict[str, int]:
    """Every placed order in exactly one of: allocated (at some point), rejected (never allocated), still open."""
    placed = set(timeline.placed)
    allocated = placed & set(timeline.allocated)
    rejected = (placed & timeline.ever_rejected) - allocated
    shipped = placed & set(timeline.shipped)
    return {
        "placed": len(placed),
        "allocated": len(allocated),
        "rejected": len(rejected),
        "still_open": len(placed - allocated - rejected),
        "shipped": len(shipped),
        "no_status_seen": len(placed - set(timeline.final_status)),
    }


def status_counts(timeline: OrderTimeline) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order_id in timeline.placed:
        status = timeline.final_status.get(order_id, "unseen")
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def traffic_summary(traffic: Sequence[TopicTraffic], orders: int) -> dict[str, Any]:
    """Records and bytes written per order, in total, event topics and internal ones apart, per topic."""
    per_order = max(orders, 1)

    def part(rows: Sequence[TopicTraffic]) -> dict[str, float | int]:
        records, size = sum(r.records for r in rows), sum(r.bytes for r in rows)
        return {"records": records, "bytes": size, "records_per_order": records / per_order,
                "bytes_per_order": size / per_order}

    return {
        "total": part(traffic),
        "events": part([r for r in traffic if not r.internal]),
        "internal": part([r for r in traffic if r.internal]),
        "average_record_bytes": (sum(r.bytes for r in traffic) / total) if (total := sum(r.records for r in traffic))
        else None,
        "per_topic": {
            r.topic: {"internal": r.internal, "records": r.records, "bytes": r.bytes,
                      "records_per_order": r.records / per_order, "bytes_per_order": r.bytes / per_order}
            for r in sorted(traffic, key=lambda r: (r.internal, -r.records, r.topic))
        },
    }


def pipeline_records_rate(traffic: Sequence[TopicTraffic]) -> dict[str, float | None]:
    """Records/s the whole pipeline wrote (every topic) over the steady part of the run."""
    return steady_rate(t for r in traffic for t in r.times)


def share(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when either is unknown or the whole is zero."""
    if part is None or not whole:
        return None
    return part / whole


def cpu_per_thousand_orders(cpu_seconds: Mapping[str, float], orders: int) -> dict[str, float | None]:
    """CPU seconds per 1,000 orders, per process and in total."""
    if orders <= 0:
        return {name: None for name in [*cpu_seconds, "total"]}
    out: dict[str, float | None] = {name: s * 1000.0 / orders for name, s in cpu_seconds.items()}
    out["total"] = sum(cpu_seconds.values()) * 1000.0 / orders
    return out


def per_second(times: Iterable[float], origin: float) -> list[int]:
    """How many events fell in each whole second after ``origin`` (index 0 = the first second)."""
    buckets: list[int] = []
    for t in times:
        second = max(0, int(t - origin))
        if second >= len(buckets):
            buckets.extend([0] * (second + 1 - len(buckets)))
        buckets[second] += 1
    return buckets


def relative(window: Mapping[str, float | None], origin: float) -> dict[str, float | None]:
    """A steady-rate window with its bounds given in seconds after ``origin``."""
    out = dict(window)
    for bound in ("from", "to"):
        value = window.get(bound)
        out[bound] = None if value is None else value - origin
    return out


def build_figures(
    timeline: OrderTimeline,
    traffic: Sequence[TopicTraffic],
    cpu_seconds: Mapping[str, float],
    peak_rss_bytes: Mapping[str, int],
    raw_records_per_s: float | None,
) -> dict[str, Any]:
    """Every figure of the report from what the topics and the process samples said."""
    outcomes = order_outcomes(timeline)
    origin = min(timeline.placed.values(), default=0.0)
    pipeline = pipeline_records_rate(traffic)
    return {
        "orders": outcomes,
        "statuses": status_counts(timeline),
        "throughput": {
            "placed": relative(steady_rate(timeline.placed.values()), origin),
            "allocated": relative(steady_rate(timeline.allocated.values()), origin),
            "shipped": relative(steady_rate(timeline.shipped.values()), origin),
        },
        "latency": {
            "placed_to_allocated": latency_summary(timeline.placed, timeline.allocated),
            "placed_to_shipped": latency_summary(timeline.placed, timeline.shipped),
        },
        "records": traffic_summary(traffic, outcomes["placed"]),
        "pipeline": {"records": relative(pipeline, origin), "raw_records_per_s": raw_records_per_s,
                     "share_of_raw": share(pipeline["per_s"], raw_records_per_s)},
        "resources": {
            "cpu_seconds": dict(cpu_seconds),
            "cpu_seconds_per_1000_orders": cpu_per_thousand_orders(cpu_seconds, outcomes["placed"]),
            "peak_rss_mb": {name: rss / 2**20 for name, rss in peak_rss_bytes.items()},
        },
    }
