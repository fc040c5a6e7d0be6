"""The node's read model in Redis, for the CLI and anyone looking: its task queue, stock per bin, the replies to
workers' commands. Written once each batch of the node committed; never read back by the node to decide anything.

Keys (``{ns}`` the namespace, ``{loc}`` the location):
  {ns}:wms:{loc}:tasks       hash task id -> task (open and claimed ones)
  {ns}:wms:{loc}:done        sorted set of the latest finished tasks (by time done, 200 kept)
  {ns}:wms:{loc}:skus        hash SKU -> home bin, units per bin, allocated, damaged, picks
  {ns}:wms:{loc}:site        the site: layout, wave rules, waiting requests, live claims
  {ns}:wms:{loc}:reply:{id}  what became of a worker's command (claim, release, confirm), kept 10 minutes
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel

from services.runtime.settings import redis_connection_url

REPLY_TTL_S = 600
DONE_KEPT = 200
VIEWED = ("task", "sku", "site")  # the kinds of entity the views show
Doc = dict[str, Any]


class NodeViews:
    def __init__(self, redis_url: str, namespace: str, location: str) -> None:
        self.redis = aioredis.from_url(redis_connection_url(redis_url))
        self.prefix = f"{namespace}:wms:{location}:"

    def _key(self, name: str) -> str:
        return self.prefix + name

    async def close(self) -> None:
        await self.redis.aclose()

    async def write(self, docs: Iterable[tuple[str, Doc | None]], replies: dict[str, Doc]) -> None:
        """Entities' view documents (see ``view_doc``) and replies, in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        done: list[Doc] = []
        for key, doc in docs:
            n += _stage(pipe, self.prefix, key, doc, done)
        if done:  # only the latest finished tasks are kept: the older ones of this write are never added
            latest = done[-DONE_KEPT:]
            pipe.zadd(self._key("done"), {orjson.dumps(d): _epoch(d.get("done_at")) for d in latest})
            pipe.zremrangebyrank(self._key("done"), 0, -DONE_KEPT - 1)
        for command_id, reply in replies.items():
            pipe.set(self._key(f"reply:{command_id}"), orjson.dumps(reply), ex=REPLY_TTL_S)
            n += 1
        if n:
            await pipe.execute()

    async def tasks(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self._key("tasks"))
        return sorted((orjson.loads(v) for v in raw.values()), key=_task_order)

    async def task(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self._key("tasks"), task_id)
        return orjson.loads(raw) if raw else None

    async def done(self, limit: int = 20) -> list[dict[str, Any]]:
        members = await self.redis.zrevrange(self._key("done"), 0, limit - 1)
        return [orjson.loads(v) for v in members if isinstance(v, bytes | str)]

    async def skus(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self._key("skus"))
        return {_text(k): orjson.loads(v) for k, v in raw.items()}

    async def site(self) -> dict[str, Any] | None:
        raw = await self.redis.get(self._key("site"))
        return orjson.loads(raw) if raw else None

    async def reply(self, command_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._key(f"reply:{command_id}"))
        return orjson.loads(raw) if raw else None


def view_doc(value: BaseModel | str | None) -> Doc | None:
    """What the views show of an entity (or of its JSON text): everything but its applied ids."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude={"applied"})
    doc: Doc = orjson.loads(value)
    doc.pop("applied", None)
    return doc


def _stage(pipe: Any, prefix: str, key: str, doc: Doc | None, done: list[Doc]) -> int:
    kind, _, name = key.partition(":")
    if kind == "task":
        if doc is None or doc["status"] in ("done", "cancelled"):
            pipe.hdel(prefix + "tasks", name)
            if doc is not None:  # the same finished task is the same member: re-writing it adds nothing
                done.append(doc)
        else:
            pipe.hset(prefix + "tasks", name, orjson.dumps(doc))
        return 1
    if kind == "sku" and doc is not None:
        pipe.hset(prefix + "skus", name, orjson.dumps(doc))
        return 1
    if kind == "site" and doc is not None:
        pipe.set(prefix + "site", orjson.dumps(doc))
        return 1
    return 0


def _epoch(stamp: str | None) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0


def _task_order(task: dict[str, Any]) -> tuple[str, str]:
    return (task.get("created_at") or "", task["task_id"])


def reply_of(update: dict[str, Any] | None, command_id: str) -> dict[str, Any]:
    """A worker command's reply: the task update it caused, or why nothing happened."""
    if update is None:
        return {"command_id": command_id, "refused": "unknown task (or not this location's)"}
    return update


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ViewWriter:
    """Writes the views behind the node: it queues what each committed batch changed and one task writes it, in
    order, coalescing what piled up into one pipeline, so the node never waits for Redis. A crash loses only
    views, which the node rebuilds from its store when its task is assigned."""

    def __init__(self, views: NodeViews, retry_s: float = 0.5) -> None:
        self.views = views
        self.retry_s = retry_s
        self._changes: dict[str, Doc | None] = {}
        self._replies: dict[str, Doc] = {}
        self._ready = asyncio.Event()
        self.written = 0

    def put(self, changes: Iterable[tuple[str, BaseModel | str | None]], replies: dict[str, Doc]) -> None:
        """A committed batch's changed entities: their view documents are taken now (the entities may change in
        place in a later batch), written soon."""
        for key, value in changes:
            if key.partition(":")[0] not in VIEWED:
                continue
            self._changes.pop(key, None)  # the latest value of a key, in the order of its latest change
            self._changes[key] = view_doc(value)
        self._replies.update(replies)
        self._ready.set()

    def idle(self) -> bool:
        return not self._changes and not self._replies

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            changes, replies = list(self._changes.items()), self._replies
            self._changes, self._replies = {}, {}
            while True:
                try:
                    await self.views.write(changes, replies)
                    self.written += len(changes)
                    break
                except (OSError, redis.exceptions.RedisError):
                    await asyncio.sleep(self.retry_s)
