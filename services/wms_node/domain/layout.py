"""A location's physical layout: zones and bins (aisle, bay, level), their distance from the dock, the pick path.

The dock is at the front of the building. Aisles run away from it, side by side along a front cross-aisle:
walking to a bin means going along the front to its aisle, then down the aisle to its bay. Levels cost no
walking. The aisles nearest the dock form the ``fast`` zone (where fast movers belong), the rest ``bulk``;
``quarantine`` bins at the dock hold damaged goods, ``pickup`` shelves (stores) hold prepared pickup orders.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Zone = Literal["fast", "bulk", "quarantine", "pickup", "dock"]
STORAGE_ZONES: tuple[Zone, ...] = ("fast", "bulk")
RECEIVING_DOCK = "DOCK-IN"
OVERFLOW = "OVERFLOW"


class LayoutSpec(BaseModel):
    """How a location's bins are generated; every field has a default, so a partial spec is enough."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aisles: int = Field(default=10, ge=1, le=99)
    bays: int = Field(default=12, ge=1, le=99)
    levels: int = Field(default=3, ge=1, le=9)
    fast_aisles: int = Field(default=2, ge=0, le=99)
    bin_capacity: int = Field(default=200, ge=1)
    aisle_pitch_m: float = Field(default=3.0, gt=0)
    bay_pitch_m: float = Field(default=1.2, gt=0)
    quarantine_bins: int = Field(default=4, ge=1, le=99)
    pickup_bins: int = Field(default=0, ge=0, le=999)
    dock_doors: int = Field(default=4, ge=1, le=99)


WAREHOUSE_LAYOUT = LayoutSpec()
STORE_LAYOUT = LayoutSpec(aisles=3, bays=6, levels=2, fast_aisles=1, bin_capacity=60, quarantine_bins=2,
                          pickup_bins=24, dock_doors=1)


def default_spec(kind: str) -> LayoutSpec:
    return STORE_LAYOUT if kind == "store" else WAREHOUSE_LAYOUT


class Bin(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    zone: Zone
    aisle: int = 0
    bay: int = 0
    level: int = 0
    capacity: int = 0
    distance_m: float = 0.0


def rack_bin_id(aisle: int, bay: int, level: int) -> str:
    return f"A{aisle:02d}-B{bay:02d}-L{level}"


class Layout:
    """The bins generated from a spec, with distances from the dock and the S-shaped pick path."""

    def __init__(self, spec: LayoutSpec) -> None:
        self.spec = spec
        bins: list[Bin] = [Bin(id=RECEIVING_DOCK, zone="dock")]
        for aisle in range(1, spec.aisles + 1):
            zone: Zone = "fast" if aisle <= spec.fast_aisles else "bulk"
            for bay in range(1, spec.bays + 1):
                distance = (aisle - 1) * spec.aisle_pitch_m + bay * spec.bay_pitch_m
                for level in range(1, spec.levels + 1):
                    bins.append(Bin(id=rack_bin_id(aisle, bay, level), zone=zone, aisle=aisle, bay=bay, level=level,
                                    capacity=spec.bin_capacity, distance_m=round(distance, 2)))
        bins += [Bin(id=f"Q-{n:02d}", zone="quarantine", capacity=10**6) for n in range(1, spec.quarantine_bins + 1)]
        bins += [Bin(id=f"PU-{n:02d}", zone="pickup", capacity=10**6) for n in range(1, spec.pickup_bins + 1)]
        self.bins = bins
        self.by_id = {b.id: b for b in bins}
        storage = [b for b in bins if b.zone in STORAGE_ZONES]
        # Nearest first; at equal distance the waist-high level 2, then 1, then higher ones.
        self.storage_by_distance = sorted(storage, key=lambda b: (b.distance_m, _level_rank(b.level), b.id))
        self.docks = [f"D{n}" for n in range(1, spec.dock_doors + 1)]

    def bin(self, bin_id: str) -> Bin:
        found = self.by_id.get(bin_id)
        return found if found is not None else Bin(id=bin_id, zone="bulk", distance_m=_far(self.spec))

    def distance(self, bin_id: str) -> float:
        return self.bin(bin_id).distance_m

    def zone_bins(self, zone: Zone) -> list[Bin]:
        if zone in STORAGE_ZONES:
            return [b for b in self.storage_by_distance if b.zone == zone]
        return [b for b in self.bins if b.zone == zone]

    def path_key(self, bin_id: str) -> tuple[int, float, int, str]:
        """Position on the S-shaped route: aisle by aisle from the dock, up odd aisles and back down even ones."""
        b = self.by_id.get(bin_id)
        if b is None or b.zone not in STORAGE_ZONES:
            return (10**6, 0.0, 0, bin_id)
        along = b.bay if b.aisle % 2 == 1 else -b.bay
        return (b.aisle, along, b.level, b.id)

    def pick_path(self, bin_ids: list[str]) -> list[str]:
        return sorted(bin_ids, key=self.path_key)

    def route_m(self, bin_ids: list[str]) -> float:
        """Length of the S-shaped walk from the dock through these bins and back (metres)."""
        racked = [self.by_id[b] for b in bin_ids if b in self.by_id and self.by_id[b].zone in STORAGE_ZONES]
        aisles = sorted({b.aisle for b in racked})
        if not aisles:
            return 0.0
        spec = self.spec
        across = 2 * (aisles[-1] - 1) * spec.aisle_pitch_m
        full_aisle = (spec.bays + 1) * spec.bay_pitch_m
        deepest = max(b.bay for b in racked if b.aisle == aisles[-1])
        down = full_aisle * (len(aisles) - 1)
        # An odd number of aisles ends on the far side: walk back down the last one; else end near the front.
        down += 2 * deepest * spec.bay_pitch_m if len(aisles) % 2 == 1 else full_aisle
        return round(across + down, 1)


def _level_rank(level: int) -> int:
    return {2: 0, 1: 1}.get(level, level)


def _far(spec: LayoutSpec) -> float:
    return spec.aisles * spec.aisle_pitch_m + (spec.bays + 1) * spec.bay_pitch_m


@cache
def layout_for(spec: LayoutSpec) -> Layout:
    return Layout(spec)
