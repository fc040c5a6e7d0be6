"""The sourcing planner: which location fulfils each line, by the default rules.

Default rules, in order: only locations able to serve the delivery mode and holding available stock are
candidates; fewest shipments first (no split when one location can serve the whole order); then lowest
total cost (handling plus distance-based shipping); then the nearest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.network import Location
from schemas.orders import CandidateScore, Delivery, OrderLine, PickupAt, ReserveAt, ShipTo
from services.orchestrator.domain.network import NetworkView, distance_km, shipping_cost

# sku -> location -> units available to promise
Availability = dict[str, dict[str, int]]
MODE_CAPABILITY = {"ship": "ship", "pickup": "pickup", "reserve": "reserve"}


@dataclass(frozen=True)
class Assignment:
    line_index: int
    sku: str
    qty: int
    location: str


@dataclass
class SourcingPlan:
    assignments: list[Assignment] = field(default_factory=list)
    unsourced: dict[int, int] = field(default_factory=dict)
    candidates: list[CandidateScore] = field(default_factory=list)
    rule: str = "default"

    @property
    def complete(self) -> bool:
        return not self.unsourced and bool(self.assignments)

    @property
    def locations(self) -> list[str]:
        return sorted({a.location for a in self.assignments})


@dataclass(frozen=True)
class _Candidate:
    location: Location
    distance: float

    def cost(self, units: int) -> float:
        return round(self.location.handling_cost * units + shipping_cost(self.distance), 4)


def plan_order(
    lines: list[OrderLine],
    delivery: Delivery,
    network: NetworkView,
    availability: Availability,
    excluded: set[str] | None = None,
) -> SourcingPlan:
    """Choose locations for every line; what cannot be served now ends in ``unsourced``."""
    excluded = excluded or set()
    capable, explanations = _capable_locations(delivery, network)
    stock: Pool = {
        (line.sku, c.location.id): _usable(availability, line.sku, c.location.id, excluded)
        for line in lines
        for c in capable
    }
    plan = SourcingPlan(candidates=explanations)
    units = sum(line.qty for line in lines)
    whole = [c for c in capable if _coverable(lines, dict(stock), c.location.id) == units]
    if whole:
        best = min(whole, key=lambda c: (c.cost(units), c.distance, c.location.id))
        plan.assignments = [Assignment(i, ln.sku, ln.qty, best.location.id) for i, ln in enumerate(lines)]
        plan.rule = "default: one location serves the whole order"
    else:
        _split(lines, capable, stock, plan)
    plan.candidates += _scores(lines, capable, stock, units, plan)
    return plan


# (sku, location) -> units still usable by this plan; lines of the same SKU draw from one pool
Pool = dict[tuple[str, str], int]


def _take(lines: list[OrderLine], wanted: dict[int, int], pool: Pool, location: str) -> dict[int, int]:
    """What ``location`` can give of each wanted line, drawing down ``pool`` as it goes."""
    given = {}
    for i, qty in wanted.items():
        take = min(qty, pool[(lines[i].sku, location)])
        if take:
            pool[(lines[i].sku, location)] -= take
            given[i] = take
    return given


def _coverable(lines: list[OrderLine], pool: Pool, location: str) -> int:
    return sum(_take(lines, {i: ln.qty for i, ln in enumerate(lines)}, pool, location).values())


def _usable(availability: Availability, sku: str, location: str, excluded: set[str]) -> int:
    if f"{sku}@{location}" in excluded:
        return 0
    return max(0, availability.get(sku, {}).get(location, 0))


def _capable_locations(delivery: Delivery, network: NetworkView) -> tuple[list[_Candidate], list[CandidateScore]]:
    capable: list[_Candidate] = []
    out: list[CandidateScore] = []
    for loc in sorted(network.locations.values(), key=lambda location: location.id):
        reason = _exclusion(loc, delivery)
        if reason:
            out.append(CandidateScore(location=loc.id, eligible=False, reason=reason))
        else:
            capable.append(_Candidate(loc, _distance(loc, delivery, network)))
    return capable, out


def _exclusion(loc: Location, delivery: Delivery) -> str | None:
    if not loc.open:
        return "location closed"
    if isinstance(delivery, PickupAt | ReserveAt) and loc.id != delivery.location:
        return f"{delivery.mode} is at {delivery.location}"
    needed = MODE_CAPABILITY[delivery.mode]
    if needed not in loc.capabilities:
        return f"cannot {needed}"
    return None


def _distance(loc: Location, delivery: Delivery, network: NetworkView) -> float:
    if isinstance(delivery, ShipTo):
        return distance_km(loc.lat, loc.lon, delivery.lat, delivery.lon)
    target = network.get(delivery.location)
    return distance_km(loc.lat, loc.lon, target.lat, target.lon) if target else 0.0


def _split(lines: list[OrderLine], capable: list[_Candidate], stock: Pool, plan: SourcingPlan) -> None:
    """Fewest shipments: repeatedly take the location covering most of what is left (then cheapest, nearest)."""
    remaining = {i: ln.qty for i, ln in enumerate(lines)}
    left = dict(stock)
    used: set[str] = set()
    while any(remaining.values()):
        options = [c for c in capable if c.location.id not in used]
        cover = {c.location.id: sum(_take(lines, remaining, dict(left), c.location.id).values()) for c in options}
        best = max(
            options, key=lambda c: (cover[c.location.id], -c.cost(cover[c.location.id]), -c.distance), default=None
        )
        if best is None or cover[best.location.id] == 0:
            break
        used.add(best.location.id)
        for i, take in _take(lines, remaining, left, best.location.id).items():
            plan.assignments.append(Assignment(i, lines[i].sku, take, best.location.id))
            remaining[i] -= take
    plan.unsourced = {i: q for i, q in remaining.items() if q}
    plan.rule = "default: split, fewest shipments" if plan.assignments else "default: no source"


def _scores(
    lines: list[OrderLine],
    capable: list[_Candidate],
    stock: Pool,
    units: int,
    plan: SourcingPlan,
) -> list[CandidateScore]:
    chosen = set(plan.locations)
    scores = []
    for c in capable:
        coverable = _coverable(lines, dict(stock), c.location.id)
        reason = None if c.location.id in chosen else ("no available stock" if coverable == 0 else "ranked lower")
        scores.append(
            CandidateScore(
                location=c.location.id,
                eligible=coverable > 0,
                score=round(coverable / units, 4),
                distance_km=round(c.distance, 1),
                cost=c.cost(units),
                reason=reason,
            )
        )
    return scores
