"""The sourcing planner: which location fulfils each line, by a rule (default: the rules of SCENARIOS.md).

Default rule, in order: only locations able to serve the delivery mode and holding available stock are
candidates; fewest shipments first (no split when one location can serve the whole order); then lowest
total cost (handling plus distance-based shipping); then the nearest. A rule can filter locations (kind,
exclusions, capacity left today, distance), rank by other criteria (priority, stock level) and limit
splitting (never, at most N shipments, no split below an order value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.network import Location
from schemas.orders import CandidateScore, Delivery, OrderLine, PickupAt, ReserveAt, ShipTo
from services.orchestrator.domain.network import NetworkView, distance_km, shipping_cost
from services.orchestrator.domain.rules import Rule

# sku -> location -> units available to promise
Availability = dict[str, dict[str, int]]
# sku -> location -> (units of incoming supply not yet promised, earliest ETA as ISO text or None)
Supply = dict[str, dict[str, tuple[int, str | None]]]
# (sku, location) -> units still usable by this plan; lines of the same SKU draw from one pool
Pool = dict[tuple[str, str], int]
MODE_CAPABILITY = {"ship": "ship", "pickup": "pickup", "reserve": "reserve"}
DEFAULT_RULE = Rule(name="default")


@dataclass(frozen=True)
class Assignment:
    line_index: int
    sku: str
    qty: int
    location: str
    backorder: bool = False


@dataclass
class SourcingPlan:
    assignments: list[Assignment] = field(default_factory=list)
    unsourced: dict[int, int] = field(default_factory=dict)
    candidates: list[CandidateScore] = field(default_factory=list)
    rule: str = "default"
    ship_to_store: bool = False

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


@dataclass
class _Request:
    """One planning question: these lines (by index and quantity) for this delivery, under this rule."""

    lines: list[OrderLine]
    need: dict[int, int]
    delivery: Delivery
    rule: Rule
    order_value: float
    capacity_left: dict[str, int]

    @property
    def units(self) -> int:
        return sum(self.need.values())


def plan_order(
    lines: list[OrderLine],
    delivery: Delivery,
    network: NetworkView,
    availability: Availability,
    excluded: set[str] | None = None,
    *,
    rule: Rule | None = None,
    need: dict[int, int] | None = None,
    order_value: float | None = None,
    capacity_left: dict[str, int] | None = None,
) -> SourcingPlan:
    """Choose locations for the needed lines; what cannot be served now ends in ``unsourced``."""
    request = _Request(
        lines=lines,
        need=need if need is not None else {i: ln.qty for i, ln in enumerate(lines)},
        delivery=delivery,
        rule=rule or DEFAULT_RULE,
        order_value=order_value if order_value is not None else sum(ln.qty * ln.unit_price for ln in lines),
        capacity_left=capacity_left or {},
    )
    plan = _plan(request, network, availability, excluded or set())
    if not plan.complete and isinstance(delivery, PickupAt) and request.rule.ship_to_store:
        store = network.get(delivery.location)
        if store is not None and store.open and "pickup" in store.capabilities:
            request.delivery = ShipTo(lat=store.lat, lon=store.lon, address=f"store {store.id}")
            shipped = _plan(request, network, availability, excluded or set())
            if shipped.complete:
                shipped.ship_to_store = True
                shipped.rule += " (ship to store)"
                return shipped
    return plan


def _plan(request: _Request, network: NetworkView, availability: Availability, excluded: set[str]) -> SourcingPlan:
    capable, explanations = _capable_locations(request, network)
    stock: Pool = {
        (request.lines[i].sku, c.location.id): _usable(availability, request.lines[i].sku, c.location.id, excluded)
        for i in request.need
        for c in capable
    }
    plan = SourcingPlan(candidates=explanations, rule=request.rule.name)
    # what each location could give of the whole need: read twice (whole-order candidates, then the scores)
    coverable = {c.location.id: _coverable(request, dict(stock), c.location.id) for c in capable}
    whole = [c for c in capable if coverable[c.location.id] == request.units]
    if whole and request.units:
        best = min(whole, key=lambda c: _rank_key(request, c, stock, request.units))
        plan.assignments = [
            Assignment(i, request.lines[i].sku, q, best.location.id) for i, q in request.need.items() if q
        ]
        plan.rule = f"{request.rule.name}: one location serves the whole order"
    else:
        _split(request, capable, stock, plan)
    plan.candidates += _scores(request, capable, coverable, plan)
    return plan


def _rank_key(request: _Request, c: _Candidate, stock: Pool, covered: int) -> tuple[Any, ...]:
    keys: list[Any] = []
    for criterion in request.rule.rank:
        if criterion == "cost":
            keys.append(c.cost(covered))
        elif criterion == "distance":
            keys.append(round(c.distance, 3))
        elif criterion == "priority":
            keys.append(request.rule.priority.get(c.location.id, 1_000_000))
        elif criterion == "stock_level":
            keys.append(-sum(q for (_, loc), q in stock.items() if loc == c.location.id))
    return (*keys, c.cost(covered), c.distance, c.location.id)


def _take(request: _Request, wanted: dict[int, int], pool: Pool, location: str) -> dict[int, int]:
    """What ``location`` can give of each wanted line, drawing down ``pool`` as it goes."""
    given = {}
    for i, qty in wanted.items():
        key = (request.lines[i].sku, location)
        take = min(qty, pool.get(key, 0))
        if take:
            pool[key] -= take
            given[i] = take
    return given


def _coverable(request: _Request, pool: Pool, location: str) -> int:
    return sum(_take(request, dict(request.need), pool, location).values())


def _usable(availability: Availability, sku: str, location: str, excluded: set[str]) -> int:
    if f"{sku}@{location}" in excluded or f"*@{location}" in excluded:
        return 0
    return max(0, availability.get(sku, {}).get(location, 0))


def _capable_locations(request: _Request, network: NetworkView) -> tuple[list[_Candidate], list[CandidateScore]]:
    capable: list[_Candidate] = []
    out: list[CandidateScore] = []
    for loc in sorted(network.locations.values(), key=lambda location: location.id):
        distance = _distance(loc, request.delivery, network)
        reason = _exclusion(loc, request, distance)
        if reason:
            out.append(CandidateScore(location=loc.id, eligible=False, reason=reason))
        else:
            capable.append(_Candidate(loc, distance))
    return capable, out


def _exclusion(loc: Location, request: _Request, distance: float) -> str | None:
    delivery, filters = request.delivery, request.rule.filters
    if not loc.open:
        return "location closed"
    if isinstance(delivery, PickupAt | ReserveAt) and loc.id != delivery.location:
        return f"{delivery.mode} is at {delivery.location}"
    needed = MODE_CAPABILITY[delivery.mode]
    if needed not in loc.capabilities:
        return f"cannot {needed}"
    if filters.kinds is not None and loc.kind not in filters.kinds:
        return f"rule {request.rule.name!r} excludes {loc.kind}s"
    listed = filters.only_locations is None or loc.id in filters.only_locations
    if loc.id in filters.exclude_locations or not listed:
        return f"rule {request.rule.name!r} excludes this location"
    if filters.max_distance_km is not None and distance > filters.max_distance_km:
        return f"farther than {filters.max_distance_km:g} km"
    if filters.respect_capacity and request.capacity_left.get(loc.id, 1) <= 0:
        return "no capacity left today"
    return None


def _distance(loc: Location, delivery: Delivery, network: NetworkView) -> float:
    if isinstance(delivery, ShipTo):
        return distance_km(loc.lat, loc.lon, delivery.lat, delivery.lon)
    target = network.get(delivery.location)
    return distance_km(loc.lat, loc.lon, target.lat, target.lon) if target else 0.0


def _split(request: _Request, capable: list[_Candidate], stock: Pool, plan: SourcingPlan) -> None:
    """Fewest shipments: repeatedly take the location covering most of what is left, up to the policy's limit."""
    remaining = {i: q for i, q in request.need.items() if q}
    left = dict(stock)
    used: set[str] = set()
    limit = request.rule.split.limit(request.order_value)
    while any(remaining.values()) and len(used) < limit:
        options = [c for c in capable if c.location.id not in used]
        cover = {c.location.id: sum(_take(request, remaining, dict(left), c.location.id).values()) for c in options}
        useful = [c for c in options if cover[c.location.id] > 0]
        if not useful:
            break
        best = min(useful, key=lambda c: (-cover[c.location.id], *_rank_key(request, c, left, cover[c.location.id])))
        used.add(best.location.id)
        for i, take in _take(request, remaining, left, best.location.id).items():
            plan.assignments.append(Assignment(i, request.lines[i].sku, take, best.location.id))
            remaining[i] -= take
    plan.unsourced = {i: q for i, q in remaining.items() if q}
    name = request.rule.name
    plan.rule = f"{name}: split, fewest shipments" if plan.assignments else f"{name}: no source"


def _scores(
    request: _Request, capable: list[_Candidate], coverable_at: dict[str, int], plan: SourcingPlan
) -> list[CandidateScore]:
    chosen = set(plan.locations)
    units = max(request.units, 1)
    scores = []
    for c in capable:
        coverable = coverable_at[c.location.id]
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


def plan_backorder(
    lines: list[OrderLine],
    need: dict[int, int],
    delivery: Delivery,
    network: NetworkView,
    supply: Supply,
    excluded: set[str] | None = None,
    rule: Rule | None = None,
) -> SourcingPlan:
    """Lines no location can serve now, promised against incoming supply: the earliest ETA wins, then cost."""
    request = _Request(lines, dict(need), delivery, rule or DEFAULT_RULE, 0.0, {})
    if isinstance(delivery, PickupAt) and request.rule.ship_to_store:
        store = network.get(delivery.location)
        if store is not None:
            request.delivery = ShipTo(lat=store.lat, lon=store.lon)
    capable, explanations = _capable_locations(request, network)
    plan = SourcingPlan(candidates=explanations, rule=f"{request.rule.name}: backorder against supply")
    pool = {(sku, loc): qty for sku, by_loc in supply.items() for loc, (qty, _) in by_loc.items()}
    avoid = excluded or set()
    for i, qty in need.items():
        sku = lines[i].sku
        options = [  # a location that rejected the order (``*@LOC``) is no more a backorder source than a stock one
            c for c in capable
            if pool.get((sku, c.location.id), 0) >= qty and not {f"{sku}@{c.location.id}", f"*@{c.location.id}"} & avoid
        ]
        if not options:
            plan.unsourced[i] = qty
            continue
        best = min(options, key=lambda c: (supply[sku][c.location.id][1] or "9999", c.cost(qty), c.distance))
        pool[(sku, best.location.id)] -= qty
        plan.assignments.append(Assignment(i, sku, qty, best.location.id, backorder=True))
    plan.ship_to_store = request.delivery is not delivery
    return plan
