"""Waves: accepted requests wait together and are released to picking as one batch.

A wave is released when it holds ``max_orders`` requests (by size) or when its oldest request has waited
``max_wait_s`` (the cut-off). Within a wave, pick tasks are released in pick-path order of their first bin,
so pickers working the wave's tasks one after another sweep the building in one direction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.wms_node.domain.model import Pending, WaveRules


def due_wave(pending: list[Pending], rules: WaveRules, now: datetime) -> list[Pending]:
    """The requests to release now (empty when no wave is due)."""
    if not pending:
        return []
    if len(pending) >= rules.max_orders:
        return pending[: rules.max_orders]
    if (now - pending[0].at).total_seconds() >= rules.max_wait_s:
        return list(pending[: rules.max_orders])
    return []


def waves_due(pending: list[Pending], rules: WaveRules, now: datetime) -> list[list[Pending]]:
    """Every wave due now, in order (several when the buffer holds more than one full wave)."""
    out = []
    rest = list(pending)
    while batch := due_wave(rest, rules, now):
        out.append(batch)
        rest = rest[len(batch):]
    return out


def next_due_at(pending: list[Pending], rules: WaveRules) -> datetime | None:
    """When the oldest waiting request reaches its cut-off (for the node's timer)."""
    if not pending:
        return None
    return pending[0].at + timedelta(seconds=rules.max_wait_s)
