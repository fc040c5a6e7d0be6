"""Publishing from outside the services, exactly as an outside producer would (scenario runner, CLI)."""

from __future__ import annotations

import uuid
from types import TracebackType

from aiokafka import AIOKafkaProducer

from schemas.base import Message
from schemas.envelope import encode, envelope_for
from schemas.topics import TopicSpec
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, spec_named


class Publisher:
    """An idempotent producer (acks=all) sending CloudEvents envelopes."""

    def __init__(self, settings: Settings, source: str = "baton/cli") -> None:
        self.settings = settings
        self.source = source
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object | type[BaseException] | TracebackType | None) -> None:
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
        return event_id

    async def publish_raw(self, spec: TopicSpec, key: str | None, value: bytes) -> None:
        """Send bytes as they are (to test how services treat garbage)."""
        topic = full_topic_name(self.settings, spec)
        await self.producer.send_and_wait(topic, key=key.encode() if key else None, value=value)

    async def flush(self) -> None:
        await self.producer.flush()
