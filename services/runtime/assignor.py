"""A partition assignor that keeps co-partitioning: partition i of every input goes to the member owning task i."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata


def spread_tasks(tasks: list[int], members: list[str]) -> dict[str, list[int]]:
    """Tasks dealt to members in turn (sorted both ways), so each member gets as many as any other, plus one at most."""
    dealt: dict[str, list[int]] = {member: [] for member in members}
    for index, task in enumerate(sorted(tasks)):
        dealt[members[index % len(members)]].append(task)
    return dealt


class TaskAssignor(AbstractPartitionAssignor):
    """Every member subscribes to the same co-partitioned inputs; task i = partition i of each of them."""

    name = "baton-tasks"
    version = 0

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({topic for meta in members.values() for topic in meta.subscription})
        partitions = {topic: set(cluster.partitions_for_topic(topic) or ()) for topic in topics}
        tasks = sorted(set().union(*partitions.values())) if partitions else []
        dealt = spread_tasks(tasks, sorted(members))
        out = {}
        for member, owned in dealt.items():
            by_topic: dict[str, list[int]] = defaultdict(list)
            for topic in members[member].subscription:
                by_topic[topic] = [task for task in owned if task in partitions.get(topic, set())]
            out[member] = ConsumerProtocolMemberAssignment(cls.version, sorted(by_topic.items()), b"")
        return out

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
