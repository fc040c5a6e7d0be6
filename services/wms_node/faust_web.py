"""(faust, until the engine runs the node: see app.py)
The node's HTTP API (faust web, when the node runs with a web port): its queue, claims, confirmations, stock
per bin and the slotting proposal. Commands go through the node's inbox like any worker's; the handler waits
for the node's decision. Nothing here writes the table.

  GET  /wms/tasks                               open and claimed tasks
  POST /wms/tasks/claim    {task_id, worker, ttl_s?}
  POST /wms/tasks/release  {task_id, worker}
  POST /wms/tasks/confirm  {task_id, worker, missing?: {SKU: n}, counted?: [{sku, qty, damaged?, bin?}]}
  GET  /wms/bins                                stock per SKU and bin
  GET  /wms/slotting                            the demand-aware slotting proposal
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.base import Message
from schemas.wms import CountedLine
from services.wms_node.commands import claim_command, confirm_command, release_command
from services.wms_node.domain.layout import layout_for
from services.wms_node.domain.model import Site, SkuStock, task_key
from services.wms_node.domain.slotting import propose
from services.wms_node.store import UndoStore
from services.wms_node.views import NodeViews

Send = Callable[[Message], Awaitable[dict[str, Any]]]


def attach_web(app: faust.App, *, location: str, store: UndoStore, views: NodeViews, send: Send) -> None:
    def task_doc(task_id: str) -> dict[str, Any] | None:
        raw = store.current(task_key(task_id))
        return orjson.loads(raw) if raw else None

    async def body(view: View, request: Request) -> dict[str, Any]:
        try:
            document = orjson.loads(await view.read_request_content(request) or b"{}")
        except orjson.JSONDecodeError as exc:
            raise view.ParseError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict) or not document.get("task_id") or not document.get("worker"):
            raise view.ValidationError("expected a JSON object with task_id and worker")
        return document

    async def command(view: View, request: Request, build: Callable[[dict[str, Any], dict[str, Any]], Message]) \
            -> Response:
        document = await body(view, request)
        task = task_doc(str(document["task_id"]))
        if task is None:
            return view.json({"task_id": document["task_id"], "refused": "unknown task"}, status=404)
        try:
            message = build(task, document)
        except (ValueError, ValidationError) as exc:
            return view.json({"task_id": task["task_id"], "refused": str(exc)}, status=400)
        try:
            reply = await send(message)
        except TimeoutError:
            return view.json({"task_id": task["task_id"], "refused": "the node did not decide in time"}, status=504)
        return view.json(reply, status=409 if reply.get("refused") else 200)

    @app.page("/wms/tasks")
    class Tasks(View):
        async def get(self, request: Request) -> Response:
            return self.json({"location": location, "tasks": await views.tasks()})

    @app.page("/wms/tasks/claim")
    class Claim(View):
        async def post(self, request: Request) -> Response:
            return await command(self, request, lambda t, d: claim_command(
                t, location, str(d["worker"]), float(d.get("ttl_s", 300.0))))

    @app.page("/wms/tasks/release")
    class Release(View):
        async def post(self, request: Request) -> Response:
            return await command(self, request, lambda t, d: release_command(t, location, str(d["worker"])))

    @app.page("/wms/tasks/confirm")
    class Confirm(View):
        async def post(self, request: Request) -> Response:
            return await command(self, request, lambda t, d: confirm_command(
                t, location, str(d["worker"]), missing={str(k): int(v) for k, v in (d.get("missing") or {}).items()},
                counted=[CountedLine.model_validate(c) for c in d.get("counted") or []]))

    @app.page("/wms/bins")
    class Bins(View):
        async def get(self, request: Request) -> Response:
            return self.json({"location": location, "skus": await views.skus()})

    @app.page("/wms/slotting")
    class Slotting(View):
        async def get(self, request: Request) -> Response:
            site_raw = store.current("site")
            if site_raw is None:
                return self.json({"location": location, "moves": [], "saved_m": 0.0})
            site = Site.model_validate_json(site_raw)
            stocks = [SkuStock.model_validate(doc) for doc in (await views.skus()).values()]
            return self.json(propose(stocks, layout_for(site.layout)).document(location))

