"""Payments: refund commands from the OMS to a payment adapter, and the adapter's answers.

The OMS never moves money. It asks for a refund with an idempotency key derived from the return (never minted
anew), and retries a failure with the same key, so a provider that honours the key can never pay twice.
"""

from __future__ import annotations

from pydantic import Field

from schemas.base import Command, EntityId, Message, Money


class RefundRequested(Command):
    event_type = "payments.refund_requested.v1"
    summary = "Refund an amount of an order's payment for a received return (idempotent by its key)."

    refund_id: EntityId
    idempotency_key: EntityId = Field(description="Derived from the return; the same on every retry.")
    return_id: EntityId
    order_id: EntityId
    amount: Money
    currency: str = "EUR"
    attempt: int = Field(default=1, ge=1, description="1 for the first request, then one more per retry.")

    def subject(self) -> str:
        return self.order_id


class RefundSucceeded(Message):
    event_type = "payments.refund_succeeded.v1"
    summary = "The payment provider paid the refund out (once per idempotency key)."

    refund_id: EntityId
    idempotency_key: EntityId
    return_id: EntityId
    order_id: EntityId
    amount: Money
    currency: str = "EUR"
    provider_reference: str = ""
    duplicate: bool = Field(
        default=False, description="The key was paid before: this answer repeats it, no money moved again."
    )

    def subject(self) -> str:
        return self.order_id


class RefundFailed(Message):
    event_type = "payments.refund_failed.v1"
    summary = "The payment provider could not pay the refund (this attempt); the OMS retries with the same key."

    refund_id: EntityId
    idempotency_key: EntityId
    return_id: EntityId
    order_id: EntityId
    reason: str
    attempt: int = Field(default=1, ge=1)

    def subject(self) -> str:
        return self.order_id
