"""Wait until every running service's global views (network, catalog, rules, availability) hold what was
committed so far.

Each service follows those topics beside its engine and decides from what it has read: an order placed the
moment the stock was loaded would otherwise meet an orchestrator whose view of availability is a fetch behind,
and be rejected for want of stock that is there. The scenario runner (and so the demo and the bench) waits here
after loading the stock and before its timeline, reading how far each view got from the service's ``GET /feeds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

import aiohttp

from services.runtime.admin import written_end_offsets
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

Progress = Callable[[str, int, int], None]
Positions = dict[str, dict[str, int]]  # topic -> partition (as text, JSON keys) -> next offset to read


async def wait_stock_loaded(
    read_model: ReadModel, expected: Mapping[tuple[str, str], int], timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> None:
    """Return once the inventory's read model shows each ``(location, sku)`` on hand at its expected quantity."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        docs = await read_model.read_availability(sku for _, sku in expected)
        loaded = sum(1 for (loc, sku), qty in expected.items() if docs.get(sku, {}).get(loc, {}).get("on_hand") == qty)
        if progress is not None:
            progress("loading stock", loaded, len(expected))
        if loaded == len(expected):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the inventory service did not load the initial stock in time")


async def wait_views_current(settings: Settings, services: Iterable[str], timeout_s: float = 30.0) -> None:
    """Return once each of ``services`` has read its views up to the ends written when called."""
    names = list(services)
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        beats = await read_model.services()
    finally:
        await read_model.close()
    ports = {name: int(beats[name]["web_port"]) for name in names if beats.get(name, {}).get("web_port")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        reports = {name: await _positions(http, port) for name, port in ports.items()}
        topics = {topic for report in reports.values() for topic in report}
        ends = await written_end_offsets(settings, sorted(topics))
        deadline = time.monotonic() + timeout_s
        while behind := [name for name, report in reports.items() if not view_holds(report, ends)]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the views of {behind} did not catch up in {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
            reports.update({name: await _positions(http, ports[name]) for name in behind})


async def _positions(http: aiohttp.ClientSession, port: int) -> Positions:
    async with http.get(f"http://127.0.0.1:{port}/feeds") as response:
        response.raise_for_status()
        report: Positions = await response.json()
        return report


def view_holds(report: Positions, ends: dict[tuple[str, int], int]) -> bool:
    """Every partition of every topic the service follows read up to its end (a partition not read yet is at 0)."""
    return all(
        report.get(topic, {}).get(str(partition), 0) >= end
        for (topic, partition), end in ends.items()
        if topic in report
    )
