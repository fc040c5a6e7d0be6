"""The brief's invariants, checked on what a run produced (orders, shipments, final stock)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from baton.scenario.model import Scenario
from schemas.orders import TERMINAL_STATUSES

# (location, sku) -> net change of on hand by movements other than shipments (received, adjusted, restocked)
OtherMovements = dict[tuple[str, str], int]


def check_invariants(
    scenario: Scenario, orders: dict[str, Any], stock: dict[str, Any], movements: OtherMovements | None = None
) -> list[str]:
    return [
        *_no_oversell(stock),
        *_conservation(scenario, orders, stock, movements or {}),
        *_lines_accounted(orders),
        *_reservations_ended(orders, stock),
    ]


def _no_oversell(stock: dict[str, Any]) -> list[str]:
    out = []
    for location, skus in stock.items():
        for sku, pos in skus.items():
            if pos["on_hand"] < 0:
                out.append(f"no oversell: {sku}@{location} on hand {pos['on_hand']} < 0")
            if pos["reserved"] > max(0, pos["on_hand"] - pos.get("safety_stock", 0)):
                out.append(f"no oversell: {sku}@{location} reserved {pos['reserved']} > on hand - safety")
    return out


def _conservation(
    scenario: Scenario, orders: dict[str, Any], stock: dict[str, Any], movements: OtherMovements
) -> list[str]:
    """on hand = initial + received - shipped (as the orders' shipments say) + restocked +- adjustments."""
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for row in scenario.stock:
        expected[(row.location, row.sku)] += row.qty
    for key, delta in movements.items():
        expected[key] += delta
    for order in orders.values():
        for shipment in order.get("shipments", []):
            for line in shipment["lines"]:
                expected[(shipment["location"], line["sku"])] -= line["qty"]
    for location, skus in stock.items():
        for sku in skus:
            expected.setdefault((location, sku), 0)
    out = []
    for (location, sku), qty in sorted(expected.items()):
        actual = stock.get(location, {}).get(sku, {}).get("on_hand", 0)
        if actual != qty:
            out.append(f"conservation: {sku}@{location} on hand {actual}, expected {qty} "
                       "(initial + received - shipped +- adjustments)")
    return out


def _lines_accounted(orders: dict[str, Any]) -> list[str]:
    out = []
    for order_id, order in orders.items():
        for line in order.get("lines", []):
            if line["ordered"] != line["shipped"] + line["cancelled"] + line["open"]:
                out.append(f"line accounting: {order_id} {line['sku']} {line}")
    return out


def _reservations_ended(orders: dict[str, Any], stock: dict[str, Any]) -> list[str]:
    if any(o.get("status") not in TERMINAL_STATUSES for o in orders.values()):
        return []
    return [
        f"reservations: {sku}@{location} still reserves {pos['reserved']} with every order settled"
        for location, skus in stock.items()
        for sku, pos in skus.items()
        if pos["reserved"]
    ]
