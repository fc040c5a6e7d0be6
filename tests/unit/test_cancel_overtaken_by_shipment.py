"""A cancel racing the ship confirmation (issue 10, sim seed 1382): the parcel already on its way leaves anyway.

What shipped is shipped: the order ends shipped (the cancellation stands only for what did not ship), its public
status says why, and no ``OrderCancelled`` follows the ``OrderShipped``."""

from __future__ import annotations

from schemas.orders import OrderCancelled, OrderCancelRequested, OrderShipped, OrderStatusChanged
from tests.unit.test_order_saga import Run, accepted, allocate, of, placed, shipped


def test_a_parcel_that_left_before_the_cancel_reached_the_warehouse_makes_the_order_shipped() -> None:
    run = Run({"X": {"WH-A": 5}})
    fulfil = allocate(run, placed(X=2))
    run.send(accepted(fulfil[0]))
    assert of(run.send(OrderCancelRequested(order_id="O-1")), OrderCancelled)
    emits = run.send(shipped(fulfil[0]))
    assert of(emits, OrderShipped) and not of(emits, OrderCancelled)
    (status,) = of(emits, OrderStatusChanged)
    assert isinstance(status, OrderStatusChanged)
    assert (status.previous, status.status) == ("cancelled", "shipped")
    assert status.reason and "parcel had already left" in status.reason
    assert run.st.status == "shipped" and run.lines() == [("X", 2, 2, 0, 0)]
    assert any("cancel refused" in str(h.get("note", "")) for h in run.st.history)


def test_one_leg_shipped_after_the_cancel_the_other_stays_cancelled_and_the_order_is_settled() -> None:
    run = Run({"X": {"WH-A": 5}, "Y": {"WH-B": 5}})
    fulfil = allocate(run, placed(X=1, Y=3))
    run.send(accepted(fulfil[0]))
    run.send(accepted(fulfil[1]))
    run.send(OrderCancelRequested(order_id="O-1"))
    run.send(shipped(fulfil[0]))
    assert run.st.status == "shipped"
    assert run.lines() == [("X", 1, 1, 0, 0), ("Y", 3, 0, 3, 0)]


def test_a_cancel_after_the_overturning_shipment_is_refused() -> None:
    run = Run({"X": {"WH-A": 5}})
    fulfil = allocate(run, placed(X=1))
    run.send(accepted(fulfil[0]))
    run.send(OrderCancelRequested(order_id="O-1"))
    run.send(shipped(fulfil[0]))
    assert not of(run.send(OrderCancelRequested(order_id="O-1")), OrderCancelled)
    assert run.st.status == "shipped"
