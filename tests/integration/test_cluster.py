"""``baton stack up --brokers 3``: a real three-node KRaft cluster on its own ports, in its own home.

The namespace's topics get three replicas and ``min.insync.replicas=2``; records published with acks=all
come back; with one broker killed (-9) a write still succeeds on the two left, and the node rejoins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from baton.publish import Publisher
from baton.stack.local import LocalStack, process_alive
from schemas.topics import ORDERS_INBOUND
from services.runtime.admin import ensure_topics
from services.runtime.settings import Settings, project_root

BASE_PORT = 29092
REDIS_PORT = 26379

pytestmark = [pytest.mark.integration, pytest.mark.long]  # a cluster of its own, 1.5 minutes: `make test-long`


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home: Path = tmp_path_factory.mktemp("cluster-home")
    settings = Settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{BASE_PORT}",
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        namespace=f"c3-{uuid.uuid4().hex[:6]}",
    )
    stack = LocalStack(settings, brokers=3, jars_dir=project_root() / ".baton" / "kafka-jars", timeout=120)
    try:
        stack.up()
        yield stack
    finally:
        stack.down(wipe=True)


def _client_settings(stack: LocalStack) -> Settings:
    return stack.settings.model_copy(update={"kafka_bootstrap": stack.bootstrap, "replication_factor": 3})


@pytest.mark.integration
def test_three_nodes_answer_and_status_lists_them(cluster: LocalStack) -> None:
    status = cluster.status()
    assert status.healthy, status.to_dict()
    assert [broker.name for broker in status.brokers] == ["kafka-1", "kafka-2", "kafka-3"]
    assert all(broker.pid is not None and broker.answering for broker in status.brokers)
    assert status.to_dict()["brokers"] == 3


@pytest.mark.integration
async def test_topics_have_three_replicas_and_min_isr_two(cluster: LocalStack) -> None:
    settings = _client_settings(cluster)
    await ensure_topics(settings, ["WH-A"])
    topic = settings.topic(ORDERS_INBOUND.name)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        partitions = described[0]["partitions"]
        assert partitions and all(sorted(p["replicas"]) == [1, 2, 3] for p in partitions), partitions
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
        assert entries["min.insync.replicas"] == "2"
    finally:
        await admin.close()


@pytest.mark.integration
async def test_a_write_survives_one_broker_killed(cluster: LocalStack) -> None:
    settings = _client_settings(cluster)
    await ensure_topics(settings, ["WH-A"])
    first = await _publish(settings, b"before")
    victim = cluster.node_pid(3)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    while process_alive(victim):
        await asyncio.sleep(0.1)
    second = await _publish(settings, b"during")  # acks=all: the two brokers left are the in-sync quorum
    await asyncio.to_thread(cluster.start_node, 3)
    assert cluster.node_pid(3) not in (None, victim)
    assert await _read_back(settings, {first, second}) == {first, second}


async def _publish(settings: Settings, value: bytes) -> bytes:
    key = uuid.uuid4().hex
    async with Publisher(settings) as publisher:
        await publisher.publish_raw(ORDERS_INBOUND, key, value)
    return key.encode()


async def _read_back(settings: Settings, keys: set[bytes]) -> set[bytes]:
    consumer = AIOKafkaConsumer(
        settings.topic(ORDERS_INBOUND.name),
        **settings.kafka_client_options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: set[bytes] = set()
    try:
        for _ in range(30):
            batches = await consumer.getmany(timeout_ms=1000)
            seen |= {record.key for batch in batches.values() for record in batch if record.key in keys}
            if seen == keys:
                break
    finally:
        await consumer.stop()
    return seen
