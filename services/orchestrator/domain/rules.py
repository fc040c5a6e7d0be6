"""Sourcing rule sets: ordered rules with conditions, filters, ranking and a split policy, and a fallback.

A rule set is master data, published as a versioned event so a replay sees the version in force. The file
format (YAML or JSON) is documented in the README; ``parse_rule_set`` validates it with errors naming the
field. ``DEFAULT_RULES`` are the default rules of ``SCENARIOS.md``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Ranking = Literal["fewest_shipments", "cost", "distance", "priority", "stock_level"]
SplitPolicyName = Literal["never", "minimise", "at_most"]
Fallback = Literal["backorder", "reject"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Conditions(Strict):
    """When a rule applies; every field given must match (an empty ``when`` matches every order)."""

    channels: list[str] | None = None
    delivery_modes: list[Literal["ship", "pickup", "reserve"]] | None = None
    customer_tiers: list[str] | None = None
    min_order_value: float | None = Field(default=None, ge=0)
    max_order_value: float | None = Field(default=None, ge=0)
    skus_any: list[str] | None = None


class Filters(Strict):
    """Which locations may serve: beyond capability (always required), stock and opening state."""

    kinds: list[Literal["warehouse", "store"]] | None = None
    exclude_locations: list[str] = []
    only_locations: list[str] | None = None
    respect_capacity: bool = True
    max_distance_km: float | None = Field(default=None, gt=0)


class SplitPolicy(Strict):
    policy: SplitPolicyName = "minimise"
    max_shipments: int | None = Field(default=None, ge=1)
    no_split_below_value: float | None = Field(default=None, ge=0)

    def allows(self, shipments: int, order_value: float) -> bool:
        if shipments <= 1:
            return True
        if self.policy == "never":
            return False
        if self.no_split_below_value is not None and order_value < self.no_split_below_value:
            return False
        return self.policy != "at_most" or shipments <= (self.max_shipments or 1)

    def limit(self, order_value: float) -> int:
        """The most shipments this policy allows for an order of this value."""
        below = self.no_split_below_value is not None and order_value < self.no_split_below_value
        if self.policy == "never" or below:
            return 1
        if self.policy == "at_most":
            return self.max_shipments or 1
        return 10_000


class Rule(Strict):
    name: str = Field(min_length=1)
    when: Conditions = Conditions()
    filters: Filters = Filters()
    rank: list[Ranking] = ["fewest_shipments", "cost", "distance"]
    split: SplitPolicy = SplitPolicy()
    priority: dict[str, int] = {}
    ship_to_store: bool = True

    @field_validator("rank")
    @classmethod
    def _fewest_first(cls, rank: list[Ranking]) -> list[Ranking]:
        if len(set(rank)) != len(rank):
            raise ValueError("a ranking criterion appears twice")
        return rank


class ReturnPolicy(Strict):
    """How returns are authorised, routed and refunded (the defaults are the issue's default policy)."""

    window_days: float = Field(default=30.0, gt=0, description="Days after the order shipped or was collected.")
    require_reason: bool = True
    restocking_fee_rate: float = Field(default=0.0, ge=0, le=1, description="Share of a unit's price kept.")
    fee_conditions: list[Literal["sellable", "damaged", "defective"]] = ["sellable"]
    refund_shipping_when_all_back: bool = True
    mail_destinations: list[str] | None = Field(
        default=None, description="Locations mail returns go to, first offering returns wins; unset: the nearest."
    )
    mail_kinds: list[Literal["warehouse", "store"]] | None = None
    label_carrier: str = "returns-post"
    max_refund_attempts: int = Field(default=10, ge=1)
    refund_retry_s: float = Field(default=1.0, ge=0, description="Wait before the first retry; doubles after.")
    refund_retry_max_s: float = Field(default=300.0, ge=0)


class RuleSet(Strict):
    name: str = "default"
    version: int = Field(default=1, ge=1)
    rules: list[Rule] = Field(default=[Rule(name="default")], min_length=1)
    fallback: Fallback = "backorder"
    reserve_deadline_s: float = Field(default=30.0, gt=0)
    accept_deadline_s: float = Field(default=60.0, gt=0)
    pickup_window_s: float = Field(default=3 * 24 * 3600, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    returns: ReturnPolicy = ReturnPolicy()


class OrderFacts(Strict):
    """What rule conditions look at."""

    channel: str
    delivery_mode: str
    customer_tier: str | None
    order_value: float
    skus: list[str]


def matches(conditions: Conditions, facts: OrderFacts) -> bool:
    checks = [
        conditions.channels is None or facts.channel in conditions.channels,
        conditions.delivery_modes is None or facts.delivery_mode in conditions.delivery_modes,
        conditions.customer_tiers is None or facts.customer_tier in conditions.customer_tiers,
        conditions.min_order_value is None or facts.order_value >= conditions.min_order_value,
        conditions.max_order_value is None or facts.order_value <= conditions.max_order_value,
        conditions.skus_any is None or any(s in conditions.skus_any for s in facts.skus),
    ]
    return all(checks)


def applicable_rules(rule_set: RuleSet, facts: OrderFacts) -> list[Rule]:
    """The rules whose conditions match, in order; the first one decides (then the fallback applies)."""
    return [rule for rule in rule_set.rules if matches(rule.when, facts)]


class RuleSetError(ValueError):
    """An invalid rule set; the message names the field."""


def parse_rule_set(document: Any, origin: str = "rules") -> RuleSet:
    if document in (None, {}):
        return DEFAULT_RULES
    if not isinstance(document, dict):
        raise RuleSetError(f"{origin}: a rule set is a mapping with name, rules, fallback")
    try:
        return RuleSet.model_validate(document)
    except ValidationError as exc:
        shown = "; ".join(
            f"{origin}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:6]
        )
        raise RuleSetError(shown) from exc


DEFAULT_RULES = RuleSet()
