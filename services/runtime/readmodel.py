"""The Redis read model: order status and availability, written in pipelined batches by the services.

Key layout (``{ns}`` is the namespace):
  {ns}:order:{order_id}   JSON view of an order (status, lines, shipments, promised date)
  {ns}:orders             set of every order id seen
  {ns}:stock:{sku}        hash: location -> JSON availability (on_hand, reserved, safety_stock, available, incoming)
  {ns}:skus               set of every SKU with stock
  {ns}:service:{name}     JSON heartbeat of a running service
  {ns}:views:{name}       a marker a service sets once: missing later, Redis lost its keys (views rebuilt)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from schemas.inventory import AvailabilityChanged
from services.runtime.settings import redis_connection_url

# HSET key field doc unless the stored doc has a higher "version" (ARGV: field, doc, version)
_HSET_IF_NOT_OLDER = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  local ok, doc = pcall(cjson.decode, stored)
  if ok and type(doc) == 'table' and doc['version'] and tonumber(doc['version']) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


# SET key doc unless the stored doc has the same or a higher "version" (ARGV: doc, version)
_SET_IF_NEWER = """
local stored = redis.call('GET', KEYS[1])
if stored then
  local ok, doc = pcall(cjson.decode, stored)
  if ok and type(doc) == 'table' and doc['version'] and tonumber(doc['version']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class ReadModel:
    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis = aioredis.from_url(redis_connection_url(redis_url))
        self.prefix = f"{namespace}:"

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def close(self) -> None:
        await self.redis.aclose()

    async def write_orders(self, views: Iterable[Mapping[str, Any]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        ids = []
        for view in views:
            ids.append(view["order_id"])
            pipe.set(self._key("order", view["order_id"]), orjson.dumps(view))
        if ids:
            pipe.sadd(self._key("orders"), *ids)
            await pipe.execute()

    async def write_orders_if_newer(self, views: Iterable[Mapping[str, Any]]) -> None:
        """Like ``write_orders``, but a view never replaces one of the same or a higher ``version`` (re-syncs
        running beside the live writes)."""
        pipe = self.redis.pipeline(transaction=False)
        ids = []
        for view in views:
            ids.append(view["order_id"])
            pipe.eval(_SET_IF_NEWER, 1, self._key("order", view["order_id"]), orjson.dumps(view), view["version"])
        if ids:
            pipe.sadd(self._key("orders"), *ids)
            await pipe.execute()

    async def read_order(self, order_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._key("order", order_id))
        return orjson.loads(raw) if raw else None

    async def read_orders(self, order_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        if not order_ids:
            return {}
        raws = await self.redis.mget([self._key("order", o) for o in order_ids])
        return {o: (orjson.loads(r) if r else None) for o, r in zip(order_ids, raws, strict=True)}

    async def order_ids(self) -> list[str]:
        members = await self.redis.smembers(self._key("orders"))
        return sorted(_text(m) for m in members)

    async def write_availability(self, changes: Iterable[AvailabilityChanged]) -> None:
        """Write positions, never replacing a newer version with an older one.

        A re-delivered command replays the events it emitted the first time, with the availability of that
        moment; the version guard keeps such a replay from overwriting what the ledger has since become.
        """
        pipe = self.redis.pipeline(transaction=False)
        skus = set()
        for change in changes:
            skus.add(change.sku)
            document = orjson.dumps(change.model_dump(mode="json"))
            pipe.eval(_HSET_IF_NOT_OLDER, 1, self._key("stock", change.sku), change.location, document, change.version)
        if skus:
            pipe.sadd(self._key("skus"), *skus)
            await pipe.execute()

    async def read_availability(self, skus: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """SKU -> location -> availability document, in one round trip."""
        wanted = sorted(set(skus))
        pipe = self.redis.pipeline(transaction=False)
        for sku in wanted:
            pipe.hgetall(self._key("stock", sku))
        results = await pipe.execute() if wanted else []
        return {
            sku: {loc.decode(): orjson.loads(doc) for loc, doc in rows.items()}
            for sku, rows in zip(wanted, results, strict=True)
        }

    async def all_skus(self) -> list[str]:
        return sorted(_text(m) for m in await self.redis.smembers(self._key("skus")))

    async def heartbeat(self, service: str, info: Mapping[str, Any]) -> None:
        await self.redis.set(self._key("service", service), orjson.dumps(dict(info)), ex=60)

    async def mark_views(self, service: str) -> bool:
        """Set the service's views marker; True when it was missing (Redis lost its keys since it was last set)."""
        return bool(await self.redis.set(self._key("views", service), b"1", nx=True))

    async def views_marked(self, service: str) -> bool:
        """The service's views marker is set (after a Redis restart: the service noticed and rewrites its views)."""
        return bool(await self.redis.exists(self._key("views", service)))

    async def services(self) -> dict[str, dict[str, Any]]:
        keys = [k async for k in self.redis.scan_iter(match=self._key("service", "*"))]
        values = await self.redis.mget(keys) if keys else []
        return {k.decode().rsplit(":", 1)[-1]: orjson.loads(v) for k, v in zip(keys, values, strict=True) if v}

    async def purge(self) -> int:
        keys = [k async for k in self.redis.scan_iter(match=self.prefix + "*", count=1000)]
        for start in range(0, len(keys), 500):
            await self.redis.delete(*keys[start : start + 500])
        return len(keys)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CapacityCounter:
    """Orders handed to each location per day (``{ns}:capacity:{location}:{date}``), for daily capacity."""

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model

    def _key(self, location: str, day: str) -> str:
        return self.read_model._key("capacity", location, day)

    async def used(self, locations: Iterable[str], day: str) -> dict[str, int]:
        wanted = sorted(set(locations))
        if not wanted:
            return {}
        values = await self.read_model.redis.mget([self._key(loc, day) for loc in wanted])
        return {loc: int(v or 0) for loc, v in zip(wanted, values, strict=True)}

    async def add(self, locations: Iterable[str], day: str) -> None:
        pipe = self.read_model.redis.pipeline(transaction=False)
        for location in locations:
            pipe.incr(self._key(location, day))
            pipe.expire(self._key(location, day), 3 * 24 * 3600)
        await pipe.execute()
