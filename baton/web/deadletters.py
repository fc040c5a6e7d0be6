"""The dead-letter topic for people: each letter with its reason, and the re-publish of a corrected message.

A re-publish is the console's only write to Kafka: the corrected payload goes back to the letter's topic (keyed as
the original was, by its subject), and an audit record (who, why, when, which letter, what was sent) is appended to
``{ns}:audit:republished`` in Redis and logged, so an audit sees every one.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from schemas.envelope import InvalidMessage, decode
from schemas.network import DeadLettered
from schemas.topics import DEAD_LETTERS
from services.runtime.logs import get_logger
from services.runtime.readmodel import ReadModel
from services.runtime.replay import read_topic
from services.runtime.settings import Settings

log = get_logger(__name__)


class DeadLetterDesk:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.read_model = ReadModel(settings.redis_url, settings.namespace)
        self.producer: AIOKafkaProducer | None = None

    def audit_key(self) -> str:
        return f"{self.settings.namespace}:audit:republished"

    async def read(self) -> list[dict[str, Any]]:
        letters = []
        for envelope, _raw in await read_topic(self.settings, self.settings.topic(DEAD_LETTERS.name)):
            if envelope is None or envelope.type != DeadLettered.event_type:
                continue
            letter = DeadLettered.model_validate(envelope.data)
            letters.append({"key": f"{letter.topic}/{letter.partition}/{letter.offset}", "time": envelope.time,
                            **letter.model_dump(mode="json")})
        return letters

    async def audit_trail(self) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in await self.read_model.redis.lrange(self.audit_key(), 0, -1)]

    async def republish(self, key: str, payload: str, by: str, why: str) -> dict[str, Any]:
        """Send the corrected ``payload`` of the letter ``key`` to the letter's topic; the audit record."""
        if not by or not why:
            raise ValueError("say who re-publishes and why: the audit keeps both")
        letter = next((each for each in await self.read() if each["key"] == key), None)
        if letter is None:
            raise ValueError(f"no dead letter {key!r}")
        try:
            envelope, message = decode(payload.encode())
        except InvalidMessage as exc:
            raise ValueError(f"the corrected message does not parse: {exc}") from exc
        producer = await self.started_producer()
        sent = await producer.send_and_wait(letter["topic"], payload.encode(), key=message.subject().encode())
        record = {"letter": key, "topic": letter["topic"], "offset": sent.offset, "event_id": envelope.id,
                  "type": envelope.type, "by": by, "why": why, "at": time.time()}
        await self.read_model.redis.rpush(self.audit_key(), orjson.dumps(record))
        log.info("dead_letter_republished", **record)
        return record

    async def started_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = AIOKafkaProducer(**self.settings.kafka_client_options(), acks="all",
                                             enable_idempotence=True)
            await self.producer.start()
        return self.producer

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        await self.read_model.close()
