"""How a node is set up, from the environment: ``BATON_WMS_CONFIG`` (layout, waves, claim time-out) and, for
``--auto``, the simulated workers' behaviour from ``BATON_WORKERS``.

``BATON_WMS_CONFIG`` is JSON: one object for every node, or a list of objects each with a ``location``, e.g.
``[{"location": "WH-1", "layout": {"aisles": 20, "fast_aisles": 3}, "waves": {"max_orders": 50,
"max_wait_s": 5}, "claim_ttl_s": 600, "retain_s": 3600, "returns": {"damaged": "repair"}}]``. Anything left
out keeps the default for the location's kind. ``claim_ttl_s`` is the longest a claim may run; ``retain_s`` how
long finished orders, tasks, deliveries and returns stay in the node's state; ``returns`` the disposition of
damaged units (``refurbish`` or ``repair``) and defective ones (``scrap`` by default).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from services.wms_node.domain.layout import LayoutSpec
from services.wms_node.domain.model import WaveRules
from services.wms_node.domain.return_policy import ReturnsPolicy
from services.wms_node.domain.work import NodeConfig
from services.wms_node.janitor import DEFAULT_RETAIN_S


class ConfigRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    location: str | None = None
    layout: LayoutSpec | None = None
    waves: WaveRules | None = None
    claim_ttl_s: float = Field(default=300.0, gt=0)
    retain_s: float = Field(default=DEFAULT_RETAIN_S, gt=0)
    returns: ReturnsPolicy = ReturnsPolicy()


def config_row(location: str, raw: str | None) -> ConfigRow:
    if not raw:
        return ConfigRow()
    document = json.loads(raw)
    rows = [ConfigRow.model_validate(r) for r in (document if isinstance(document, list) else [document])]
    return next((r for r in rows if r.location == location), None) or next(
        (r for r in rows if r.location is None), ConfigRow())


def node_config(location: str, raw: str | None, reject_all: bool = False) -> NodeConfig:
    row = config_row(location, raw)
    return NodeConfig(layout=row.layout, waves=row.waves, claim_ttl_s=row.claim_ttl_s, reject_all=reject_all,
                      returns=row.returns)
