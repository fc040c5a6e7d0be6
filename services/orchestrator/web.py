"""The orchestrator's HTTP API (``baton run orchestrator --web-port N``): order status for storefronts and
customer service, from the Redis read model (never from the tasks' stores, so any instance answers for any order).

  GET  /orders/{order_id}           the order's status, lines, shipments, promised date, last sourcing decision
  GET  /orders/{order_id}/explain   the last sourcing decision: rule set, rule, every candidate and its fate
"""

from __future__ import annotations

from aiohttp import web

from services.runtime.readmodel import ReadModel


def order_status_app(read_model: ReadModel) -> web.Application:
    async def order_status(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        view = await read_model.read_order(order_id)
        if view is None:
            return web.json_response({"error": f"unknown order {order_id!r}"}, status=404)
        return web.json_response(view)

    async def order_explanation(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        view = await read_model.read_order(order_id)
        if view is None:
            return web.json_response({"error": f"unknown order {order_id!r}"}, status=404)
        return web.json_response({"order_id": order_id, "status": view["status"], "decision": view.get("decision")})

    app = web.Application()
    app.router.add_get("/orders/{order_id}", order_status)
    app.router.add_get("/orders/{order_id}/explain", order_explanation)
    return app
