"""Where a returned unit goes once inspected: the node's disposition policy (part of its configuration)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.orders import Disposition, ReturnCondition


class ReturnsPolicy(BaseModel):
    """Sellable units go back to stock; damaged ones are refurbished (or repaired), defective ones scrapped.
    Only sellable units ever become available again: the others stay in quarantine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    damaged: Disposition = "refurbish"
    defective: Disposition = "scrap"

    def disposition(self, condition: ReturnCondition) -> Disposition:
        if condition == "sellable":
            return "restock"
        return self.damaged if condition == "damaged" else self.defective
