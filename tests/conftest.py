"""Shared fixtures: the real stack for the session, and a fresh namespace (topics, groups, Redis keys) per test.

Where the stack comes from, in order: ``BATON_KAFKA_BOOTSTRAP`` / ``BATON_REDIS_URL`` when set (they must
answer: a test that cannot reach Kafka fails, it never skips); otherwise the local stack (Kafka from its
jars, the system's redis-server), started if missing and stopped at the end if this session started it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from baton.runtime.admin import delete_namespace
from baton.runtime.readmodel import ReadModel
from baton.runtime.settings import Settings
from baton.stack.local import ensured_stack, kafka_answers, redis_answers


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    settings = Settings()
    if os.environ.get("BATON_KAFKA_BOOTSTRAP") and os.environ.get("BATON_REDIS_URL"):
        if not kafka_answers(settings.kafka_bootstrap) or not redis_answers(settings.redis_url):
            pytest.fail(f"BATON_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} / BATON_REDIS_URL do not answer")
        yield settings
        return
    with ensured_stack(settings):
        yield settings


@pytest.fixture
def settings(stack_settings: Settings) -> Iterator[Settings]:
    """A fresh namespace for one test; its topics, consumer groups and Redis keys are removed after."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    scoped = stack_settings.with_namespace(namespace)
    yield scoped
    asyncio.run(_cleanup(scoped))


async def _cleanup(settings: Settings) -> None:
    await delete_namespace(settings)
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        await read_model.purge()
    finally:
        await read_model.close()
