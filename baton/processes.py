"""Start the services as their own processes, wait for them, and stop exactly the ones started here."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings


@dataclass
class ServiceProcess:
    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "baton", "run", *self.args],
            # static membership: restarted after a crash, the process takes its tasks back at once instead of
            # waiting for the dead one's session to expire (the id is unique per process of the namespace)
            env={**env, "BATON_INSTANCE_ID": self.name},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """Crash the service on purpose (fault tests): no shutdown, no commit, no goodbye."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, grace_s: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class ServiceSet:
    """The orchestrator, the inventory service, the payment adapter and one WMS node per location, for a namespace."""

    settings: Settings
    locations: list[str]
    auto_workers: bool = True
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    worker_config: str | None = None  # the simulated workers' behaviour the services were started with
    payments_fail_first: int = 0  # the simulated payment adapter fails its first N refund requests

    def __post_init__(self) -> None:
        logs = self.settings.home / "runs" / self.settings.namespace
        self.services["orchestrator"] = ServiceProcess("orchestrator", ["orchestrator"], logs / "orchestrator.log")
        self.services["inventory"] = ServiceProcess("inventory", ["inventory"], logs / "inventory.log")
        self.services["payments"] = ServiceProcess(
            "payments", ["payments", "--fail-first", str(self.payments_fail_first)], logs / "payments.log")
        for location in self.locations:
            args = ["wms", "--location", location, *(["--auto"] if self.auto_workers else [])]
            name = f"wms-{location}"
            self.services[name] = ServiceProcess(name, args, logs / f"{name}.log")

    def env(self, worker_config: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BATON_NAMESPACE=self.settings.namespace,
            BATON_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            BATON_REDIS_URL=self.settings.redis_url,
            BATON_HOME=str(self.settings.home),
            BATON_PARTITIONS=str(self.settings.partitions),
            # a service creates its changelog topics itself: with the set's replication, not whatever the
            # caller's environment says (on a three-broker cluster a changelog of one replica dies with its broker)
            BATON_REPLICATION_FACTOR=str(self.settings.replication_factor),
        )
        if worker_config:
            env["BATON_WORKERS"] = worker_config
        return env

    def start(self, worker_config: str | None = None) -> None:
        self.worker_config = worker_config
        env = self.env(worker_config)
        for service in self.services.values():
            service.start(env)

    def restart(self, name: str, worker_config: str | None = None) -> None:
        self.services[name].start(self.env(worker_config))

    def kill_and_restart(self, name: str) -> float:
        """kill -9 a service and start it again at once, as a supervisor would; returns when it died (epoch s)."""
        service = self.services[name]
        service.kill9()
        killed_at = time.time()
        service.start(self.env(self.worker_config))
        return killed_at

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Every service has sent a heartbeat since it started (its faust app is running)."""
        read_model = ReadModel(self.settings.redis_url, self.settings.namespace)
        started = time.time()
        try:
            while True:
                beats = await read_model.services()
                missing = [
                    n for n, s in self.services.items() if beats.get(n, {}).get("pid") != s.pid
                ]
                if not missing:
                    return
                dead = [n for n, s in self.services.items() if not s.alive()]
                if dead:
                    raise RuntimeError(f"service(s) exited at start-up: {dead}; see {self.log_dir()}")
                if time.time() - started > timeout_s:
                    raise TimeoutError(f"service(s) not ready after {timeout_s:.0f} s: {missing}")
                await asyncio.sleep(0.25)
        finally:
            await read_model.close()

    def log_dir(self) -> Path:
        return self.settings.home / "runs" / self.settings.namespace

    def stop(self) -> None:
        for service in self.services.values():
            if service.alive():
                assert service.process is not None
                service.process.send_signal(signal.SIGTERM)
        for service in self.services.values():
            service.stop()
