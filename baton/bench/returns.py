"""Returns in the bench's mix (``baton bench --returns FRACTION``).

A share of the orders shipped to a customer is returned once it has shipped, the way a customer would: by
mail or in a store that takes returns, declared sellable, damaged or defective, all of it or part of it, and
some requests sent twice (a producer's retry). The requests go on the public inbound topic like any outside
producer's. The bench then waits until every return sent has settled (refunded, rejected, or received with
nothing to pay) and reads the refunds back from the payments topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from baton.invariants import refunds_paid_out
from baton.publish import Publisher
from schemas.orders import OrderPlaced, ReturnCondition, ReturnLine, ReturnMethod, ReturnRequested, ShipTo
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from schemas.topics import ORDERS_INBOUND, PAYMENTS_COMMANDS, PAYMENTS_EVENTS
from services.runtime.readmodel import ReadModel
from services.runtime.replay import read_topic
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

IN_STORE_SHARE = 0.35  # of the returns, when a store takes returns; the rest come by mail
PARTIAL_SHARE = 0.4  # one line of the order, or one unit fewer than shipped
SENT_TWICE_SHARE = 0.3  # the same request (same return id) published twice
CONDITIONS: tuple[tuple[ReturnCondition, float], ...] = (("sellable", 0.6), ("damaged", 0.25), ("defective", 0.15))
REASONS = ("too_small", "changed_mind", "not_as_described", "arrived_late")
SHIPPED = "shipped"
POLL_S = 0.25
SETTLED_RETURN_STATUSES = frozenset({"rejected", "refunded"})


@dataclass(frozen=True)
class PlannedReturn:
    request: ReturnRequested
    sent_twice: bool
    partial: bool


def plan_returns(orders: Sequence[OrderPlaced], fraction: float, stores: Sequence[str],
                 seed: int) -> list[PlannedReturn]:
    """Which orders come back and how: ``fraction`` of those shipped to a customer (pickups are not collected in a
    bench, so never returnable). Its own random draw: the orders stay those of the seed."""
    rng = random.Random(seed * 7919 + 1)
    planned = []
    for order in orders:
        if not isinstance(order.delivery, ShipTo) or rng.random() >= fraction:
            continue
        method: ReturnMethod = "in_store" if stores and rng.random() < IN_STORE_SHARE else "mail"
        lines, partial = _returned_lines(order, rng)
        condition = rng.choices([c for c, _ in CONDITIONS], weights=[w for _, w in CONDITIONS])[0]
        request = ReturnRequested(order_id=order.order_id, return_id=f"R-{order.order_id}", lines=lines,
                                  method=method, location=rng.choice(stores) if method == "in_store" else None,
                                  reason=rng.choice(REASONS), condition=condition)
        planned.append(PlannedReturn(request, sent_twice=rng.random() < SENT_TWICE_SHARE, partial=partial))
    return planned


def _returned_lines(order: OrderPlaced, rng: random.Random) -> tuple[list[ReturnLine], bool]:
    everything = [ReturnLine(sku=line.sku, qty=line.qty) for line in order.lines]
    if rng.random() >= PARTIAL_SHARE:
        return everything, False
    line = rng.choice(order.lines)
    qty = line.qty - 1 if line.qty > 1 else line.qty
    partial = qty < line.qty or len(order.lines) > 1
    return [ReturnLine(sku=line.sku, qty=qty)], partial


@dataclass
class ReturnDriver:
    """Sends each planned return once its order has shipped; waits until every return sent has settled."""

    settings: Settings
    planned: list[PlannedReturn]
    sent: dict[str, PlannedReturn] = field(default_factory=dict)  # order id -> its return, once published
    not_shipped: list[str] = field(default_factory=list)  # orders planned for a return that never shipped
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)  # order id -> its return as the OMS sees it
    settled: set[str] = field(default_factory=set)  # orders whose return settled

    async def follow(self, final_status: Mapping[str, str], stop: asyncio.Event) -> None:
        """Publish the returns of the orders that shipped, until ``stop``; then those that shipped meanwhile."""
        async with Publisher(self.settings, source="baton/bench/returns") as publisher:
            while not stop.is_set():
                await self._send_shipped(publisher, final_status)
                await publisher.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
            await self._send_shipped(publisher, final_status)
        self.not_shipped = [p.request.order_id for p in self.planned if p.request.order_id not in self.sent]

    async def _send_shipped(self, publisher: Publisher, final_status: Mapping[str, str]) -> None:
        for plan in self.planned:
            order_id = plan.request.order_id
            if order_id in self.sent or final_status.get(order_id) != SHIPPED:
                continue
            for _ in range(2 if plan.sent_twice else 1):
                await publisher.publish(ORDERS_INBOUND, order_id, plan.request)
            self.sent[order_id] = plan

    async def wait_settled(self, deadline: float) -> bool:
        """Every return sent is rejected, refunded, or received with nothing to pay (``deadline``: monotonic)."""
        read_model = ReadModel(self.settings.redis_url, self.settings.namespace)
        try:
            while True:
                self.cases.update(await self._cases(read_model))
                self.settled |= {order_id for order_id, case in self.cases.items() if return_settled(case)}
                if len(self.settled) == len(self.sent):
                    return True
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(POLL_S * 2)
        finally:
            await read_model.close()

    async def _cases(self, read_model: ReadModel) -> dict[str, dict[str, Any]]:
        waiting = [oid for oid in self.sent if oid not in self.settled]
        views = await read_model.read_orders(waiting) if waiting else {}
        cases = {}
        for order_id, view in views.items():
            for case in (view or {}).get("returns", []):
                if case["return_id"] == self.sent[order_id].request.return_id:
                    cases[order_id] = case
        return cases

    async def figures(self, settings: Settings) -> dict[str, Any]:
        """What the returns came to: requests by kind, returns by status and disposition, refunds and retries."""
        requests, answers, asked_at = await refund_messages(settings)
        cases = self.cases
        plans = list(self.sent.values())
        return {
            "planned": len(self.planned),
            "sent": len(plans),
            "requests_published": sum(2 if p.sent_twice else 1 for p in plans),
            "sent_twice": sum(1 for p in plans if p.sent_twice),
            "not_shipped": len(self.not_shipped),
            "by_method": dict(Counter(p.request.method for p in plans)),
            "by_condition": dict(Counter(p.request.condition for p in plans)),
            "partial": sum(1 for p in plans if p.partial),
            "settled": len(self.settled),
            "by_status": dict(Counter(c["status"] for c in cases.values())),
            "by_disposition": dict(Counter(c["disposition"] for c in cases.values() if c.get("disposition"))),
            **refund_figures(requests, answers),
            # when refunds were asked for (epoch seconds): the kills that landed in between hit returns in flight
            "refunds_requested_between": [min(asked_at, default=None), max(asked_at, default=None)],
        }


def return_settled(case: Mapping[str, Any]) -> bool:
    """Rejected, refunded, or received with nothing to pay (a failed refund is retried: not settled)."""
    return case["status"] in SETTLED_RETURN_STATUSES or (case["status"] == "received" and case.get("refund") is None)


async def refund_messages(
    settings: Settings,
) -> tuple[list[RefundRequested], list[RefundSucceeded | RefundFailed], list[float]]:
    """The refund requests, the provider's answers, and when each request was made (epoch seconds)."""
    requests: list[RefundRequested] = []
    answers: list[RefundSucceeded | RefundFailed] = []
    asked_at: list[float] = []
    answer_ids: set[str] = set()  # a command delivered twice is answered twice under one event id: one answer
    for envelope, _ in await read_topic(settings, full_topic_name(settings, PAYMENTS_COMMANDS)):
        if envelope is not None and envelope.type == RefundRequested.event_type:
            requests.append(RefundRequested.model_validate(envelope.data))
            asked_at.append(envelope.time.timestamp())
    for envelope, _ in await read_topic(settings, full_topic_name(settings, PAYMENTS_EVENTS)):
        if envelope is None or envelope.id in answer_ids:
            continue
        answer_ids.add(envelope.id)
        if envelope.type == RefundSucceeded.event_type:
            answers.append(RefundSucceeded.model_validate(envelope.data))
        elif envelope.type == RefundFailed.event_type:
            answers.append(RefundFailed.model_validate(envelope.data))
    return requests, answers, asked_at


def refund_figures(requests: Sequence[RefundRequested],
                   answers: Sequence[RefundSucceeded | RefundFailed]) -> dict[str, Any]:
    """Refund requests and retries (attempt > 1), failures, refunds paid (one per key) and the amount refunded."""
    paid = refunds_paid_out(answers)
    return {
        "refund_requests": len(requests),
        "refund_retries": sum(1 for r in requests if r.attempt > 1),
        "refund_keys": len({r.idempotency_key for r in requests}),
        "refunds_failed": sum(1 for a in answers if isinstance(a, RefundFailed)),
        "refunds_paid": len(paid),
        "repeated_answers": sum(1 for a in answers if isinstance(a, RefundSucceeded) and a.duplicate),
        "refunded_amount": round(sum(a.amount for a in paid.values()), 2),
    }

