"""``baton export``: the events of one order, or of a period, with their causation, for auditors' own tools.

Rows are flat: where the record is (topic, partition, offset, Kafka time), the envelope's fields (id, type,
source, time, subject, correlation and causation ids, the cause's type) and the event's data as JSON text.
JSON Lines and CSV need nothing more; Parquet needs pyarrow (``pip install pyarrow``), which is not a
dependency of baton: asked for without it, the command says so and exits 2.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from baton.audit.checks import in_time_order
from baton.audit.log import LogRecord

COLUMNS = ("topic", "partition", "offset", "kafka_time", "id", "type", "source", "time", "subject",
           "correlationid", "causationid", "cause_type", "data")
FORMATS = ("jsonl", "csv", "parquet")


class ExportError(RuntimeError):
    """The export cannot be written (a format whose library is missing)."""


def select(records: Sequence[LogRecord], *, order_id: str | None = None, since: datetime | None = None,
           until: datetime | None = None) -> list[LogRecord]:
    """The records of one order (its correlation id, or its id in the data), or stamped within the period;
    in time order (each partition in its offset order)."""
    start = int(since.timestamp() * 1000) if since else None
    end = int(until.timestamp() * 1000) if until else None
    chosen = []
    for record in in_time_order(records):
        if record.doc is None:
            continue
        if order_id is not None and record.doc.get("correlationid") != order_id and \
                record.data.get("order_id") != order_id:
            continue
        if (start is not None and record.timestamp_ms < start) or (end is not None and record.timestamp_ms > end):
            continue
        chosen.append(record)
    return chosen


def rows(chosen: Sequence[LogRecord], every: Iterable[LogRecord]) -> list[dict[str, Any]]:
    types = {r.id: r.type for r in every if r.doc is not None}
    out = []
    for record in chosen:
        doc = record.doc or {}
        cause = doc.get("causationid")
        out.append({
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "kafka_time": record.time.isoformat().replace("+00:00", "Z"), "id": doc.get("id"),
            "type": doc.get("type"), "source": doc.get("source"), "time": doc.get("time"),
            "subject": doc.get("subject"), "correlationid": doc.get("correlationid"), "causationid": cause,
            "cause_type": types.get(cause) if cause else None, "data": doc.get("data"),
        })
    return out


def write(table: list[dict[str, Any]], fmt: str, out: BinaryIO | Path) -> None:
    if fmt == "jsonl":
        _write_bytes(out, b"".join(orjson.dumps(row) + b"\n" for row in table))
    elif fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        writer.writeheader()
        for row in table:
            writer.writerow({**row, "data": orjson.dumps(row["data"]).decode()})
        _write_bytes(out, text.getvalue().encode())
    elif fmt == "parquet":
        _write_parquet(table, out)
    else:
        raise ExportError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _write_bytes(out: BinaryIO | Path, data: bytes) -> None:
    if isinstance(out, Path):
        out.write_bytes(data)
    else:
        out.write(data)


def _write_parquet(table: list[dict[str, Any]], out: BinaryIO | Path) -> None:
    try:
        import pyarrow as pa  # type: ignore[import-not-found, unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ExportError("parquet needs pyarrow, which is not installed: pip install pyarrow "
                          "(or use --format jsonl or csv)") from exc
    columns = {name: [row[name] if name != "data" else orjson.dumps(row["data"]).decode() for row in table]
               for name in COLUMNS}
    pq.write_table(pa.table(columns), out)
