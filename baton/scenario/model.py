"""The scenario file format (``../shared/SCENARIOS.md``), validated with errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.base import Capability, Channel, LocationId, LocationKind, Sku
from schemas.orders import Delivery, OrderLine, ReturnLine
from schemas.wms import ExpectedLine


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioLocation(Strict):
    id: LocationId
    kind: LocationKind
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    capabilities: list[Capability] = ["ship"]
    handling_cost: float = Field(default=1.0, ge=0)
    daily_capacity: int | None = Field(default=None, gt=0)


class ScenarioSku(Strict):
    sku: Sku
    price: float = Field(default=10.0, ge=0)
    weight_g: int = Field(default=500, ge=0)
    volume_cm3: int = Field(default=1000, ge=0)


class StockRow(Strict):
    location: LocationId
    sku: Sku
    qty: int = Field(ge=0)


class SupplyRow(Strict):
    id: str
    location: LocationId
    sku: Sku
    qty: int = Field(gt=0)
    eta: str
    arrive_after_s: float | None = Field(default=None, ge=0)


class ShortPick(Strict):
    sku: Sku
    qty: int = Field(gt=0)


class WorkerBehaviour(Strict):
    location: LocationId
    short_pick: list[ShortPick] = []
    reject_all: bool = False
    short_receive: list[ShortPick] = []  # at receiving, qty fewer units than announced arrive, once per SKU
    damaged: list[ShortPick] = []  # at receiving, qty of the units that arrive are damaged, once per SKU
    pace_s: float = Field(default=0.0, ge=0, le=60)  # seconds a simulated worker takes per task


class ScenarioOrder(Strict):
    order_id: str = Field(min_length=1)
    channel: Channel = "web"
    customer_id: str = "C-anonymous"
    lines: list[OrderLine] = Field(min_length=1)
    delivery: Delivery
    store_id: LocationId | None = None
    shipping_price: float = Field(default=0.0, ge=0)
    currency: str = "EUR"


class OrderPlacedStep(Strict):
    at_s: float = Field(default=0, ge=0)
    type: Literal["order.placed"]
    order: ScenarioOrder


class CancelStep(Strict):
    at_s: float = Field(default=0, ge=0)
    type: Literal["order.cancel_requested"]
    order_id: str
    reason: str = "customer_request"


class CollectedStep(Strict):
    at_s: float = Field(default=0, ge=0)
    type: Literal["pickup.collected"]
    order_id: str


class ReturnStep(Strict):
    at_s: float = Field(default=0, ge=0)
    type: Literal["return.requested"]
    order_id: str
    return_id: str
    lines: list[ReturnLine] = Field(min_length=1)
    method: Literal["in_store", "mail"] = "mail"
    location: LocationId | None = None
    reason: str = "unspecified"
    condition: Literal["sellable", "damaged", "defective"] = "sellable"
    exchange: list[ReturnLine] = []  # replacement lines instead of a refund
    # a customer returns what they received: the request waits (after at_s) until its order has settled (shipped,
    # collected...), so that a timeline need not guess how long fulfilment takes; false: sent at at_s exactly
    after_settled: bool = True


class PaymentsBehaviour(Strict):
    """How the simulated payment adapter answers refund requests."""

    fail_first: int = Field(default=0, ge=0)  # the first N refund requests fail (then retried with the same key)


class ServiceKilledStep(Strict):
    """Not a message: the runner kills the service (kill -9) and restarts it at once, as a supervisor would."""

    at_s: float = Field(default=0, ge=0)
    type: Literal["service.killed"]
    service: str  # orchestrator | inventory | wms:LOCATION

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str) -> str:
        if value in ("orchestrator", "inventory", "payments") or (
            value.startswith("wms:") and len(value) > len("wms:")
        ):
            return value
        raise ValueError(f"unknown service {value!r}: give orchestrator, inventory, payments or wms:LOCATION")

    @property
    def location(self) -> str | None:
        return self.service.split(":", 1)[1] if self.service.startswith("wms:") else None

    @property
    def process(self) -> str:
        """The process to kill, as the runner names it (orchestrator, inventory, wms-LOCATION)."""
        return f"wms-{self.location}" if self.location else self.service


class StockCountedStep(Strict):
    """A cycle count from a stock feed: the position's on hand is ``qty`` now (sent to the ledger as a count)."""

    at_s: float = Field(default=0, ge=0)
    type: Literal["stock.counted"]
    location: LocationId
    sku: str
    qty: int = Field(ge=0)


Step = Annotated[
    OrderPlacedStep | CancelStep | CollectedStep | ReturnStep | ServiceKilledStep | StockCountedStep,
    Field(discriminator="type"),
]


class Generate(Strict):
    orders: int = Field(gt=0, le=100_000)
    seed: int = 0
    delivery: dict[str, Any] = {"mode": "ship"}
    channel: Channel = "web"
    # a share of the generated orders returned by mail once shipped (their first line whole, each request sent
    # twice), one every returns_every_s from returns_from_s on: returns mixed into a load, kills among them
    returns: float = Field(default=0.0, ge=0, le=1)
    returns_from_s: float = Field(default=1.0, ge=0)
    returns_every_s: float = Field(default=0.05, ge=0)


class ArrivalStep(Strict):
    """A supply row's delivery reaching its location's dock (``arrive_after_s``)."""

    at_s: float
    type: Literal["supply.arrived"] = "supply.arrived"
    supply_id: str
    location: LocationId
    lines: list[ExpectedLine]


def supply_arrivals(scenario: Scenario) -> list[ArrivalStep]:
    return [
        ArrivalStep(at_s=row.arrive_after_s, supply_id=row.id, location=row.location,
                    lines=[ExpectedLine(sku=row.sku, qty=row.qty)])
        for row in scenario.supply
        if row.arrive_after_s is not None
    ]


class Scenario(Strict):
    name: str = Field(min_length=1)
    locations: list[ScenarioLocation] = Field(min_length=1)
    skus: list[ScenarioSku] = Field(min_length=1)
    stock: list[StockRow] = []
    safety_stock: list[StockRow] = []
    supply: list[SupplyRow] = []
    rules: dict[str, Any] = {}
    workers: list[WorkerBehaviour] = []
    payments: PaymentsBehaviour = PaymentsBehaviour()
    events: list[Step] = []
    generate: Generate | None = None

    @model_validator(mode="after")
    def _references_exist(self) -> Scenario:
        locations = {loc.id for loc in self.locations}
        skus = {s.sku for s in self.skus}
        if len(locations) != len(self.locations):
            raise ValueError("locations: ids must be unique")
        for section in ("stock", "safety_stock", "supply", "workers"):
            for i, row in enumerate(getattr(self, section)):
                if row.location not in locations:
                    raise ValueError(f"{section}[{i}].location: unknown location {row.location!r}")
                if hasattr(row, "sku") and row.sku not in skus:
                    raise ValueError(f"{section}[{i}].sku: unknown sku {row.sku!r}")
        for i, row in enumerate(self.supply):
            _check_eta(f"supply[{i}].eta", row.eta)
        for i, step in enumerate(self.events):
            if isinstance(step, ServiceKilledStep) and step.location and step.location not in locations:
                raise ValueError(f"events[{i}].service: unknown location {step.location!r} in {step.service!r}")
            if isinstance(step, StockCountedStep) and (step.location not in locations or step.sku not in skus):
                raise ValueError(f"events[{i}]: unknown location {step.location!r} or sku {step.sku!r}")
        if self.rules:
            from services.orchestrator.domain.rules import RuleSetError, parse_rule_set

            try:
                parse_rule_set(self.rules, "rules")
            except RuleSetError as exc:
                raise ValueError(str(exc)) from exc
        return self


def _check_eta(where: str, text: str) -> None:
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{where}: not an ISO 8601 time: {text!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{where}: give a time zone (e.g. 2026-12-01T00:00:00Z)")


class ScenarioError(ValueError):
    """An invalid scenario file; the message names the field."""


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        document = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    return parse_scenario(document, str(path))


def parse_scenario(document: Any, origin: str = "scenario") -> Scenario:
    if not isinstance(document, dict):
        raise ScenarioError(f"{origin}: the file must hold a mapping with name, locations, skus, ...")
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        raise ScenarioError(f"{origin}: " + "; ".join(_describe(e) for e in exc.errors(include_url=False)[:6])) from exc


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "<root>"
    return f"{loc}: {error['msg']}"
