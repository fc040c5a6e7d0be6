"""Simulated workers (``--auto``): they confirm every task of their location, behaving as the scenario's
``workers`` section says (``BATON_WORKERS``):

- ``short_pick: [{sku, qty}]``: the pickers find ``qty`` fewer units of that SKU than asked, once;
- ``reject_all: true``: the location refuses every request (decided by the node when it accepts);
- ``short_receive: [{sku, qty}]`` / ``damaged: [{sku, qty}]``: at receiving (a delivery or a customer return),
  the counters find ``qty`` fewer units than announced / ``qty`` damaged units, once per SKU; a return's units
  they find nothing wrong with are confirmed as they are (reported ``missing`` when fewer came), so the node
  takes them in the condition the customer declared;
- ``pace_s``: seconds each simulated worker takes per task (default 0: at once).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.wms import ConfirmTask, CountedLine, ShortPickLine, TaskCreated


class SkuQty(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: str
    qty: int = Field(gt=0)


class WorkerBehaviour(BaseModel):
    model_config = ConfigDict(extra="ignore")

    location: str
    short_pick: list[SkuQty] = []
    reject_all: bool = False
    short_receive: list[SkuQty] = []
    damaged: list[SkuQty] = []
    pace_s: float = Field(default=0.0, ge=0, le=60)


def behaviour_for(location: str, raw: str | None) -> WorkerBehaviour:
    """This location's behaviour from ``BATON_WORKERS`` (a JSON list); the default confirms as asked."""
    if raw:
        try:
            rows = [WorkerBehaviour.model_validate(r) for r in _json_list(raw)]
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"BATON_WORKERS is not a list of worker behaviours: {exc}") from exc
        for row in rows:
            if row.location == location:
                return row
    return WorkerBehaviour(location=location)


def _json_list(raw: str) -> list[object]:
    document = json.loads(raw)
    if not isinstance(document, list):
        raise ValueError("expected a JSON list")
    return document


class AutoWorker:
    def __init__(self, location: str, behaviour: WorkerBehaviour | None = None, name: str = "auto") -> None:
        self.location = location
        self.name = name
        self.behaviour = behaviour or WorkerBehaviour(location=location)
        self._short_left = {s.sku: s.qty for s in self.behaviour.short_pick}
        self._short_receive = {s.sku: s.qty for s in self.behaviour.short_receive}
        self._damaged = {s.sku: s.qty for s in self.behaviour.damaged}

    def confirm(self, task: TaskCreated) -> ConfirmTask:
        missing: list[ShortPickLine] = []
        counted: list[CountedLine] = []
        if task.kind == "pick":
            missing = self._short_picks(task)
        elif task.kind == "receive":
            counted = self._receive_counts(task)
        elif task.kind == "receive_return":
            counted, missing = self._return_counts(task)
        return ConfirmTask(task_id=task.task_id, order_id=task.order_id, request_id=task.request_id,
                           location=self.location, worker=self.name, missing=missing, counted=counted)

    def _short_picks(self, task: TaskCreated) -> list[ShortPickLine]:
        """The first pick of a SKU named in ``short_pick`` comes up short, from the last bins of the path."""
        out: dict[tuple[str, str], int] = {}
        for line in reversed(task.lines):
            left = self._short_left.get(line.sku, 0)
            if not left:
                continue
            take = min(left, line.qty)
            key = (line.sku, line.reservation_id or line.sku)
            out[key] = out.get(key, 0) + take
            self._short_left[line.sku] = left - take
        for sku in {sku for sku, _ in out}:
            self._short_left.pop(sku, None)  # once per SKU, even when the pick asked for fewer units
        return [ShortPickLine(sku=sku, missing=qty, reservation_id=rid) for (sku, rid), qty in sorted(out.items())]

    def _return_counts(self, task: TaskCreated) -> tuple[list[CountedLine], list[ShortPickLine]]:
        """Damaged units are counted (the rest of the line sellable); a line only short is reported missing."""
        counted, missing = [], []
        for line in task.lines:
            short = min(line.qty, self._short_receive.pop(line.sku, 0))
            damaged = min(line.qty - short, self._damaged.pop(line.sku, 0))
            if damaged:
                counted.append(CountedLine(sku=line.sku, qty=line.qty - short, damaged=damaged))
            elif short:
                rid = line.reservation_id or line.sku
                missing.append(ShortPickLine(sku=line.sku, missing=short, reservation_id=rid))
        return counted, missing

    def _receive_counts(self, task: TaskCreated) -> list[CountedLine]:
        out = []
        for line in task.lines:
            short = self._short_receive.pop(line.sku, 0)
            received = max(0, line.qty - short)
            damaged = min(received, self._damaged.pop(line.sku, 0))
            if short or damaged:
                out.append(CountedLine(sku=line.sku, qty=received, damaged=damaged))
        return out
