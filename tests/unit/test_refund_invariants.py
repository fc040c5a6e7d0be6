"""The refund invariants: within what was paid, one idempotency key per return, each key paid once."""

from baton.invariants import Expected, Facts, check_invariants, paid_per_order
from schemas.orders import OrderLine, OrderPlaced, ShipTo
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded


def request(key: str = "refund:O-1:R-1", amount: float = 19.9, attempt: int = 1) -> RefundRequested:
    return RefundRequested(refund_id="O-1/R-1/refund", idempotency_key=key, return_id="R-1", order_id="O-1",
                           amount=amount, attempt=attempt)


def success(key: str = "refund:O-1:R-1", amount: float = 19.9, duplicate: bool = False) -> RefundSucceeded:
    return RefundSucceeded(refund_id="O-1/R-1/refund", idempotency_key=key, return_id="R-1", order_id="O-1",
                           amount=amount, duplicate=duplicate)


def failure(key: str = "refund:O-1:R-1") -> RefundFailed:
    return RefundFailed(refund_id="O-1/R-1/refund", idempotency_key=key, return_id="R-1", order_id="O-1",
                        reason="simulated", attempt=1)


def broken(requests: list[RefundRequested], answers: list[RefundSucceeded | RefundFailed],
           paid: float = 39.8) -> dict[str, tuple[str, ...]]:
    facts = Facts({"O-1": {"status": "shipped", "lines": [], "shipments": []}}, {}, paid={"O-1": paid},
                  refund_requests=requests, refund_answers=answers)
    report = check_invariants(facts, Expected(order_ids=("O-1",)))
    return {c.name: c.violations for c in report.checks if not c.held}


def test_a_retry_with_the_same_key_then_a_repeated_answer_holds() -> None:
    answers: list[RefundSucceeded | RefundFailed] = [failure(), success(), success(duplicate=True)]
    assert broken([request(), request(attempt=2), request(attempt=3)], answers) == {}


def test_a_retry_under_a_new_key_is_a_violation() -> None:
    found = broken([request(), request(key="refund:O-1:R-1:retry", attempt=2)], [failure(), success()])
    assert list(found) == ["refund_one_key"] and "2 keys" in found["refund_one_key"][0]


def test_a_key_paid_out_twice_is_a_violation() -> None:
    found = broken([request(), request(attempt=2)], [success(), success()])
    assert "paid out 2 times" in found["refund_one_key"][0]


def test_a_key_asked_at_two_amounts_is_a_violation() -> None:
    assert "refund_one_key" in broken([request(), request(amount=9.9, attempt=2)], [success()])


def test_refunds_beyond_what_was_paid_are_a_violation() -> None:
    found = broken([request(amount=30.0)], [success(amount=30.0)], paid=20.0)
    assert "refunds_within_paid" in found


def test_without_payment_facts_the_checks_hold() -> None:
    report = check_invariants(Facts({}, {}), Expected(order_ids=()))
    assert report.ok


def test_what_was_paid_counts_shipping_and_not_an_exchange() -> None:
    lines = [OrderLine(sku="TEE", qty=2, unit_price=10.0)]
    placed = [OrderPlaced(order_id="O-1", channel="web", customer_id="C", lines=lines, delivery=ShipTo(lat=0, lon=0),
                          shipping_price=4.5),
              OrderPlaced(order_id="X-1", channel="web", customer_id="C", lines=lines, delivery=ShipTo(lat=0, lon=0),
                          exchange_for="R-1")]
    assert paid_per_order(placed) == {"O-1": 24.5, "X-1": 0.0}
