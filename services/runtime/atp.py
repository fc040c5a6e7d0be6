"""Available-to-promise: pure functions over the positions the inventory service publishes.

A position is an ``AvailabilityChanged`` (the compacted topic, the Redis read model, the ledger itself all
give the same document). No I/O here: the CLI, the inventory's HTTP view and the tests share these.

- per location: ``available`` = on hand − safety stock − reserved (never below 0);
- by date D: available now, plus the units of open supplies landing by D that no backorder has claimed,
  less the backorders still waiting for a supply (they take the next units that land);
- network-wide: the sum over locations; per delivery mode: only the locations that can serve it (``ship``
  counts every open location that ships; ``pickup`` and ``reserve`` count the store named, if it offers it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.inventory import AvailabilityChanged
from schemas.network import Location

EARTH_RADIUS_KM = 6371.0
MODES = ("ship", "pickup", "reserve")
Positions = Mapping[str, AvailabilityChanged]


def position_of(doc: Mapping[str, Any] | AvailabilityChanged) -> AvailabilityChanged:
    """A position from a read-model document (JSON of an ``AvailabilityChanged``) or the model itself."""
    return doc if isinstance(doc, AvailabilityChanged) else AvailabilityChanged.model_validate(doc)


def atp(position: AvailabilityChanged, by: datetime | None = None) -> int:
    """Units one location can promise now (``by`` None) or for delivery by ``by``."""
    if by is None:
        return position.available
    landing = sum(s.unreserved for s in position.supplies if s.eta <= by)
    return position.available + max(0, landing - position.backordered_unsupplied)


def promise_date(position: AvailabilityChanged, qty: int, now: datetime) -> datetime | None:
    """The earliest moment ``qty`` units can be promised at this location: ``now``, a supply's ETA, or never."""
    if position.available >= qty:
        return now
    return next((s.eta for s in position.supplies if atp(position, s.eta) >= qty), None)


def atp_network(positions: Positions, by: datetime | None = None) -> int:
    return sum(atp(p, by) for p in positions.values())


def serves(location: Location, mode: str) -> bool:
    return location.open and mode in location.capabilities


def atp_by_mode(positions: Positions, locations: Mapping[str, Location], by: datetime | None = None) -> dict[str, Any]:
    """``ship``: what every open shipping location can promise together; ``pickup``/``reserve``: per store."""
    usable = {loc: p for loc, p in positions.items() if loc in locations}
    return {
        "ship": sum(atp(p, by) for loc, p in usable.items() if serves(locations[loc], "ship")),
        "pickup": {loc: atp(p, by) for loc, p in sorted(usable.items()) if serves(locations[loc], "pickup")},
        "reserve": {loc: atp(p, by) for loc, p in sorted(usable.items()) if serves(locations[loc], "reserve")},
    }


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


NUMBERS = ("on_hand", "reserved", "safety_stock", "available", "incoming", "incoming_unreserved", "backordered")


def stock_document(
    sku: str,
    positions: Positions,
    locations: Mapping[str, Location] | None = None,
    *,
    near: tuple[float, float] | None = None,
    by: datetime | None = None,
) -> dict[str, Any]:
    """The answer to "is it available, and where?" as one JSON-ready document (CLI ``--json`` and HTTP).

    Locations come nearest first when ``near`` (lat, lon) is given and the network knows them, else by id.
    """
    rows: dict[str, dict[str, Any]] = {}
    for location, position in positions.items():
        row: dict[str, Any] = {name: getattr(position, name) for name in NUMBERS}
        row["next_eta"] = _iso(position.next_eta)
        row["supplies"] = [
            {"supply_id": s.supply_id, "eta": _iso(s.eta), "outstanding": s.outstanding, "unreserved": s.unreserved}
            for s in position.supplies
        ]
        if by is not None:
            row["atp_by"] = atp(position, by)
        known = (locations or {}).get(location)
        if near is not None and known is not None:
            row["distance_km"] = round(distance_km(near[0], near[1], known.lat, known.lon), 1)
        rows[location] = row
    order = sorted(rows, key=lambda loc: (rows[loc].get("distance_km", math.inf) if near else 0, loc))
    total = {name: sum(int(rows[loc][name]) for loc in rows) for name in NUMBERS}
    etas = [p.next_eta for p in positions.values() if p.next_eta is not None]
    total["next_eta"] = _iso(min(etas)) if etas else None  # type: ignore[assignment]
    summary: dict[str, Any] = {"network": atp_network(positions)}
    if by is not None:
        summary["network_by"] = atp_network(positions, by)
    if locations:
        summary["by_mode"] = atp_by_mode(positions, locations)
        if by is not None:
            summary["by_mode_by"] = atp_by_mode(positions, locations, by)
    document: dict[str, Any] = {"sku": sku, "locations": {loc: rows[loc] for loc in order}, "total": total,
                                "atp": summary}
    if by is not None:
        document["by"] = _iso(by)
    if near is not None:
        document["near"] = {"lat": near[0], "lon": near[1]}
    return document


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when is not None else None


def parse_near(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"near must be LAT,LON, got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"near {text!r} is not a point on Earth")
    return lat, lon


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
