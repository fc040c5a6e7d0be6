"""``GET /stock/{sku}[?near=LAT,LON][&by=ISO-TIME]``: the ledger's own positions and ATP, as JSON (aiohttp)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from schemas.network import Location
from services.inventory.domain.ledger import SkuLedger
from services.runtime.atp import parse_near, parse_time, stock_document

LedgerLookup = Callable[[str], SkuLedger | None]


def stock_app(ledger_of: LedgerLookup, network: Mapping[str, Location]) -> web.Application:
    """The HTTP app; ``ledger_of`` gives a SKU's ledger as last committed, ``network`` the known locations."""

    async def stock_view(request: web.Request) -> web.Response:
        sku = request.match_info["sku"]
        try:
            near = parse_near(request.query.get("near"))
            by = parse_time(request.query.get("by"))
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        ledger = ledger_of(sku)
        if ledger is None:
            return _json({"error": f"unknown SKU {sku!r}: no location has a stock position for it"}, status=404)
        positions = {location: ledger.availability(location) for location in ledger.locations()}
        document = stock_document(sku, positions, network, near=near, by=by)
        document["version"] = ledger.version
        return _json(document)

    app = web.Application()
    app.router.add_get("/stock/{sku}", stock_view)
    return app


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
