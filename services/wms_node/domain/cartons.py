"""Packing: which cartons a request's units go into, by volume and weight, and which carrier takes them.

First-fit decreasing: units, largest first, go into the first open carton where they fit (a carton is filled to
``FILL`` of its inner volume and up to its weight limit); then each carton shrinks to the smallest box that
still holds its content. A unit too large for every box ships in its own ``XL`` carton.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

FILL = 0.85


@dataclass(frozen=True)
class Box:
    name: str
    volume_cm3: int
    max_weight_g: int
    tare_g: int


BOXES = (
    Box("S", 6_000, 3_000, 150),
    Box("M", 24_000, 10_000, 300),
    Box("L", 60_000, 20_000, 600),
)
OVERSIZE = Box("XL", 10**9, 10**9, 1_000)


@dataclass(frozen=True)
class Item:
    sku: str
    weight_g: int
    volume_cm3: int


@dataclass
class Carton:
    box: Box
    units: list[Item] = field(default_factory=list)

    @property
    def volume_cm3(self) -> int:
        return sum(u.volume_cm3 for u in self.units)

    @property
    def content_g(self) -> int:
        return sum(u.weight_g for u in self.units)

    @property
    def weight_g(self) -> int:
        return self.content_g + self.box.tare_g

    def skus(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for u in self.units:
            out[u.sku] = out.get(u.sku, 0) + 1
        return out


def fits(box: Box, volume_cm3: int, weight_g: int) -> bool:
    return volume_cm3 <= box.volume_cm3 * FILL and weight_g <= box.max_weight_g


def smallest_box(volume_cm3: int, weight_g: int) -> Box:
    return next((b for b in BOXES if fits(b, volume_cm3, weight_g)), OVERSIZE)


def cartonize(items: list[tuple[str, int, int, int]]) -> list[Carton]:
    """``items``: (sku, qty, unit weight g, unit volume cm3). Returns the cartons, smallest boxes that fit."""
    units = [Item(sku, w, v) for sku, qty, w, v in items for _ in range(qty)]
    units.sort(key=lambda u: (-u.volume_cm3, -u.weight_g, u.sku))
    largest = BOXES[-1]
    open_cartons: list[Carton] = []
    for unit in units:
        if not fits(largest, unit.volume_cm3, unit.weight_g):
            open_cartons.append(Carton(OVERSIZE, [unit]))
            continue
        for carton in open_cartons:
            if carton.box is largest and fits(largest, carton.volume_cm3 + unit.volume_cm3,
                                                carton.content_g + unit.weight_g):
                carton.units.append(unit)
                break
        else:
            open_cartons.append(Carton(largest, [unit]))
    for carton in open_cartons:
        if carton.box is not OVERSIZE:
            carton.box = smallest_box(carton.volume_cm3, carton.content_g)
    return open_cartons


@dataclass(frozen=True)
class Carrier:
    name: str
    max_weight_g: int
    door: int  # preferred dock door (1-based); wraps around the location's doors


CARRIERS = (
    Carrier("baton-post", 2_000, 1),
    Carrier("baton-express", 30_000, 2),
    Carrier("baton-freight", 10**9, 3),
)


def carrier_for(total_weight_g: int, parcels: int) -> Carrier:
    if parcels > 3:
        return CARRIERS[-1]
    return next(c for c in CARRIERS if total_weight_g <= c.max_weight_g)


def dock_door(carrier: Carrier, docks: list[str]) -> str:
    return docks[(carrier.door - 1) % len(docks)]


def tracking_number(location: str, request_id: str) -> str:
    checksum = zlib.crc32(f"{location}|{request_id}".encode())
    return f"BT{checksum:010d}{location[:3].upper()}"


def parcel_ids(request_id: str, count: int) -> list[str]:
    base = f"P-{zlib.crc32(request_id.encode()):08X}"
    return [base if n == 0 else f"{base}-{n + 1}" for n in range(count)]
