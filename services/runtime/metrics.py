"""Prometheus metrics of a service process (``GET /metrics`` on its web port, ``prometheus-client``'s text format).

  baton_records_handled_total{service,type}        records the service handled, by message type
  baton_handling_seconds{service}                  time in the handler per record (histogram)
  baton_transaction_seconds{service,outcome}       one task's transaction: send, offsets, delivery, commit
  baton_batch_records{service}                     records per task batch (histogram)
  baton_consumer_lag_records{service,topic}        records not yet handled per input topic
  baton_dead_letters_total{service,topic}          records dead-lettered, by the topic they came from
  baton_orders{status}                             orders per status in the read model (the orchestrator only)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from services.runtime.engine import Engine, EngineObserver
from services.runtime.logs import get_logger
from services.runtime.readmodel import ReadModel

log = get_logger(__name__)
LAG_EVERY_S = 2.0
ORDERS_EVERY_S = 10.0
ORDERS_CHUNK = 1000

RECORDS_HANDLED = Counter("baton_records_handled", "Records handled, by message type", ["service", "type"])
HANDLING_SECONDS = Histogram(
    "baton_handling_seconds", "Time in the handler per record", ["service"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
)
TRANSACTION_SECONDS = Histogram(
    "baton_transaction_seconds", "One task's transaction, begin to commit", ["service", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
BATCH_RECORDS = Histogram(
    "baton_batch_records", "Records per task batch", ["service"], buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
CONSUMER_LAG = Gauge("baton_consumer_lag_records", "Records not yet handled per input topic", ["service", "topic"])
DEAD_LETTERS = Counter("baton_dead_letters", "Records dead-lettered, by their topic", ["service", "topic"])
ORDERS = Gauge("baton_orders", "Orders per status in the read model", ["status"])


class EngineMetrics(EngineObserver):
    """The engine's observer that counts into the process's Prometheus registry."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.handling = HANDLING_SECONDS.labels(service)
        self.batches = BATCH_RECORDS.labels(service)
        self.handled_by_type: dict[str, Counter] = {}

    def handled(self, message_type: str, seconds: float) -> None:
        counter = self.handled_by_type.get(message_type)
        if counter is None:
            counter = self.handled_by_type[message_type] = RECORDS_HANDLED.labels(self.service, message_type)
        counter.inc()
        self.handling.observe(seconds)

    def dead_lettered(self, topic: str) -> None:
        DEAD_LETTERS.labels(self.service, topic).inc()

    def batch(self, size: int) -> None:
        if size > 0:
            self.batches.observe(size)

    def transaction(self, seconds: float, committed: bool) -> None:
        TRANSACTION_SECONDS.labels(self.service, "committed" if committed else "failed").observe(seconds)


def watch(engine: Engine) -> EngineMetrics:
    """Count what ``engine`` does from now on."""
    engine.observer = metrics = EngineMetrics(engine.service.name)
    return metrics


async def sample_lag(engine: Engine, every_s: float = LAG_EVERY_S) -> None:
    """Keep the consumer lag gauge current (the engine knows it; a scrape cannot ask its loop)."""
    while True:
        for topic, behind in (await engine.lag()).items():
            CONSUMER_LAG.labels(engine.service.name, topic).set(behind)
        await asyncio.sleep(every_s)


async def count_orders(read_model: ReadModel, every_s: float = ORDERS_EVERY_S) -> None:
    """Orders per status, from the read model, in chunks (never one huge MGET)."""
    while True:
        try:
            ids = await read_model.order_ids()
            statuses: Tally[str] = Tally()
            for start in range(0, len(ids), ORDERS_CHUNK):
                views = await read_model.read_orders(ids[start : start + ORDERS_CHUNK])
                statuses.update(str(view.get("status")) for view in views.values() if view)
            for status, count in statuses.items():
                ORDERS.labels(status).set(count)
        except Exception as exc:  # Redis is for people's reads: never stop the service for it
            log.warning("orders_count_failed", error=repr(exc))
        await asyncio.sleep(every_s)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def with_metrics(app: web.Application | None) -> web.Application:
    """``app`` (or a new one) with ``GET /metrics``."""
    app = app if app is not None else web.Application()
    app.router.add_get("/metrics", metrics_view)
    return app


async def cancel(*background: asyncio.Task[None]) -> None:
    for task in background:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
