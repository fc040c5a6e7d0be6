"""The node's HTTP API (aiohttp, when the node runs with a web port): its queue, claims, confirmations, stock per
bin and the slotting proposal. Commands go through the node's inbox like any worker's; the handler waits for
the node's decision (handed over once the batch that decided it committed). Nothing here writes the state.

  GET  /wms/tasks                               open and claimed tasks
  POST /wms/tasks/claim    {task_id, worker, ttl_s?}
  POST /wms/tasks/release  {task_id, worker}
  POST /wms/tasks/confirm  {task_id, worker, missing?: {SKU: n}, counted?: [{sku, qty, damaged?, defective?, bin?}]}
  GET  /wms/bins                                stock per SKU and bin
  GET  /wms/slotting                            the demand-aware slotting proposal
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas.base import Message
from schemas.envelope import derived_id, encode, envelope_for
from schemas.wms import CountedLine
from services.runtime.settings import kafka_connection
from services.wms_node.commands import claim_command, confirm_command, release_command
from services.wms_node.domain.layout import layout_for
from services.wms_node.domain.model import Site, SkuStock, task_key
from services.wms_node.domain.slotting import propose
from services.wms_node.views import NodeViews

Document = dict[str, Any]
Read = Callable[[str], str | None]  # an entity's committed JSON by key (None: unknown, or the node not ready)


class CommandDesk:
    """Sends a worker's command to the node's inbox and waits for the node's decision on it."""

    def __init__(self, bootstrap: str, inbox: str, location: str, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.producer: AIOKafkaProducer | None = None
        self.inbox = inbox
        self.location = location
        self.timeout_s = timeout_s
        self.waiting: dict[str, asyncio.Future[Document]] = {}

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(**kafka_connection(self.bootstrap), acks="all", enable_idempotence=True)
        await self.producer.start()

    async def send(self, message: Message) -> Document:
        if self.producer is None:
            raise TimeoutError("the node is starting")
        command_id = derived_id("web", self.location, time.time_ns())
        future: asyncio.Future[Document] = asyncio.get_running_loop().create_future()
        self.waiting[command_id] = future
        envelope = envelope_for(message, source=f"baton/wms/{self.location}/web", correlationid=message.subject(),
                                causationid=None, event_id=command_id)
        try:
            await self.producer.send_and_wait(self.inbox, encode(envelope), key=message.subject().encode())
            return await asyncio.wait_for(future, self.timeout_s)
        finally:
            self.waiting.pop(command_id, None)

    def decided(self, replies: dict[str, Document]) -> None:
        for command_id, reply in replies.items():
            future = self.waiting.pop(command_id, None)
            if future is not None and not future.done():
                future.set_result(reply)


def node_web(location: str, read: Read, views: NodeViews, desk: CommandDesk) -> web.Application:
    def task_doc(task_id: str) -> Document | None:
        raw = read(task_key(task_id))
        return orjson.loads(raw) if raw else None

    async def body(request: web.Request) -> Document:
        try:
            document = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=_error(f"not JSON: {exc}"), content_type="application/json") from exc
        if not isinstance(document, dict) or not document.get("task_id") or not document.get("worker"):
            raise web.HTTPBadRequest(text=_error("expected a JSON object with task_id and worker"),
                                     content_type="application/json")
        return document

    async def command(request: web.Request, build: Callable[[Document, Document], Message]) -> web.Response:
        document = await body(request)
        task = task_doc(str(document["task_id"]))
        if task is None:
            return _json({"task_id": document["task_id"], "refused": "unknown task"}, 404)
        try:
            message = build(task, document)
        except (ValueError, ValidationError) as exc:
            return _json({"task_id": task["task_id"], "refused": str(exc)}, 400)
        try:
            reply = await desk.send(message)
        except TimeoutError:
            return _json({"task_id": task["task_id"], "refused": "the node did not decide in time"}, 504)
        return _json(reply, 409 if reply.get("refused") else 200)

    async def tasks(request: web.Request) -> web.Response:
        return _json({"location": location, "tasks": await views.tasks()})

    async def claim(request: web.Request) -> web.Response:
        return await command(request, lambda t, d: claim_command(
            t, location, str(d["worker"]), float(d.get("ttl_s", 300.0))))

    async def release(request: web.Request) -> web.Response:
        return await command(request, lambda t, d: release_command(t, location, str(d["worker"])))

    async def confirm(request: web.Request) -> web.Response:
        return await command(request, lambda t, d: confirm_command(
            t, location, str(d["worker"]), missing={str(k): int(v) for k, v in (d.get("missing") or {}).items()},
            counted=[CountedLine.model_validate(c) for c in d.get("counted") or []]))

    async def bins(request: web.Request) -> web.Response:
        return _json({"location": location, "skus": await views.skus()})

    async def slotting(request: web.Request) -> web.Response:
        site_raw = read("site")
        if site_raw is None:
            return _json({"location": location, "moves": [], "saved_m": 0.0})
        site = Site.model_validate_json(site_raw)
        stocks = [SkuStock.model_validate(doc) for doc in (await views.skus()).values()]
        return _json(propose(stocks, layout_for(site.layout)).document(location))

    app = web.Application()
    app.add_routes([
        web.get("/wms/tasks", tasks),
        web.post("/wms/tasks/claim", claim),
        web.post("/wms/tasks/release", release),
        web.post("/wms/tasks/confirm", confirm),
        web.get("/wms/bins", bins),
        web.get("/wms/slotting", slotting),
    ])
    return app


def _json(document: Document, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


def _error(reason: str) -> str:
    return orjson.dumps({"error": reason}).decode()
