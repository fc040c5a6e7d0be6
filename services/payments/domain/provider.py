"""A simulated payment provider that honours idempotency keys. Pure.

What a real provider (Stripe, Adyen...) promises and what the OMS relies on: a key paid once is never paid
again, whatever the retries; the same key with another amount is refused. The simulation adds one knob for
scenarios: the first ``fail_first`` requests it answers fail (a provider outage), so that retries are exercised.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded

COUNTER_KEY = "answered"
COMMAND_PREFIX = "command:"  # the store key of one command's answer: a command delivered twice gets it again


class KeyRecord(BaseModel):
    """What the provider did with one idempotency key."""

    status: Literal["paid", "failed"]
    amount: float
    attempts: int = 1
    reference: str = ""


class CommandAnswer(BaseModel):
    """The answer given to one command (by command id), replayed as it was when the command comes again."""

    succeeded: RefundSucceeded | None = None
    failed: RefundFailed | None = None

    @classmethod
    def of(cls, reply: RefundSucceeded | RefundFailed) -> CommandAnswer:
        return cls(succeeded=reply) if isinstance(reply, RefundSucceeded) else cls(failed=reply)

    def reply(self) -> RefundSucceeded | RefundFailed:
        reply = self.succeeded or self.failed
        assert reply is not None, "an answer holds a success or a failure"
        return reply


def command_key(command_id: str) -> str:
    return f"{COMMAND_PREFIX}{command_id}"


def answer(
    record: KeyRecord | None, answered: int, request: RefundRequested, fail_first: int
) -> tuple[KeyRecord, RefundSucceeded | RefundFailed]:
    """The provider's answer to one request and its record of the key (``answered``: requests answered before)."""
    if record is not None and record.status == "paid":
        if abs(record.amount - request.amount) > 0.005:
            return record, _failed(request, f"key {request.idempotency_key} was paid with another amount")
        return record, _succeeded(request, record, duplicate=True)
    attempts = (record.attempts + 1) if record is not None else 1
    if answered < fail_first:
        failed = KeyRecord(status="failed", amount=request.amount, attempts=attempts)
        return failed, _failed(request, f"simulated provider failure ({answered + 1} of {fail_first})")
    paid = KeyRecord(status="paid", amount=request.amount, attempts=attempts,
                     reference=f"sim-{request.idempotency_key}")
    return paid, _succeeded(request, paid, duplicate=False)


def _succeeded(request: RefundRequested, record: KeyRecord, *, duplicate: bool) -> RefundSucceeded:
    return RefundSucceeded(refund_id=request.refund_id, idempotency_key=request.idempotency_key,
                           return_id=request.return_id, order_id=request.order_id, amount=record.amount,
                           currency=request.currency, provider_reference=record.reference, duplicate=duplicate)


def _failed(request: RefundRequested, reason: str) -> RefundFailed:
    return RefundFailed(refund_id=request.refund_id, idempotency_key=request.idempotency_key,
                        return_id=request.return_id, order_id=request.order_id, reason=reason,
                        attempt=request.attempt)
