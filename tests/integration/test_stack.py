"""The local stack answers for real (Kafka round trip, Redis), and ``down`` only stops its own PIDs."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from baton.stack import LocalStack, StackStatus, ensured_stack
from baton.stack.local import wait_for_cmdline
from services.runtime.settings import Settings, get_settings


@pytest.fixture(scope="module")
def stack() -> Iterator[StackStatus]:
    with ensured_stack(get_settings()) as status:
        yield status


@pytest.mark.integration
def test_stack_reports_both_parts_answering(stack: StackStatus) -> None:
    assert stack.healthy, stack.to_dict()
    assert LocalStack(get_settings()).status().healthy


@pytest.mark.integration
async def test_kafka_round_trip_on_a_fresh_topic(stack: StackStatus) -> None:
    bootstrap = get_settings().kafka_bootstrap
    topic = f"baton-stack-test-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        value = uuid.uuid4().bytes
        assert await _produce_then_consume(bootstrap, topic, value) == value
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def _produce_then_consume(bootstrap: str, topic: str, value: bytes) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=15_000, max_records=1)
        records = [record for batch in batches.values() for record in batch]
        assert records, "no record came back from Kafka"
        return bytes(records[0].value or b"")
    finally:
        await consumer.stop()


@pytest.mark.integration
def test_redis_set_get(stack: StackStatus) -> None:
    client = redis.Redis.from_url(get_settings().redis_url)
    key = f"baton-stack-test:{uuid.uuid4().hex}"
    try:
        client.set(key, "ok", ex=60)
        assert client.get(key) == b"ok"
    finally:
        client.delete(key)
        client.close()


def _isolated(tmp_path: Path) -> LocalStack:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0")
    return LocalStack(settings)


def _sleeper(*marker: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *marker])
    wait_for_cmdline(process.pid)
    return process


def test_down_leaves_a_pid_that_is_not_kafka_alone(tmp_path: Path) -> None:
    stack = _isolated(tmp_path)
    stranger = _sleeper()
    try:
        stack.pid_file("kafka").parent.mkdir(parents=True, exist_ok=True)
        stack.pid_file("kafka").write_text(f"{stranger.pid}\n")
        stack.down()
        assert stranger.poll() is None, "down() killed a process that is not Kafka"
        assert not stack.pid_file("kafka").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_down_stops_the_recorded_kafka_process(tmp_path: Path) -> None:
    stack = _isolated(tmp_path)
    fake_kafka = _sleeper("kafka.Kafka")
    try:
        stack.pid_file("kafka").parent.mkdir(parents=True, exist_ok=True)
        stack.pid_file("kafka").write_text(f"{fake_kafka.pid}\n")
        stack.down()
        assert fake_kafka.wait(timeout=10) is not None
        assert not stack.pid_file("kafka").exists()
    finally:
        fake_kafka.kill()
