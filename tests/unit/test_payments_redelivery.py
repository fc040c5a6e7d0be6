"""The payment adapter answers a command delivered twice the same way, under the same id (issue 10, sim seed
30031 with ``--duplicate-internal``): it used to key outcomes by idempotency key only, so a redelivered refund
command that first failed was answered again, with a success, under the same event id. A new attempt (another
command) with the same key is still answered afresh and never pays twice."""

from __future__ import annotations

from typing import Any

from schemas.envelope import Envelope, decode, envelope_for
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from services.payments.app import KEY_STORE, PaymentAdapter
from services.payments.domain.provider import CommandAnswer
from services.runtime.processing import Incoming, Store, TaskContext
from services.runtime.settings import Settings

REQUEST = RefundRequested(refund_id="O-1/R-1/refund", idempotency_key="refund:O-1:R-1", return_id="R-1",
                          order_id="O-1", amount=19.9, attempt=1)


class Adapter:
    """The real adapter over a real in-memory store, one committed batch per command."""

    def __init__(self, fail_first: int) -> None:
        self.service = PaymentAdapter(Settings(), fail_first=fail_first)
        self.keys: Store[Any] = Store(KEY_STORE)
        self.ctx = TaskContext("baton/payments", 0, {KEY_STORE.name: self.keys}, lambda name, loc: f"ns.{name}")

    def deliver(self, command: RefundRequested, command_id: str) -> tuple[Envelope, RefundSucceeded | RefundFailed]:
        envelope = envelope_for(command, source="baton/orchestrator", correlationid="O-1", causationid=None,
                                event_id=command_id)
        self.service.handle(self.ctx, envelope, command, Incoming("ns.payments", 0, 0, None, None, 0))
        self.keys.committed(self.keys.changelog())
        (out,), _ = self.ctx.take()
        answer_envelope, reply = decode(out.value or b"")
        assert isinstance(reply, RefundSucceeded | RefundFailed)
        return answer_envelope, reply


def test_a_command_delivered_twice_gets_the_same_answer_under_the_same_id() -> None:
    adapter = Adapter(fail_first=1)
    first_id, first = adapter.deliver(REQUEST, "cmd-1")
    again_id, again = adapter.deliver(REQUEST, "cmd-1")
    assert isinstance(first, RefundFailed) and again == first and again_id.id == first_id.id


def test_a_new_attempt_with_the_same_key_is_answered_afresh_and_pays_once() -> None:
    adapter = Adapter(fail_first=1)
    adapter.deliver(REQUEST, "cmd-1")
    _, paid = adapter.deliver(REQUEST.model_copy(update={"attempt": 2}), "cmd-2")
    _, repeat = adapter.deliver(REQUEST.model_copy(update={"attempt": 3}), "cmd-3")
    _, redelivered = adapter.deliver(REQUEST.model_copy(update={"attempt": 2}), "cmd-2")
    assert isinstance(paid, RefundSucceeded) and not paid.duplicate
    assert isinstance(repeat, RefundSucceeded) and repeat.duplicate
    assert redelivered == paid


def test_an_answer_round_trips_through_its_stored_form() -> None:
    failed = RefundFailed(refund_id="r", idempotency_key="k", return_id="R", order_id="O", reason="down", attempt=1)
    assert CommandAnswer.model_validate(CommandAnswer.of(failed).model_dump(mode="json")).reply() == failed
