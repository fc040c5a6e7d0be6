"""``baton stack up --secure``: SASL/SCRAM-SHA-512, the StandardAuthorizer with nothing allowed by default,
ACLs per principal by prefix, Redis ACL users with the default user off.

One secured stack (its own home, ports and namespace) is shared by the module. Each refusal is checked
next to what the same principal may do, so a denial means the ACLs, not a broken connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from baton.stack.local import LocalStack
from services.runtime.admin import ensure_topics
from services.runtime.settings import Settings, project_root

KAFKA_PORT = 23092  # below the ephemeral range (32768-60999): no client socket can hold it
REDIS_PORT = 23379
LOCATIONS = ("WH-A", "WH-B")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home: Path = tmp_path_factory.mktemp("secure-home")
    settings = Settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        namespace=f"sec-{uuid.uuid4().hex[:6]}",
    )
    jars = project_root() / ".baton" / "kafka-jars"
    stack = LocalStack(settings, secure=True, locations=LOCATIONS, jars_dir=jars, timeout=120)
    (home / "kafka-jars").symlink_to(jars)  # the scenario runner's own LocalStack looks for them in its home
    try:
        stack.up()
        yield stack
    finally:
        stack.down(wipe=True)


@pytest.fixture(scope="module")
def topics(secured: LocalStack) -> Settings:
    admin = secured.admin_settings()
    asyncio.run(ensure_topics(admin, LOCATIONS))
    return admin


def as_principal(stack: LocalStack, principal: str) -> Settings:
    return stack.admin_settings().model_copy(
        update={"kafka_credentials_file": stack.credentials_dir / f"{principal}.properties"}
    )


async def write(settings: Settings, topic: str) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), b"{}", key=b"k")
    finally:
        await producer.stop()


async def read(settings: Settings, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic(topic), **settings.kafka_client_options(), group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
    finally:
        await consumer.stop()


async def test_a_sales_channel_writes_inbound_orders_but_not_inventory_commands(
    secured: LocalStack, topics: Settings
) -> None:
    channel = as_principal(secured, "channel")
    await write(channel, "orders.inbound.v1")
    with pytest.raises(TopicAuthorizationFailedError):
        await write(channel, "inventory.commands.v1")


async def test_wms_a_reads_its_own_tasks_but_not_wms_b_tasks(secured: LocalStack, topics: Settings) -> None:
    node = as_principal(secured, "wms-WH-A")
    group = topics.group("wms-WH-A")
    await read(node, "wms.WH-A.tasks.v1", group)
    with pytest.raises(TopicAuthorizationFailedError):
        await read(node, "wms.WH-B.tasks.v1", group)


async def test_ops_reads_everything_and_writes_nothing(secured: LocalStack, topics: Settings) -> None:
    ops = as_principal(secured, "ops")
    await read(ops, "inventory.commands.v1", topics.group("ops-audit"))
    with pytest.raises(TopicAuthorizationFailedError):
        await write(ops, "orders.inbound.v1")


async def test_a_wrong_password_is_refused(secured: LocalStack, topics: Settings) -> None:
    impostor = topics.model_copy(
        update={"kafka_credentials_file": None, "kafka_username": "channel", "kafka_password": SecretStr("guess")}
    )
    with pytest.raises(KafkaError):
        await write(impostor, "orders.inbound.v1")


def test_redis_default_user_is_off_and_services_keep_to_their_prefix(secured: LocalStack) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=REDIS_PORT)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    ns = secured.settings.namespace
    inventory = redis.Redis.from_url(secured.redis_url_for("inventory"))
    try:
        inventory.hset(f"{ns}:stock:TEE", "WH-A", "{}")
        with pytest.raises(redis.exceptions.NoPermissionError):
            inventory.set(f"{ns}:order:O-1", "{}")
    finally:
        inventory.close()
        anonymous.close()


SCENARIO = """
name: secured-two-warehouses
locations:
  - {id: WH-A, kind: warehouse, lat: 48.86, lon: 2.35, capabilities: [ship]}
  - {id: WH-B, kind: warehouse, lat: 45.76, lon: 4.83, capabilities: [ship]}
skus:
  - {sku: TEE, price: 10.0}
  - {sku: MUG, price: 8.0}
stock:
  - {location: WH-A, sku: TEE, qty: 5}
  - {location: WH-B, sku: MUG, qty: 5}
events:
  - {at_s: 0, type: order.placed, order: {order_id: O-1, channel: web, customer_id: C-1,
     lines: [{sku: TEE, qty: 2, unit_price: 10.0}], delivery: {mode: ship, lat: 48.8, lon: 2.3}}}
  - {at_s: 0, type: order.placed, order: {order_id: O-2, channel: web, customer_id: C-2,
     lines: [{sku: MUG, qty: 1, unit_price: 8.0}], delivery: {mode: ship, lat: 45.7, lon: 4.8}}}
  - {at_s: 0, type: order.placed, order: {order_id: O-3, channel: web, customer_id: C-3,
     lines: [{sku: TEE, qty: 1, unit_price: 10.0}, {sku: MUG, qty: 1, unit_price: 8.0}],
     delivery: {mode: ship, lat: 47.0, lon: 3.0}}}
"""


def test_a_scenario_ships_with_each_service_under_its_own_principal(
    secured: LocalStack, tmp_path: Path
) -> None:
    scenario = tmp_path / "secured.yaml"
    scenario.write_text(SCENARIO)
    admin = secured.admin_settings()
    env = {
        **os.environ,
        "BATON_HOME": str(admin.home),
        "BATON_KAFKA_BOOTSTRAP": admin.kafka_bootstrap,
        "BATON_REDIS_URL": admin.redis_url,
        "BATON_NAMESPACE": admin.namespace,
        "BATON_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "BATON_KAFKA_CREDENTIALS_DIR": str(secured.credentials_dir),
        "BATON_KAFKA_CREDENTIALS_FILE": str(secured.credentials_dir / "admin.properties"),
    }
    namespace = f"{admin.namespace}-run"
    done = subprocess.run(
        [sys.executable, "-m", "baton", "scenario", "run", str(scenario), "--json", "--timeout", "120",
         "--namespace", namespace],
        env={**env, "BATON_NAMESPACE": namespace}, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert {order_id: o["status"] for order_id, o in result["orders"].items()} == {
        "O-1": "shipped", "O-2": "shipped", "O-3": "shipped"
    }, result
    assert result["invariants"]["ok"], result["invariants"]
    secrets = [line.split("=", 1)[1] for f in secured.credentials_dir.glob("*.properties")
               for line in f.read_text().splitlines() if line.startswith("password=")]
    assert not [s for s in secrets if s in done.stdout or s in done.stderr], "a password was printed"


def test_tls_on_the_client_listener_with_a_ca_made_at_set_up(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, kafka_bootstrap="127.0.0.1:23292", redis_url="redis://127.0.0.1:23380/0", namespace="tls"
    )
    jars = project_root() / ".baton" / "kafka-jars"
    stack = LocalStack(settings, secure=True, tls=True, locations=("WH-A",), jars_dir=jars, timeout=120)
    try:
        stack.up()
        admin = stack.admin_settings()
        assert admin.kafka_security_protocol == "SASL_SSL" and admin.kafka_ca_file == stack.ca_file
        asyncio.run(ensure_topics(admin, ["WH-A"]))
        asyncio.run(write(as_principal(stack, "channel"), "orders.inbound.v1"))
        cleartext = as_principal(stack, "channel").model_copy(update={"kafka_security_protocol": "SASL_PLAINTEXT"})
        with pytest.raises(KafkaError):
            asyncio.run(write(cleartext, "orders.inbound.v1"))
        untrusted = as_principal(stack, "channel").model_copy(update={"kafka_ca_file": None})
        with pytest.raises(KafkaError):
            asyncio.run(write(untrusted, "orders.inbound.v1"))
    finally:
        stack.down(wipe=True)
