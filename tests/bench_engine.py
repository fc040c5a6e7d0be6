"""Throughput of the processing engine with the toy counting service (for docs/decisions/0001-processing.md).

    BATON_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python -m tests.bench_engine --inputs 50000 --skus 1000

Produces the inputs first, then starts the engine in this process and times it from its first assignment
to the last input applied and committed; prints inputs/s and Kafka records written per input, then times
a restart (state restored from the changelogs, tasks assigned). The namespace is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from services.runtime.admin import delete_namespace
from services.runtime.engine import Engine, EngineConfig
from services.runtime.settings import Settings
from tests.support_engine import TOY_IN, ToyCounter, create_toy_topics, toy_command


async def produce(settings: Settings, inputs: int, skus: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024,
        compression_type="lz4",
    )
    await producer.start()
    try:
        for i in range(inputs):
            sku = f"SKU-{i % skus}"
            await producer.send(settings.topic(TOY_IN), toy_command(f"b-{i}", sku), key=sku.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def bench(inputs: int, skus: int, max_records: int) -> dict[str, float]:
    settings = Settings().with_namespace(f"bench-{uuid.uuid4().hex[:6]}")
    try:
        await create_toy_topics(settings)
        await produce(settings, inputs, skus)
        engine = Engine(ToyCounter(settings), settings, EngineConfig(max_records=max_records))
        job = asyncio.create_task(engine.run())
        await engine.started.wait()
        started = time.perf_counter()
        cpu_started = time.process_time()
        while sum(o for task in engine.tasks.values() for o in task.committed.values()) < inputs:
            await asyncio.sleep(0.01)  # every input's offset committed (the producer above wrote no markers)
        took = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        engine.stop()
        await job
        stats = engine.stats
        # restart: the whole state restored from the changelogs before the first batch
        restarted = Engine(ToyCounter(settings), settings)
        restart_began = time.perf_counter()
        again = asyncio.create_task(restarted.run())
        await restarted.started.wait()
        restart_s = time.perf_counter() - restart_began
        restarted.stop()
        await again
        return {
            "inputs": inputs,
            "skus": skus,
            "seconds": round(took, 2),
            "inputs_per_s": round(inputs / took),
            "records_per_input": round(stats.records_written / inputs, 3),
            "changelog_per_input": round(stats.changelog_records / inputs, 3),
            "transactions": stats.transactions,
            "cpu_seconds_engine_process": round(cpu, 2),
            "restart_to_processing_s": round(restart_s, 2),
            "restored_changelog_records": restarted.stats.restored_records,
            "restore_s": round(restarted.stats.restore_seconds, 2),
        }
    finally:
        await delete_namespace(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=50_000)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--max-records", type=int, default=2_000)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(orjson.dumps(asyncio.run(bench(args.inputs, args.skus, args.max_records))).decode())


if __name__ == "__main__":
    main()
