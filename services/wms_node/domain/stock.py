"""Stock per bin: put-away rules, where a pick takes units from, and what picks, counts and put-aways change.

Put-away: a SKU has a fixed home bin; units go there while it has room, then to the SKU's other bins, then to
the nearest free bins of the home's zone, then of the other storage zone, and last to ``OVERFLOW``. A SKU with
no home yet gets the nearest free bin of the right zone as its home. Damaged units go to quarantine.
Picks take from the home bin first, then the SKU's other bins nearest first, counting units already allocated
to open picks; what no bin holds is still asked at the home bin (the picker will report it short).
"""

from __future__ import annotations

from itertools import chain

from services.wms_node.domain.layout import OVERFLOW, STORAGE_ZONES, Layout, Zone
from services.wms_node.domain.model import BinMap, SkuStock

Plan = list[tuple[str, int]]


def _room(stock: SkuStock, bin_id: str, layout: Layout) -> int:
    if bin_id == OVERFLOW:
        return 10**9
    return layout.bin(bin_id).capacity - stock.bins.get(bin_id, 0) - stock.incoming.get(bin_id, 0)


def nearest_free(owners: BinMap, layout: Layout, zone: Zone) -> str | None:
    zones = [zone, *(z for z in STORAGE_ZONES if z != zone)]
    for z in zones:
        for b in layout.zone_bins(z):
            if b.id not in owners.owner:
                return b.id
    return None


def assign_home(stock: SkuStock, owners: BinMap, layout: Layout, zone: Zone = "bulk") -> str:
    if stock.home is None:
        stock.home = nearest_free(owners, layout, zone) or OVERFLOW
        if stock.home != OVERFLOW:
            owners.owner[stock.home] = stock.sku
    return stock.home


def plan_put_away(stock: SkuStock, qty: int, owners: BinMap, layout: Layout, zone: Zone = "bulk") -> Plan:
    """Where ``qty`` good units of a SKU go. Claims the new bins it uses (in ``owners``), not the units."""
    home = assign_home(stock, owners, layout, zone)
    plan: Plan = []
    left = qty
    own = [home, *sorted((b for b in stock.bins if b not in (home, OVERFLOW)), key=layout.distance)]
    for bin_id in own:
        take = min(left, max(0, _room(stock, bin_id, layout)))
        if take:
            plan.append((bin_id, take))
            left -= take
        if not left:
            return plan
    home_zone = layout.bin(home).zone if home != OVERFLOW else zone
    while left:
        free = nearest_free(owners, layout, home_zone if home_zone in STORAGE_ZONES else zone)
        if free is None:
            plan.append((OVERFLOW, left))
            break
        owners.owner[free] = stock.sku
        take = min(left, layout.bin(free).capacity)
        plan.append((free, take))
        left -= take
    return plan


def plan_quarantine(layout: Layout) -> str:
    return layout.zone_bins("quarantine")[0].id


def expect_incoming(stock: SkuStock, plan: Plan) -> None:
    for bin_id, qty in plan:
        stock.incoming[bin_id] = stock.incoming.get(bin_id, 0) + qty


def put_away_done(stock: SkuStock, bin_id: str, qty: int) -> None:
    """Planned units were put into the bin."""
    stock.bins[bin_id] = stock.bins.get(bin_id, 0) + qty
    _drop(stock.incoming, bin_id, qty)


def place(stock: SkuStock, plan: Plan) -> None:
    for bin_id, qty in plan:
        stock.bins[bin_id] = stock.bins.get(bin_id, 0) + qty


def allocate_pick(stock: SkuStock, qty: int, owners: BinMap, layout: Layout) -> Plan:
    """Which bins a pick of ``qty`` units takes from (and allocate them there)."""
    home = assign_home(stock, owners, layout)
    plan: Plan = []
    left = qty
    for bin_id in chain([home], (b for b in stock.bins_by_distance(layout) if b != home)):
        take = min(left, max(0, stock.free_in(bin_id)))
        if take:
            plan.append((bin_id, take))
            left -= take
        if not left:
            break
    if left:
        merged = dict(plan)
        merged[home] = merged.get(home, 0) + left
        plan = list(merged.items())
    for bin_id, take in plan:
        stock.allocated[bin_id] = stock.allocated.get(bin_id, 0) + take
    return plan


def release_allocation(stock: SkuStock, bin_id: str, qty: int) -> None:
    _drop(stock.allocated, bin_id, qty)


def picked_from(stock: SkuStock, bin_id: str, asked: int, owners: BinMap) -> None:
    """A pick at ``bin_id`` for ``asked`` units is done: they left the bin's books, found or reported short."""
    release_allocation(stock, bin_id, asked)
    stock.bins[bin_id] = max(0, stock.bins.get(bin_id, 0) - asked)
    tidy(stock, bin_id, owners)


def counted(stock: SkuStock, bin_id: str, qty: int, owners: BinMap) -> int:
    """A count found ``qty`` in the bin: returns the difference to the books."""
    delta = qty - stock.bins.get(bin_id, 0)
    stock.bins[bin_id] = qty
    if qty and bin_id not in owners.owner and bin_id != OVERFLOW:
        owners.owner[bin_id] = stock.sku
    tidy(stock, bin_id, owners)
    return delta


def tidy(stock: SkuStock, bin_id: str, owners: BinMap) -> None:
    """An empty bin that is not the home and has nothing coming or allocated is free again."""
    if stock.bins.get(bin_id, 0) == 0:
        stock.bins.pop(bin_id, None)
        busy = stock.allocated.get(bin_id, 0) or stock.incoming.get(bin_id, 0)
        if bin_id != stock.home and not busy and owners.owner.get(bin_id) == stock.sku:
            del owners.owner[bin_id]


def _drop(counter: dict[str, int], key: str, qty: int) -> None:
    left = counter.get(key, 0) - qty
    if left > 0:
        counter[key] = left
    else:
        counter.pop(key, None)
