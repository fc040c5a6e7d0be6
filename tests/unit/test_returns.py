"""Returns in the pure core: authorisation (RMA), routing, the refund of what came back, retries, exchanges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.base import Message
from schemas.inventory import ReserveStock
from schemas.network import Location
from schemas.orders import (
    OrderDeadlineReached,
    OrderLine,
    OrderPlaced,
    PickupAt,
    ReturnAuthorized,
    ReturnLine,
    ReturnRefunded,
    ReturnRejected,
    ReturnRequested,
    ShipTo,
)
from schemas.payments import RefundFailed, RefundRequested, RefundSucceeded
from schemas.wms import FulfilOrder, ReceiveReturn, ReturnedLine, ReturnReceived
from services.orchestrator.domain import returns as rma
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import OrderSaga, OrderState, Snapshot
from services.orchestrator.domain.rules import ReturnPolicy, RuleSet
from services.runtime.outbox import Emit
from tests.unit.test_order_saga import of, reserved, shipped

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CATALOG = {"X": 10.0, "Y": 10.0, "Z": 25.0}
CUSTOMER = ShipTo(lat=48.85, lon=2.35)  # Paris


def network() -> NetworkView:
    view = NetworkView()
    for loc in (
        Location(id="WH-PAR", kind="warehouse", lat=48.86, lon=2.35, capabilities=["ship"]),
        Location(id="WH-LYO", kind="warehouse", lat=45.76, lon=4.84, capabilities=["ship", "returns"]),
        Location(id="ST-PAR", kind="store", lat=48.87, lon=2.33, capabilities=["pickup", "returns"]),
        Location(id="ST-NOR", kind="store", lat=48.88, lon=2.34, capabilities=["pickup"]),
    ):
        view.apply(loc, 1)
    return view


class Story:
    """One order through the saga: placed, held and shipped, then its returns."""

    def __init__(self, rules: RuleSet | None = None, shipping: float = 0.0, delivery: Any = CUSTOMER,
                 ship: bool = True, **qty: int) -> None:
        self.rules = rules or RuleSet()
        self.now = T0
        self.state: OrderState | None = None
        self.n = 0
        placed = OrderPlaced(order_id="O-1", channel="web", customer_id="C-1", shipping_price=shipping,
                             lines=[OrderLine(sku=s, qty=q, unit_price=10.0) for s, q in qty.items()],
                             delivery=delivery)
        emits = self.send(placed)
        for cmd in of(emits, ReserveStock):
            emits = self.send(reserved(cmd))
        for request in of(emits, FulfilOrder) if ship else []:
            self.send(shipped(request))
        assert self.st.status == ("shipped" if ship else "allocated")

    def send(self, message: Message, after_s: float = 0.0, message_id: str | None = None) -> list[Emit]:
        self.now += timedelta(seconds=after_s)
        self.n += 1
        availability = {sku: {"WH-PAR": 100, "ST-PAR": 100} for sku in ("X", "Y")}
        snapshot = Snapshot(network=network(), availability=availability, rules=self.rules, now=self.now,
                            prices=dict(CATALOG))
        decision = OrderSaga(snapshot.network, snapshot=snapshot).handle(self.state, message,
                                                                         message_id or f"m-{self.n}")
        self.state = decision.state
        return decision.emits

    @property
    def st(self) -> OrderState:
        assert self.state is not None
        return self.state

    def ask(self, return_id: str = "R-1", after_s: float = 0.0, **fields: Any) -> list[Emit]:
        lines = [ReturnLine(sku=s, qty=q) for s, q in fields.pop("lines", {"X": 1}).items()]
        request = ReturnRequested(order_id="O-1", return_id=return_id, lines=lines,
                                  **{"method": "mail", "reason": "too_small", **fields})
        return self.send(request, after_s)

    def receive(self, return_id: str = "R-1", *lines: tuple[str, int, str, str]) -> list[Emit]:
        returned = [ReturnedLine(sku=s, qty=q, condition=c, disposition=d) for s, q, c, d in lines]  # type: ignore[arg-type]
        case = next(r for r in self.st.returns if r.return_id == return_id)
        return self.send(ReturnReceived(return_id=return_id, order_id="O-1", location=case.destination or "?",
                                        lines=returned))

    def deadline_reached(self) -> list[Emit]:
        deadline = self.st.deadline
        assert deadline is not None, "no deadline set"
        reached = OrderDeadlineReached(order_id="O-1", kind=deadline.kind, due=deadline.due)
        return self.send(reached, after_s=(deadline.due - self.now).total_seconds())

    def case(self, return_id: str = "R-1") -> rma.ReturnCase:
        return next(r for r in self.st.returns if r.return_id == return_id)


def answer_ok(request: Message) -> RefundSucceeded:
    assert isinstance(request, RefundRequested)
    return RefundSucceeded(refund_id=request.refund_id, idempotency_key=request.idempotency_key,
                           return_id=request.return_id, order_id=request.order_id, amount=request.amount)


def answer_failed(request: Message) -> RefundFailed:
    assert isinstance(request, RefundRequested)
    return RefundFailed(refund_id=request.refund_id, idempotency_key=request.idempotency_key,
                        return_id=request.return_id, order_id=request.order_id, reason="provider down",
                        attempt=request.attempt)


# ---------------------------------------------------------------- authorisation and routing


def test_a_mail_return_goes_to_the_nearest_location_taking_returns_with_a_label() -> None:
    story = Story(X=2)
    emits = story.ask(lines={"X": 1})
    authorized = of(emits, ReturnAuthorized)[0]
    assert isinstance(authorized, ReturnAuthorized)
    assert authorized.destination == "ST-PAR" and authorized.label is not None
    assert authorized.label.carrier == "returns-post" and authorized.label.tracking.startswith("RT")
    receive = [e for e in emits if isinstance(e.message, ReceiveReturn)]
    assert [(e.location, e.message.lines) for e in receive] == [("ST-PAR", [ReturnLine(sku="X", qty=1)])]  # type: ignore[attr-defined]
    assert story.case().status == "authorized"


def test_the_returns_rule_can_send_mail_returns_to_a_listed_location() -> None:
    rules = RuleSet(returns=ReturnPolicy(mail_destinations=["WH-LYO"]))
    assert of(Story(rules, X=1).ask(), ReturnAuthorized)[0].destination == "WH-LYO"  # type: ignore[attr-defined]
    warehouses_only = RuleSet(returns=ReturnPolicy(mail_kinds=["warehouse"]))
    assert of(Story(warehouses_only, X=1).ask(), ReturnAuthorized)[0].destination == "WH-LYO"  # type: ignore[attr-defined]


def test_an_in_store_return_needs_a_store_offering_returns() -> None:
    ok = Story(X=1).ask(method="in_store", location="ST-PAR")
    assert of(ok, ReturnAuthorized)[0].destination == "ST-PAR"  # type: ignore[attr-defined]
    assert of(ok, ReturnAuthorized)[0].label is None  # type: ignore[attr-defined]
    for where, why in (("ST-NOR", "does not take returns"), ("WH-LYO", "does not take returns"),
                       ("ST-XXX", "unknown location"), (None, "unknown location")):
        rejected = of(Story(X=1).ask(method="in_store", location=where), ReturnRejected)
        assert len(rejected) == 1 and why in rejected[0].reason, where  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "why"), [
    ({"lines": {"X": 3}}, "X: 3 asked, 2 returnable"),
    ({"lines": {"Y": 1}}, "Y: 1 asked, 0 returnable"),
    ({"reason": "unspecified"}, "a reason code is required"),
    ({"reason": ""}, "a reason code is required"),
    ({"exchange": [ReturnLine(sku="X", qty=2)]}, "more units than are returned"),
])
def test_a_return_outside_the_policy_is_rejected_with_the_reason(fields: dict[str, Any], why: str) -> None:
    story = Story(X=2)
    emits = story.ask(**fields)
    rejected = of(emits, ReturnRejected)
    assert len(rejected) == 1 and why in rejected[0].reason  # type: ignore[attr-defined]
    assert of(emits, ReceiveReturn) == [] and story.case().status == "rejected"


def test_returnable_quantity_counts_returns_on_their_way_and_received() -> None:
    story = Story(X=2)
    assert of(story.ask("R-1", lines={"X": 1}), ReturnAuthorized)
    assert of(story.ask("R-2", lines={"X": 2}), ReturnRejected)  # 1 still returnable
    assert of(story.ask("R-3", lines={"X": 1}), ReturnAuthorized)
    assert of(story.ask("R-4", lines={"X": 1}), ReturnRejected)


def test_the_return_window_closes_30_days_after_fulfilment_by_default() -> None:
    inside = Story(X=1)
    assert of(inside.ask(after_s=29 * 86400), ReturnAuthorized)
    late = Story(X=1)
    rejected = of(late.ask(after_s=31 * 86400), ReturnRejected)
    assert rejected and "return window (30 days) closed" in rejected[0].reason  # type: ignore[attr-defined]
    longer = Story(RuleSet(returns=ReturnPolicy(window_days=60)), X=1)
    assert of(longer.ask(after_s=31 * 86400), ReturnAuthorized)


def test_nothing_shipped_nothing_returnable() -> None:
    story = Story(X=1, delivery=PickupAt(location="ST-PAR"), ship=False)  # not yet collected
    rejected = of(story.ask(), ReturnRejected)
    assert rejected and "nothing of the order was shipped" in rejected[0].reason  # type: ignore[attr-defined]


def test_a_duplicate_return_id_changes_nothing() -> None:
    story = Story(X=2)
    story.ask("R-1", lines={"X": 1})
    version = story.st.version
    assert story.ask("R-1", lines={"X": 2}) == []  # another message, same return id
    assert story.st.version == version + 1 and len(story.st.returns) == 1
    assert story.case().requested_units() == {"X": 1}


def test_a_return_for_an_unknown_order_is_rejected_in_public() -> None:
    request = ReturnRequested(order_id="O-404", return_id="R-9", lines=[ReturnLine(sku="X", qty=1)], reason="x")
    decision = OrderSaga(network()).handle(None, request, "m-1")
    assert decision.state is None
    assert [(e.message.reason, e.topic) for e in decision.emits] == [("unknown order", "orders.status.v1")]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- refunds


def test_a_partial_return_refunds_the_unit_price_of_what_came_back() -> None:
    story = Story(shipping=5.0, X=2)
    story.ask(lines={"X": 1})
    emits = story.receive("R-1", ("X", 1, "sellable", "restock"))
    refund = of(emits, RefundRequested)
    assert [(r.amount, r.idempotency_key, r.attempt) for r in refund] == [(10.0, "refund:O-1:R-1", 1)]  # type: ignore[attr-defined]
    assert story.case().status == "received" and story.case().disposition == "restock"
    story.send(answer_ok(refund[0]))
    assert story.case().status == "refunded"
    assert story.st.view()["refunds"][0]["amount"] == 10.0


def test_shipping_is_refunded_once_every_unit_came_back() -> None:
    story = Story(shipping=5.0, X=2)
    story.ask("R-1", lines={"X": 1})
    first = of(story.receive("R-1", ("X", 1, "sellable", "restock")), RefundRequested)
    story.ask("R-2", lines={"X": 1})
    last = of(story.receive("R-2", ("X", 1, "sellable", "restock")), RefundRequested)
    assert [r.amount for r in first + last] == [10.0, 15.0]  # type: ignore[attr-defined]


def test_a_short_return_refunds_what_came_and_damaged_units_in_full() -> None:
    story = Story(shipping=5.0, X=3)
    story.ask(lines={"X": 3})
    emits = story.receive("R-1", ("X", 1, "sellable", "restock"), ("X", 1, "damaged", "refurbish"))
    assert [r.amount for r in of(emits, RefundRequested)] == [20.0]  # type: ignore[attr-defined]
    assert story.case().received_units() == {"X": 2}


def test_the_restocking_fee_applies_to_sellable_units_only() -> None:
    rules = RuleSet(returns=ReturnPolicy(restocking_fee_rate=0.1))
    story = Story(rules, X=3)
    story.ask(lines={"X": 3})
    emits = story.receive("R-1", ("X", 2, "sellable", "restock"), ("X", 1, "defective", "scrap"))
    assert [r.amount for r in of(emits, RefundRequested)] == [28.0]  # type: ignore[attr-defined]


def test_a_return_received_twice_is_refunded_once() -> None:
    story = Story(X=2)
    story.ask(lines={"X": 2})
    first = story.receive("R-1", ("X", 2, "sellable", "restock"))
    assert len(of(first, RefundRequested)) == 1
    assert of(story.receive("R-1", ("X", 2, "sellable", "restock")), RefundRequested) == []


def test_a_failed_refund_is_retried_with_the_same_key_and_succeeds_once() -> None:
    story = Story(X=1)
    story.ask()
    request = of(story.receive("R-1", ("X", 1, "sellable", "restock")), RefundRequested)[0]
    assert of(story.send(answer_failed(request)), RefundRequested) == []  # not at once: after a pause
    assert story.st.deadline is not None and story.st.deadline.kind == "refund"
    assert story.st.deadline.due == story.now + timedelta(seconds=1)
    retry = of(story.deadline_reached(), RefundRequested)
    assert [(r.idempotency_key, r.refund_id, r.attempt) for r in retry] == [  # type: ignore[attr-defined]
        (request.idempotency_key, request.refund_id, 2)]  # type: ignore[attr-defined]
    assert story.send(answer_failed(request)) == []  # a late answer to the first attempt: already retried
    story.send(answer_ok(retry[0]))
    story.send(answer_ok(retry[0]))
    assert story.case().status == "refunded" and story.case().refund.attempts == 2  # type: ignore[union-attr]
    refunded = [r for r in story.st.view()["refunds"] if r["status"] == "succeeded"]
    assert len(refunded) == 1


def test_refunds_stop_after_the_policy_attempts() -> None:
    story = Story(RuleSet(returns=ReturnPolicy(max_refund_attempts=2)), X=1)
    story.ask()
    request = of(story.receive("R-1", ("X", 1, "sellable", "restock")), RefundRequested)[0]
    story.send(answer_failed(request))
    retry = of(story.deadline_reached(), RefundRequested)[0]
    assert story.send(answer_failed(retry)) == [] and story.st.deadline is None
    assert story.case().refund.status == "failed" and story.case().settled()  # type: ignore[union-attr]


def test_retries_wait_longer_each_time_and_at_once_while_the_order_is_in_flow() -> None:
    policy = ReturnPolicy(refund_retry_s=2.0, refund_retry_max_s=10.0)
    assert [rma.retry_delay_s(policy, attempt) for attempt in (2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0]
    story = Story(X=1)
    story.ask()
    first = of(story.receive("R-1", ("X", 1, "sellable", "restock")), RefundRequested)[0]
    story.st.status = "partially_shipped"  # the order's own deadlines may need the one slot
    assert [r.attempt for r in of(story.send(answer_failed(first)), RefundRequested)] == [2]  # type: ignore[attr-defined]


def test_an_order_is_never_refunded_beyond_what_was_paid() -> None:
    order = OrderPlaced(order_id="O-1", channel="web", customer_id="C", delivery=CUSTOMER, shipping_price=5.0,
                        lines=[OrderLine(sku="X", qty=2, unit_price=10.0)])
    received = [ReturnedLine(sku="X", qty=2, condition="sellable", disposition="restock")]
    inputs = rma.RefundInputs(order=order, shipped={"X": 2}, received=received, exchanged_units=0,
                              units_back_before=0, refunded_before_cents=1800)
    assert rma.refund_cents(inputs, ReturnPolicy()) == 700  # 25.00 paid, 18.00 refunded before


# ---------------------------------------------------------------- exchanges


def test_an_exchange_places_a_paid_replacement_linked_to_the_return_and_refunds_nothing() -> None:
    story = Story(X=1)
    emits = story.ask(exchange=[ReturnLine(sku="Y", qty=1)])
    assert of(emits, ReturnAuthorized)[0].exchange == [ReturnLine(sku="Y", qty=1)]  # type: ignore[attr-defined]
    received = story.receive("R-1", ("X", 1, "sellable", "restock"))
    replacement = of(received, OrderPlaced)
    assert len(replacement) == 1 and isinstance(replacement[0], OrderPlaced)
    assert replacement[0].order_id == "O-1-EX-R-1" and replacement[0].exchange_for == "O-1/R-1"
    assert [(ln.sku, ln.qty, ln.unit_price) for ln in replacement[0].lines] == [("Y", 1, 0.0)]
    assert replacement[0].delivery == CUSTOMER
    assert of(received, RefundRequested) == [] and len(of(received, ReturnRefunded)) == 1
    assert story.case().exchange_order_id == "O-1-EX-R-1" and story.case().settled()


def test_an_exchange_for_another_sku_needs_its_catalog_price_to_be_the_returned_ones() -> None:
    dearer = of(Story(X=1).ask(exchange=[ReturnLine(sku="Z", qty=1)]), ReturnRejected)
    assert dearer and "not the price of what is returned" in dearer[0].reason  # type: ignore[attr-defined]
    unknown = of(Story(X=1).ask(exchange=[ReturnLine(sku="W", qty=1)]), ReturnRejected)
    assert unknown and "price is unknown" in unknown[0].reason  # type: ignore[attr-defined]


def test_an_exchange_of_a_short_return_replaces_only_what_came() -> None:
    story = Story(X=2)
    story.ask(lines={"X": 2}, exchange=[ReturnLine(sku="X", qty=2)])
    received = story.receive("R-1", ("X", 1, "sellable", "restock"))
    assert [ln.qty for ln in of(received, OrderPlaced)[0].lines] == [1]  # type: ignore[attr-defined]


def test_an_order_stored_before_returns_were_built_reads_back_with_its_recorded_return() -> None:
    story = Story(X=1)
    stored = story.st.model_dump(mode="json")
    stored["returns"] = [{"return_id": "R-OLD", "status": "requested", "destination": None, "disposition": None,
                          "lines": [{"sku": "X", "qty": 1}], "method": "mail", "reason": "too_small"}]
    state = OrderState.model_validate(stored)
    assert [(r.return_id, r.status, r.requested_units()) for r in state.returns] == [("R-OLD", "requested", {"X": 1})]
    assert state.view()["returns"][0]["status"] == "requested" and state.view()["refunds"] == []
