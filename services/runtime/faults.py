"""What a service process does about faults around it: a stop asked for while Kafka is away, a Redis that lost
its memory.

**Stopping.** SIGTERM (or SIGINT) asks the engine to finish its batch, commit, close its producers and leave its
group. With the broker down none of that can finish: a commit waits out its timeout (30 s), an abort as long,
and the clients retry for ever. So the stop is bounded: a service still starting (no loop yet, nothing to
commit) is cancelled at once; a running one gets ``STOP_GRACE_S`` to stop cleanly, then its main task is
cancelled (the engine's clean-up runs, each step bounded); at ``HARD_EXIT_S`` the process kills itself (-9).
Each of these is safe by the processing model: what was not committed is aborted by the broker or fenced by the
task's next owner, exactly as after kill -9 (decision 0012).

**Redis emptied.** The views in Redis (orders, availability, WMS work) are written after each commit, and
rebuilt from the stores when a task is assigned. A Redis restarted without its data loses them all, so each
service keeps a marker key of its own there (set when absent, never expiring, written by nobody else): found
missing after it was set means Redis lost its keys, and the engine rejoins its group, which assigns its tasks
again (their stores kept: only the changelogs' tails are read) and so writes every view again. (Not the
heartbeat key: the heartbeat may write it again before the check comes round.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

from services.runtime.engine import Engine
from services.runtime.logs import get_logger
from services.runtime.readmodel import ReadModel

log = get_logger(__name__)

STOP_GRACE_S = 5.0  # a running engine's own clean stop, at most
HARD_EXIT_S = 9.0  # then the process exits whatever it is waiting for (the bound is 10 s)
READ_MODEL_CHECK_S = 2.0


class Shutdown:
    """Bounded stop on SIGTERM/SIGINT for a process whose main coroutine is ``main`` running ``engine``."""

    def __init__(self, engine: Engine, main: asyncio.Task[Any], *, grace_s: float = STOP_GRACE_S,
                 hard_exit_s: float = HARD_EXIT_S) -> None:
        self.engine = engine
        self.main = main
        self.grace_s = grace_s
        self.hard_exit_s = hard_exit_s
        self.requested = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request)

    def request(self) -> None:
        """First signal: stop cleanly within the grace; a second one: cancel now."""
        if self.requested:
            self._cancel("second signal")
            return
        self.requested = True
        log.info("stop_requested", grace_s=self.grace_s, hard_exit_s=self.hard_exit_s)
        self.engine.stop()
        # a timer thread, not the loop: it fires even if the loop itself is stuck
        timer = threading.Timer(self.hard_exit_s, self._exit_now)
        timer.daemon = True
        timer.start()
        if not self.engine.running:
            self._cancel("still starting")  # waiting for Kafka or a view: nothing to commit yet
            return
        asyncio.get_running_loop().call_later(self.grace_s, self._cancel, "grace over")

    def _cancel(self, why: str) -> None:
        if not self.main.done():
            log.warning("stop_cancelling", why=why)
            self.main.cancel()

    def _exit_now(self) -> None:
        """As kill -9 would: no clean-up left to wait for (nothing uncommitted is visible to anyone)."""
        os.write(2, b'{"event": "stop_forced", "level": "warning", "why": "still running at the hard exit bound"}\n')
        os.kill(os.getpid(), signal.SIGKILL)


async def watch_read_model(read_model: ReadModel, name: str, engine: Engine,
                           every_s: float = READ_MODEL_CHECK_S) -> None:
    """Rejoin the group (every view written again) when this service's marker key vanished from Redis."""
    marked = False
    while True:
        await asyncio.sleep(every_s)
        try:
            was_missing = await read_model.mark_views(name)
        except Exception:  # Redis away: nothing to tell yet (the heartbeat logs it)
            continue
        if marked and was_missing:
            log.warning("read_model_lost_rebuilding_views", service=name)
            engine.rejoin()
        marked = True


__all__ = ["HARD_EXIT_S", "STOP_GRACE_S", "Shutdown", "watch_read_model"]
