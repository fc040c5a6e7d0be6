"""``baton orders show ORDER_ID``: an order's status from the read model and its whole story from the topics.

The timeline is read back from every topic of the catalog in the namespace (per-location WMS topics for
every location found there), from the beginning to the end offsets of the moment, with one group-less
consumer. Every envelope whose ``correlationid`` is the order id belongs to the order's story; so does a
dead letter whose payload was one of them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from rich.console import Console
from rich.table import Table

from schemas.topics import ALL_TOPICS, DEAD_LETTERS
from services.runtime.readmodel import ReadModel
from services.runtime.replay import existing_topics, topic_partitions
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

orders_app = typer.Typer(help="Where is my order? Status and story of one order.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT_UNKNOWN = 1
SHORT = 8
STALL_S = 10.0


@dataclass
class TimelineEntry:
    time: datetime
    topic: str
    type: str
    id: str
    causationid: str | None
    subject: str | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    copies: int = 1
    cause_type: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "topic": self.topic,
            "type": self.type,
            "id": self.id,
            "causationid": self.causationid,
            "cause_type": self.cause_type,
            "subject": self.subject,
            "detail": self.detail,
            "copies": self.copies,
            "data": self.data,
        }


@orders_app.callback()
def _orders() -> None:
    """Orders: status from the Redis read model, story from the topics."""


@orders_app.command("show")
def show(
    order_id: str = typer.Argument(..., help="The order id, e.g. O-1."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """The order's status, lines and shipments, then its timeline: every event it caused, in order."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    view, timeline = asyncio.run(_gather(settings, order_id))
    if view is None and not timeline:
        err.print(f"[red]unknown order[/red] {order_id!r} in namespace {settings.namespace!r}: "
                  "not in the read model and no event of the namespace's topics carries it")
        raise typer.Exit(EXIT_UNKNOWN)
    if as_json:
        document = {"order_id": order_id, "namespace": settings.namespace, "view": view,
                    "timeline": [e.as_json() for e in timeline]}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    _print_view(order_id, view)
    console.print(timeline_table(order_id, timeline))


async def _gather(settings: Settings, order_id: str) -> tuple[dict[str, Any] | None, list[TimelineEntry]]:
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        return await asyncio.gather(read_model.read_order(order_id), read_timeline(settings, order_id))
    finally:
        await read_model.close()


# --- reading the story back from the topics -------------------------------------------------------------


async def read_timeline(settings: Settings, correlationid: str) -> list[TimelineEntry]:
    """Every event of the namespace's catalog topics correlated to ``correlationid``, causes first."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await catalog_partitions(settings)
        collector = _Collector(settings, correlationid)
        await _read_to_end(consumer, partitions, collector)
        return ordered_timeline(collector.entries)
    finally:
        await consumer.stop()


async def catalog_partitions(settings: Settings) -> list[TopicPartition]:
    """The partitions of the catalog's topics that exist in the namespace."""
    existing = await existing_topics(settings)
    locations = namespace_locations(settings, existing)
    names = [
        full_topic_name(settings, spec, location)
        for spec in ALL_TOPICS
        for location in (locations if spec.per_location else [None])
    ]
    partitions = await topic_partitions(settings, [name for name in names if name in existing])
    return [TopicPartition(name, p) for name in names for p in partitions.get(name, [])]


def namespace_locations(settings: Settings, topics: Iterable[str]) -> list[str]:
    """The locations that have per-location topics (``{ns}.wms.{location}.….v1``) among ``topics``."""
    found: set[str] = set()
    for spec in ALL_TOPICS:
        if spec.per_location:
            head, tail = settings.topic(spec.name).split("{location}")
            found |= {t[len(head) : -len(tail)] for t in topics
                      if t.startswith(head) and t.endswith(tail) and len(t) > len(head) + len(tail)}
    return sorted(found)


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], collector: _Collector
) -> None:
    """Read every partition from its beginning to the end offset it had when we started."""
    if not partitions:
        return
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    pending = {tp for tp in partitions if ends[tp] > starts[tp]}
    consumer.pause(*(set(partitions) - pending))
    await consumer.seek_to_beginning(*pending)
    stalled_since = asyncio.get_running_loop().time()
    while pending:
        batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
        for tp, records in batches.items():
            collector.take(tp.topic, (r for r in records if r.offset < ends[tp]))
        done = {tp for tp in pending if await consumer.position(tp) >= ends[tp]}
        consumer.pause(*done)
        pending -= done
        now = asyncio.get_running_loop().time()
        if batches or done:
            stalled_since = now
        elif now - stalled_since > STALL_S:
            err.print(f"[yellow]warning[/yellow]: {len(pending)} partition(s) stopped short of their end")
            return


class _Collector:
    """Keeps the envelopes of one correlation id; a cheap byte search skips the others unparsed."""

    def __init__(self, settings: Settings, correlationid: str) -> None:
        self.correlationid = correlationid
        self.needle = orjson.dumps(correlationid)[1:-1]
        self.prefix = settings.topic("")
        self.dead_letters = full_topic_name(settings, DEAD_LETTERS)
        self.by_id: dict[str, TimelineEntry] = {}

    @property
    def entries(self) -> list[TimelineEntry]:
        return list(self.by_id.values())

    def take(self, topic: str, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            if record.value is not None and self.needle in record.value:
                self._take_one(topic, record)

    def _take_one(self, topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            document = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(document, dict):
            return
        if topic == self.dead_letters:
            self._take_dead_letter(topic, document)
        elif document.get("correlationid") == self.correlationid:
            self._add(topic, document, _detail(document.get("data") or {}))

    def _take_dead_letter(self, topic: str, document: dict[str, Any]) -> None:
        data = document.get("data") or {}
        try:
            inner = orjson.loads(data.get("payload", ""))
        except orjson.JSONDecodeError:
            return
        if isinstance(inner, dict) and inner.get("correlationid") == self.correlationid:
            detail = f"{data.get('service')}: {data.get('reason')}"
            self._add(topic, {**document, "causationid": inner.get("id")}, detail)

    def _add(self, topic: str, document: dict[str, Any], detail: str) -> None:
        event_id = str(document.get("id", ""))
        if event_id in self.by_id:
            self.by_id[event_id].copies += 1
            return
        self.by_id[event_id] = TimelineEntry(
            time=_parse_time(document.get("time")),
            topic=topic.removeprefix(self.prefix),
            type=str(document.get("type", "?")),
            id=event_id,
            causationid=document.get("causationid"),
            subject=document.get("subject"),
            detail=detail,
            data=document.get("data") or {},
        )


def _parse_time(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def _detail(data: dict[str, Any]) -> str:
    """A few words on what an event says: the status it moved to, what and where."""
    parts = []
    if "status" in data:
        parts.append(f"{data.get('previous') or '∅'} → {data['status']}")
    for key in ("return_id", "kind", "sku", "qty", "delta", "location", "destination", "available", "tracking",
                "amount", "attempt", "idempotency_key", "reason"):
        if data.get(key) is not None:
            parts.append(f"{key}={data[key]}")
    if data.get("allocations"):
        parts.append(", ".join(f"{a['sku']} x{a['qty']}@{a['location']}" for a in data["allocations"]))
    elif isinstance(data.get("lines"), list) and "sku" not in data and "status" not in data:
        # a message that was dead-lettered for its lines is in the story too: never trust their shape
        lines = [line for line in data["lines"] if isinstance(line, dict)]
        parts.append(", ".join(f"{line.get('sku')} x{line.get('qty')}" for line in lines))
    return " ".join(parts)


def ordered_timeline(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """By envelope time; a cause always comes before its effects, even across skewed clocks."""
    by_id = {e.id: e for e in entries}
    keys: dict[str, tuple[datetime, int]] = {}

    def key(entry: TimelineEntry, seen: frozenset[str]) -> tuple[datetime, int]:
        if entry.id not in keys:
            cause = by_id.get(entry.causationid or "")
            if cause is None or cause.id in seen:
                keys[entry.id] = (entry.time, 0)
            else:
                cause_time, depth = key(cause, seen | {entry.id})
                keys[entry.id] = (max(entry.time, cause_time), depth + 1)
        return keys[entry.id]

    timeline = sorted(entries, key=lambda e: (*key(e, frozenset()), e.time))
    for entry in timeline:
        cause = by_id.get(entry.causationid or "")
        entry.cause_type = cause.type if cause else None
    return timeline


# --- printing ---------------------------------------------------------------------------------------------


def _print_view(order_id: str, view: dict[str, Any] | None) -> None:
    if view is None:
        console.print(f"[bold]{order_id}[/bold]: [yellow]not in the read model[/yellow] (events below)")
        return
    delivery = view.get("delivery") or {}
    console.print(f"[bold]{order_id}[/bold]  status [bold cyan]{view['status']}[/bold cyan]"
                  + (f" ({view['reason']})" if view.get("reason") else "")
                  + f"  channel {view.get('channel') or '-'}  delivery {delivery.get('mode', '-')}"
                  + (f"  promised {view['promised_date']}" if view.get("promised_date") else ""))
    lines_columns = ("ordered", "shipped", "cancelled", "open")
    lines = Table("sku", *lines_columns, title="Lines")
    for line in view.get("lines", []):
        lines.add_row(line["sku"], *(str(line.get(k, 0)) for k in lines_columns))
    console.print(lines)
    if view.get("shipments"):
        shipments = Table("location", "parcel", "carrier", "tracking", "lines", title="Shipments")
        for s in view["shipments"]:
            shipments.add_row(s["location"], s.get("parcel_id", ""), s.get("carrier", ""), s["tracking"],
                              ", ".join(f"{line['sku']} x{line['qty']}" for line in s["lines"]))
        console.print(shipments)
    _print_returns(view)


def _print_returns(view: dict[str, Any]) -> None:
    if view.get("returns"):
        returns = Table("return", "status", "method", "destination", "asked", "received", "disposition", "reason",
                        title="Returns")
        for case in view["returns"]:
            returns.add_row(case["return_id"], case["status"], case.get("method", ""), case.get("destination") or "",
                            ", ".join(f"{ln['sku']} x{ln['qty']}" for ln in case.get("lines", [])),
                            ", ".join(f"{ln['sku']} x{ln['qty']} {ln['condition']}" for ln in case.get("received", [])),
                            case.get("disposition") or "", case.get("reason") or "")
        console.print(returns)
    if view.get("refunds"):
        refunds = Table("return", "amount", "status", "attempts", "idempotency key", title="Refunds")
        for refund in view["refunds"]:
            refunds.add_row(refund["return_id"], f"{refund['amount']:.2f} {refund.get('currency', '')}",
                            refund["status"], str(refund.get("attempts", 1)), refund["idempotency_key"])
        console.print(refunds)


def timeline_table(order_id: str, timeline: list[TimelineEntry]) -> Table:
    table = Table("time", "topic", "type", "event", "caused by", "detail", title=f"Timeline of {order_id}")
    for entry in timeline:
        cause = "" if not entry.causationid else entry.causationid[:SHORT]
        if entry.cause_type:
            cause += f" ({entry.cause_type})"
        kind = entry.type + (f" [yellow]x{entry.copies}[/yellow]" if entry.copies > 1 else "")
        table.add_row(entry.time.strftime("%H:%M:%S.%f")[:-3], entry.topic, kind, entry.id[:SHORT], cause,
                      entry.detail)
    return table
