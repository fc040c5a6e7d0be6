"""The node's state, one entity per table key, and the unit of work a handler reads and changes them through.

Entities:
  ``site``            the location: layout, wave rules, accepted-per-day, the wave buffer, live claims
  ``journal``         the applied log of the messages about the whole location (ticks, count requests)
  ``bins``            which SKU owns which bin (one SKU per bin)
  ``sku:{sku}``       a SKU's stock per bin, units allocated to open picks, its home bin, its demand
  ``order:{id}``      the fulfilment requests of one order at this location
  ``task:{id}``       one task: its lines, who holds it, whether it is done
  ``supply:{id}``     one delivery being received
  ``return:{id}``     one customer return being received, inspected and put back or quarantined

A message's *primary* entity (the order of a request, the task of a claim or confirmation, the delivery of a
SupplyArrived, the return of a ReceiveReturn, the journal for timer ticks and counts) records the message id, so
a message delivered twice acts once. What a message sent is not kept: the engine commits the entities, the
messages they caused and the input's offset in one transaction, so an entity that records a message as applied
was committed with what it sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, PrivateAttr, field_validator

from schemas.orders import ReturnCondition, ReturnLine, ReturnMethod
from schemas.wms import (
    DeliveryMode,
    ExpectedLine,
    FulfilmentLine,
    Parcel,
    ReturnedLine,
    TaskKind,
    TaskLine,
    TaskStatus,
)
from services.wms_node.domain.layout import Layout, LayoutSpec

RequestStage = Literal[
    "waiting", "picking", "packing", "shipping", "preparing", "ready",
    "shipped", "handed_over", "short", "cancelled", "rejected",
]
FINISHED_STAGES = frozenset({"shipped", "handed_over", "short", "cancelled", "rejected"})
TaskPurpose = Literal["order", "supply", "count", "restock", "return"]


class Entity(BaseModel):
    """An entity of the node's state. It keeps its own changelog JSON until it is ``touched``: a bundle holds
    many entities and most of them did not change when it is written again."""

    _json: bytes | None = PrivateAttr(default=None)

    def json_bytes(self) -> bytes:
        if self._json is None:
            self._json = self.model_dump_json(exclude_defaults=True).encode()
        return self._json

    def touched(self) -> None:
        """It may have changed: its JSON is written afresh next time."""
        self._json = None

    # an entity that is read far more often than changed says so: it is compared with what was last written
    # (one JSON dump) before it is written again
    compared_before_write: ClassVar[bool] = False

    def same_as_written(self) -> bool:
        return self._json is not None and self.model_dump_json(exclude_defaults=True).encode() == self._json


class Applied(Entity):
    """An entity that is the primary of messages: the ids of the latest ones it applied, at most ``keep_applied``."""

    keep_applied: ClassVar[int] = 20
    applied: list[str] = []

    @field_validator("applied", mode="before")
    @classmethod
    def _ids_of_an_older_log(cls, value: Any) -> Any:
        """Entities written before the ids stood alone kept them in a log with copies of the emits."""
        return value.get("ids", []) if isinstance(value, dict) else value

    def seen(self, message_id: str) -> bool:
        return message_id in self.applied

    def record(self, message_id: str) -> None:
        self.applied.append(message_id)
        if len(self.applied) > self.keep_applied:
            del self.applied[: len(self.applied) - self.keep_applied]


class WaveRules(BaseModel):
    """Accepted requests wait in a wave; it is released when it holds ``max_orders`` or its oldest request
    has waited ``max_wait_s`` (the cut-off)."""

    max_orders: int = 20
    max_wait_s: float = 1.0


class Pending(BaseModel):
    order_id: str
    request_id: str
    at: datetime
    units: int
    cause: str = ""  # the id of the FulfilOrder message: what the pick task released later is caused by


class Site(Entity):
    compared_before_write: ClassVar[bool] = True  # small; a confirmation reads it and mostly leaves it as it was
    location: str
    kind: str = "warehouse"
    layout: LayoutSpec = LayoutSpec()
    waves: WaveRules = WaveRules()
    accepted: dict[str, int] = {}
    pending: list[Pending] = []
    wave_seq: int = 0
    claims: dict[str, datetime] = {}

    @property
    def key(self) -> str:
        return "site"


class Journal(Applied):
    """The applied ids of the messages about the whole location (the timer's ticks, count requests)."""

    keep_applied: ClassVar[int] = 200

    @property
    def key(self) -> str:
        return "journal"


class BinMap(Entity):
    compared_before_write: ClassVar[bool] = True  # every pick reads it; a new home or an emptied bin changes it
    owner: dict[str, str] = {}
    shelves: dict[str, str] = {}

    @property
    def key(self) -> str:
        return "bins"


class SkuStock(Entity):
    sku: str
    home: str | None = None
    bins: dict[str, int] = {}
    allocated: dict[str, int] = {}
    incoming: dict[str, int] = {}
    damaged: dict[str, int] = {}
    picks: int = 0
    units_picked: int = 0

    @property
    def key(self) -> str:
        return sku_key(self.sku)

    _by_distance: tuple[Layout, frozenset[str], list[str]] | None = PrivateAttr(default=None)

    @property
    def on_hand(self) -> int:
        return sum(self.bins.values())

    def bins_by_distance(self, layout: Layout) -> list[str]:
        """Its bins, nearest to the dock first (then by id); sorted again only when the set of bins changed
        (a SKU with deep stock holds hundreds, and every pick looks for the nearest with free units)."""
        cached = self._by_distance
        if cached is None or cached[0] is not layout or cached[1] != self.bins.keys():
            order = sorted(self.bins, key=lambda b: (layout.distance(b), b))
            cached = self._by_distance = (layout, frozenset(self.bins), order)
        return cached[2]

    def free_in(self, bin_id: str) -> int:
        return self.bins.get(bin_id, 0) - self.allocated.get(bin_id, 0)


class Request(BaseModel):
    request_id: str
    lines: list[FulfilmentLine]
    mode: DeliveryMode = "ship"
    stage: RequestStage = "waiting"
    open_task: str = ""
    accepted_at: datetime | None = None
    wave_id: str | None = None
    picked: list[FulfilmentLine] = []
    parcels: list[Parcel] = []
    staged_bin: str | None = None
    hand_over_asked: bool = False
    reason: str | None = None


class OrderWork(Applied):
    keep_applied: ClassVar[int] = 100
    order_id: str
    requests: dict[str, Request] = {}

    @property
    def key(self) -> str:
        return order_key(self.order_id)


class Task(Applied):
    task_id: str
    kind: TaskKind
    purpose: TaskPurpose = "order"
    subject: str
    request_id: str
    lines: list[TaskLine]
    status: TaskStatus = "open"
    worker: str | None = None
    claim_id: str | None = None
    claimed_until: datetime | None = None
    wave_id: str | None = None
    parcels: list[Parcel] = []
    created_at: datetime | None = None
    done_at: datetime | None = None
    done_by: str | None = None

    @property
    def key(self) -> str:
        return task_key(self.task_id)


class Received(BaseModel):
    received: int
    damaged: int = 0


class Supply(Applied):
    supply_id: str
    expected: list[ExpectedLine]
    stage: Literal["receiving", "putting_away", "received"] = "receiving"
    received: dict[str, Received] = {}

    @property
    def key(self) -> str:
        return supply_key(self.supply_id)


class ReturnWork(Applied):
    """A customer return at this location: announced, inspected (``found``: units per condition and disposition),
    its sellable units put away, then ``received``."""

    return_id: str
    order_id: str
    lines: list[ReturnLine]
    method: ReturnMethod = "mail"
    declared: ReturnCondition | None = None
    stage: Literal["receiving", "putting_away", "received"] = "receiving"
    found: list[ReturnedLine] = []

    @property
    def key(self) -> str:
        return return_key(self.return_id)


def sku_key(sku: str) -> str:
    return f"sku:{sku}"


def order_key(order_id: str) -> str:
    return f"order:{order_id}"


def task_key(task_id: str) -> str:
    return f"task:{task_id}"


def supply_key(supply_id: str) -> str:
    return f"supply:{supply_id}"


def return_key(return_id: str) -> str:
    return f"return:{return_id}"


AnyEntity = Site | Journal | BinMap | SkuStock | OrderWork | Task | Supply | ReturnWork
E = TypeVar("E", bound=BaseModel)
KINDS: dict[str, type[BaseModel]] = {
    "site": Site, "journal": Journal, "bins": BinMap, "sku": SkuStock,
    "order": OrderWork, "task": Task, "supply": Supply, "return": ReturnWork,
}


def entity_type(key: str) -> type[BaseModel]:
    return KINDS[key.split(":", 1)[0]]


Loaded = str | bytes | BaseModel | None


class Unit:
    """The entities one message reads and changes. Loads lazily through ``loader``: by key, the entity a store
    holds (changed in place, and written back whenever it was loaded: telling whether it changed would cost more
    than writing it) or its JSON text (written back only if it changed), or None."""

    def __init__(self, loader: Callable[[str], Loaded]) -> None:
        self._loader = loader
        self._loaded: dict[str, str | None] = {}  # the text an entity came from (absent: loaded as an object)
        self._entities: dict[str, Any] = {}

    def get(self, key: str, kind: type[E]) -> E | None:
        if key not in self._entities:
            raw = self._loader(key)
            if isinstance(raw, BaseModel):
                self._entities[key] = raw
            else:
                text = raw.decode() if isinstance(raw, bytes) else raw
                self._loaded[key] = text
                self._entities[key] = kind.model_validate_json(text) if text else None
        return self._entities[key]  # type: ignore[no-any-return]

    def add(self, key: str, entity: BaseModel) -> None:
        """Create (or replace) the entity under ``key``."""
        self.get(key, type(entity))
        self._entities[key] = entity

    def loaded_keys(self) -> list[str]:
        return list(self._entities)

    def changes(self) -> list[tuple[str, BaseModel]]:
        """(key, entity) for every entity that may have changed, in first-touched order."""
        out = []
        for key, entity in self._entities.items():
            if entity is None:
                continue
            if key in self._loaded and entity.model_dump_json() == self._loaded[key]:
                continue
            if isinstance(entity, Entity) and entity.compared_before_write and entity.same_as_written():
                continue
            out.append((key, entity))
        return out
