"""The orchestrator's HTTP API (faust web, with ``baton run orchestrator --web-port N``): order status for
storefronts and customer service, from the Redis read model.

  GET  /orders/{order_id}           the order's status, lines, shipments, promised date, last sourcing decision
  GET  /orders/{order_id}/explain   the last sourcing decision: rule set, rule, every candidate and its fate
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View

from services.runtime.readmodel import ReadModel


def attach_web(app: faust.App, read_model: ReadModel) -> None:
    @app.page("/orders/{order_id}")
    class OrderStatus(View):
        async def get(self, request: Request, order_id: str) -> Response:
            view = await read_model.read_order(order_id)
            if view is None:
                return self.json({"error": f"unknown order {order_id!r}"}, status=404)
            return self.json(view)

    @app.page("/orders/{order_id}/explain")
    class OrderExplanation(View):
        async def get(self, request: Request, order_id: str) -> Response:
            view = await read_model.read_order(order_id)
            if view is None:
                return self.json({"error": f"unknown order {order_id!r}"}, status=404)
            return self.json({"order_id": order_id, "status": view["status"], "decision": view.get("decision")})
