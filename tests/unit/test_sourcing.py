"""The sourcing planner's default rules, one test per feature, and properties of every plan."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.base import Capability
from schemas.network import Location
from schemas.orders import CandidateScore, Delivery, OrderLine, PickupAt, ReserveAt, ShipTo
from services.orchestrator.domain.network import NetworkView, distance_km, shipping_cost
from services.orchestrator.domain.rules import Rule
from services.orchestrator.domain.sourcing import Availability, SourcingPlan, plan_order

PARIS = ShipTo(lat=48.8566, lon=2.3522)


def loc(
    id: str,
    lat: float,
    lon: float,
    caps: tuple[Capability, ...] = ("ship",),
    handling: float = 1.0,
    open: bool = True,
    kind: str = "warehouse",
) -> Location:
    return Location.model_validate(
        {
            "id": id,
            "kind": kind,
            "lat": lat,
            "lon": lon,
            "capabilities": list(caps),
            "handling_cost": handling,
            "open": open,
        }
    )


def network(*locations: Location) -> NetworkView:
    view = NetworkView()
    for n, location in enumerate(locations, start=1):
        view.apply(location, n)
    return view


def lines(**qty: int) -> list[OrderLine]:
    return [OrderLine(sku=sku, qty=q) for sku, q in qty.items()]


def placement(plan: SourcingPlan) -> dict[tuple[str, str], int]:
    """(sku, location) -> units assigned."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for a in plan.assignments:
        out[(a.sku, a.location)] += a.qty
    return dict(out)


def candidate(plan: SourcingPlan, location: str) -> CandidateScore:
    return next(c for c in plan.candidates if c.location == location)


NEAR = loc("WH-PAR", 48.86, 2.35)  # ~1 km from the customer
MID = loc("WH-LIL", 50.63, 3.06)  # ~200 km
FAR = loc("WH-LYO", 45.76, 4.84)  # ~390 km


# ---------------------------------------------------------------- candidates


def test_only_capable_locations_are_candidates() -> None:
    store = loc("ST-PAR", 48.857, 2.352, caps=("pickup", "returns"), kind="store")
    plan = plan_order(lines(X=1), PARIS, network(store, FAR), {"X": {"ST-PAR": 5, "WH-LYO": 5}})
    assert placement(plan) == {("X", "WH-LYO"): 1}
    out = candidate(plan, "ST-PAR")
    assert out.eligible is False and out.reason == "cannot ship"


def test_closed_location_is_not_a_candidate() -> None:
    closed = loc("WH-PAR", 48.86, 2.35, open=False)
    plan = plan_order(lines(X=1), PARIS, network(closed, FAR), {"X": {"WH-PAR": 5, "WH-LYO": 5}})
    assert placement(plan) == {("X", "WH-LYO"): 1}
    assert candidate(plan, "WH-PAR").reason == "location closed"


def test_only_locations_holding_stock_are_used() -> None:
    plan = plan_order(lines(X=2), PARIS, network(NEAR, FAR), {"X": {"WH-PAR": 0, "WH-LYO": 2}})
    assert placement(plan) == {("X", "WH-LYO"): 2}
    near = candidate(plan, "WH-PAR")
    assert near.eligible is False and near.reason == "no available stock"


def test_negative_availability_counts_as_none() -> None:
    plan = plan_order(lines(X=1), PARIS, network(NEAR, FAR), {"X": {"WH-PAR": -3, "WH-LYO": 1}})
    assert placement(plan) == {("X", "WH-LYO"): 1}


# ---------------------------------------------------------------- ranking


def test_one_location_for_the_whole_order_beats_a_cheaper_split() -> None:
    near_x = loc("ST-X", 48.86, 2.35)
    near_y = loc("ST-Y", 48.85, 2.36)
    far = loc("WH-FAR", 40.0, 2.35)  # ~985 km: shipping alone costs more than a second parcel
    stock = {"X": {"ST-X": 1, "WH-FAR": 1}, "Y": {"ST-Y": 1, "WH-FAR": 1}}
    order = lines(X=1, Y=1)

    split_cost = sum(
        1.0 + shipping_cost(distance_km(s.lat, s.lon, PARIS.lat, PARIS.lon)) for s in (near_x, near_y)
    )
    whole_cost = 2.0 + shipping_cost(distance_km(far.lat, far.lon, PARIS.lat, PARIS.lon))
    assert split_cost < whole_cost  # the premise: a split would be cheaper

    plan = plan_order(order, PARIS, network(near_x, near_y, far), stock)
    assert plan.locations == ["WH-FAR"]
    assert plan.rule == "default: one location serves the whole order"
    assert plan.complete


def test_lowest_total_cost_wins_over_distance() -> None:
    costly_near = loc("WH-PAR", 48.86, 2.35, handling=10.0)
    cheap_far = loc("WH-LYO", 45.76, 4.84, handling=0.5)
    plan = plan_order(lines(X=2), PARIS, network(costly_near, cheap_far), {"X": {"WH-PAR": 5, "WH-LYO": 5}})
    assert plan.locations == ["WH-LYO"]
    near, far = candidate(plan, "WH-PAR"), candidate(plan, "WH-LYO")
    assert far.cost is not None and near.cost is not None and far.cost < near.cost
    assert near.reason == "ranked lower" and far.reason is None


def test_cheapest_location_wins_when_handling_is_equal() -> None:
    plan = plan_order(
        lines(X=1), PARIS, network(FAR, MID, NEAR), {"X": {"WH-PAR": 1, "WH-LIL": 1, "WH-LYO": 1}}
    )
    assert plan.locations == ["WH-PAR"]


def test_nearest_wins_when_costs_tie() -> None:
    # the nearer location sorts last by id, so only the distance rule can pick it
    far = loc("A-FAR", 0.0, 2.0)
    customer = ShipTo(lat=0.0, lon=0.0)
    units = 2
    d_far, d_near = distance_km(0, 2, 0, 0), distance_km(0, 1, 0, 0)
    # give the nearer one a higher handling cost that exactly offsets its cheaper shipping
    near = loc("Z-NEAR", 0.0, 1.0, handling=1.0 + (shipping_cost(d_far) - shipping_cost(d_near)) / units)
    stock = {"X": {"A-FAR": 5, "Z-NEAR": 5}}
    plan = plan_order(lines(X=units), customer, network(far, near), stock)
    assert candidate(plan, "A-FAR").cost == candidate(plan, "Z-NEAR").cost  # the premise: a cost tie
    assert plan.locations == ["Z-NEAR"]


# ---------------------------------------------------------------- splitting


def test_split_uses_the_fewest_shipments() -> None:
    # NEAR holds only X (cheapest for X alone); FAR holds X and Y; MID holds Z.
    stock = {"X": {"WH-PAR": 5, "WH-LYO": 5}, "Y": {"WH-LYO": 5}, "Z": {"WH-LIL": 5}}
    plan = plan_order(lines(X=1, Y=1, Z=1), PARIS, network(NEAR, MID, FAR), stock)
    assert plan.locations == ["WH-LIL", "WH-LYO"]
    assert placement(plan) == {("X", "WH-LYO"): 1, ("Y", "WH-LYO"): 1, ("Z", "WH-LIL"): 1}
    assert plan.rule == "default: split, fewest shipments"
    assert plan.complete and plan.unsourced == {}


def test_split_one_line_across_locations() -> None:
    plan = plan_order(lines(X=5), PARIS, network(NEAR, FAR), {"X": {"WH-PAR": 3, "WH-LYO": 4}})
    # the location covering most goes first (FAR: 4), the rest from NEAR
    assert placement(plan) == {("X", "WH-LYO"): 4, ("X", "WH-PAR"): 1}
    assert plan.complete


def test_split_prefers_the_cheaper_location_when_cover_ties() -> None:
    stock = {"X": {"WH-PAR": 1, "WH-LYO": 1}, "Y": {"WH-LIL": 1}}
    plan = plan_order(lines(X=1, Y=1), PARIS, network(NEAR, MID, FAR), stock)
    assert placement(plan) == {("X", "WH-PAR"): 1, ("Y", "WH-LIL"): 1}


def test_what_no_location_holds_is_unsourced() -> None:
    plan = plan_order(lines(X=5, Y=2), PARIS, network(NEAR, FAR), {"X": {"WH-PAR": 2, "WH-LYO": 1}})
    assert placement(plan) == {("X", "WH-PAR"): 2, ("X", "WH-LYO"): 1}
    assert plan.unsourced == {0: 2, 1: 2}
    assert not plan.complete


def test_no_stock_anywhere_gives_no_source() -> None:
    plan = plan_order(lines(X=1), PARIS, network(NEAR, FAR), {})
    assert plan.assignments == [] and plan.unsourced == {0: 1}
    assert plan.rule == "default: no source"
    assert not plan.complete


# ---------------------------------------------------------------- pickup, reserve, exclusions


STORE = loc("ST-PAR", 48.857, 2.352, caps=("ship", "pickup", "reserve"), kind="store")


def test_pickup_only_at_the_chosen_store() -> None:
    stock = {"X": {"ST-PAR": 1, "WH-PAR": 10}}
    plan = plan_order(lines(X=1), PickupAt(location="ST-PAR"), network(NEAR, STORE), stock)
    assert plan.locations == ["ST-PAR"]
    assert candidate(plan, "WH-PAR").reason == "pickup is at ST-PAR"


def test_pickup_store_without_stock_is_served_by_ship_to_store() -> None:
    stock = {"X": {"ST-PAR": 0, "WH-PAR": 10}}
    plan = plan_order(lines(X=1), PickupAt(location="ST-PAR"), network(NEAR, STORE), stock)
    assert placement(plan) == {("X", "WH-PAR"): 1} and plan.ship_to_store


def test_pickup_without_ship_to_store_stays_at_the_store() -> None:
    stock = {"X": {"ST-PAR": 0, "WH-PAR": 10}}
    rule = Rule(name="store-only", ship_to_store=False)
    plan = plan_order(lines(X=1), PickupAt(location="ST-PAR"), network(NEAR, STORE), stock, rule=rule)
    assert plan.assignments == [] and plan.unsourced == {0: 1}


def test_pickup_at_a_store_without_the_capability_is_refused() -> None:
    ship_only = loc("ST-PAR", 48.857, 2.352, caps=("ship",), kind="store")
    plan = plan_order(lines(X=1), PickupAt(location="ST-PAR"), network(ship_only), {"X": {"ST-PAR": 5}})
    assert plan.assignments == []
    assert candidate(plan, "ST-PAR").reason == "cannot pickup"


def test_reserve_only_at_the_chosen_store() -> None:
    other = loc("ST-LYO", 45.76, 4.84, caps=("reserve",), kind="store")
    stock = {"X": {"ST-PAR": 2, "ST-LYO": 2}}
    plan = plan_order(lines(X=2), ReserveAt(location="ST-LYO"), network(STORE, other), stock)
    assert placement(plan) == {("X", "ST-LYO"): 2}


def test_excluded_sku_at_location_is_not_used() -> None:
    stock = {"X": {"WH-PAR": 5, "WH-LYO": 5}, "Y": {"WH-PAR": 5, "WH-LYO": 5}}
    plan = plan_order(lines(X=1, Y=1), PARIS, network(NEAR, FAR), stock, excluded={"X@WH-PAR"})
    # X cannot come from PAR any more, so the only whole-order location is LYO
    assert placement(plan) == {("X", "WH-LYO"): 1, ("Y", "WH-LYO"): 1}


def test_exclusion_is_per_sku() -> None:
    stock = {"X": {"WH-PAR": 5}, "Y": {"WH-PAR": 5}}
    plan = plan_order(lines(X=1, Y=1), PARIS, network(NEAR), stock, excluded={"Z@WH-PAR"})
    assert placement(plan) == {("X", "WH-PAR"): 1, ("Y", "WH-PAR"): 1}
    plan = plan_order(lines(X=1, Y=1), PARIS, network(NEAR), stock, excluded={"X@WH-PAR"})
    assert placement(plan) == {("Y", "WH-PAR"): 1} and plan.unsourced == {0: 1}


def test_two_lines_of_one_sku_never_take_more_than_available() -> None:
    order = [OrderLine(sku="X", qty=3), OrderLine(sku="X", qty=3)]
    plan = plan_order(order, PARIS, network(NEAR, FAR), {"X": {"WH-PAR": 4, "WH-LYO": 2}})
    taken = placement(plan)
    assert taken.get(("X", "WH-PAR"), 0) <= 4
    assert taken.get(("X", "WH-LYO"), 0) <= 2


# ---------------------------------------------------------------- properties

LOC_IDS = ("L1", "L2", "L3", "L4")
SKUS = ("A", "B", "C", "D")
CAPABILITY_SETS: list[tuple[Capability, ...]] = [
    ("ship",),
    ("ship", "pickup", "reserve"),
    ("pickup", "reserve"),
    ("ship", "pickup"),
]


@st.composite
def sourcing_inputs(draw: st.DrawFn) -> tuple[list[OrderLine], Delivery, NetworkView, Availability, set[str]]:
    ids = draw(st.lists(st.sampled_from(LOC_IDS), min_size=1, max_size=4, unique=True))
    locations = [
        loc(
            i,
            draw(st.floats(40, 55)),
            draw(st.floats(-5, 15)),
            caps=draw(st.sampled_from(CAPABILITY_SETS)),
            handling=draw(st.sampled_from([0.5, 1.0, 1.5, 3.0])),
            open=draw(st.sampled_from([True, True, True, False])),
        )
        for i in ids
    ]
    skus = draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True))
    order = [OrderLine(sku=s, qty=draw(st.integers(1, 4))) for s in skus]
    availability: Availability = {s: {} for s in SKUS}
    for s in SKUS:
        for i in ids:
            units = draw(st.integers(0, 8) | st.integers(2, 8) | st.sampled_from([None, -1]))
            if units is not None:
                availability[s][i] = units
    excluded = set(draw(st.lists(st.sampled_from([f"{s}@{i}" for s in SKUS for i in ids]), max_size=3)))
    delivery: Delivery = draw(
        st.one_of(
            st.builds(ShipTo, lat=st.floats(40, 55), lon=st.floats(-5, 15)),
            st.builds(ShipTo, lat=st.floats(40, 55), lon=st.floats(-5, 15)),
            st.builds(PickupAt, location=st.sampled_from(ids)),
            st.builds(ReserveAt, location=st.sampled_from(ids)),
        )
    )
    return order, delivery, network(*locations), availability, excluded


def usable(availability: Availability, excluded: set[str], sku: str, location: str) -> int:
    return 0 if f"{sku}@{location}" in excluded else max(0, availability.get(sku, {}).get(location, 0))


def can_serve(location: Location, delivery: Delivery) -> bool:
    if not location.open or delivery.mode not in location.capabilities:
        return False
    return not isinstance(delivery, PickupAt | ReserveAt) or delivery.location == location.id


@settings(max_examples=300, deadline=None)
@given(sourcing_inputs())
def test_every_plan_respects_stock_exclusions_and_accounts_for_every_unit(
    inputs: tuple[list[OrderLine], Delivery, NetworkView, Availability, set[str]],
) -> None:
    order, delivery, view, availability, excluded = inputs
    plan = plan_order(order, delivery, view, availability, set(excluded))

    if plan.ship_to_store:  # the pickup store lacked stock: a location that ships sends it there
        assert isinstance(delivery, PickupAt) and "pickup" in view.locations[delivery.location].capabilities
        delivery = ShipTo(lat=view.locations[delivery.location].lat, lon=view.locations[delivery.location].lon)
    for (sku, location), qty in placement(plan).items():
        assert qty <= usable(availability, excluded, sku, location)
        assert f"{sku}@{location}" not in excluded
        assert can_serve(view.locations[location], delivery)

    for i, line in enumerate(order):
        assigned = [a for a in plan.assignments if a.line_index == i]
        assert all(a.qty > 0 and a.sku == line.sku for a in assigned)
        assert len({a.location for a in assigned}) == len(assigned)  # one assignment per line and location
        assert sum(a.qty for a in assigned) + plan.unsourced.get(i, 0) == line.qty
    assert all(q > 0 for q in plan.unsourced.values())

    whole = [
        loc_.id
        for loc_ in view.locations.values()
        if can_serve(loc_, delivery)
        and all(usable(availability, excluded, ln.sku, loc_.id) >= ln.qty for ln in order)
    ]
    if whole:
        assert len(plan.locations) == 1 and plan.locations[0] in whole
        assert plan.unsourced == {}
        chosen_cost = candidate(plan, plan.locations[0]).cost
        assert all(chosen_cost <= candidate(plan, w).cost for w in whole)
    else:
        assert len(plan.locations) != 1 or plan.unsourced


@settings(max_examples=100, deadline=None)
@given(sourcing_inputs())
def test_planning_is_deterministic(
    inputs: tuple[list[OrderLine], Delivery, NetworkView, Availability, set[str]],
) -> None:
    order, delivery, view, availability, excluded = inputs
    first = plan_order(order, delivery, view, availability, set(excluded))
    again = plan_order(order, delivery, view, availability, set(excluded))
    assert first == again
