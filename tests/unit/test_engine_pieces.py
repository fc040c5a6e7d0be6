"""Pure pieces of the engine: the task assignor, which commit errors isolate a batch's inputs."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from services.runtime.assignor import TaskAssignor, spread_tasks


class FakeCluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.partitions.get(topic)
        return set(range(count)) if count is not None else None


def test_tasks_spread_evenly() -> None:
    dealt = spread_tasks(list(range(7)), ["a", "b", "c"])
    assert sorted(len(t) for t in dealt.values()) == [2, 2, 3]
    assert sorted(t for ts in dealt.values() for t in ts) == list(range(7))


def test_partition_i_of_every_input_goes_to_one_member() -> None:
    topics = ["in", "events", "timers"]
    members = {m: ConsumerProtocolMemberMetadata(0, topics, b"") for m in ("m2", "m1")}
    assignment = TaskAssignor.assign(FakeCluster({t: 4 for t in topics}), members)  # type: ignore[arg-type]
    owners: dict[int, set[str]] = {}
    for member, assigned in assignment.items():
        for topic, partitions in assigned.assignment:
            assert topic in topics
            for partition in partitions:
                owners.setdefault(partition, set()).add(member)
        tasks_per_topic = {topic: sorted(parts) for topic, parts in assigned.assignment}
        assert len({tuple(p) for p in tasks_per_topic.values()}) == 1  # the same tasks on every input
    assert sorted(owners) == [0, 1, 2, 3]
    assert all(len(o) == 1 for o in owners.values())


def test_one_member_owns_every_task() -> None:
    members = {"only": ConsumerProtocolMemberMetadata(0, ["in"], b"")}
    assignment = TaskAssignor.assign(FakeCluster({"in": 3}), members)  # type: ignore[arg-type]
    assert assignment["only"].assignment == [("in", [0, 1, 2])]


def test_only_errors_of_the_batch_itself_isolate_its_inputs() -> None:
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaTimeoutError,
        MessageSizeTooLargeError,
        NotLeaderForPartitionError,
        RecordTooLargeError,
    )

    from services.runtime.engine import unwritable

    assert unwritable(MessageSizeTooLargeError()) and unwritable(RecordTooLargeError())
    assert unwritable(TypeError("value must be bytes"))  # a handler sent something that is not bytes
    for trouble in (KafkaTimeoutError(), KafkaConnectionError(), NotLeaderForPartitionError(), TimeoutError()):
        assert not unwritable(trouble)  # Kafka's state: retry the whole batch, dead-letter nothing
