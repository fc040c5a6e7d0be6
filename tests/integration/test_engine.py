"""The processing engine on real Kafka, with a toy counting service in this process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from schemas.envelope import decode
from schemas.topics import DEAD_LETTERS
from services.runtime.admin import LagProbe, wait_caught_up
from services.runtime.engine import Engine, EngineConfig, changelog_topic
from services.runtime.settings import Settings
from tests.support_engine import (
    TOY_IN,
    TOY_OUT,
    TOY_PARTITIONS,
    ToyCounter,
    create_toy_topics,
    out_records,
    publish,
    read_all,
    toy_command,
)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, service: ToyCounter | None = None, config: EngineConfig | None = None
) -> AsyncIterator[Engine]:
    engine = Engine(service or ToyCounter(settings), settings, config)
    job = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.started.wait(), timeout=60)
        yield engine
    finally:
        engine.stop()
        await asyncio.wait_for(job, timeout=60)


async def outputs(settings: Settings, count: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """The toy's committed outputs once there are at least ``count`` of them."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = out_records(await read_all(settings, settings.topic(TOY_OUT)))
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.3)


async def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    letters = []
    for _, value in await read_all(settings, settings.topic(DEAD_LETTERS.name)):
        _, message = decode(value)
        letters.append(message.model_dump())
    return letters


def counts_of(engine: Engine) -> dict[str, Any]:
    return {k: v for task in engine.tasks.values() for k, v in task.ctx.store("counts").items()}


async def test_every_input_counted_once_and_state_restored_after_restart(settings: Settings) -> None:
    await create_toy_topics(settings)
    skus = [f"SKU-{i}" for i in range(20)]
    await publish(settings, [(s.encode(), toy_command(f"a-{s}-{n}", s, qty=2)) for n in range(10) for s in skus])
    async with running(settings) as engine:
        first = await outputs(settings, 200)
        assert len(first) == 200
        assert sorted(o["id"] for o in first) == sorted(f"a-{s}-{n}" for n in range(10) for s in skus)
        assert engine.stats.transactions >= 1
    await publish(settings, [(s.encode(), toy_command(f"b-{s}", s, qty=1)) for s in skus])
    async with running(settings) as engine:
        second = await outputs(settings, 220)
        assert len(second) == 220
        assert engine.stats.restored_records >= len(skus)
        counts = counts_of(engine)
    assert {sku: counts[sku] for sku in skus} == {sku: {"n": 11, "total": 21} for sku in skus}
    changelog = await read_all(settings, changelog_topic(settings, "toy-counter", "counts"))
    assert {key.decode() for key, _ in changelog if key} == set(skus)


async def test_a_batch_over_its_time_budget_leaves_the_rest_for_the_next_one_and_nothing_is_lost(
    settings: Settings,
) -> None:
    await create_toy_topics(settings)
    skus = [f"SKU-{i}" for i in range(8)]
    await publish(settings, [(s.encode(), toy_command(f"t-{s}-{n}", s, qty=1)) for n in range(12) for s in skus])
    async with running(settings, config=EngineConfig(batch_budget_s=0.0)) as engine:  # one input per batch
        found = await outputs(settings, 96)
        counts = counts_of(engine)
        transactions = engine.stats.transactions
    assert sorted(o["id"] for o in found) == sorted(f"t-{s}-{n}" for n in range(12) for s in skus)
    assert {sku: counts[sku]["n"] for sku in skus} == {sku: 12 for sku in skus}
    assert transactions >= 96  # every input its own transaction: the rest of each batch was read again


async def test_poison_message_dead_lettered_while_the_rest_goes_on(settings: Settings) -> None:
    await create_toy_topics(settings)
    await publish(settings, [
        (b"SKU-1", toy_command("p-1", "SKU-1")),
        (b"SKU-1", b"{not json"),
        (b"SKU-1", toy_command("p-2", "SKU-1")),
    ])
    async with running(settings) as engine:
        found = await outputs(settings, 2)
        assert [o["id"] for o in found] == ["p-1", "p-2"]
        assert counts_of(engine)["SKU-1"] == {"n": 2, "total": 2}
    letters = await dead_letters(settings)
    assert len(letters) == 1
    assert letters[0]["offset"] == 1 and "not JSON" in letters[0]["reason"]


async def test_handler_exception_rolls_back_exactly_that_message(settings: Settings) -> None:
    await create_toy_topics(settings)
    await publish(settings, [
        (b"SKU-1", toy_command("h-1", "SKU-1", qty=1)),
        (b"SKU-1", toy_command("h-2", "SKU-1", qty=13)),
        (b"SKU-1", toy_command("h-3", "SKU-1", qty=5)),
    ])
    async with running(settings) as engine:
        found = await outputs(settings, 2)
        await asyncio.sleep(1)
        assert [o["id"] for o in await outputs(settings, 2)] == ["h-1", "h-3"]
        assert [o["n"] for o in found] == [1, 2]  # h-2 left nothing behind: h-3 is the second count
        assert counts_of(engine)["SKU-1"] == {"n": 2, "total": 6}
    letters = await dead_letters(settings)
    assert len(letters) == 1 and "unlucky thirteen" in letters[0]["reason"]


async def test_timers_commit_in_transactions(settings: Settings) -> None:
    await create_toy_topics(settings)
    await publish(settings, [(b"SKU-1", toy_command("t-1", "SKU-1", location="timer"))])
    async with running(settings) as engine:
        found = await outputs(settings, 2)
        assert {"tick": "t-1"} in found
        await asyncio.sleep(1)
        assert len(await outputs(settings, 2)) == 2  # the tick went once: its store change committed with it
        assert "timer:t-1" not in counts_of(engine)


async def test_nothing_of_an_aborted_batch_is_visible_to_read_committed(settings: Settings) -> None:
    await create_toy_topics(settings)
    await publish(settings, [
        (b"SKU-1", toy_command("x-1", "SKU-1")),
        (b"SKU-1", toy_command("x-2", "SKU-1", location="huge")),
        (b"SKU-1", toy_command("x-3", "SKU-1")),
    ])
    service = ToyCounter(settings)
    async with running(settings, service) as engine:
        found = await outputs(settings, 3)
        await asyncio.sleep(1)
        assert service.huge_sent and engine.stats.aborted >= 1
        assert [o["id"] for o in await outputs(settings, 3)] == ["x-1", "x-2", "x-3"]
        assert [o["n"] for o in found] == [1, 2, 3]
        assert counts_of(engine)["SKU-1"] == {"n": 3, "total": 3}
    uncommitted = out_records(await read_all(settings, settings.topic(TOY_OUT), committed_only=False))
    assert len(uncommitted) >= len(found)
    assert not await dead_letters(settings)
    assert orjson.dumps(found)


async def test_caught_up_behind_transaction_markers(settings: Settings) -> None:
    """Inputs written in transactions end with commit markers the group never "reads": lag must still be 0."""
    await create_toy_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"{settings.namespace}-feed"
    )
    await producer.start()
    try:
        for batch in range(3):
            async with producer.transaction():
                for n in range(5):
                    sku = f"SKU-{n}"
                    await producer.send(settings.topic(TOY_IN), toy_command(f"m-{batch}-{n}", sku), key=sku.encode())
    finally:
        await producer.stop()
    group = settings.group("toy-counter")
    tps = {group: [TopicPartition(settings.topic(TOY_IN), p) for p in range(TOY_PARTITIONS)]}
    async with running(settings):
        assert len(await outputs(settings, 15)) == 15
        assert await wait_caught_up(settings, [], timeout_s=30, groups=tps)
        async with LagProbe(settings, [], tps) as probe:
            ends = await probe.end_offsets()
            committed = await probe.admin.list_consumer_group_offsets(group)
            raw_lag = sum(ends[tp] - committed[tp].offset for tp in tps[group] if tp in committed)
            assert raw_lag > 0  # the markers: what a naive lag would wait for forever
            assert await probe.lag() == {group: 0}


async def test_an_input_whose_output_cannot_be_written_is_dead_lettered_alone(settings: Settings) -> None:
    await create_toy_topics(settings)
    await publish(settings, [
        (b"SKU-1", toy_command("u-1", "SKU-1")),
        (b"SKU-1", toy_command("u-2", "SKU-1", location="huge-always")),
        (b"SKU-1", toy_command("u-3", "SKU-1")),
    ])
    async with running(settings) as engine:
        found = await outputs(settings, 2)
        await asyncio.sleep(1)
        assert [o["id"] for o in await outputs(settings, 2)] == ["u-1", "u-3"]
        assert [o["n"] for o in found] == [1, 2]
        assert counts_of(engine)["SKU-1"] == {"n": 2, "total": 2}
        assert not any(task.isolate for task in engine.tasks.values())
    letters = await dead_letters(settings)
    assert len(letters) == 1 and letters[0]["offset"] == 1
    assert "could not be written" in letters[0]["reason"] and "MessageSizeTooLarge" in letters[0]["reason"]


async def test_tasks_move_with_their_state_when_instances_join_and_leave(settings: Settings) -> None:
    """A second instance joins mid-flow (tasks revoked after their batch, moved), then the first leaves."""
    await create_toy_topics(settings)
    skus = [f"SKU-{i}" for i in range(40)]
    rounds = 30

    async def feed() -> None:
        for n in range(rounds):
            await publish(settings, [(s.encode(), toy_command(f"j-{s}-{n}", s, qty=1)) for s in skus])
            await asyncio.sleep(0.2)

    first = Engine(ToyCounter(settings), settings)
    first_job = asyncio.create_task(first.run())
    await asyncio.wait_for(first.started.wait(), timeout=60)
    feeding = asyncio.create_task(feed())
    await asyncio.sleep(1.5)
    second = Engine(ToyCounter(settings), settings)
    second_job = asyncio.create_task(second.run())
    await asyncio.wait_for(second.started.wait(), timeout=60)
    await asyncio.sleep(1.5)
    assert first.tasks and second.tasks  # the work is shared
    first.stop()
    await asyncio.wait_for(first_job, timeout=60)
    await feeding
    try:
        found = await outputs(settings, rounds * len(skus))
        await asyncio.sleep(1)
        found = await outputs(settings, rounds * len(skus))
        assert sorted(second.tasks) == [0, 1, 2, 3]
        counts = counts_of(second)
    finally:
        second.stop()
        await asyncio.wait_for(second_job, timeout=60)
    ids = [o["id"] for o in found]
    assert len(ids) == len(set(ids)) == rounds * len(skus)
    assert {s: counts[s] for s in skus} == {s: {"n": rounds, "total": rounds} for s in skus}


async def test_a_fenced_task_is_dropped_then_taken_back_when_the_group_assigns_it(settings: Settings) -> None:
    """Another producer takes task 0's transactional id (a zombie's view of the world): the engine's next
    commit of task 0 is fenced, nothing of it is written, the engine rejoins and gets the task back."""
    await create_toy_topics(settings)
    skus = [f"SKU-{i}" for i in range(12)]
    async with running(settings) as engine:
        await publish(settings, [(s.encode(), toy_command(f"f1-{s}", s)) for s in skus])
        assert len(await outputs(settings, len(skus))) == len(skus)
        intruder = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"{settings.group('toy-counter')}-task-0"
        )
        await intruder.start()
        async with intruder.transaction():
            pass  # InitProducerId bumped the epoch: the engine's producer of task 0 is fenced
        await intruder.stop()
        await publish(settings, [(s.encode(), toy_command(f"f2-{s}", s)) for s in skus])
        found = await outputs(settings, 2 * len(skus))
        await asyncio.sleep(1)
        found = await outputs(settings, 2 * len(skus))
        assert sorted(o["id"] for o in found) == sorted(f"f{r}-{s}" for r in (1, 2) for s in skus)
        assert sorted(engine.tasks) == [0, 1, 2, 3]
        assert all(v["n"] == 2 for k, v in counts_of(engine).items() if k in skus)
