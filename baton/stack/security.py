"""The secured stack's principals: their generated passwords, Kafka ACLs by prefix, and Redis ACL users.

Least privilege, per namespace (topic names are ``<namespace>.<name>``):
- each service reads and writes its own topics (inputs read, outputs written), its changelogs, its consumer
  group and its transactional ids, nothing else;
- a WMS node's principal (``wms-<LOCATION>``) reaches only its location's topics plus the shared ones it
  feeds (``wms.events``, ``inventory.commands``, the dead letters);
- a sales channel (``channel``) writes only the public inbound topic and reads only the public status topic;
- ``ops`` reads every topic of the namespace and writes nothing;
- ``admin`` (the operator's tools, the brokers between themselves) is the only super user.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request

from services.runtime.settings import Settings, read_credentials

ADMIN = "admin"
CONTROLLER = "controller"
OPS = "ops"
CHANNEL = "channel"
SERVICES = ("orchestrator", "inventory")
# Kafka's wire codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP, TRANSACTIONAL_ID = 2, 3, 5
ALL, READ, WRITE, CREATE, DESCRIBE, DESCRIBE_CONFIGS = 2, 3, 4, 5, 8, 10
ALLOW = 3
LITERAL, PREFIXED = 3, 4

SERVICE_READS: dict[str, tuple[str, ...]] = {
    "orchestrator": (
        "orders.inbound.v1", "inventory.reservations.v1", "wms.events.v1", "orders.timers.v1",
        "payments.events.v1", "network.v1", "rules.v1", "catalog.v1", "inventory.availability.v1",
    ),
    "inventory": ("inventory.commands.v1", "network.v1", "catalog.v1", "inventory.availability.v1"),
    "wms": ("catalog.v1", "network.v1", "inventory.availability.v1"),
}
SERVICE_WRITES: dict[str, tuple[str, ...]] = {
    "orchestrator": (
        "orders.status.v1", "orders.events.v1", "inventory.commands.v1", "payments.commands.v1",
        "payments.events.v1", "orders.timers.v1", "deadletter.v1",
    ),
    "inventory": ("inventory.reservations.v1", "inventory.movements.v1", "inventory.availability.v1", "deadletter.v1"),
    "wms": ("wms.events.v1", "inventory.commands.v1", "deadletter.v1"),
}


def principals(locations: Iterable[str]) -> list[str]:
    """Every SCRAM user of a secured stack; WMS nodes get one principal per location."""
    return [ADMIN, OPS, CHANNEL, *SERVICES, *(f"wms-{location}" for location in locations)]


def ensure_credentials(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """One ``<name>.properties`` per principal (mode 0600, generated once); returns name -> password."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    passwords = {}
    for name in names:
        path = directory / f"{name}.properties"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"username={name}\npassword={secrets.token_urlsafe(24)}\n")
        passwords[name] = read_credentials(path)[1]
    return passwords


@dataclass(frozen=True)
class Acl:
    resource_type: int
    name: str
    pattern: int
    principal: str
    operation: int

    def creation(self) -> tuple[int, str, int, str, str, int, int]:
        return (self.resource_type, self.name, self.pattern, f"User:{self.principal}", "*", self.operation, ALLOW)


def _topics(principal: str, names: Iterable[str], operation: int, namespace: str) -> list[Acl]:
    return [Acl(TOPIC, f"{namespace}.{name}", LITERAL, principal, op) for name in names for op in (operation, DESCRIBE)]


def _own(principal: str, settings: Settings) -> list[Acl]:
    """A service's changelogs (``<ns>.<principal>-*``), group (``<ns>-<principal>``) and transactional ids."""
    group = settings.group(principal)
    return [
        Acl(TOPIC, f"{settings.namespace}.{principal}-", PREFIXED, principal, ALL),
        Acl(GROUP, group, LITERAL, principal, ALL),
        Acl(GROUP, f"{group}-", PREFIXED, principal, ALL),
        Acl(TRANSACTIONAL_ID, f"{group}-", PREFIXED, principal, ALL),
    ]


def service_acls(settings: Settings, locations: Iterable[str]) -> list[Acl]:
    ns = settings.namespace
    acls: list[Acl] = []
    for service in SERVICES:
        acls += _topics(service, SERVICE_READS[service], READ, ns)
        acls += _topics(service, SERVICE_WRITES[service], WRITE, ns) + _own(service, settings)
    # The orchestrator sends every location's commands: the per-location command topics by prefix.
    acls += [Acl(TOPIC, f"{ns}.wms.", PREFIXED, "orchestrator", op) for op in (WRITE, DESCRIBE)]
    for location in locations:
        node = f"wms-{location}"
        acls += _topics(node, SERVICE_READS["wms"], READ, ns) + _topics(node, SERVICE_WRITES["wms"], WRITE, ns)
        acls += [Acl(TOPIC, f"{ns}.wms.{location}.", PREFIXED, node, ALL), *_own(node, settings)]
    return acls


def people_acls(settings: Settings) -> list[Acl]:
    ns = settings.namespace
    return [
        *_topics(CHANNEL, ("orders.inbound.v1",), WRITE, ns),
        *_topics(CHANNEL, ("orders.status.v1",), READ, ns),
        Acl(GROUP, f"{ns}-{CHANNEL}", PREFIXED, CHANNEL, READ),
        *(Acl(TOPIC, f"{ns}.", PREFIXED, OPS, op) for op in (READ, DESCRIBE, DESCRIBE_CONFIGS)),
        Acl(GROUP, f"{ns}-{OPS}", PREFIXED, OPS, READ),
    ]


def namespace_acls(settings: Settings, locations: Iterable[str]) -> list[Acl]:
    locations = list(locations)
    return service_acls(settings, locations) + people_acls(settings)


class CreateManyAcls(Request[CreateAclsRequest_v1]):
    """CreateAcls v1 with many bindings in one request (aiokafka's own ``CreateAclsRequest`` carries one)."""

    API_KEY = 30

    def __init__(self, creations: list[tuple[int, str, int, str, str, int, int]]) -> None:
        self.creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.creations)


async def create_acls(admin_settings: Settings, acls: list[Acl]) -> None:
    """CreateAcls through aiokafka's public client (its admin client has no ACL call); idempotent in Kafka."""
    client = AIOKafkaClient(**admin_settings.kafka_client_options(), request_timeout_ms=30000)
    await client.bootstrap()
    try:
        node = client.get_random_node()
        response = await client.send(node, CreateManyAcls([acl.creation() for acl in acls]))
        failures = [(code, text) for code, text in response.creation_responses if code != 0]
        if failures:
            raise RuntimeError(f"CreateAcls refused {len(failures)} bindings, e.g. {failures[0]}")
    finally:
        await client.close()


def apply_acls(admin_settings: Settings, locations: Iterable[str]) -> int:
    """Grant a namespace's principals their rights (the admin's settings name the namespace); returns how many."""
    acls = namespace_acls(admin_settings, locations)
    asyncio.run(create_acls(admin_settings, acls))
    return len(acls)


_RESOURCE_FLAGS = {TOPIC: "--topic", GROUP: "--group", TRANSACTIONAL_ID: "--transactional-id"}
_OPERATION_NAMES = {ALL: "All", READ: "Read", WRITE: "Write", CREATE: "Create", DESCRIBE: "Describe",
                    DESCRIBE_CONFIGS: "DescribeConfigs"}


def acl_script(acls: list[Acl]) -> str:
    """The same bindings as ``kafka-acls.sh`` commands, for a cluster baton does not run (deploy/acls.sh)."""
    lines = [
        "#!/bin/sh",
        "# Generated by `baton stack acls --script`: the ACLs of one namespace's principals (see",
        "# baton/stack/security.py). Needs BOOTSTRAP and ADMIN_CONFIG (a client config logged in as admin).",
        "set -eu",
        'ACLS="${KAFKA_ACLS:-kafka-acls.sh} --bootstrap-server $BOOTSTRAP --command-config $ADMIN_CONFIG --add"',
    ]
    for acl in acls:
        pattern = "prefixed" if acl.pattern == PREFIXED else "literal"
        lines.append(
            f"$ACLS --allow-principal User:{acl.principal} --operation {_OPERATION_NAMES[acl.operation]} "
            f"{_RESOURCE_FLAGS[acl.resource_type]} '{acl.name}' --resource-pattern-type {pattern}"
        )
    return "\n".join(lines) + "\n"


# --- tls --------------------------------------------------------------------------------------


def ensure_tls(directory: Path, host: str) -> None:
    """A CA and a broker certificate for ``host`` (openssl, once): ``ca.pem`` for clients, and the
    broker's PEM keystore (PKCS#8 key + certificate chain) that Kafka reads with ``ssl.keystore.type=PEM``."""
    keystore = directory / "broker-keystore.pem"
    if keystore.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    san = f"subjectAltName=IP:{host},DNS:localhost" if host.replace(".", "").isdigit() else f"subjectAltName=DNS:{host}"
    (directory / "san.ext").write_text(san + "\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "825",
         "-subj", "/CN=baton local CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr", "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "broker.pem", "-days", "825", "-extfile", "san.ext"],
    ]
    for step in steps:
        subprocess.run(["openssl", *step], cwd=directory, capture_output=True, check=True)
    keystore.write_text((directory / "broker.key").read_text() + (directory / "broker.pem").read_text())
    keystore.chmod(0o600)


# --- redis ------------------------------------------------------------------------------------


def redis_key_patterns(namespace: str, principal: str) -> list[str]:
    """The keys a principal's views live under (see services.runtime.readmodel and wms_node.views)."""
    prefix = f"{namespace}:"
    # the heartbeats, and the service's own marker that tells it Redis lost its keys (services.runtime.faults)
    heartbeat = f"{prefix}service:*"
    marker = f"{prefix}views:{principal}"
    if principal == "orchestrator":
        return [f"{prefix}order:*", f"{prefix}orders", heartbeat, marker]
    if principal == "inventory":
        return [f"{prefix}stock:*", f"{prefix}skus", heartbeat, marker]
    if principal.startswith("wms-"):
        return [f"{prefix}wms:{principal.removeprefix('wms-')}:*", heartbeat, marker]
    return [f"{prefix}*"]


def grant_redis(admin_url: str, namespace: str, names: Iterable[str]) -> None:
    """Add a namespace's key patterns to each principal's Redis user (patterns add up, like Kafka ACLs)."""
    client = redis.Redis.from_url(admin_url)
    try:
        for name in names:
            if name not in (ADMIN, CONTROLLER):
                client.acl_setuser(name, keys=redis_key_patterns(namespace, name), reset_keys=False, enabled=True)
    finally:
        client.close()


def redis_acl_file(namespace: str, passwords: dict[str, str]) -> str:
    """A Redis ACL file: the default user off, admin all, services their prefixes, ops and channel read only."""
    lines = ["user default off"]
    for name, password in sorted(passwords.items()):
        if name == CONTROLLER:
            continue
        if name == ADMIN:
            lines.append(f"user {name} on >{password} ~* &* +@all")
            continue
        patterns = " ".join(f"~{pattern}" for pattern in redis_key_patterns(namespace, name))
        rights = "+@read +ping +client" if name in (OPS, CHANNEL) else "+@all -@admin -@dangerous +ping"
        lines.append(f"user {name} on >{password} resetkeys {patterns} {rights}")
    return "\n".join(lines) + "\n"
