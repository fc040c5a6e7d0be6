"""What every service process shares: a heartbeat in the read model and how a worker is run."""

from __future__ import annotations

import os
import time

import faust
from faust import Worker

from services.runtime.logs import configure_logging
from services.runtime.readmodel import ReadModel


def attach_heartbeat(app: faust.App, read_model: ReadModel, name: str, interval: float = 2.0) -> None:
    started = time.time()

    @app.timer(interval=interval)
    async def heartbeat() -> None:
        await read_model.heartbeat(name, {"pid": os.getpid(), "started": started, "at": time.time()})


def run_worker(app: faust.App, service: str, log_level: str = "INFO") -> None:
    """Run a faust app in this process until SIGTERM/SIGINT, with JSON logs."""
    configure_logging(service, log_level)
    # faust's worker writes terminal control codes (a spinner, cursor show/hide) to stdout; logs go to stderr.
    with open(os.devnull, "w") as quiet_stdout:
        worker = Worker(
            app,
            loglevel=log_level,
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
            stdout=quiet_stdout,
        )
        worker.execute_from_commandline()
