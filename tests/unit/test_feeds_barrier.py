"""The scenario runner's wait for the services' views: what counts as a view holding what was written."""

from __future__ import annotations

from baton.feeds import view_holds

ENDS = {("ns.inventory.availability.v1", 0): 0, ("ns.inventory.availability.v1", 1): 4, ("ns.network.v1", 0): 2}


def test_a_view_read_to_every_end_holds() -> None:
    report = {"ns.inventory.availability.v1": {"0": 0, "1": 4}, "ns.network.v1": {"0": 2}}
    assert view_holds(report, ENDS)


def test_a_partition_one_record_short_does_not_hold() -> None:
    report = {"ns.inventory.availability.v1": {"0": 0, "1": 3}, "ns.network.v1": {"0": 2}}
    assert not view_holds(report, ENDS)


def test_a_partition_not_read_yet_counts_as_offset_zero() -> None:
    assert not view_holds({"ns.inventory.availability.v1": {"0": 0}, "ns.network.v1": {"0": 2}}, ENDS)
    assert view_holds({"ns.inventory.availability.v1": {"1": 4}}, ENDS)  # partition 0 is empty: nothing to wait for


def test_topics_a_service_does_not_follow_are_not_waited_for() -> None:
    assert view_holds({"ns.network.v1": {"0": 2}}, ENDS)
    assert view_holds({}, ENDS)
