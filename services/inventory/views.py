"""The inventory's in-memory views beside its ledgers: timed holds to expire, and availability for Redis.

Neither is the truth (the ledgers in the task's store are): both are rebuilt from the store when a task is
assigned, and both are fed only with what a committed batch changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta

import redis.exceptions

from schemas.envelope import derived_id
from schemas.inventory import AvailabilityChanged, ExpireReservation
from schemas.topics import INVENTORY_COMMANDS
from services.inventory.domain.ledger import SkuLedger
from services.runtime.logs import get_logger
from services.runtime.outbox import Emit
from services.runtime.readmodel import ReadModel

EXPIRY_GRACE = timedelta(seconds=5)  # the orchestrator expires its holds first; this is the safety net
RESEND_AFTER = timedelta(seconds=30)  # an expiry whose transaction was lost is sent again (same id: harmless)
REDIS_RETRY_MAX_S = 5.0
log = get_logger(__name__)
Deadline = tuple[datetime, str, str]  # (expires_at, reservation id, order id)


class Expiries:
    """The timed holds of one task, by SKU, from the ledgers its committed batches wrote."""

    def __init__(self) -> None:
        self.by_sku: dict[str, list[Deadline]] = {}
        self.sent: dict[str, datetime] = {}  # reservation id -> when its ExpireReservation was last sent
        self.tracked: set[str] = set()  # SKUs whose holds are known (so a late rebuild leaves them alone)

    def track(self, ledger: SkuLedger) -> None:
        self.tracked.add(ledger.sku)
        deadlines = ledger.deadlines()
        if deadlines:
            self.by_sku[ledger.sku] = deadlines
        elif self.by_sku.pop(ledger.sku, None) is None:
            return
        if self.sent:
            live = {rid for items in self.by_sku.values() for _, rid, _ in items}
            self.sent = {rid: at for rid, at in self.sent.items() if rid in live}

    def track_if_unknown(self, ledger: SkuLedger) -> None:
        """From the store when a task is assigned: what a committed batch tracked since is newer."""
        if ledger.sku not in self.tracked:
            self.track(ledger)

    def due(self, now: datetime) -> list[Emit]:
        """``ExpireReservation`` for every hold lapsed more than the grace ago, not sent recently."""
        out = []
        for sku, items in self.by_sku.items():
            for at, rid, order_id in items:
                if at > now - EXPIRY_GRACE:
                    break  # sorted by time: the rest of this SKU's holds are not due either
                last = self.sent.get(rid)
                if last is not None and now - last < RESEND_AFTER:
                    continue
                self.sent[rid] = now
                expire = ExpireReservation(reservation_id=rid, order_id=order_id, sku=sku)
                out.append(Emit.to(INVENTORY_COMMANDS, sku, expire, derived_id(rid, "expire")))
        return out


def latest_per_position(changes: Iterable[AvailabilityChanged]) -> dict[tuple[str, str], AvailabilityChanged]:
    latest: dict[tuple[str, str], AvailabilityChanged] = {}
    for change in changes:
        key = (change.sku, change.location)
        known = latest.get(key)
        if known is None or change.version >= known.version:
            latest[key] = change
    return latest


class AvailabilityWriter:
    """Writes availability to the Redis read model behind the processing loop, coalesced.

    ``offer`` never waits: it keeps the newest version of each position; one background task writes
    whatever is pending in one pipeline, retrying Redis hiccups, so a slow Redis slows only people's reads.
    The read model's version guard keeps a late write from replacing a newer one.
    """

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model
        self.pending: dict[tuple[str, str], AvailabilityChanged] = {}
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run(), name="inventory-availability-writer")

    def offer(self, changes: Iterable[AvailabilityChanged]) -> None:
        for key, change in latest_per_position(changes).items():
            known = self.pending.get(key)
            if known is None or change.version >= known.version:
                self.pending[key] = change
        if self.pending:
            self.idle.clear()
            self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = list(self.pending.values()), {}
            await self.write(batch)
            if not self.pending:
                self.idle.set()

    async def write(self, batch: list[AvailabilityChanged]) -> None:
        attempt = 0
        while True:
            try:
                await self.read_model.write_availability(batch)
                return
            except (OSError, TimeoutError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                attempt += 1
                log.warning("redis_write_failed", positions=len(batch), attempt=attempt, error=repr(exc))
                await asyncio.sleep(min(0.1 * 2**attempt, REDIS_RETRY_MAX_S))

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (a little) for what is pending to be written, then stop the writer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout_s)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
