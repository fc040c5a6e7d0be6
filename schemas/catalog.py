"""Product master data: what a SKU weighs and how much room it takes (packing, put-away), as events."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.base import Message, Money, Quantity, Sku


class SkuConfigured(Message):
    event_type = "catalog.sku_configured.v1"
    summary = "A SKU's master data (unit weight and volume, price); the latest value per SKU is in force."

    sku: Sku
    weight_g: Annotated[int, Field(ge=0, le=1_000_000)] = 500
    volume_cm3: Annotated[int, Field(ge=0, le=10_000_000)] = 1000
    price: Money | None = None
    version: Quantity = 1

    def subject(self) -> str:
        return self.sku
