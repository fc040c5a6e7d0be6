"""The restart bench's arithmetic: times from the kill, the first new order allocated, what a restore read."""

from __future__ import annotations

from baton.bench.restart import ChangelogSize, RestartFigure, changelog_topics_of, first_allocated_after, shipped_to
from schemas.orders import OrderLine, OrderPlaced, PickupAt, ShipTo


def test_first_allocated_after_takes_the_earliest_allocation_of_orders_placed_since_the_kill() -> None:
    placed = {"R-1": 100.5, "R-2": 100.7, "B-9": 99.0}
    allocated = {"R-1": 104.0, "R-2": 103.2, "B-9": 100.1}

    assert first_allocated_after(allocated, placed, killed_at=100.0) == 103.2


def test_first_allocated_after_is_none_until_one_of_them_is_allocated() -> None:
    assert first_allocated_after({"B-9": 100.1}, {"R-1": 100.5}, killed_at=100.0) is None


def test_restart_figure_counts_seconds_from_the_kill_and_sums_what_the_restore_read() -> None:
    figure = RestartFigure("orchestrator", killed_at=1000.0, back_at=1004.25, first_allocated_at=1006.5,
                           changelogs=[ChangelogSize("a", 10, 1_000), ChangelogSize("b", 5, 250)])

    row = figure.as_json()

    assert (row["back_s"], row["first_allocated_s"]) == (4.25, 6.5)
    assert row["restore_read"]["records"] == 15
    assert row["restore_read"]["bytes"] == 1_250
    assert row["within_target"] is True


def test_a_restart_not_back_or_slower_than_the_target_is_not_within_it() -> None:
    assert not RestartFigure("inventory", 0.0, None, 3.0).within(10.0)
    assert not RestartFigure("inventory", 0.0, 3.0, 10.5).within(10.0)
    assert RestartFigure("inventory", 0.0, 3.0, 10.0).within(10.0)


def test_changelog_topics_of_each_kind_of_process() -> None:
    topics = ["ns.orchestrator-orders-changelog", "ns.orchestrator-capacity-changelog", "ns.orders.inbound.v1",
              "ns.wms-WH-PAR-entities-changelog", "ns.wms-WH-PARIS-entities-changelog", "other.inventory-x-changelog",
              "ns.inventory-ledgers-changelog", "ns.inventory-holds-changelog"]

    assert changelog_topics_of("orchestrator", topics, "ns") == ["ns.orchestrator-capacity-changelog",
                                                                 "ns.orchestrator-orders-changelog"]
    assert changelog_topics_of("inventory", topics, "ns") == ["ns.inventory-holds-changelog",
                                                              "ns.inventory-ledgers-changelog"]
    assert changelog_topics_of("wms-WH-PAR", topics, "ns") == ["ns.wms-WH-PAR-entities-changelog"]


def test_a_wms_nodes_trickle_is_shipped_to_its_door() -> None:
    order = OrderPlaced(order_id="R-1", channel="web", customer_id="C-1",
                        lines=[OrderLine(sku="TEE-M", qty=1, unit_price=10.0)], delivery=PickupAt(location="ST-PAR"))

    (aimed,) = shipped_to([order], 50.63, 3.06)

    assert aimed.delivery == ShipTo(lat=50.63, lon=3.06)
    assert (aimed.order_id, aimed.lines) == (order.order_id, order.lines)
