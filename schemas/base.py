"""Base classes of the contract: every message is a frozen pydantic model with a CloudEvents type."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
LocationId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Quantity = Annotated[int, Field(ge=0, le=1_000_000)]
PositiveQuantity = Annotated[int, Field(gt=0, le=1_000_000)]
# no NaN or infinity: JSON cannot carry them, but "Infinity", "NaN" or 1e400 would otherwise parse as floats
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]

Channel = Literal["web", "marketplace", "b2b", "store", "call_centre"]
Capability = Literal["ship", "pickup", "reserve", "returns"]
LocationKind = Literal["warehouse", "store"]


class Frozen(BaseModel):
    """A value object: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Frozen):
    """An event (past tense) or a command (imperative) carried as CloudEvents ``data``.

    ``event_type`` is the CloudEvents ``type``; ``message_kind`` says whether the message states a fact or asks
    for an action, so the AsyncAPI document and the dead-letter reasons can say which.
    """

    event_type: ClassVar[str]
    message_kind: ClassVar[Literal["event", "command"]] = "event"
    summary: ClassVar[str] = ""
    # fields telling when something already happened (placed, asked): never far ahead of the record's own time
    happened_at_fields: ClassVar[tuple[str, ...]] = ()

    def subject(self) -> str:
        """The CloudEvents ``subject``: the aggregate this message is about."""
        return ""


class Command(Message):
    message_kind: ClassVar[Literal["event", "command"]] = "command"
