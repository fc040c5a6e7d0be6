"""What a domain core asks its adapter to send, and the record that makes re-delivery replay it.

Pure: no Kafka client here. A core returns ``Emit`` values; the agent wraps each in a CloudEvents
envelope and sends it. Because a crash can lose sends whose state change was already written, each core
remembers the emits of the last messages it applied (in the same table value, hence the same changelog
write) and returns them again when the same message is delivered twice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas.base import Message
from schemas.registry import model_for
from schemas.topics import TopicSpec


class Emit(BaseModel):
    """One message to send: to which topic (by catalog name), with which key and deterministic id."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    topic: str
    key: str
    message: Message
    event_id: str
    location: str | None = None
    causationid: str | None = None  # when not the message being handled (a wave released by a timer: the request)

    @classmethod
    def to(cls, topic: TopicSpec, key: str, message: Message, event_id: str, location: str | None = None,
           causationid: str | None = None) -> Emit:
        return cls(topic=topic.name, key=key, message=message, event_id=event_id, location=location,
                   causationid=causationid)

    def stored(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "key": self.key,
            "type": self.message.event_type,
            "data": self.message.model_dump(mode="json"),
            "event_id": self.event_id,
            "location": self.location,
            **({"causationid": self.causationid} if self.causationid else {}),
        }

    @classmethod
    def restored(cls, stored: dict[str, Any]) -> Emit:
        model = model_for(stored["type"])
        if model is None:
            raise ValueError(f"unknown stored message type {stored['type']!r}")
        return cls(
            topic=stored["topic"],
            key=stored["key"],
            message=model.model_validate(stored["data"]),
            event_id=stored["event_id"],
            location=stored.get("location"),
            causationid=stored.get("causationid"),
        )


class AppliedLog(BaseModel):
    """Ids of applied messages, with the emits of the most recent ones, bounded in size."""

    ids: list[str] = []
    emits: dict[str, list[dict[str, Any]]] = {}
    keep_ids: int = 2000
    keep_emits: int = 16

    def seen(self, message_id: str) -> bool:
        return message_id in self.ids

    def remembers_emits(self, message_id: str) -> bool:
        return message_id in self.emits

    def replay(self, message_id: str) -> list[Emit]:
        return [Emit.restored(e) for e in self.emits.get(message_id, [])]

    def record(self, message_id: str, emits: list[Emit]) -> None:
        self.ids.append(message_id)
        if len(self.ids) > self.keep_ids:
            del self.ids[: len(self.ids) - self.keep_ids]
        self.emits[message_id] = [e.stored() for e in emits]
        while len(self.emits) > self.keep_emits:
            del self.emits[next(iter(self.emits))]
