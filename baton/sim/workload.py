"""Random workloads: a small network and a timeline of what happens to it, all drawn from one seed.

The timeline holds both what the outside world does (orders of every delivery mode, cancellations, customers
collecting, cycle counts, supplies announced and arriving short or damaged, stores closing and opening, pickers
finding fewer units than asked) and the faults (a service killed -9, a service stalled). Each is one ``Event``,
so a failing timeline can be shrunk event by event.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from schemas.network import Location
from schemas.orders import OrderLine, OrderPlaced, PickupAt, ReserveAt, ShipTo

WAREHOUSES = (("WH-1", 48.86, 2.35), ("WH-2", 45.76, 4.83))
STORE = ("ST-1", 47.22, -1.55)


@dataclass(frozen=True)
class Event:
    at_s: float

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "at_s")
        return f"{self.at_s:7.2f}s {type(self).__name__}({fields})"


@dataclass(frozen=True)
class PlaceOrder(Event):
    order: OrderPlaced

    def describe(self) -> str:
        o = self.order
        lines = " ".join(f"{ln.sku}x{ln.qty}" for ln in o.lines)
        where = getattr(o.delivery, "location", "")
        return f"{self.at_s:7.2f}s PlaceOrder({o.order_id} {o.delivery.mode}{' ' + where if where else ''}: {lines})"


@dataclass(frozen=True)
class Cancel(Event):
    order_id: str


@dataclass(frozen=True)
class Collect(Event):
    order_id: str


@dataclass(frozen=True)
class ShortPick(Event):
    """``qty`` units of ``sku`` vanish from the shelves of ``location`` (broken, stolen, misplaced): a pick that
    needs them finds fewer than asked."""

    location: str
    sku: str
    qty: int


@dataclass(frozen=True)
class Count(Event):
    """The shelves of ``location`` hold ``drift`` units of ``sku`` more (or fewer) than the books, and a cycle count
    of it is asked for: the counters report what is there."""

    count_id: str
    location: str
    sku: str
    drift: int


@dataclass(frozen=True)
class Supply(Event):
    """Goods announced (``RecordSupply``) with an ETA ``eta_s`` after the start."""

    supply_id: str
    location: str
    sku: str
    qty: int
    eta_s: float


@dataclass(frozen=True)
class Arrive(Event):
    """Goods at the dock: ``qty`` announced; the receivers find ``short`` fewer, ``damaged`` of them damaged."""

    supply_id: str
    location: str
    sku: str
    qty: int
    short: int = 0
    damaged: int = 0


@dataclass(frozen=True)
class Return(Event):
    """The customer sends back ``qty`` units of ``sku`` (by mail, or in the store), declared in ``condition``."""

    order_id: str
    return_id: str
    sku: str
    qty: int
    method: str
    location: str | None
    condition: str
    reason: str = "changed_mind"


@dataclass(frozen=True)
class SetOpen(Event):
    """A store closes (``open`` False) or opens again: a new network version."""

    location: str
    open: bool


@dataclass(frozen=True)
class Crash(Event):
    """The service's process is killed -9 in its next batch, and restarted after ``down_s``."""

    service: str
    down_s: float = 1.0


@dataclass(frozen=True)
class Stall(Event):
    """The service processes nothing for ``for_s`` seconds (a slow node: late acceptance, late confirmations)."""

    service: str
    for_s: float


@dataclass(frozen=True)
class Workload:
    locations: tuple[Location, ...]
    skus: tuple[str, ...]
    stock: tuple[tuple[str, str, int], ...]  # (location, sku, qty) at the start
    reject_all: tuple[str, ...]  # locations that refuse every request
    events: tuple[Event, ...] = field(default=())
    refunds_failing: int = 0  # the payment provider fails the first N refund requests

    def services(self) -> list[str]:
        return ["orchestrator", "inventory", *(f"wms-{loc.id}" for loc in self.locations)]

    def with_events(self, keep: list[int]) -> Workload:
        return Workload(self.locations, self.skus, self.stock, self.reject_all,
                        tuple(self.events[i] for i in keep), self.refunds_failing)

    def order_ids(self) -> list[str]:
        return [e.order.order_id for e in self.events if isinstance(e, PlaceOrder)]

    def describe(self) -> list[str]:
        locs = ", ".join(f"{loc.id}({loc.kind}: {'/'.join(loc.capabilities)}"
                         f"{f', {loc.daily_capacity} orders a day' if loc.daily_capacity else ''})"
                         for loc in self.locations)
        stock = ", ".join(f"{sku}@{loc}={qty}" for loc, sku, qty in self.stock)
        out = [f"network: {locs}", f"stock: {stock or 'none'}"]
        if self.reject_all:
            out.append(f"refusing every request: {', '.join(self.reject_all)}")
        if self.refunds_failing:
            out.append(f"the payment provider fails the first {self.refunds_failing} refund requests")
        return out + [e.describe() for e in self.events]


@dataclass(frozen=True)
class Size:
    """How much a workload holds (the suite runs small ones: a bug needs few orders, and seeds are cheap)."""

    orders: int = 4
    skus: int = 2
    horizon_s: float = 30.0
    faults: bool = True


def generate(seed: int, size: Size = Size()) -> Workload:
    rng = random.Random(f"workload:{seed}")
    locations = _locations(rng)
    skus = tuple(f"S-{i}" for i in range(1, rng.randint(1, size.skus) + 1))
    stock = tuple((loc.id, sku, rng.choice((0, 1, 2, 3, 3, 5, 8)))
                  for loc in locations for sku in skus if rng.random() < 0.8)
    reject_all = tuple(loc.id for loc in locations if rng.random() < 0.08)
    events: list[Event] = []
    for n in range(1, rng.randint(1, size.orders) + 1):
        events += _order(rng, f"O-{n}", skus, locations, size.horizon_s)
    events += _supplies(rng, skus, locations, size.horizon_s)
    events += _floor(rng, skus, locations, size.horizon_s)
    if size.faults:
        events += _faults(rng, [loc.id for loc in locations], size.horizon_s)
    events.sort(key=lambda e: e.at_s)
    # Kinds of events added since: drawn from their own stream and listed after the first ones, so that the
    # indices of a trace shrunk before (kept in the regression seeds) still name the same events.
    late = random.Random(f"workload-late:{seed}")
    later = _late_customers(late, events)
    locations = tuple(loc.model_copy(update={"daily_capacity": late.randint(1, 3)}) if late.random() < 0.15 else loc
                      for loc in locations)
    later += _returns(random.Random(f"workload-returns:{seed}"), events, locations)
    refunds_failing = random.Random(f"workload-payments:{seed}").choice((0, 0, 0, 1, 2))
    return Workload(locations, skus, stock, reject_all, tuple(events + sorted(later, key=lambda e: e.at_s)),
                    refunds_failing)


def _returns(rng: random.Random, events: list[Event], locations: tuple[Location, ...]) -> list[Event]:
    """Customers sending back part of what they received (or of what never shipped: the OMS refuses it)."""
    stores = [loc.id for loc in locations if loc.kind == "store"]
    out: list[Event] = []
    for placed in [e for e in events if isinstance(e, PlaceOrder)]:
        if rng.random() >= 0.3:
            continue
        line = rng.choice(placed.order.lines)
        in_store = bool(stores) and rng.random() < 0.4
        out.append(Return(round(placed.at_s + rng.uniform(20, 120), 2), placed.order.order_id,
                          f"R-{placed.order.order_id}", line.sku, rng.randint(1, line.qty),
                          "in_store" if in_store else "mail", stores[0] if in_store else None,
                          rng.choice(("sellable", "sellable", "damaged", "defective"))))
    return out


def _late_customers(rng: random.Random, events: list[Event]) -> list[Event]:
    """Customers who cancel once the parcel has left (the cancel must be refused), or come for a pickup after
    its window lapsed."""
    out: list[Event] = []
    for placed in [e for e in events if isinstance(e, PlaceOrder)]:
        if rng.random() < 0.2:
            out.append(Cancel(round(placed.at_s + rng.uniform(20, 90), 2), placed.order.order_id))
        if placed.order.delivery.mode != "ship" and rng.random() < 0.2:
            out.append(Collect(round(placed.at_s + rng.uniform(100, 200), 2), placed.order.order_id))
    return out


def _locations(rng: random.Random) -> tuple[Location, ...]:
    out = [Location(id=wid, kind="warehouse", lat=lat, lon=lon, capabilities=["ship", "returns"])
           for wid, lat, lon in WAREHOUSES[: rng.randint(1, 2)]]
    if rng.random() < 0.7:
        sid, lat, lon = STORE
        out.append(Location(id=sid, kind="store", lat=lat, lon=lon,
                            capabilities=["ship", "pickup", "reserve", "returns"]))
    return tuple(out)


def _order(rng: random.Random, order_id: str, skus: tuple[str, ...], locations: tuple[Location, ...],
           horizon_s: float) -> list[Event]:
    at = round(rng.uniform(0, horizon_s), 2)
    picked = rng.sample(skus, rng.randint(1, len(skus)))
    lines = [OrderLine(sku=sku, qty=rng.choice((1, 1, 2, 3, 4)), unit_price=10.0) for sku in picked]
    stores = [loc.id for loc in locations if loc.kind == "store"]
    mode = rng.choice(("ship", "ship", "ship", "pickup", "reserve")) if stores else "ship"
    delivery: ShipTo | PickupAt | ReserveAt
    if mode == "pickup":
        delivery = PickupAt(location=stores[0])
    elif mode == "reserve":
        delivery = ReserveAt(location=stores[0], hold_s=rng.choice((20, 60, 120)))
    else:
        delivery = ShipTo(lat=round(rng.uniform(44, 49), 2), lon=round(rng.uniform(-1, 5), 2))
    channel = rng.choice(("web", "marketplace", "b2b", "store", "call_centre"))
    placed = OrderPlaced(order_id=order_id, channel=channel, customer_id=f"C-{order_id}", lines=lines,
                         delivery=delivery)
    events: list[Event] = [PlaceOrder(at, placed)]
    if rng.random() < 0.25:
        events.append(Cancel(round(at + rng.choice((0.0, 0.05, 0.3, 1.0, 3.0, 10.0, 30.0)), 2), order_id))
    if mode in ("pickup", "reserve") and rng.random() < 0.7:
        events.append(Collect(round(at + rng.uniform(1, 60), 2), order_id))
    return events


def _supplies(rng: random.Random, skus: tuple[str, ...], locations: tuple[Location, ...],
              horizon_s: float) -> list[Event]:
    events: list[Event] = []
    for n in range(1, rng.choice((0, 0, 1, 1, 2)) + 1):
        loc, sku = rng.choice(locations).id, rng.choice(skus)
        qty, eta = rng.randint(1, 6), round(rng.uniform(5, horizon_s * 2), 2)
        supply_id = f"ASN-{n}"
        events.append(Supply(0.0, supply_id, loc, sku, qty, eta))
        if rng.random() < 0.8:  # early, on time or late against its ETA
            arrive = round(max(0.5, eta + rng.choice((-20.0, -5.0, 0.0, 5.0, 30.0))), 2)
            short = rng.choice((0, 0, 0, 1, qty))
            damaged = rng.choice((0, 0, 0, 1))
            events.append(Arrive(arrive, supply_id, loc, sku, qty, min(short, qty), damaged))
    return events


def _floor(rng: random.Random, skus: tuple[str, ...], locations: tuple[Location, ...],
           horizon_s: float) -> list[Event]:
    """What happens on the shop floor: short picks, cycle counts, a store closing for a while."""
    events: list[Event] = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        events.append(ShortPick(round(rng.uniform(0, horizon_s), 2), rng.choice(locations).id, rng.choice(skus),
                                rng.randint(1, 3)))
    for n in range(1, rng.choice((0, 0, 1, 2)) + 1):
        events.append(Count(round(rng.uniform(0, horizon_s), 2), f"CC-{n}", rng.choice(locations).id,
                            rng.choice(skus), rng.choice((-3, -2, -1, 1, 2))))
    stores = [loc.id for loc in locations if loc.kind == "store"]
    if stores and rng.random() < 0.15:
        closed_at = round(rng.uniform(0, horizon_s), 2)
        events.append(SetOpen(closed_at, stores[0], False))
        if rng.random() < 0.7:
            events.append(SetOpen(round(closed_at + rng.uniform(1, 30), 2), stores[0], True))
    return events


def _faults(rng: random.Random, locations: list[str], horizon_s: float) -> list[Event]:
    services = ["orchestrator", "inventory", *(f"wms-{loc}" for loc in locations)]
    events: list[Event] = []
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        events.append(Crash(round(rng.uniform(0, horizon_s * 1.5), 2), rng.choice(services),
                            rng.choice((0.2, 1.0, 5.0))))
    if rng.random() < 0.2:
        events.append(Stall(round(rng.uniform(0, horizon_s), 2), rng.choice(services), rng.choice((5.0, 30.0, 90.0))))
    return events


__all__ = [
    "Arrive", "Cancel", "Collect", "Count", "Crash", "Event", "PlaceOrder", "Return", "SetOpen", "ShortPick", "Size",
    "Stall",
    "Supply", "Workload", "generate",
]
