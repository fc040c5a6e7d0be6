"""The raw baseline, taken in the same run through the same broker: what plain Kafka clients do on this machine.

- ``raw_pipe``: plain aiokafka (acks=all, idempotent, linger 5 ms, 256 KiB batches) produces as many
  records as the pipeline wrote, of the pipeline's average size, while a consumer reads them back;
  records/s = records / (first send to last record read). The pipeline's records/s is reported as a
  share of this figure: ratios hold from one machine to the next, absolute times do not.
- ``producer_perf``: Kafka's own ``org.apache.kafka.tools.ProducerPerformance`` (Java, from the jars the
  stack fetched), the broker's ceiling for one producer on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from baton.bench.collect import partitions_of
from services.runtime.settings import Settings

MIN_RECORDS, MAX_RECORDS = 10_000, 300_000
BATCH_BYTES = 256 * 1024  # both clients batch up to this much per partition (records here are ~1-3 KB)
PERF_TIMEOUT_S = 180.0
PERF_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<per_s>[\d.]+) records/sec \((?P<mb_s>[\d.]+) MB/sec\), "
    r"(?P<avg_ms>[\d.]+) ms avg latency, (?P<max_ms>[\d.]+) ms max latency, (?P<p50_ms>\d+) ms 50th, "
    r"(?P<p95_ms>\d+) ms 95th, (?P<p99_ms>\d+) ms 99th"
)


@dataclass(frozen=True)
class RawPipe:
    records: int
    record_bytes: int
    seconds: float
    records_per_s: float
    produce_only_records_per_s: float


def baseline_records(pipeline_records: int) -> int:
    return max(MIN_RECORDS, min(MAX_RECORDS, pipeline_records))


async def _create_topic(settings: Settings, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(name, settings.partitions, settings.replication_factor)])
    finally:
        await admin.close()


async def raw_pipe(settings: Settings, records: int, record_bytes: int) -> RawPipe:
    """Produce ``records`` records of ``record_bytes`` bytes and read them back concurrently."""
    topic = f"{settings.namespace}-bench-raw"
    await _create_topic(settings, topic)
    value = os.urandom(max(1, record_bytes // 2)).hex().encode()[:record_bytes]  # incompressible, like JSON is not
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=BATCH_BYTES)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        tps = await partitions_of(settings, [topic])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.monotonic()
        reader = asyncio.create_task(_read(consumer, records))
        deliveries = [await producer.send(topic, key=str(n).encode(), value=value) for n in range(records)]
        await asyncio.gather(*deliveries)
        produced_s = time.monotonic() - started
        await reader
        seconds = time.monotonic() - started
        return RawPipe(records, record_bytes, seconds, records / seconds, records / produced_s)
    finally:
        await consumer.stop()
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, records: int) -> None:
    seen = 0
    while seen < records:
        batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
        seen += sum(len(r) for r in batch.values())


async def producer_perf(settings: Settings, records: int, record_bytes: int) -> dict[str, Any]:
    """Kafka's ProducerPerformance tool (acks=all): its summary line, parsed; an ``error`` when it cannot run."""
    java = shutil.which("java")
    jars = settings.home / "kafka-jars"
    if java is None or not jars.is_dir():
        return {"error": f"needs java and the Kafka jars in {jars} (baton stack up fetches them)"}
    topic = f"{settings.namespace}-bench-perf"
    await _create_topic(settings, topic)
    log_config = resources.files("baton.stack").joinpath("log4j2.properties")
    process = await asyncio.create_subprocess_exec(
        java, "-Xmx512m", f"-Dlog4j2.configurationFile={log_config}", "-cp", f"{jars}/*",
        "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(records),
        "--record-size", str(record_bytes), "--throughput", "-1",
        "--producer-props", f"bootstrap.servers={settings.kafka_bootstrap}", "acks=all", f"batch.size={BATCH_BYTES}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), PERF_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {"error": f"ProducerPerformance did not finish in {PERF_TIMEOUT_S:.0f} s"}
    matches = list(PERF_LINE.finditer(output.decode(errors="replace")))
    if not matches:
        return {"error": "ProducerPerformance printed no summary", "output": output.decode(errors="replace")[-800:]}
    found = matches[-1].groupdict()
    return {"records": int(found["records"]), "record_bytes": record_bytes,
            **{k: float(v) for k, v in found.items() if k != "records"}}


async def take_baseline(settings: Settings, pipeline_records: int, record_bytes: int) -> dict[str, Any]:
    records = baseline_records(pipeline_records)
    pipe = await raw_pipe(settings, records, record_bytes)
    perf = await producer_perf(settings, records, record_bytes)
    return {"raw_aiokafka": asdict(pipe), "producer_performance": perf}
