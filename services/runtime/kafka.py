"""Kafka wiring shared by the services: the faust app, raw topics, sending envelopes, dead letters.

Agents read raw bytes and parse them with ``schemas.envelope.decode`` themselves, so a message that
does not parse is dead-lettered with its reason instead of crashing faust's deserializer.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import redis.exceptions
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT, StreamT

from schemas.base import Message
from schemas.envelope import Envelope, InvalidMessage, decode, encode, envelope_for
from schemas.network import DeadLettered
from schemas.topics import DEAD_LETTERS, TopicSpec
from services.runtime.inorder import guard_for
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, spec_named, topic_config

log = get_logger(__name__)
Handler = Callable[[Envelope, Message, EventT], Awaitable[None]]


def _idempotent_producer_settings(self: Any) -> dict[str, Any]:
    """acks=all with the idempotent producer, also outside transactions (faust only does it inside)."""
    return {"acks": "all", "enable_idempotence": True}


faust_aiokafka.Producer._settings_extra = _idempotent_producer_settings  # type: ignore[method-assign]


def create_app(service: str, settings: Settings, *, web_port: int | None = None) -> faust.App:
    (settings.state_dir / service).mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.group(service),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.state_dir / service),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        table_standby_replicas=0,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
    )


def raw_topic(app: faust.App, settings: Settings, spec: TopicSpec, location: str | None = None) -> faust.TopicT:
    return app.topic(
        full_topic_name(settings, spec, location),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions or settings.partitions,
        config=topic_config(spec),
    )


class Sender:
    """Wraps what a core returned in CloudEvents envelopes and sends it on the right topic."""

    def __init__(self, app: faust.App, settings: Settings, source: str) -> None:
        self.app = app
        self.settings = settings
        self.source = source
        self._topics: dict[str, faust.TopicT] = {}

    def topic(self, spec_name: str, location: str | None = None) -> faust.TopicT:
        cache_key = f"{spec_name}|{location}"
        if cache_key not in self._topics:
            self._topics[cache_key] = raw_topic(self.app, self.settings, spec_named(spec_name), location)
        return self._topics[cache_key]

    async def send(self, emits: list[Emit], *, correlationid: str, causationid: str | None) -> None:
        for emit in emits:
            # a message about one order is correlated with that order, even when a batch (a wave, a count)
            # caused it: every event can be traced back to the order it concerns
            order_id = getattr(emit.message, "order_id", None)
            envelope = envelope_for(
                emit.message,
                source=self.source,
                correlationid=order_id if isinstance(order_id, str) and order_id else correlationid,
                causationid=emit.causationid or causationid,
                event_id=emit.event_id,
            )
            topic = self.topic(emit.topic, emit.location)
            await topic.send(key=emit.key.encode(), value=encode(envelope))

    async def dead_letter(self, event: EventT, reason: str) -> None:
        message = event.message
        payload = message.value if isinstance(message.value, bytes) else str(message.value).encode()
        letter = DeadLettered(
            service=self.source,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reason,
            payload=payload.decode("utf-8", errors="replace")[:100_000],
        )
        key = f"{message.topic}/{message.partition}/{message.offset}"
        envelope = envelope_for(
            letter, source=self.source, correlationid=key, causationid=None, event_id=f"dlq:{key}"
        )
        await self.topic(DEAD_LETTERS.name).send(key=key.encode(), value=encode(envelope))
        log.warning("dead_lettered", topic=message.topic, offset=message.offset, reason=reason)


async def consume(stream: StreamT, sender: Sender, handle: Handler) -> None:
    """The loop every agent runs: each message once and in offset order (see ``inorder``), parsed, handled,
    and dead-lettered when it cannot be used; the agent never dies on bad input."""
    guard = guard_for(sender.app, sender.settings.kafka_bootstrap)
    async for event in stream.events():
        tp, offset = event.message.tp, event.message.offset
        verdict, expected = guard.check(tp, offset)
        if verdict == "repeat":
            continue
        if verdict == "hole":
            for missed in await guard.missing(tp, expected, offset):
                await _consume_one(missed, sender, handle)  # type: ignore[arg-type]
            await guard.done(tp, expected, offset - 1)
        await _consume_one(event, sender, handle)


async def _consume_one(event: EventT, sender: Sender, handle: Handler) -> None:
    try:
        envelope, message = decode(event.value)
    except InvalidMessage as exc:
        await sender.dead_letter(event, str(exc))
        return
    try:
        await _handle_with_retry(handle, envelope, message, event)
    except Exception as exc:  # the agent must survive any one bad message
        log.error("handler_failed", error=repr(exc), trace=traceback.format_exc(limit=8))
        await sender.dead_letter(event, f"handler error on {envelope.type}: {exc!r}")


_TRANSIENT = (OSError, asyncio.TimeoutError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


async def _handle_with_retry(handle: Handler, envelope: Envelope, message: Message, event: EventT) -> None:
    """Retry infrastructure hiccups (handlers are idempotent, so a retry is safe); bad data fails at once."""
    for attempt in range(1, 31):
        try:
            await handle(envelope, message, event)
            return
        except _TRANSIENT as exc:
            log.warning("transient_failure", attempt=attempt, error=repr(exc))
            await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
    await handle(envelope, message, event)
