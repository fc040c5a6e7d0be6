"""Network master data: the points of stock, as events on a compacted topic."""

from __future__ import annotations

from typing import Any

from schemas.base import Capability, Frozen, Latitude, LocationId, LocationKind, Longitude, Message, Money


class Location(Frozen):
    id: LocationId
    kind: LocationKind
    lat: Latitude
    lon: Longitude
    capabilities: list[Capability] = ["ship"]
    handling_cost: Money = 1.0
    daily_capacity: int | None = None
    open: bool = True


class LocationConfigured(Message):
    event_type = "network.location_configured.v1"
    summary = "A location's master data (position, capabilities, costs, capacity) as of a network version."

    location: Location
    network_version: int

    def subject(self) -> str:
        return self.location.id


class RuleSetPublished(Message):
    event_type = "network.rule_set_published.v1"
    summary = "The sourcing rule set in force from now on (its document and version)."

    name: str
    version: int
    document: dict[str, Any]

    def subject(self) -> str:
        return self.name


class DeadLettered(Message):
    event_type = "baton.dead_lettered.v1"
    summary = "A message a service could not use, with the reason; the service carried on."

    service: str
    topic: str
    partition: int
    offset: int
    reason: str
    payload: str

    def subject(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"
