"""The simulated payment provider: a key is paid once, failures first when asked, another amount refused."""

from __future__ import annotations

from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from services.payments.domain.provider import answer


def request(attempt: int = 1, amount: float = 19.9) -> RefundRequested:
    return RefundRequested(refund_id="O-1/R-1/refund", idempotency_key="refund:O-1:R-1", return_id="R-1",
                           order_id="O-1", amount=amount, attempt=attempt)


def test_the_first_n_requests_fail_then_the_key_is_paid_once() -> None:
    record, reply = answer(None, 0, request(), fail_first=1)
    assert isinstance(reply, RefundFailed) and reply.attempt == 1 and record.status == "failed"
    record, reply = answer(record, 1, request(attempt=2), fail_first=1)
    assert isinstance(reply, RefundSucceeded) and not reply.duplicate and record.attempts == 2
    record, again = answer(record, 2, request(attempt=3), fail_first=1)
    assert isinstance(again, RefundSucceeded) and again.duplicate
    assert again.provider_reference == reply.provider_reference


def test_a_paid_key_with_another_amount_is_refused() -> None:
    record, _ = answer(None, 0, request(), fail_first=0)
    _, reply = answer(record, 1, request(amount=30.0), fail_first=0)
    assert isinstance(reply, RefundFailed) and "another amount" in reply.reason
