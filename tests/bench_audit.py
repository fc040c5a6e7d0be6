"""How fast ``baton audit`` reads and checks a log: a recorded run's log copied N times into a fresh namespace.

    baton scenario run baton/scenario/builtin/demo.yaml --namespace audit-src     # a real, clean log
    python -m tests.bench_audit --source audit-src --copies 40                     # ~430,000 records
    python -m tests.bench_audit --source audit-src --copies 40 --keep              # then, again and again:
    python -m tests.bench_audit --source audit-src --existing auditbench-XXXXXX

Every copy is a log of its own: each identifier (event ids and causes, order, reservation, request, parcel,
movement ids, SKUs) gets the copy's prefix, so the copies neither collide nor share a stock position, and the
copied log must audit clean like its source. The target namespace is deleted at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from baton.audit.checks import audit_records
from baton.audit.log import LogRecord, read_log
from services.runtime.admin import delete_namespace, ensure_topics
from services.runtime.settings import Settings

# the JSON keys whose string values are identifiers that must stay unique per copy
PREFIXED = re.compile(rb'"(id|causationid|correlationid|order_id|reservation_id|request_id|parcel_id|movement_id'
                      rb'|shipment_id|cause_id|sku|count_id|receipt_id|adjustment_id|task_id|subject)":"')


async def copy_log(source: Settings, target: Settings, copies: int) -> int:
    records = await read_log(source)
    locations = sorted({r.topic.split(".")[1] for r in records if r.topic.startswith("wms.") and
                        r.topic != "wms.events.v1"})
    await ensure_topics(target, locations)
    raws = [(target.topic(r.topic), r.partition, _raw(r)) for r in records if r.doc is not None]
    producer = AIOKafkaProducer(bootstrap_servers=target.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                compression_type="lz4", acks=1)
    await producer.start()
    try:
        for n in range(copies):
            replacement = rb"\g<0>" + f"k{n}-".encode()
            for topic, partition, raw in raws:
                value = PREFIXED.sub(replacement, raw)
                key = str(orjson.loads(value).get("subject") or "none").encode()  # compacted topics need keys
                await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    return len(raws) * copies


def _raw(record: LogRecord) -> bytes:
    return orjson.dumps(record.doc)


async def measure(target: Settings) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    records = await read_log(target)
    read_s, read_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    report = audit_records(records)
    check_s, check_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"records": len(records), "read_s": read_s, "check_s": check_s, "violations": len(report.violations),
            "read_per_s": len(records) / read_s, "events_per_s": len(records) / (read_s + check_s),
            "cpu_s": read_cpu + check_cpu, "events_per_cpu_s": len(records) / (read_cpu + check_cpu)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--existing", help="Measure this namespace (copied before with --keep) as it is.")
    args = parser.parse_args()
    base = Settings()
    target = base.with_namespace(args.existing or f"auditbench-{uuid.uuid4().hex[:6]}")
    try:
        if not args.existing:
            written = await copy_log(base.with_namespace(args.source), target, args.copies)
            print(f"{written:,} records copied into {target.namespace}")
        for run in range(3):
            figures = await measure(target)
            print(f"run {run + 1}: {figures['records']:,.0f} records, read {figures['read_s']:.2f} s "
                  f"({figures['read_per_s']:,.0f}/s), checked {figures['check_s']:.2f} s, "
                  f"{figures['events_per_s']:,.0f} events/s end to end; {figures['cpu_s']:.2f} CPU s "
                  f"({figures['events_per_cpu_s']:,.0f} events per CPU second); {figures['violations']:.0f} violations")
    finally:
        if not args.keep and not args.existing:
            await delete_namespace(target)


if __name__ == "__main__":
    asyncio.run(main())
