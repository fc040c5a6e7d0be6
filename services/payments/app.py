"""The simulated payment adapter on the processing engine: refund requests in, the provider's answers out.

Input is ``payments.commands.v1`` (one partition, so the "first N requests fail" rule is exact); its one task
keeps every idempotency key's outcome, the count of requests answered and each command's answer (a command
delivered twice is answered the same, under the same id) in its ``keys`` store, committed with
the answers and the consumed offsets in one transaction: a crash neither pays a key twice nor forgets a failure.
A real adapter would call the provider here with the same key; the provider's own idempotency would then be
the line that holds across an adapter crash between its call and the commit.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.base import Message
from schemas.envelope import Envelope, derived_id
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from schemas.topics import PAYMENTS_COMMANDS, PAYMENTS_EVENTS
from services.payments.domain.provider import COUNTER_KEY, CommandAnswer, KeyRecord, answer, command_key
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.processing import Incoming, Store, StoreSpec, StreamService, TaskContext
from services.runtime.settings import Settings

SERVICE = "payments"
KEYS = "keys"
log = get_logger(__name__)

KEY_STORE: StoreSpec[Any] = StoreSpec(KEYS, orjson.dumps, orjson.loads)


class PaymentAdapter(StreamService):
    name = SERVICE
    source = f"baton/{SERVICE}"
    stores = (KEY_STORE,)

    def __init__(self, settings: Settings, fail_first: int = 0) -> None:
        self.settings = settings
        self.fail_first = fail_first

    def inputs(self) -> list[str]:
        return [self.settings.topic(PAYMENTS_COMMANDS.resolve())]

    def handle(self, ctx: TaskContext, envelope: Envelope, message: Message, record: Incoming) -> None:
        if not isinstance(message, RefundRequested):
            return
        keys: Store[Any] = ctx.store(KEYS)
        given = keys.get(command_key(envelope.id))
        if given is not None:
            # the same command again (a redelivery): the same answer under the same id, nothing paid or counted
            self.reply(ctx, envelope, message, CommandAnswer.model_validate(given).reply())
            return
        known = keys.get(message.idempotency_key)
        answered = int(keys.get(COUNTER_KEY) or 0)
        outcome, reply = answer(KeyRecord.model_validate(known) if known else None, answered, message,
                                self.fail_first)
        keys.put(message.idempotency_key, outcome.model_dump())
        keys.put(COUNTER_KEY, answered + 1)
        keys.put(command_key(envelope.id), CommandAnswer.of(reply).model_dump(mode="json"))
        self.reply(ctx, envelope, message, reply)
        log.info("refund_answered", key=message.idempotency_key, outcome=type(reply).__name__,
                 amount=message.amount, attempt=message.attempt)

    def reply(self, ctx: TaskContext, envelope: Envelope, message: RefundRequested,
              reply: RefundSucceeded | RefundFailed) -> None:
        emit = Emit.to(PAYMENTS_EVENTS, message.order_id, reply, derived_id(envelope.id, "answer"))
        ctx.send([emit], correlationid=envelope.correlationid or message.order_id, causationid=envelope.id)

def build(settings: Settings, fail_first: int = 0) -> PaymentAdapter:
    return PaymentAdapter(settings, fail_first)
