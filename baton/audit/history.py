"""What the orchestrator knew at a moment, rebuilt from the log: the network and the rule set in force, the
availability of each position, and what each location with a daily capacity had already been handed that day.

Master data and availability are read from their topics with their Kafka times, so that ``as_of(t)`` gives what
had been published by ``t`` (the orchestrator follows these topics; a replay sees the version in force).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from baton.audit.log import LogRecord
from schemas.network import Location
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.rules import DEFAULT_RULES, RuleSet, RuleSetError, parse_rule_set
from services.orchestrator.domain.sourcing import Availability, Supply

LOCATION_CONFIGURED = "network.location_configured.v1"
RULES_PUBLISHED = "network.rule_set_published.v1"
AVAILABILITY = "inventory.availability_changed.v1"
FULFIL = "wms.fulfil_order.v1"


@dataclass
class _Timeline:
    """Values by Kafka time, in the order they were published."""

    times: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def add(self, at_ms: int, value: Any) -> None:
        self.times.append(at_ms)
        self.values.append(value)

    def upto(self, at_ms: int) -> list[Any]:
        return self.values[: bisect.bisect_right(self.times, at_ms)]


@dataclass
class RuleSetVersion:
    rules: RuleSet
    published_ms: int | None  # None: the default rules (nothing published yet)


class History:
    """Master data, availability and capacity use as published over time."""

    def __init__(self, records: Iterable[LogRecord]) -> None:
        self.network = _Timeline()
        self.rules = _Timeline()
        self.availability: dict[str, _Timeline] = defaultdict(_Timeline)
        self.requests = _Timeline()  # (location, day) of each FulfilOrder, once per request
        seen_requests: set[str] = set()
        for record in sorted(records, key=lambda r: r.timestamp_ms):
            if record.type == LOCATION_CONFIGURED:
                self.network.add(record.timestamp_ms, record.data)
            elif record.type == RULES_PUBLISHED:
                self.rules.add(record.timestamp_ms, record.data)
            elif record.type == AVAILABILITY:
                self.availability[str(record.data.get("sku"))].add(record.timestamp_ms, record.data)
            elif record.type == FULFIL and record.data.get("request_id") not in seen_requests:
                seen_requests.add(str(record.data.get("request_id")))
                day = record.time.date().isoformat()
                self.requests.add(record.timestamp_ms, (str(record.data.get("location")), day))

    def network_as_of(self, at_ms: int) -> NetworkView:
        view = NetworkView()
        for data in self.network.upto(at_ms):
            view.apply(Location.model_validate(data["location"]), int(data.get("network_version", 0)))
        return view

    def rules_as_of(self, at_ms: int) -> RuleSetVersion:
        """The last valid rule set published by then (the orchestrator ignores an invalid one)."""
        found = RuleSetVersion(DEFAULT_RULES, None)
        for at, data in zip(self.rules.times, self.rules.upto(at_ms), strict=False):
            try:
                found = RuleSetVersion(parse_rule_set(data.get("document"), f"rule set {data.get('name')}"), at)
            except RuleSetError:
                continue
        return found

    def stock_as_of(self, skus: Iterable[str], at_ms: int) -> tuple[Availability, Supply]:
        """What the orchestrator's stock view held by then: the newest version of each position."""
        availability: Availability = {}
        supply: Supply = {}
        for sku in skus:
            newest: dict[str, dict[str, Any]] = {}
            for data in self.availability[sku].upto(at_ms):
                known = newest.get(str(data.get("location")))
                if known is None or int(known.get("version", 0)) <= int(data.get("version", 0)):
                    newest[str(data.get("location"))] = data
            availability[sku] = {loc: int(d.get("available", 0)) for loc, d in newest.items()}
            supply[sku] = {loc: (int(d.get("incoming_unreserved", 0)), _iso(d.get("next_eta")))
                           for loc, d in newest.items()}
        return availability, supply

    def availability_times(self, skus: Iterable[str], start_ms: int, end_ms: int) -> list[int]:
        """The moments in [start, end] at which one of these SKUs' positions was published."""
        moments: set[int] = set()
        for sku in skus:
            timeline = self.availability[sku]
            low, high = bisect.bisect_left(timeline.times, start_ms), bisect.bisect_right(timeline.times, end_ms)
            moments.update(timeline.times[low:high])
        return sorted(moments)

    def capacity_left(self, network: NetworkView, at_ms: int) -> dict[str, int]:
        limits = {loc.id: loc.daily_capacity for loc in network.locations.values() if loc.daily_capacity}
        if not limits:
            return {}
        day = datetime.fromtimestamp(at_ms / 1000, UTC).date().isoformat()
        used: dict[str, int] = defaultdict(int)
        for location, on_day in self.requests.upto(at_ms):
            if on_day == day:
                used[location] += 1
        return {loc: limit - used[loc] for loc, limit in limits.items()}


def _iso(value: Any) -> str | None:
    """An ETA as the orchestrator's view writes it (``datetime.isoformat``: ``+00:00``, not ``Z``)."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).isoformat()
