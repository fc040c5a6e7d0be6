"""The ledger read back from Kafka: rebuilt from ``inventory.commands.v1`` (all of it, or up to a moment),
the live ledger as the service stored it (its table's changelog), and the network's locations.

The ledger is deterministic and never reads a clock, so replaying the commands in topic order through the
same pure ``SkuLedger`` gives the state the service had after applying them: that is how ``baton stock show
--as-of T`` answers for a past moment (every command sent by T, by its Kafka timestamp), and how the tests
check that a rebuilt ledger equals the live one.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.base import Message
from schemas.envelope import InvalidMessage, decode
from schemas.network import Location, LocationConfigured
from schemas.topics import INVENTORY_COMMANDS, NETWORK
from services.inventory.app import HOLDS, assemble, decode_reservation, sku_of_hold
from services.inventory.domain.ledger import Reservation, SkuLedger, rebuild
from services.runtime.engine import changelog_topic
from services.runtime.replay import topic_partitions
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

LEDGER_TABLE = "ledgers"


async def read_records(
    settings: Settings, topic: str, until: datetime | None = None, key: bytes | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of a topic, partition by partition in offset order, up to the end offsets of now, or to the
    last record stamped at or before ``until``; only those with ``key`` when given."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        isolation_level="read_committed",  # the services write in transactions: never what one aborted
    )
    await consumer.start()
    try:
        partitions = (await topic_partitions(settings, [topic])).get(topic, [])
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if until is not None:
            cut = int(until.timestamp() * 1000) + 1
            found = await consumer.offsets_for_times(dict.fromkeys(tps, cut))
            ends = {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])  # explicit offsets: seek_to_beginning can race a pending reset
        out: list[ConsumerRecord[bytes, bytes]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in batch.get(tp, []):
                    if record.offset < ends[tp] and (key is None or record.key == key):
                        out.append(record)
        return out
    finally:
        await consumer.stop()


async def read_commands(
    settings: Settings, sku: str | None = None, until: datetime | None = None
) -> list[tuple[str, Message]]:
    """(envelope id, command) of ``inventory.commands.v1`` in topic order; what does not parse is skipped,
    as the service dead-letters it."""
    topic = full_topic_name(settings, INVENTORY_COMMANDS)
    records = await read_records(settings, topic, until, sku.encode() if sku else None)
    out = []
    for record in records:
        try:
            envelope, message = decode(record.value)
        except InvalidMessage:
            continue
        out.append((envelope.id, message))
    return out


async def rebuilt_ledgers(
    settings: Settings, sku: str | None = None, until: datetime | None = None
) -> dict[str, SkuLedger]:
    """Every ledger (or one SKU's) rebuilt from the commands, as of now or of ``until``."""
    ledgers = rebuild(await read_commands(settings, sku, until))
    return {s: ledger for s, ledger in ledgers.items() if sku is None or s == sku}


async def live_ledgers(settings: Settings) -> dict[str, SkuLedger]:
    """The ledgers the inventory service stored: the latest value per key of its store's changelog."""
    latest: dict[str, bytes | None] = {}
    for record in await read_records(settings, changelog_topic(settings, "inventory", LEDGER_TABLE)):
        latest[_table_key(record.key)] = record.value
    holds: dict[str, bytes | None] = {}  # each reservation is stored under its own key, "SKU@reservation id"
    for record in await read_records(settings, changelog_topic(settings, "inventory", HOLDS)):
        holds[_table_key(record.key)] = record.value
    by_sku: dict[str, list[Reservation]] = {}
    for key, raw in holds.items():
        if raw:
            by_sku.setdefault(sku_of_hold(key), []).append(decode_reservation(raw))
    return {
        sku: assemble(SkuLedger.model_validate_json(raw), by_sku.get(sku, [])) for sku, raw in latest.items() if raw
    }


def _table_key(raw: bytes) -> str:
    """faust writes a ``str`` table key JSON-encoded (``"SKU"``)."""
    key = orjson.loads(raw) if raw.startswith(b'"') else raw.decode()
    return str(key)


async def read_network(settings: Settings) -> dict[str, Location]:
    """The latest configuration of every location (the compacted ``network.v1``)."""
    locations: dict[str, Location] = {}
    for record in await read_records(settings, full_topic_name(settings, NETWORK)):
        try:
            _, message = decode(record.value)
        except InvalidMessage:
            continue
        if isinstance(message, LocationConfigured):
            locations[message.location.id] = message.location
    return locations
