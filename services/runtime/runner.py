"""Runs a ``StreamService`` as a process: JSON logs, topics, the engine, a heartbeat, a web app (the service's own
routes if any, and ``GET /metrics`` always; on ``port``, or any free port, named in the heartbeat as ``web_port``).

SIGTERM (or SIGINT) ends it cleanly: the batch in flight is committed, producers closed, the group left.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import os
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web as aioweb

from services.runtime.admin import ensure_topics
from services.runtime.engine import Engine, EngineConfig
from services.runtime.faults import Shutdown, watch_read_model
from services.runtime.logs import configure_logging, get_logger
from services.runtime.metrics import cancel, count_orders, sample_lag, watch, with_metrics
from services.runtime.processing import StreamService
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

log = get_logger(__name__)
HEARTBEAT_INTERVAL_S = 2.0
GC_FREEZE_EVERY_S = 5.0
GC_THAW_EVERY_S = 600.0


async def serve(
    service: StreamService,
    settings: Settings,
    *,
    web: aioweb.Application | None = None,
    port: int = 0,
    locations: Iterable[str] = (),
    heartbeat_name: str | None = None,
    config: EngineConfig | None = None,
    engine: Engine | None = None,
) -> None:
    """Everything ``run_service`` does, in a running event loop, until the engine is stopped."""
    await ensure_topics(settings, locations)
    await service.start()
    engine = engine or Engine(service, settings, config)
    watch(engine)
    await engine.start()
    read_model = ReadModel(settings.redis_url, settings.namespace)
    runner, web_port = await _start_web(with_feeds(with_metrics(web), service), port)
    beat = asyncio.create_task(_heartbeat(read_model, heartbeat_name or service.name, engine.started, web_port))
    background = [beat, asyncio.create_task(keep_gc_pauses_short()), asyncio.create_task(sample_lag(engine)),
                  asyncio.create_task(watch_read_model(read_model, heartbeat_name or service.name, engine))]
    if service.name == "orchestrator":  # the owner of the orders' views counts them
        background.append(asyncio.create_task(count_orders(read_model)))
    try:
        await engine.run()
    finally:
        await cancel(*background)
        await runner.cleanup()
        await read_model.close()


async def keep_gc_pauses_short(
    freeze_every_s: float = GC_FREEZE_EVERY_S, thaw_every_s: float = GC_THAW_EVERY_S
) -> None:
    """Python's full collections scan every object alive, and a service keeps thousands of decoded states in its
    stores: the orchestrator paused for up to 0.8 s (2.7 s of collections in a 30 s run of 2,000 orders), which
    every batch of every task waited out. So every few seconds what survived a young collection is moved out of
    the collector's sight (``gc.freeze``, no copy): full collections then scan only what came since. Cyclic
    garbage among frozen objects is reclaimed when they are thawed and collected, every ten minutes (one full
    pause then, instead of one every few seconds)."""
    gc.freeze()  # what the imports and the start-up built lives as long as the process
    thawed = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every_s)
        if time.monotonic() - thawed >= thaw_every_s:
            gc.unfreeze()
            gc.collect()
            thawed = time.monotonic()
        gc.collect(1)  # the young generations' garbage first: what is frozen is never collected while frozen
        gc.freeze()


def run_service(
    service: StreamService,
    settings: Settings,
    *,
    web: aioweb.Application | None = None,
    port: int = 0,
    locations: Iterable[str] = (),
    heartbeat_name: str | None = None,
    config: EngineConfig | None = None,
) -> None:
    """Run ``service`` in this process until SIGTERM/SIGINT (uvloop when installed)."""
    configure_logging(service.name, settings.log_level)
    _use_uvloop()

    if config is None:
        config = engine_config_from_env(service.name)

    async def main() -> None:
        engine = Engine(service, settings, config)
        main_task = asyncio.current_task()
        assert main_task is not None
        Shutdown(engine, main_task).install()  # a stop bounded in time, even with the broker away
        await serve(
            service, settings, web=web, port=port, locations=locations, heartbeat_name=heartbeat_name,
            engine=engine,
        )

    profile_dir = os.environ.get("BATON_PROFILE")
    if not profile_dir:
        with contextlib.suppress(asyncio.CancelledError):  # a stop that outran its grace (see ``faults``)
            asyncio.run(main())
        return
    # measurements only: the whole run under cProfile, written on a clean stop (SIGTERM)
    profiler = cProfile.Profile(time.process_time)  # CPU time: on a shared machine wall time blames whoever waited
    profiler.enable()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(main())
    finally:
        profiler.disable()
        os.makedirs(profile_dir, exist_ok=True)
        profiler.dump_stats(os.path.join(profile_dir, f"{heartbeat_name or service.name}.pstats"))


def engine_config_from_env(service_name: str) -> EngineConfig:
    """The engine's defaults, with ``BATON_INSTANCE_ID`` (static membership) and ``BATON_ENGINE``, a JSON object
    of ``EngineConfig`` fields to override (for measurements, e.g. ``{"linger_ms": 0}``)."""
    overrides: dict[str, Any] = orjson.loads(os.environ.get("BATON_ENGINE") or "{}")
    known = {f.name for f in dataclasses.fields(EngineConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"BATON_ENGINE: no such engine setting {sorted(unknown)}")
    if os.environ.get("BATON_INSTANCE_ID"):
        overrides["instance_id"] = f"{service_name}-{os.environ['BATON_INSTANCE_ID']}"
    return EngineConfig(**overrides)


async def _heartbeat(read_model: ReadModel, name: str, assigned: asyncio.Event, web_port: int) -> None:
    """The key the scenario runner and ``ServiceSet.wait_ready`` wait for: this process is in its group and
    its tasks are restored (the first beat waits for the first assignment)."""
    started = time.time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(assigned.wait(), timeout=60)
    while True:
        try:
            await read_model.heartbeat(name, {
                "pid": os.getpid(), "started": started, "at": time.time(), "web_port": web_port})
        except Exception as exc:  # Redis is for people's reads: never stop the service for it
            log.warning("heartbeat_failed", error=repr(exc))
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)


def with_feeds(app: aioweb.Application, service: StreamService) -> aioweb.Application:
    """``app`` with ``GET /feeds``: how far each global view of ``service`` has read, ``{topic: {partition:
    next offset}}``. The scenario runner waits on it before its timeline: an order placed the moment the stock
    was loaded must meet a view that holds that stock."""

    async def feeds_view(_: aioweb.Request) -> aioweb.Response:
        report: dict[str, dict[str, int]] = {}
        for feed in service.views():
            report.update(feed.position_report())
        return aioweb.json_response(report)

    app.router.add_get("/feeds", feeds_view)
    return app


async def _start_web(app: aioweb.Application, port: int) -> tuple[aioweb.AppRunner, int]:
    """Serve ``app`` on ``port`` (0: any free port); the runner and the port it got."""
    runner = aioweb.AppRunner(app, access_log=None)
    await runner.setup()
    await aioweb.TCPSite(runner, "127.0.0.1", port).start()
    bound = int(runner.addresses[0][1])
    log.info("web_started", port=bound)
    return runner, bound


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
