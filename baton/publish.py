"""Publishing from outside the services, exactly as an outside producer would (scenario runner, CLI)."""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType

from aiokafka import AIOKafkaProducer

from schemas.base import Message
from schemas.envelope import encode, envelope_for
from schemas.topics import TopicSpec
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, spec_named


class Publisher:
    """An idempotent producer (acks=all) sending CloudEvents envelopes.

    A message is sent once Kafka confirmed it: ``publish(wait=True)`` waits for that message, ``flush()`` (and
    leaving the ``async with``) for every message published before, and raises when one was not delivered, so
    a failed delivery never passes unnoticed (a scenario's network, say, on a broker that had just started).
    """

    def __init__(self, settings: Settings, source: str = "baton/cli") -> None:
        self.settings = settings
        self.source = source
        self.producer = AIOKafkaProducer(
            **settings.kafka_client_options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        self.pending: list[asyncio.Future[object]] = []

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object | type[BaseException] | TracebackType | None) -> None:
        try:
            if exc[0] is None:
                await self.flush()
        finally:
            await self.producer.stop()

    async def publish(
        self,
        spec: TopicSpec | str,
        key: str,
        message: Message,
        *,
        location: str | None = None,
        correlationid: str | None = None,
        event_id: str | None = None,
        wait: bool = False,
    ) -> str:
        spec = spec_named(spec) if isinstance(spec, str) else spec
        event_id = event_id or str(uuid.uuid4())
        envelope = envelope_for(
            message, source=self.source, correlationid=correlationid or key, causationid=None, event_id=event_id
        )
        topic = full_topic_name(self.settings, spec, location)
        future = await self.producer.send(topic, key=key.encode(), value=encode(envelope))
        if wait:
            await future
        else:
            self.pending.append(future)
        return event_id

    async def publish_raw(self, spec: TopicSpec, key: str | None, value: bytes) -> None:
        """Send bytes as they are (to test how services treat garbage)."""
        topic = full_topic_name(self.settings, spec)
        await self.producer.send_and_wait(topic, key=key.encode() if key else None, value=value)

    async def flush(self) -> None:
        """Wait until every message published so far was delivered; raise if one was not."""
        pending, self.pending = self.pending, []
        await self.producer.flush()
        await asyncio.gather(*pending)
