"""The bench's returns mix and its refund figures (pure parts)."""

from baton.bench.chaos import KillPlan, split_plans
from baton.bench.returns import plan_returns, refund_figures, return_settled
from schemas.orders import OrderLine, OrderPlaced, PickupAt, ShipTo
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded


def orders(count: int) -> list[OrderPlaced]:
    out = []
    for n in range(count):
        delivery = PickupAt(location="ST-1") if n % 10 == 0 else ShipTo(lat=48.0, lon=2.0)
        lines = [OrderLine(sku="TEE", qty=2, unit_price=10.0), OrderLine(sku="MUG", qty=1, unit_price=5.0)]
        out.append(OrderPlaced(order_id=f"B-{n}", channel="web", customer_id="C", lines=lines, delivery=delivery))
    return out


def test_a_share_of_the_shipped_orders_comes_back_in_every_kind() -> None:
    placed = orders(400)
    planned = plan_returns(placed, 0.3, ["ST-1"], seed=8)
    shipped_to_customers = sum(1 for o in placed if isinstance(o.delivery, ShipTo))
    assert 0.2 * shipped_to_customers < len(planned) < 0.4 * shipped_to_customers
    pickups = {o.order_id for o in placed if isinstance(o.delivery, PickupAt)}
    assert not pickups & {p.request.order_id for p in planned}
    assert {p.request.method for p in planned} == {"mail", "in_store"}
    assert {p.request.condition for p in planned} == {"sellable", "damaged", "defective"}
    assert any(p.sent_twice for p in planned) and any(not p.sent_twice for p in planned)
    assert any(p.partial for p in planned) and any(not p.partial for p in planned)
    assert all(p.request.location == "ST-1" for p in planned if p.request.method == "in_store")
    assert plan_returns(placed, 0.3, ["ST-1"], seed=8) == planned


def test_without_a_store_every_return_comes_by_mail() -> None:
    assert {p.request.method for p in plan_returns(orders(100), 0.5, [], seed=1)} == {"mail"}


def test_refund_figures_count_each_key_once() -> None:
    def request(attempt: int) -> RefundRequested:
        return RefundRequested(refund_id="r", idempotency_key="k", return_id="R", order_id="O", amount=12.5,
                               attempt=attempt)

    answers: list[RefundSucceeded | RefundFailed] = [
        RefundFailed(refund_id="r", idempotency_key="k", return_id="R", order_id="O", reason="x"),
        RefundSucceeded(refund_id="r", idempotency_key="k", return_id="R", order_id="O", amount=12.5),
        RefundSucceeded(refund_id="r", idempotency_key="k", return_id="R", order_id="O", amount=12.5,
                        duplicate=True)]
    figures = refund_figures([request(1), request(2), request(3)], answers)
    assert figures == {"refund_requests": 3, "refund_retries": 2, "refund_keys": 1, "refunds_failed": 1,
                       "refunds_paid": 1, "repeated_answers": 1, "refunded_amount": 12.5}


def test_a_return_whose_refund_failed_waits_for_its_retry() -> None:
    assert return_settled({"status": "refunded"}) and return_settled({"status": "rejected"})
    assert return_settled({"status": "received", "refund": None})
    assert not return_settled({"status": "received", "refund": {"status": "failed"}})
    assert not return_settled({"status": "authorized"})


def test_the_payment_adapter_can_be_killed() -> None:
    plan = KillPlan.parse("payments:2")
    assert plan.candidates(["orchestrator", "payments", "wms-WH-1"]) == ["payments"]


def test_with_returns_half_the_kills_land_among_the_refunds_an_odd_one_too() -> None:
    among_orders, among_refunds = split_plans([KillPlan("orchestrator", 2), KillPlan("payments", 1),
                                               KillPlan("wms", 3)])
    assert among_orders == [KillPlan("orchestrator", 1), KillPlan("wms", 1)]
    assert among_refunds == [KillPlan("orchestrator", 1), KillPlan("payments", 1), KillPlan("wms", 2)]
