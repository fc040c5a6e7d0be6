"""The toy counting load on faust-streaming's own ``processing_guarantee="exactly_once"``, for comparison.

    .venv/bin/pip install -e '.[compare]'   # faust-streaming is no longer a dependency of baton
    BATON_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python -m tests.bench_faust_eos --inputs 50000 --skus 1000

Produces the inputs, runs a faust worker (a table per SKU, one output per input, exactly_once) as its own
process, and reports inputs/s from the first to the last output record's timestamp (the same yardstick is
printed for the engine with ``--engine``). The namespace is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime.admin import delete_namespace
from services.runtime.settings import Settings, project_root
from tests.bench_engine import produce
from tests.support_engine import TOY_IN, TOY_OUT, TOY_PARTITIONS, create_toy_topics


def worker() -> None:
    """The faust worker (run in its own process by ``main``)."""
    import faust

    from schemas.envelope import decode

    settings = Settings()
    app = faust.App(
        settings.group("faust-eos"),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        processing_guarantee="exactly_once",
        topic_partitions=TOY_PARTITIONS,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    source = app.topic(settings.topic(TOY_IN), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    out = app.topic(settings.topic(TOY_OUT), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    counts = app.Table("counts", default=None, partitions=TOY_PARTITIONS)

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            _, message = decode(event.value)
            entry = counts.get(message.sku) or {"n": 0, "total": 0}
            entry = {"n": entry["n"] + 1, "total": entry["total"] + message.qty}
            counts[message.sku] = entry
            await out.send(key=message.sku.encode(), value=orjson.dumps({"id": message.count_id, "n": entry["n"]}))

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


async def output_span(
    settings: Settings, expected: int, timeout_s: float, process: subprocess.Popen[bytes]
) -> tuple[int, float]:
    """(outputs read, seconds from the first to the last output) once ``expected`` outputs are committed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(TOY_OUT), p) for p in range(TOY_PARTITIONS)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        seen, first, last = 0, None, 0
        deadline = time.monotonic() + timeout_s
        while seen < expected and time.monotonic() < deadline and process.poll() is None:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for record in records:
                    seen += 1
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = max(last, record.timestamp)
        return seen, (last - (first or last)) / 1000
    finally:
        await consumer.stop()


async def bench(inputs: int, skus: int, engine: bool) -> dict[str, object]:
    settings = Settings().with_namespace(f"bench-{uuid.uuid4().hex[:6]}")
    module = "tests.support_engine" if engine else "tests.bench_faust_eos"
    args = [sys.executable, "-m", module] + ([] if engine else ["--worker"])
    env = {**os.environ, "BATON_NAMESPACE": settings.namespace, "BATON_LOG_LEVEL": "WARNING"}
    process = None
    try:
        await create_toy_topics(settings)
        await produce(settings, inputs, skus)
        process = subprocess.Popen(args, cwd=project_root(), env=env, stdout=subprocess.DEVNULL)
        seen, span = await output_span(settings, inputs, timeout_s=300, process=process)
        return {
            "runner": "engine" if engine else "faust exactly_once",
            "inputs": inputs,
            "outputs": seen,
            "seconds_first_to_last_output": round(span, 2),
            "inputs_per_s": round(seen / span) if span else None,
        }
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        await delete_namespace(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=50_000)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--engine", action="store_true", help="the same measurement with the engine's toy")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    print(orjson.dumps(asyncio.run(bench(args.inputs, args.skus, args.engine))).decode())


if __name__ == "__main__":
    main()
