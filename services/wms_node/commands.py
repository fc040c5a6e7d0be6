"""Workers' commands built from what they see of a task (its view): used by the CLI and the node's HTTP API."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from schemas.wms import ClaimTask, ConfirmTask, CountedLine, ReleaseTask, ShortPickLine

SkuCounts = dict[str, int]


def claim_command(task: dict[str, Any], location: str, worker: str, ttl_s: float = 300.0) -> ClaimTask:
    return ClaimTask(task_id=task["task_id"], order_id=task["subject"], location=location, worker=worker, ttl_s=ttl_s)


def release_command(task: dict[str, Any], location: str, worker: str) -> ReleaseTask:
    return ReleaseTask(task_id=task["task_id"], order_id=task["subject"], location=location, worker=worker)


def confirm_command(
    task: dict[str, Any],
    location: str,
    worker: str,
    missing: SkuCounts | None = None,
    counted: list[CountedLine] | None = None,
) -> ConfirmTask:
    """``missing``: units of a SKU the picker could not find (spread over the task's lines of that SKU, from
    the end of the pick path). ``counted``: receiving or cycle-count results."""
    return ConfirmTask(
        task_id=task["task_id"],
        order_id=task["subject"],
        request_id=task["request_id"],
        location=location,
        worker=worker,
        missing=short_lines(task, missing or {}),
        counted=counted or [],
    )


def short_lines(task: dict[str, Any], missing: SkuCounts) -> list[ShortPickLine]:
    unknown = set(missing) - {ln["sku"] for ln in task["lines"]}
    if unknown:
        raise ValueError(f"not on this task: {', '.join(sorted(unknown))}")
    left = dict(missing)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for line in reversed(task["lines"]):
        take = min(left.get(line["sku"], 0), line["qty"])
        if take:
            out[(line["sku"], line.get("reservation_id") or line["sku"])] += take
            left[line["sku"]] -= take
    too_many = {sku: n for sku, n in left.items() if n}
    if too_many:
        raise ValueError(f"more missing than asked: {too_many}")
    return [ShortPickLine(sku=sku, missing=n, reservation_id=rid) for (sku, rid), n in sorted(out.items())]


def parse_pairs(pairs: list[str], what: str) -> list[tuple[str, str, int]]:
    """``SKU=N`` or ``SKU@BIN=N`` -> (sku, bin, n)."""
    out = []
    for pair in pairs:
        left, sep, right = pair.partition("=")
        if not sep or not right.strip().lstrip("-").isdigit():
            raise ValueError(f"{what}: expected SKU=N or SKU@BIN=N, got {pair!r}")
        sku, _, bin_id = left.partition("@")
        out.append((sku.strip(), bin_id.strip(), int(right)))
    return out
