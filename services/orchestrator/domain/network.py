"""The network as the orchestrator sees it: locations, distances and what shipping costs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas.network import Location

EARTH_RADIUS_KM = 6371.0
PARCEL_BASE_COST = 4.0
COST_PER_KM = 0.01


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def shipping_cost(km: float) -> float:
    """One parcel's carrier cost: a base fee plus a distance part."""
    return PARCEL_BASE_COST + COST_PER_KM * km


@dataclass
class NetworkView:
    """The latest configuration of every location, with the version it came from."""

    locations: dict[str, Location] = field(default_factory=dict)
    version: int = 0

    def apply(self, location: Location, version: int) -> None:
        self.locations[location.id] = location
        self.version = max(self.version, version)

    def get(self, location_id: str) -> Location | None:
        return self.locations.get(location_id)
