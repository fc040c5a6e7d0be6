"""The local stack: a real Kafka (KRaft, run from its Maven Central jars: one node, or a three-node
cluster with ``--brokers 3``) and Redis, optionally secured (``--secure``: SASL/SCRAM, ACLs, Redis users).

A cluster's nodes listen on consecutive ports from ``BATON_KAFKA_BOOTSTRAP``'s (e.g. 19092-19094) with their
controllers 100 above (19192-19194). The shape (brokers, secure) is recorded in ``<home>/stack/layout.json``,
so ``status`` and ``down`` handle what ``up`` started.

Whatever already answers at ``BATON_KAFKA_BOOTSTRAP`` / ``BATON_REDIS_URL`` is reused and never touched.
What baton starts itself is recorded by PID file under ``<home>/stack/`` and is the only thing ``down`` stops:
by PID, after checking the PID still runs the expected program.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import redis
from aiokafka.admin import AIOKafkaAdminClient

from baton.stack import security
from services.runtime.settings import Settings, get_settings, project_root

KAFKA = "kafka"
REDIS = "redis"
SERVICES = (KAFKA, REDIS)
# What /proc/<pid>/cmdline of a process baton started must contain before baton signals it.
PROCESS_MARKERS = {KAFKA: "kafka.Kafka", REDIS: "redis-server"}
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_JAVA = 17
STOP_GRACE_S = 30.0
KAFKA_JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true")
CLUSTER_JVM_OPTS = ("-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
CONTROLLER_PORT_OFFSET = 100  # a cluster node's controller listens this far above its client port
LOG_TAIL_LINES = 40

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The stack cannot be brought up or down; the message says why and what to do about it."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def local(self) -> bool:
        return self.host in LOOPBACK

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def kafka_endpoint(bootstrap: str) -> Endpoint:
    """The first address of a bootstrap list such as ``127.0.0.1:9092,127.0.0.1:9094``."""
    first = bootstrap.split(",")[0].strip().split("://")[-1]
    host, _, port = first.rpartition(":")
    return Endpoint(host.strip("[]") or "127.0.0.1", int(port or 9092))


def redis_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)


@dataclass(frozen=True)
class ServiceStatus:
    """One part of the stack: whether it answers, and the PID when baton started it."""

    name: str
    address: str
    answering: bool
    pid: int | None = None
    started_now: bool = False
    log: str | None = None
    nodes_owned: int = 0  # a cluster's summary row: how many of its nodes baton started

    @property
    def owner(self) -> str:
        if self.pid is not None:
            return f"baton (pid {self.pid})"
        if self.nodes_owned:
            return f"baton ({self.nodes_owned} nodes)"
        return "external" if self.answering else "-"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "owner": self.owner}


@dataclass(frozen=True)
class StackStatus:
    kafka: ServiceStatus
    redis: ServiceStatus
    brokers: tuple[ServiceStatus, ...] = ()  # a cluster's nodes, one by one (empty for one broker)
    secure: bool = False

    @property
    def services(self) -> tuple[ServiceStatus, ...]:
        return (self.kafka, *self.brokers, self.redis)

    @property
    def healthy(self) -> bool:
        return all(service.answering for service in self.services)

    @property
    def started_now(self) -> tuple[str, ...]:
        return tuple(service.name for service in self.services if service.started_now)

    def to_dict(self) -> dict[str, object]:
        return {
            **{service.name: service.to_dict() for service in self.services},
            "brokers": len(self.brokers) or 1,
            "secure": self.secure,
        }


@dataclass(frozen=True)
class Layout:
    """The shape of the Kafka a home's stack runs: how many nodes, secured or not, the cluster id."""

    brokers: int = 1
    secure: bool = False
    cluster_id: str = field(default_factory=lambda: new_cluster_id())
    locations: tuple[str, ...] = ()
    tls: bool = False  # secured only: SASL_SSL on the client listener, a CA generated at set-up

    def same_shape(self, other: Layout) -> bool:
        return (self.brokers, self.secure, self.tls) == (other.brokers, other.secure, other.tls)


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    name: str  # "kafka" alone, "kafka-1".."kafka-3" in a cluster: the PID file and log directory names
    endpoint: Endpoint
    controller_port: int
    directory: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def config(self) -> Path:
        return self.directory / "server.properties"


def kafka_nodes(base: Endpoint, brokers: int, stack_dir: Path) -> list[KafkaNode]:
    """One node keeps its historical names and ports (controller on port + 1); a cluster counts up."""
    if brokers == 1:
        return [KafkaNode(1, KAFKA, base, base.port + 1, stack_dir / KAFKA)]
    return [
        KafkaNode(
            i,
            f"{KAFKA}-{i}",
            Endpoint(base.host, base.port + i - 1),
            base.port + CONTROLLER_PORT_OFFSET + i - 1,
            stack_dir / f"{KAFKA}-{i}",
        )
        for i in range(1, brokers + 1)
    ]


def marker_of(name: str) -> str:
    return PROCESS_MARKERS[KAFKA] if name.startswith(KAFKA) else PROCESS_MARKERS[name]


# --- probes -----------------------------------------------------------------------------------


def port_open(endpoint: Endpoint, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except OSError:
        return False


def _metadata_request(correlation_id: int) -> bytes:
    """A Kafka Metadata v4 request for no topics (v0-v3 are gone since Kafka 4.0)."""
    client_id = b"baton-stack"
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    return struct.pack(">i", len(header) + len(body)) + header + body


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("connection closed before a full response")
        data += chunk
    return data


def kafka_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the first bootstrap address answers a Metadata request listing at least one broker."""
    endpoint = kafka_endpoint(bootstrap)
    correlation_id = os.getpid() & 0x7FFFFFFF
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request(correlation_id))
            _size, answered_id, _throttle, brokers = struct.unpack(">iiii", _recv_exact(sock, 16))
    except (OSError, ValueError):
        return False
    return answered_id == correlation_id and brokers > 0


def _api_versions_request(correlation_id: int) -> bytes:
    """ApiVersions v0: answered before authentication, so it probes a SASL listener too."""
    client_id = b"baton-stack"
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header)) + header


def kafka_node_answers(endpoint: Endpoint, timeout: float = 2.0, ca_file: Path | None = None) -> bool:
    """True when a broker at ``endpoint`` answers ApiVersions without error (no credentials needed; over TLS
    trusting ``ca_file`` when given)."""
    correlation_id = os.getpid() & 0x7FFFFFFF
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
            sock = ssl.create_default_context(cafile=ca_file).wrap_socket(raw, server_hostname=endpoint.host) \
                if ca_file else raw
            sock.settimeout(timeout)
            sock.sendall(_api_versions_request(correlation_id))
            _size, answered_id, error = struct.unpack(">iih", _recv_exact(sock, 10))
    except (OSError, ValueError):
        return False
    return answered_id == correlation_id and error == 0


async def _count_brokers(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=10000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster["brokers"])
    finally:
        await admin.close()


def cluster_brokers(settings: Settings) -> int:
    """How many brokers the cluster's metadata lists (0 when it cannot be asked)."""
    try:
        return asyncio.run(asyncio.wait_for(_count_brokers(settings), 15))
    except Exception:  # any failure to ask means "not ready yet"
        return 0


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


# --- processes --------------------------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def process_matches(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline and process_alive(pid)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_pid(pid: int, marker: str, grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM (then SIGKILL after ``grace`` s) ``pid`` if it still runs ``marker``; False if it did not."""
    if not process_matches(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    return True


def spawn_detached(argv: list[str], log_path: Path) -> int:
    """Start ``argv`` in its own session, stdin from /dev/null, stdout and stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out, open(os.devnull, "rb") as devnull:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
        ]
        pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions, setsid=True)
    wait_for_cmdline(pid)
    return pid


def wait_for_cmdline(pid: int, timeout: float = 2.0) -> None:
    """Right after an exec, /proc/<pid>/cmdline can read empty for a moment; wait it out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        time.sleep(0.01)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if found is None:
        return 0
    major = int(found[1])
    return int(found[2] or 0) if major == 1 else major


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64, never starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _stack_resource(name: str) -> str:
    return resources.files("baton.stack").joinpath(name).read_text()


# --- the stack --------------------------------------------------------------------------------


class LocalStack:
    """Brings the local Kafka and Redis up and down; see the module docstring for the rules."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        timeout: float = 90.0,
        echo: Callable[[str], None] | None = None,
        brokers: int | None = None,
        secure: bool | None = None,
        locations: tuple[str, ...] = (),
        tls: bool | None = None,
        jars_dir: Path | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.timeout = timeout
        self.echo = echo or log.info
        self.jars_dir = jars_dir or self.settings.home / "kafka-jars"
        self.stack_dir = self.settings.home / "stack"
        self.kafka_dir = self.stack_dir / "kafka"
        self.kafka_data = self.kafka_dir / "data"
        self.redis_dir = self.stack_dir / "redis"
        self.credentials_dir = self.stack_dir / "credentials"
        self.kafka_ep = kafka_endpoint(self.settings.kafka_bootstrap)
        self.redis_ep = redis_endpoint(self.settings.redis_url)
        self.recorded = self._read_layout()
        known = self.recorded or Layout()
        wanted = Layout(brokers or known.brokers, secure if secure is not None else known.secure,
                        locations=locations, tls=tls if tls is not None else known.tls)
        if self.recorded is not None and self.recorded.same_shape(wanted):
            wanted = Layout(wanted.brokers, wanted.secure, self.recorded.cluster_id,
                            tuple(sorted({*self.recorded.locations, *locations})), wanted.tls)
        self.layout = wanted
        self.nodes = kafka_nodes(self.kafka_ep, self.layout.brokers, self.stack_dir)

    @property
    def bootstrap(self) -> str:
        """Every node's client address, for clients of a cluster."""
        return ",".join(str(node.endpoint) for node in self.nodes)

    def admin_settings(self) -> Settings:
        """Settings that reach this stack as its super user (the admin principal when secured)."""
        update: dict[str, object] = {"kafka_bootstrap": self.bootstrap}
        if self.layout.secure:
            update.update(
                kafka_security_protocol="SASL_SSL" if self.layout.tls else "SASL_PLAINTEXT",
                kafka_ca_file=self.ca_file if self.layout.tls else None,
                kafka_credentials_file=self.credentials_dir / f"{security.ADMIN}.properties",
                kafka_credentials_dir=None,
                kafka_username=None,
                kafka_password=None,
                redis_url=self.redis_url_for(security.ADMIN),
            )
        return self.settings.model_copy(update=update)

    @property
    def ca_file(self) -> Path:
        """The CA certificate a client of a TLS stack trusts (generated at set-up)."""
        return self.stack_dir / "tls" / "ca.pem"

    def _node_answers(self, node: KafkaNode) -> bool:
        return kafka_node_answers(node.endpoint, ca_file=self.ca_file if self.layout.tls else None)

    def redis_url_for(self, principal: str) -> str:
        password = security.read_credentials(self.credentials_dir / f"{principal}.properties")[1]
        return f"redis://{principal}:{password}@{self.redis_ep}/0"

    # public -------------------------------------------------------------------------------

    def up(self, *, fresh: bool = False) -> StackStatus:
        """Make Kafka and Redis answer (idempotent); what this starts stays up until ``down``."""
        with self._locked():
            self._check_layout(fresh)
            status = self._up(fresh=fresh)
            self._ephemeral_file.unlink(missing_ok=True)
            return status

    def down(self, *, wipe: bool = False) -> StackStatus:
        """Stop what baton started (by PID file); ``wipe`` also deletes Kafka's data."""
        with self._locked():
            for name in (*self._node_names(), REDIS):
                self._stop(name)
            self._ephemeral_file.unlink(missing_ok=True)
            if wipe:
                self._wipe_kafka()
            return self._status()

    def status(self) -> StackStatus:
        return self._status()

    def acquire(self) -> tuple[StackStatus, Path]:
        """``up`` for a test session: a lease, and what it starts is stopped when the last lease ends."""
        with self._locked():
            status = self._up()
            self._mark_ephemeral(status.started_now)
            lease = self._lease_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            lease.parent.mkdir(parents=True, exist_ok=True)
            lease.touch()
            return status, lease

    def release(self, lease: Path) -> tuple[str, ...]:
        """End a lease; when no live lease is left, stop what leased sessions started."""
        with self._locked():
            lease.unlink(missing_ok=True)
            if self._live_leases():
                return ()
            ephemeral = self._ephemeral()
            kafka = self._node_names() if KAFKA in ephemeral else ()
            names = tuple(name for name in (*kafka, *(n for n in ephemeral if n != KAFKA)) if self._stop(name))
            self._ephemeral_file.unlink(missing_ok=True)
            return names

    def pid_file(self, name: str) -> Path:
        return self.stack_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.stack_dir / name / f"{name}.log"

    def owned_pid(self, name: str) -> int | None:
        """The PID baton recorded for ``name`` if that process still runs the expected program."""
        pid = read_pid(self.pid_file(name))
        return pid if pid is not None and process_matches(pid, marker_of(name)) else None

    def node_pid(self, node_id: int) -> int | None:
        """The PID of a cluster node baton started (for fault tests: kill -9 one broker, start it again)."""
        return self.owned_pid(self.nodes[node_id - 1].name)

    def start_node(self, node_id: int) -> None:
        """Start one stopped node of this stack again (its storage is kept) and wait until it answers."""
        node = self.nodes[node_id - 1]
        if self.owned_pid(node.name) is None:
            self._spawn(node.name, self._kafka_argv(self._require_tools(), node))
        self._await(node.name, lambda: self._node_answers(node))

    def kill_node(self, node_id: int) -> int:
        """kill -9 one Kafka node baton started (a broker crash: no controlled shutdown, no leader hand-over);
        returns its PID once it is gone. Its storage is kept: ``start_node`` brings it back."""
        node = self.nodes[node_id - 1]
        pid = self.owned_pid(node.name)
        if pid is None:
            raise StackError(f"{node.name} is not a running node of this stack ({self.stack_dir})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10.0)
        return pid

    def stop_node(self, node_id: int, grace: float = STOP_GRACE_S) -> None:
        """Stop one Kafka node cleanly (SIGTERM: it hands its leaderships over first), storage kept."""
        node = self.nodes[node_id - 1]
        pid = self.owned_pid(node.name)
        if pid is None:
            raise StackError(f"{node.name} is not a running node of this stack ({self.stack_dir})")
        stop_pid(pid, marker_of(node.name), grace)

    def restart_redis(self, pause_s: float = 0.0) -> None:
        """Stop the Redis baton started (SIGTERM), wait ``pause_s``, start it again and wait until it answers.
        The local Redis keeps nothing on disk: it comes back empty, as a Redis that lost its memory does."""
        pid = self.owned_pid(REDIS)
        if pid is None:
            raise StackError(f"redis at {self.redis_ep} was not started by this stack ({self.stack_dir})")
        stop_pid(pid, marker_of(REDIS))
        time.sleep(pause_s)
        self._spawn(REDIS, self._redis_argv(self._redis_server()))
        self._await(REDIS, lambda: redis_answers(self._redis_probe_url()))

    # layout -------------------------------------------------------------------------------

    @property
    def _layout_file(self) -> Path:
        return self.stack_dir / "layout.json"

    def _read_layout(self) -> Layout | None:
        try:
            raw = json.loads(self._layout_file.read_text())
        except (OSError, ValueError):
            return None
        locations = tuple(raw.get("locations", ()))
        return Layout(raw["brokers"], raw["secure"], raw["cluster_id"], locations, raw.get("tls", False))

    def _write_layout(self) -> None:
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        self._layout_file.write_text(json.dumps(asdict(self.layout), indent=2) + "\n")

    def _node_names(self) -> tuple[str, ...]:
        """Every Kafka node name this home may have started, whatever the layout (so ``down`` misses none)."""
        names = {node.name for node in self.nodes}
        if self.recorded is not None:
            names |= {node.name for node in kafka_nodes(self.kafka_ep, self.recorded.brokers, self.stack_dir)}
        return tuple(sorted(names))

    def _check_layout(self, fresh: bool) -> None:
        recorded = self.recorded
        if recorded is None or recorded.same_shape(self.layout) or fresh:
            return
        running = [name for name in self._node_names() if self.owned_pid(name) is not None]
        if running:
            raise StackError(
                f"a {recorded.brokers}-broker{' secured' if recorded.secure else ''} stack runs in {self.stack_dir}; "
                "stop it (`baton stack down`) before starting another shape."
            )
        raise StackError(
            f"{self.stack_dir} holds a {recorded.brokers}-broker{' secured' if recorded.secure else ''} Kafka's data; "
            "use --fresh to wipe it for the new shape."
        )

    # up / down ----------------------------------------------------------------------------

    def _up(self, *, fresh: bool = False) -> StackStatus:
        if fresh:
            self._wipe_kafka()
        self._write_layout()
        started: list[str] = []
        try:
            if self._ensure_kafka():
                started.append(KAFKA)
            if self._ensure_redis():
                started.append(REDIS)
            if self.layout.secure:
                names = security.principals(self.layout.locations)
                security.grant_redis(self.redis_url_for(security.ADMIN), self.settings.namespace, names)
        except BaseException:
            for name in started:
                self._stop(name)
            raise
        return self._status(started=tuple(started))

    def _status(self, started: tuple[str, ...] = ()) -> StackStatus:
        redis_up = redis_answers(self._redis_probe_url())
        redis_status = self._service(REDIS, str(self.redis_ep), redis_up, started)
        if self.layout.brokers == 1 and not self.layout.secure:
            kafka_up = kafka_answers(self.settings.kafka_bootstrap)
            return StackStatus(self._service(KAFKA, self.settings.kafka_bootstrap, kafka_up, started), redis_status)
        nodes = tuple(
            self._service(node.name, str(node.endpoint), self._node_answers(node), started)
            for node in self.nodes
        )
        brokers = nodes if self.layout.brokers > 1 else ()
        cluster_up = all(node.answering for node in nodes)
        first = nodes[0]
        owned = sum(node.pid is not None for node in nodes) if brokers else 0
        kafka = ServiceStatus(KAFKA, self.bootstrap, cluster_up, first.pid if not brokers else None,
                              KAFKA in started, first.log if not brokers else None, owned)
        return StackStatus(kafka, redis_status, brokers, self.layout.secure)

    def _service(self, name: str, address: str, answering: bool, started: tuple[str, ...]) -> ServiceStatus:
        pid = self.owned_pid(name)
        log_path = str(self.log_file(name)) if pid is not None else None
        return ServiceStatus(name, address, answering, pid, name in started, log_path)

    def _stop(self, name: str) -> bool:
        """Stop the process of ``name``'s PID file if it is still that program; drop the file."""
        pid_file = self.pid_file(name)
        pid = read_pid(pid_file)
        stopped = pid is not None and stop_pid(pid, marker_of(name))
        if stopped:
            self.echo(f"stopped {name} (pid {pid})")
        elif pid is not None:
            self.echo(f"{name}: pid {pid} in {pid_file} is not a running {name}; left alone")
        pid_file.unlink(missing_ok=True)
        return stopped

    def _wipe_kafka(self) -> None:
        names = self._node_names()
        for name in names:
            self._stop(name)
        answering = [node for node in self.nodes if self._node_answers(node)]
        if answering:
            raise StackError(
                f"Kafka at {answering[0].endpoint} was not started by baton; only the local stack's data "
                f"({self.stack_dir}) can be wiped. Stop that broker first."
            )
        for name in names:
            shutil.rmtree(self.stack_dir / name / "data", ignore_errors=True)
        shutil.rmtree(self.credentials_dir, ignore_errors=True)
        shutil.rmtree(self.ca_file.parent, ignore_errors=True)
        self._layout_file.unlink(missing_ok=True)
        self.recorded = None
        self.layout = Layout(self.layout.brokers, self.layout.secure, locations=self.layout.locations,
                             tls=self.layout.tls)
        self.echo(f"wiped the Kafka data under {self.stack_dir}")

    def _check_can_start(self, name: str, endpoint: Endpoint, env_var: str) -> None:
        if not endpoint.local:
            raise StackError(
                f"{name} at {endpoint} does not answer, and baton only starts a local one; "
                f"start it or point {env_var} at one that runs."
            )
        if port_open(endpoint):
            raise StackError(
                f"{endpoint} is taken by a process that does not answer as {name}; "
                f"stop it or set {env_var} to another address."
            )

    def _await(self, name: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if probe():
                return
            pid = read_pid(self.pid_file(name))
            if pid is None or not process_alive(pid):  # not the cmdline: it may not have exec'd yet
                self.pid_file(name).unlink(missing_ok=True)
                raise self._failure(name, "exited while starting")
            time.sleep(0.25)
        self._stop(name)
        raise self._failure(name, f"did not answer within {self.timeout:.0f} s (stopped it)")

    def _failure(self, name: str, what: str) -> StackError:
        path = self.log_file(name)
        return StackError(f"{name} {what}. Last lines of {path}:\n{_tail(path)}")

    def _spawn(self, name: str, argv: list[str]) -> int:
        pid = spawn_detached(argv, self.log_file(name))
        self.pid_file(name).write_text(f"{pid}\n")
        self.echo(f"started {name} (pid {pid}), log {self.log_file(name)}")
        return pid

    # kafka --------------------------------------------------------------------------------

    def _ensure_kafka(self) -> bool:
        """Make Kafka answer (every node of a cluster, the ACLs of a secured one); True when this call started it."""
        if self.layout.brokers == 1 and not self.layout.secure:
            return self._ensure_single_kafka()
        started = False
        java: str | None = None
        for node in self.nodes:
            if self.owned_pid(node.name) is not None or self._node_answers(node):
                continue
            self._check_can_start(node.name, node.endpoint, "BATON_KAFKA_BOOTSTRAP")
            java = java or self._prepare_kafka()
            self._write_kafka_config(node)
            self._format_storage(java, node)
            self._spawn(node.name, self._kafka_argv(java, node))
            started = True
        for node in self.nodes:
            self._await(node.name, partial(self._node_answers, node))
        self._await_cluster()
        if self.layout.secure:
            count = security.apply_acls(self.admin_settings(), self.layout.locations)
            self.echo(f"granted {count} ACLs in namespace {self.settings.namespace}")
        return started

    def _ensure_single_kafka(self) -> bool:
        if kafka_answers(self.settings.kafka_bootstrap):
            return False
        node = self.nodes[0]
        pid = self.owned_pid(KAFKA)
        if pid is None:
            self._check_can_start(KAFKA, self.kafka_ep, "BATON_KAFKA_BOOTSTRAP")
            java = self._prepare_kafka()
            self._write_kafka_config(node)
            self._format_storage(java, node)
            self._spawn(KAFKA, self._kafka_argv(java, node))
        self._await(KAFKA, lambda: kafka_answers(self.settings.kafka_bootstrap))
        return pid is None

    def _await_cluster(self) -> None:
        """Wait until the metadata lists every node (a topic of replication 3 needs three brokers)."""
        deadline = time.monotonic() + self.timeout
        admin = self.admin_settings()
        while (seen := cluster_brokers(admin)) < self.layout.brokers:
            if time.monotonic() > deadline:
                wanted = self.layout.brokers
                raise StackError(f"the cluster lists {seen} of {wanted} brokers after {self.timeout:.0f} s")
            time.sleep(0.5)

    def _prepare_kafka(self) -> str:
        """Check the tools, fetch the jars once, generate the credentials of a secured stack; returns java."""
        java = self._require_tools()
        self._fetch_jars()
        if self.layout.secure:
            names = [security.CONTROLLER, *security.principals(self.layout.locations)]
            security.ensure_credentials(self.credentials_dir, names)
        if self.layout.tls:
            security.ensure_tls(self.ca_file.parent, self.kafka_ep.host)
        return java

    def _jars_present(self) -> bool:
        return any(self.jars_dir.glob("kafka_2.13-*.jar"))

    def _require_tools(self) -> str:
        java = shutil.which("java")
        missing = [] if java else [f"java ({MIN_JAVA}+)"]
        if not self._jars_present() and not shutil.which("mvn"):
            missing.append(f"mvn (to fetch the Kafka jars into {self.jars_dir} once)")
        if missing or java is None:
            raise StackError(f"cannot start Kafka: missing {', '.join(missing)} on PATH.")
        if (major := java_major(java)) < MIN_JAVA:
            raise StackError(f"cannot start Kafka: {java} is Java {major}; Kafka 4 needs Java {MIN_JAVA}+.")
        return java

    def _fetch_jars(self) -> None:
        if self._jars_present():
            return
        pom = project_root() / "deploy" / "pom.xml"
        if not pom.exists():
            raise StackError(f"cannot fetch the Kafka jars: {pom} is missing.")
        self.echo(f"fetching the Kafka jars into {self.jars_dir} (once) ...")
        mvn = shutil.which("mvn") or "mvn"
        goal = ["dependency:copy-dependencies", f"-DoutputDirectory={self.jars_dir}"]
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), *goal], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not self._jars_present():
            output = "\n".join((done.stdout + done.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise StackError(f"mvn could not fetch the Kafka jars (exit {done.returncode}):\n{output}")

    def _write_kafka_config(self, node: KafkaNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        cluster = self.layout.brokers > 1
        voters = ",".join(f"{n.node_id}@{n.endpoint.host}:{n.controller_port}" for n in self.nodes)
        protocol = "SASL_PLAINTEXT" if self.layout.secure else "PLAINTEXT"
        client_protocol = "SASL_SSL" if self.layout.tls else protocol
        config = Template(_stack_resource("server.properties")).substitute(
            node_id=node.node_id,
            quorum_voters=voters,
            host=node.endpoint.host,
            port=node.endpoint.port,
            controller_port=node.controller_port,
            broker_protocol=client_protocol,
            controller_protocol=protocol,
            data_dir=node.data,
            replication=3 if cluster else 1,
            min_isr=2 if cluster else 1,
            security=self._security_config() if self.layout.secure else "",
        )
        node.config.write_text(config)
        for name in ("log4j.properties", "log4j2.properties"):
            (node.directory / name).write_text(_stack_resource(name))

    def _security_config(self) -> str:
        config = Template(_stack_resource("security.properties")).substitute(
            admin_password=self._password(security.ADMIN),
            controller_password=self._password(security.CONTROLLER),
        )
        if self.layout.tls:
            tls = self.ca_file.parent
            config += (
                "\n# TLS on the broker listener (clients and brokers): PEM files generated at set-up.\n"
                f"ssl.keystore.type=PEM\nssl.keystore.location={tls / 'broker-keystore.pem'}\n"
                f"ssl.truststore.type=PEM\nssl.truststore.location={self.ca_file}\n"
            )
        return config

    def _password(self, principal: str) -> str:
        return security.read_credentials(self.credentials_dir / f"{principal}.properties")[1]

    def _java_base(self, java: str, node: KafkaNode) -> list[str]:
        return [
            java,
            f"-Dlog4j.configuration=file:{node.directory / 'log4j.properties'}",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            "-cp",
            f"{self.jars_dir}/*",
        ]

    def _format_storage(self, java: str, node: KafkaNode) -> None:
        if (node.data / "meta.properties").exists():
            return
        argv = [*self._java_base(java, node), "kafka.tools.StorageTool", "format"]
        argv += ["-t", self.layout.cluster_id, "-c", str(node.config), "--ignore-formatted"]
        if self.layout.secure:
            for principal in security.principals(self.layout.locations):
                argv += ["--add-scram", f"SCRAM-SHA-512=[name={principal},password={self._password(principal)}]"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")
        self.echo(f"formatted Kafka storage in {node.data}")

    def _kafka_argv(self, java: str, node: KafkaNode) -> list[str]:
        base = self._java_base(java, node)
        options = CLUSTER_JVM_OPTS if self.layout.brokers > 1 else KAFKA_JVM_OPTS
        return [base[0], *options, *base[1:], "kafka.Kafka", str(node.config)]

    # redis --------------------------------------------------------------------------------

    def _ensure_redis(self) -> bool:
        """Make Redis answer; True when this call started it."""
        if redis_answers(self._redis_probe_url()):
            return False
        pid = self.owned_pid(REDIS)
        if pid is None:
            self._check_can_start(REDIS, self.redis_ep, "BATON_REDIS_URL")
            self._spawn(REDIS, self._redis_argv(self._redis_server()))
        self._await(REDIS, lambda: redis_answers(self._redis_probe_url()))
        return pid is None

    def _redis_probe_url(self) -> str:
        if self.layout.secure and (self.credentials_dir / f"{security.ADMIN}.properties").exists():
            return self.redis_url_for(security.ADMIN)
        return self.settings.redis_url

    def _redis_argv(self, server: str) -> list[str]:
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            server,
            *("--port", str(self.redis_ep.port), "--bind", "127.0.0.1", "-::1"),
            *("--dir", str(self.redis_dir), "--save", "", "--appendonly", "no", "--daemonize", "no"),
        ]
        if self.layout.secure:
            acl_file = self.redis_dir / "users.acl"
            names = security.principals(self.layout.locations)
            passwords = security.ensure_credentials(self.credentials_dir, names)
            acl_file.write_text(security.redis_acl_file(self.settings.namespace, passwords))
            acl_file.chmod(0o600)
            argv += ["--aclfile", str(acl_file)]
        return argv

    def _redis_server(self) -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise StackError(
                "redis-server is not installed: install it (e.g. `sudo apt-get install redis-server`) "
                "or point BATON_REDIS_URL at a running Redis."
            )
        self.echo("installing redis-server with apt-get ...")
        if not _apt_install("redis-server"):
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            _apt_install("redis-server")
        found = shutil.which("redis-server")
        if not found:
            raise StackError("`apt-get install -y redis-server` did not provide redis-server.")
        return found

    # leases -------------------------------------------------------------------------------

    @property
    def _lease_dir(self) -> Path:
        return self.stack_dir / "leases"

    @property
    def _ephemeral_file(self) -> Path:
        return self.stack_dir / "ephemeral"

    def _ephemeral(self) -> tuple[str, ...]:
        try:
            names = self._ephemeral_file.read_text().split()
        except OSError:
            return ()
        return tuple(name for name in SERVICES if name in names)

    def _mark_ephemeral(self, names: tuple[str, ...]) -> None:
        if names:
            merged = sorted({*self._ephemeral(), *names})
            self._ephemeral_file.write_text("\n".join(merged) + "\n")

    def _live_leases(self) -> list[Path]:
        live = []
        for lease in self._lease_dir.glob("*-*"):
            pid = lease.name.partition("-")[0]
            if pid.isdigit() and process_alive(int(pid)):
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        return live

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per home, across processes."""
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stack_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _apt_install(package: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", package], capture_output=True, env=env, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def ensured_stack(settings: Settings | None = None, *, timeout: float = 90.0) -> Iterator[StackStatus]:
    """Kafka and Redis for a test session: start what is missing; on exit stop only what was started.

    Sessions sharing one home (parallel shells, CI steps) each hold a lease; what any of them started
    is stopped when the last one leaves. A stack brought up by ``baton stack up`` stays running.
    """
    stack = LocalStack(settings, timeout=timeout)
    status, lease = stack.acquire()
    try:
        yield status
    finally:
        stack.release(lease)
