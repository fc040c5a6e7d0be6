"""Demand-aware slotting: fast movers proposed for the home bins nearest the dock.

Demand is the number of pick visits each SKU had at this location. Every visit walks to the SKU's home bin
and back, so the walk a slotting costs is sum(visits x 2 x distance of home). The proposal gives the SKUs,
busiest first, the storage bins nearest first (waist-high level preferred at equal distance), and reports
the walking saved for the same demand. SKUs without demand keep their homes unless a busier SKU takes one.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.wms_node.domain.layout import Layout
from services.wms_node.domain.model import SkuStock


@dataclass(frozen=True)
class Move:
    sku: str
    picks: int
    from_bin: str | None
    to_bin: str
    from_m: float
    to_m: float

    @property
    def saved_m(self) -> float:
        return round(2 * self.picks * (self.from_m - self.to_m), 1)


@dataclass(frozen=True)
class Proposal:
    moves: list[Move]
    walk_now_m: float
    walk_after_m: float
    skus: int

    @property
    def saved_m(self) -> float:
        return round(self.walk_now_m - self.walk_after_m, 1)

    @property
    def saved_pct(self) -> float:
        return round(100 * self.saved_m / self.walk_now_m, 1) if self.walk_now_m else 0.0

    def document(self, location: str) -> dict[str, object]:
        return {
            "location": location,
            "skus_with_demand": self.skus,
            "walk_now_m": self.walk_now_m,
            "walk_after_m": self.walk_after_m,
            "saved_m": self.saved_m,
            "saved_pct": self.saved_pct,
            "moves": [
                {"sku": m.sku, "picks": m.picks, "from_bin": m.from_bin, "to_bin": m.to_bin, "from_m": m.from_m,
                 "to_m": m.to_m, "saved_m": m.saved_m}
                for m in self.moves
            ],
        }


def walk_m(picks: int, distance_m: float) -> float:
    return 2 * picks * distance_m


def propose(stocks: list[SkuStock], layout: Layout) -> Proposal:
    ranked = sorted((s for s in stocks if s.picks > 0), key=lambda s: (-s.picks, s.sku))
    taken: set[str] = set()
    targets: dict[str, str] = {}
    for stock in ranked:
        candidate = next((b.id for b in layout.storage_by_distance if b.id not in taken), None)
        current = stock.home
        keep = current is not None and current not in taken and (
            candidate is None or layout.distance(current) <= layout.distance(candidate))
        target = current if keep or candidate is None else candidate
        target = target or "?"
        taken.add(target)
        targets[stock.sku] = target
    idle = sorted((s for s in stocks if s.picks == 0 and s.home is not None), key=lambda s: s.sku)
    kept = {s.home for s in idle if s.home not in taken}
    back = (b.id for b in reversed(layout.storage_by_distance) if b.id not in taken and b.id not in kept)
    moves = []
    now = after = 0.0
    for stock in ranked:
        from_m = layout.distance(stock.home) if stock.home else layout.distance("?")
        to_m = layout.distance(targets[stock.sku])
        now += walk_m(stock.picks, from_m)
        after += walk_m(stock.picks, to_m)
        if targets[stock.sku] != stock.home:
            moves.append(Move(stock.sku, stock.picks, stock.home, targets[stock.sku], from_m, to_m))
    for stock in idle:
        if stock.home in taken:
            to_bin = next(back, "?")
            moves.append(Move(stock.sku, 0, stock.home, to_bin, layout.distance(stock.home or "?"),
                              layout.distance(to_bin)))
    return Proposal(moves=moves, walk_now_m=round(now, 1), walk_after_m=round(after, 1), skus=len(ranked))
