"""Topic administration: create the catalog's topics (idempotent) and remove a namespace's traces."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import DeleteGroupsRequest

from schemas.topics import (
    ALL_TOPICS,
    INVENTORY_COMMANDS,
    INVENTORY_RESERVATIONS,
    ORDERS_INBOUND,
    ORDERS_TIMERS,
    PAYMENTS_COMMANDS,
    PAYMENTS_EVENTS,
    WMS_COMMANDS,
    WMS_EVENTS,
    WMS_TASKS,
    TopicSpec,
)
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name, topic_config


@dataclass(frozen=True)
class PlannedTopic:
    name: str
    partitions: int
    config: dict[str, str]
    spec: TopicSpec


# The stores of each service (``services.runtime.processing``), each backed by a compacted changelog topic
# with one partition per task. The engine creates them too; planning them here lets ``baton topics create``
# and the scenario runner create them up front with the partitions of their source topics.
STATE_STORES: dict[str, tuple[str, ...]] = {
    "orchestrator": ("orders", "capacity"),
    "inventory": ("ledgers", "holds"),
    "wms-{location}": ("entities",),
}
# Stores of a service whose input has one partition (a WMS node's inbox) have one partition too.
STATE_STORE_PARTITIONS: dict[str, int] = {"wms-{location}": 1}
CHANGELOG_SPEC = TopicSpec(
    name="<service>-<store>-changelog",
    key="store key",
    messages=(),
    description="A store's changelog: a service's state per task, compacted.",
    cleanup_policy="compact",
)


# Compacted, with segments rolled every minute and cleaned once a fifth is stale: a restore reads the
# latest value of each key plus at most a few minutes of history, not every version ever written.
CHANGELOG_CONFIG: dict[str, str] = {
    "cleanup.policy": "compact",
    "segment.ms": "60000",
    "min.cleanable.dirty.ratio": "0.2",
}


def changelog_name(settings: Settings, service: str, store: str) -> str:
    """The changelog topic of a service's store (the engine's naming)."""
    return f"{settings.namespace}.{service}-{store}-changelog"


def changelog_topics(settings: Settings, locations: Iterable[str] = ()) -> list[PlannedTopic]:
    out = []
    for service, stores in STATE_STORES.items():
        services = [service.replace("{location}", loc) for loc in locations] if "{location}" in service else [service]
        for name in services:
            for store in stores:
                out.append(
                    PlannedTopic(
                        name=changelog_name(settings, name, store),
                        partitions=STATE_STORE_PARTITIONS.get(service, settings.partitions),
                        config=dict(CHANGELOG_CONFIG),
                        spec=CHANGELOG_SPEC,
                    )
                )
    return out


def planned_topics(settings: Settings, locations: Iterable[str] = ()) -> list[PlannedTopic]:
    """Every topic of the catalog in this namespace; per-location topics once per location."""
    out = []
    locations = sorted(set(locations))
    for spec in ALL_TOPICS:
        for location in locations if spec.per_location else [None]:
            out.append(
                PlannedTopic(
                    name=full_topic_name(settings, spec, location),
                    partitions=spec.partitions or settings.partitions,
                    config=topic_config(spec),
                    spec=spec,
                )
            )
    return out + changelog_topics(settings, locations)


async def _delete_group(admin: AIOKafkaAdminClient, client: AIOKafkaClient, group: str) -> None:
    """aiokafka's admin client has no delete_consumer_groups: send DeleteGroups to the group's coordinator
    through the public client (no private member of the admin client)."""
    coordinator = await admin.find_coordinator(group)
    await client.send(coordinator, DeleteGroupsRequest([group]))


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=30000)


async def ensure_topics(settings: Settings, locations: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Create what is missing; returns (created, already there)."""
    wanted = planned_topics(settings, locations)
    admin = _admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        for topic in missing:
            new = NewTopic(topic.name, topic.partitions, settings.replication_factor, topic_configs=topic.config)
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([new])
        return [t.name for t in missing], [t.name for t in wanted if t.name in existing]
    finally:
        await admin.close()


async def delete_namespace(settings: Settings) -> tuple[list[str], list[str]]:
    """Delete every topic and consumer group of a namespace (tests and throwaway scenario runs)."""
    admin = _admin(settings)
    await admin.start()
    try:
        prefixes = (f"{settings.namespace}.", f"{settings.namespace}-")
        topics = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if topics:
            await admin.delete_topics(topics)
        groups = [str(g[0]) for g in await admin.list_consumer_groups() if str(g[0]).startswith(prefixes)]
        if groups:
            client = AIOKafkaClient(**settings.kafka_client_options(), request_timeout_ms=30000)
            await client.bootstrap()
            try:
                for group in groups:
                    await _delete_group(admin, client, group)
            finally:
                await client.close()
        return topics, groups
    finally:
        await admin.close()



# What each service's consumer group reads (for lag: a namespace is quiescent when every group is caught up).
SUBSCRIPTIONS: dict[str, tuple[TopicSpec, ...]] = {
    "orchestrator": (ORDERS_INBOUND, INVENTORY_RESERVATIONS, WMS_EVENTS, ORDERS_TIMERS, PAYMENTS_EVENTS),
    "inventory": (INVENTORY_COMMANDS,),
    "payments": (PAYMENTS_COMMANDS,),
    "wms-{location}": (WMS_COMMANDS, WMS_TASKS),
}


async def purge_namespace(settings: Settings) -> None:
    """Everything a namespace left behind: its topics and consumer groups, and its Redis keys."""
    await delete_namespace(settings)
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        await read_model.purge()
    finally:
        await read_model.close()


def subscriptions(settings: Settings, locations: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for service, specs in SUBSCRIPTIONS.items():
        names = [service.replace("{location}", loc) for loc in locations] if "{location}" in service else [service]
        for name, loc in zip(names, list(locations) if "{location}" in service else [None], strict=True):
            out[settings.group(name)] = [full_topic_name(settings, spec, loc) for spec in specs]
    return out


class LagProbe:
    """One admin client and two consumers for a namespace's groups, kept open across polls.

    Transactional producers (the processing engine) leave a commit marker after each transaction's records:
    a group that read everything commits the offset after its last record, so the marker stays "unread"
    and the raw lag never reaches 0. A gap holding nothing a read-committed consumer would get (markers,
    aborted records) is therefore no lag.
    """

    def __init__(
        self, settings: Settings, locations: Iterable[str], groups: dict[str, list[TopicPartition]] | None = None
    ) -> None:
        self.settings = settings
        self.groups = groups if groups is not None else {
            group: [TopicPartition(t, p) for t in topics for p in range(_partitions(settings, t))]
            for group, topics in subscriptions(settings, list(locations)).items()
        }
        self.admin = _admin(settings)
        self.consumer = AIOKafkaConsumer(**settings.kafka_client_options())
        self.committed_reader = AIOKafkaConsumer(
            **settings.kafka_client_options(), isolation_level="read_committed", enable_auto_commit=False
        )
        self._empty_gaps: set[tuple[TopicPartition, int, int]] = set()  # gaps known to hold no committed record
        # one reader, assigned one partition at a time: concurrent callers (the bench watches several killed
        # services at once) take turns, or one would seek a partition another had just unassigned
        self._reader_turn = asyncio.Lock()

    async def __aenter__(self) -> LagProbe:
        await self.admin.start()
        await self.consumer.start()
        await self.committed_reader.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.committed_reader.stop()
        await self.consumer.stop()
        await self.admin.close()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        tps = [tp for tps in self.groups.values() for tp in tps]
        return dict(await self.consumer.end_offsets(tps))

    async def lag(self, upto: dict[TopicPartition, int] | None = None) -> dict[str, int]:
        """Messages not yet committed by each group; with ``upto``, only those below these offsets count."""
        ends = upto if upto is not None else await self.end_offsets()
        lag: dict[str, int] = {}
        for group, tps in self.groups.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            done = {TopicPartition(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
            lag[group] = 0
            for tp in tps:
                start, end = max(0, done.get(tp, 0)), ends.get(tp, 0)
                if end > start and not await self.nothing_committed_between(tp, start, end):
                    lag[group] += end - start
        return lag

    async def nothing_committed_between(self, tp: TopicPartition, start: int, end: int, wait_s: float = 1.0) -> bool:
        """True when offsets [start, end) hold no record a read-committed consumer gets (only transaction
        markers or aborted records). An open transaction there keeps it False until it ends."""
        if (tp, start, end) in self._empty_gaps:
            return True
        async with self._reader_turn:
            empty = await self._read_gap(tp, start, end, wait_s)
        if empty:
            self._empty_gaps.add((tp, start, end))
        return empty

    async def _read_gap(self, tp: TopicPartition, start: int, end: int, wait_s: float) -> bool:
        reader = self.committed_reader
        reader.assign([tp])
        reader.seek(tp, start)
        deadline = asyncio.get_running_loop().time() + wait_s
        while await reader.position(tp) < end:
            records = (await reader.getmany(tp, timeout_ms=100, max_records=1)).get(tp, [])
            if records:
                if records[0].offset < end:
                    return False
                break
            if asyncio.get_running_loop().time() > deadline:
                return False
        return True


async def consumer_lag(
    settings: Settings, locations: Iterable[str], groups: dict[str, list[TopicPartition]] | None = None
) -> dict[str, int]:
    """Messages not yet committed by each service's consumer group (0 everywhere = caught up)."""
    async with LagProbe(settings, locations, groups) as probe:
        return await probe.lag()


async def wait_caught_up(
    settings: Settings,
    locations: Iterable[str],
    rounds: int = 3,
    timeout_s: float = 60.0,
    groups: dict[str, list[TopicPartition]] | None = None,
) -> bool:
    """Barriers: every service handled every message that existed when each round began.

    Only messages below each round's end offsets count, so periodic messages (ticks) produced meanwhile
    cannot keep the answer from becoming true; each round also covers what the previous one's messages
    caused, so a few rounds settle a cascade (order -> reservation -> fulfilment -> consumption).
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with LagProbe(settings, locations, groups) as probe:
        for _ in range(rounds):
            upto = await probe.end_offsets()
            while any((await probe.lag(upto)).values()):
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.2)
    return True


async def written_end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """``{(topic, partition): high watermark}``: past every record written so far.

    Not the last stable offset: a producer's commit returns once the coordinator decided, and the markers reach
    the partitions a moment later, so a view measured against the stable offset then could pass for current
    without the transaction just committed. A read-committed view reaches the high watermark once the marker
    of every transaction open now is written (the marker takes the last offset)."""
    reader = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(_partitions(settings, t))]
        ends = await reader.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}
    finally:
        await reader.stop()


def _partitions(settings: Settings, topic: str) -> int:
    for planned in planned_topics(settings, [topic.split(".")[2]] if ".wms." in f".{topic}" else []):
        if planned.name == topic:
            return planned.partitions
    return settings.partitions
