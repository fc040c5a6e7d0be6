"""Who may do what with a task: claim rules, as pure functions returning a refusal reason or None.

- an open task, or one whose claim has lapsed, can be claimed by anyone; the holder may claim it again
  (which extends the claim); nobody else can while the claim runs;
- a task can be confirmed by the worker holding it, or by anyone when nobody holds it (auto-workers, a
  supervisor); never twice;
- only the holder releases a claim; a claim lapses at its deadline (the node's timer makes it official).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.wms_node.domain.model import Task


def holder(task: Task, now: datetime) -> str | None:
    """The worker holding the task now (None when it is free or the claim lapsed)."""
    if task.status != "claimed" or task.claimed_until is None or task.claimed_until <= now:
        return None
    return task.worker


def refuse_claim(task: Task, worker: str, now: datetime) -> str | None:
    if task.status in ("done", "cancelled"):
        return f"task is {task.status}"
    held_by = holder(task, now)
    if held_by is not None and held_by != worker:
        return f"claimed by {held_by} until {task.claimed_until:%H:%M:%S}"
    return None


def claim(task: Task, worker: str, now: datetime, ttl_s: float, claim_id: str) -> str | None:
    reason = refuse_claim(task, worker, now)
    if reason is None:
        task.status, task.worker, task.claim_id = "claimed", worker, claim_id
        task.claimed_until = now + timedelta(seconds=ttl_s)
    return reason


# Confirming follows the same rule as claiming: not when finished, not while someone else holds it.
refuse_confirm = refuse_claim


def release(task: Task, worker: str, now: datetime) -> str | None:
    if task.status != "claimed":
        return f"task is {task.status}, not claimed"
    held_by = holder(task, now)
    if held_by is not None and held_by != worker:
        return f"claimed by {held_by}, not by {worker}"
    _free(task)
    return None


def lapse(task: Task, now: datetime) -> bool:
    """Make a lapsed claim official: the task is open again. False when there was nothing to lapse."""
    if task.status == "claimed" and task.claimed_until is not None and task.claimed_until <= now:
        _free(task)
        return True
    return False


def _free(task: Task) -> None:
    task.status, task.worker, task.claim_id, task.claimed_until = "open", None, None, None
