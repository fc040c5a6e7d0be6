"""The console's and the worker app's HTTP server. Reads come from the Redis read model, the topics (an order's
timeline, the dead letters) and the services' ``/metrics``; the worker app's commands are proxied to the node's own
task API. The one write to Kafka is the audited re-publish of a corrected dead letter.

  GET  /                                   the ops console           GET /worker/{location}   the worker app
  GET  /api/orders?q=PREFIX                order ids                 GET /api/orders/{id}     view and timeline
  GET  /api/orders/{id}/events             server-sent events: the order's view whenever its version changes
  GET  /api/stock[?by=ISO-TIME]            per SKU: positions per location, ATP now and by that time
  GET  /api/services                       heartbeats, consumer lag and records handled per service
  GET  /api/dead-letters                   the dead-letter topic        POST /api/dead-letters/republish
  *    /api/wms/{location}/{path}          the node's task API (proxied)
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from baton.orders_cli import ordered_timeline, read_timeline
from baton.web.deadletters import DeadLetterDesk
from services.runtime.atp import parse_time, position_of, stock_document
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

SEARCH_LIMIT = 20
EVENTS_EVERY_S = 1.0
READ_MODEL: web.AppKey[ReadModel] = web.AppKey("read_model", ReadModel)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http", aiohttp.ClientSession)


def page(name: str) -> str:
    return resources.files("baton.web").joinpath("static", name).read_text()


def json_response(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


def console_app(settings: Settings) -> web.Application:
    app = web.Application()
    letters = DeadLetterDesk(settings)

    async def open_clients(app: web.Application) -> Any:
        app[READ_MODEL] = ReadModel(settings.redis_url, settings.namespace)
        app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        yield
        await app[HTTP].close()
        await app[READ_MODEL].close()
        await letters.close()

    app.cleanup_ctx.append(open_clients)

    async def console(request: web.Request) -> web.Response:
        return web.Response(text=page("console.html"), content_type="text/html")

    async def worker(request: web.Request) -> web.Response:
        return web.Response(text=page("worker.html"), content_type="text/html")

    async def search(request: web.Request) -> web.Response:
        prefix = request.query.get("q", "").strip()
        ids = await request.app[READ_MODEL].order_ids()
        found = [o for o in ids if o.startswith(prefix)][-SEARCH_LIMIT:] if prefix else ids[-SEARCH_LIMIT:]
        views = await request.app[READ_MODEL].read_orders(found)
        return json_response([{"order_id": o, "status": (v or {}).get("status")} for o, v in views.items()])

    async def order(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        view = await request.app[READ_MODEL].read_order(order_id)
        if view is None:
            return json_response({"error": f"unknown order {order_id!r}"}, 404)
        timeline = ordered_timeline(await read_timeline(settings, order_id))
        return json_response({"view": view, "timeline": [entry.as_json() for entry in timeline]})

    async def order_events(request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await stream.prepare(request)
        last_version = None
        while True:
            view = await request.app[READ_MODEL].read_order(order_id)
            if view is not None and view.get("version") != last_version:
                last_version = view.get("version")
                await stream.write(b"data: " + orjson.dumps(view) + b"\n\n")
            await asyncio.sleep(EVENTS_EVERY_S)

    async def stock(request: web.Request) -> web.Response:
        try:
            by = parse_time(request.query.get("by") or None)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        read_model = request.app[READ_MODEL]
        documents = await read_model.read_availability(await read_model.all_skus())
        return json_response({
            sku: stock_document(sku, {loc: position_of(doc) for loc, doc in places.items()}, by=by)
            for sku, places in documents.items()
        })

    async def services(request: web.Request) -> web.Response:
        beats = await request.app[READ_MODEL].services()
        figures = await asyncio.gather(*(scrape(request.app[HTTP], beat) for beat in beats.values()))
        return json_response({name: {**beat, **figure} for (name, beat), figure in zip(beats.items(), figures,
                                                                                       strict=True)})

    async def dead_letters(request: web.Request) -> web.Response:
        return json_response({"letters": await letters.read(), "republished": await letters.audit_trail()})

    async def republish(request: web.Request) -> web.Response:
        document = orjson.loads(await request.read() or b"{}")
        try:
            record = await letters.republish(str(document.get("key", "")), str(document.get("payload", "")),
                                             str(document.get("by", "")), str(document.get("why", "")))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(record)

    async def wms_proxy(request: web.Request) -> web.Response:
        location, path = request.match_info["location"], request.match_info["path"]
        beat = (await request.app[READ_MODEL].services()).get(f"wms-{location}")
        if not beat or not beat.get("web_port"):
            return json_response({"error": f"no node of {location!r} is running"}, 503)
        url = f"http://127.0.0.1:{beat['web_port']}/wms/{path}"
        async with request.app[HTTP].request(request.method, url, data=await request.read()) as answer:
            return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")

    app.add_routes([
        web.get("/", console), web.get("/worker/{location}", worker),
        web.get("/api/orders", search), web.get("/api/orders/{order_id}", order),
        web.get("/api/orders/{order_id}/events", order_events), web.get("/api/stock", stock),
        web.get("/api/services", services), web.get("/api/dead-letters", dead_letters),
        web.post("/api/dead-letters/republish", republish),
        web.route("*", "/api/wms/{location}/{path:.+}", wms_proxy),
    ])
    return app


async def scrape(http: aiohttp.ClientSession, beat: dict[str, Any]) -> dict[str, Any]:
    """A service's consumer lag and records handled, from its ``/metrics`` (parsed by prometheus-client)."""
    figures: dict[str, Any] = {"alive": time.time() - float(beat.get("at", 0)) < 10, "lag": 0, "handled": 0}
    if not beat.get("web_port"):
        return figures
    try:
        async with http.get(f"http://127.0.0.1:{beat['web_port']}/metrics") as answer:
            text = await answer.text()
    except aiohttp.ClientError:
        figures["alive"] = False
        return figures
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "baton_consumer_lag_records":
                figures["lag"] += int(sample.value)
            elif sample.name == "baton_records_handled_total":
                figures["handled"] += int(sample.value)
    return figures


def serve(settings: Settings, host: str, port: int) -> None:
    # shutdown_timeout: live event streams never end by themselves; on SIGTERM they are cut after a second
    web.run_app(console_app(settings), host=host, port=port, print=None, access_log=None, shutdown_timeout=1.0)
