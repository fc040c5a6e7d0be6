"""Shared fixtures: the real stack for the session, and a fresh namespace (topics, groups, Redis keys) per test.

Where the stack comes from, in order: ``BATON_KAFKA_BOOTSTRAP`` / ``BATON_REDIS_URL`` when set (they must
answer: a test that cannot reach Kafka fails, it never skips); testcontainers where a Docker engine answers
(and ``BATON_TESTCONTAINERS`` is not ``0``); otherwise the local stack (Kafka from its jars, the system's
redis-server), started if missing and stopped at the end if this session started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator

# imported here: hypothesis's pytest plugin imports it lazily in the session's end-of-run summary, and a run of the
# Kafka tests alone (no test importing hypothesis before) then failed after every test passed, with CPython
# 3.11.7's "SystemError: AST constructor recursion depth mismatch" while pytest rewrote it
import hypothesis  # noqa: F401
import pytest

from baton.stack.local import ensured_stack, kafka_answers, redis_answers
from services.runtime.admin import purge_namespace
from services.runtime.settings import Settings


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    settings = Settings()
    if os.environ.get("BATON_KAFKA_BOOTSTRAP") and os.environ.get("BATON_REDIS_URL"):
        if not kafka_answers(settings.kafka_bootstrap) or not redis_answers(settings.redis_url):
            pytest.fail(f"BATON_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} / BATON_REDIS_URL do not answer")
        yield settings
        return
    if os.environ.get("BATON_TESTCONTAINERS", "1") != "0" and _docker_answers():
        with _containers(settings) as in_containers:
            yield in_containers
        return
    with ensured_stack(settings):
        yield settings


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def _containers(settings: Settings) -> Iterator[Settings]:
    """Kafka (KRaft, Kafka 4 based) and Redis in throwaway containers."""
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer("confluentinc/cp-kafka:8.0.0").with_kraft() as kafka, RedisContainer("redis:7") as redis:
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        yield settings.model_copy(
            update={"kafka_bootstrap": kafka.get_bootstrap_server(), "redis_url": f"redis://{host}:{port}/0"}
        )


@pytest.fixture
def settings(stack_settings: Settings) -> Iterator[Settings]:
    """A fresh namespace for one test; its topics, consumer groups and Redis keys are removed after."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    scoped = stack_settings.with_namespace(namespace)
    yield scoped
    asyncio.run(purge_namespace(scoped))
