"""The publisher treats a message as sent only once Kafka confirmed it: a failed delivery is raised."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from baton.publish import Publisher
from schemas.orders import OrderCancelRequested
from schemas.topics import ORDERS_INBOUND
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

pytestmark = pytest.mark.integration


async def _inbound_topic_refusing_big_records(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topic = NewTopic(full_topic_name(settings, ORDERS_INBOUND), 1, 1, topic_configs={"max.message.bytes": "600"})
        await admin.create_topics([topic])
    finally:
        await admin.close()


async def test_a_delivery_the_broker_refused_is_raised_by_flush(settings: Settings) -> None:
    await _inbound_topic_refusing_big_records(settings)
    async with Publisher(settings, source="tests") as publisher:
        await publisher.publish(ORDERS_INBOUND, "O-1", OrderCancelRequested(order_id="O-1", reason="x" * 2000))
        with pytest.raises(MessageSizeTooLargeError):
            await publisher.flush()
        await publisher.publish(ORDERS_INBOUND, "O-2", OrderCancelRequested(order_id="O-2"))
        await publisher.flush()  # what fits is delivered, and flush then returns
