"""The saga beyond the happy path: deadlines, backorders, stores, re-sourcing, rule sets (pure core)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.base import Message
from schemas.inventory import (
    BackorderFilled,
    ConsumeReservation,
    ExpireReservation,
    ReleaseReservation,
    ReserveStock,
    StockReserved,
)
from schemas.network import Location
from schemas.orders import (
    OrderDeadlineReached,
    OrderLine,
    OrderPlaced,
    PickupAt,
    PickupCollected,
    ReserveAt,
    ShipTo,
)
from schemas.wms import CancelFulfilment, FulfilmentRejected, FulfilOrder, ShortPicked, ShortPickLine
from services.orchestrator.domain.network import NetworkView
from services.orchestrator.domain.order import OrderSaga, OrderState, Snapshot
from services.orchestrator.domain.rules import RuleSet, parse_rule_set
from services.orchestrator.domain.sourcing import Availability, Supply
from services.runtime.outbox import Emit
from tests.unit.test_order_saga import accepted, kinds, of, refused, reserved, shipped

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CUSTOMER = ShipTo(lat=48.85, lon=2.35)


def network() -> NetworkView:
    view = NetworkView()
    for loc in (
        Location(id="WH-A", kind="warehouse", lat=48.86, lon=2.35, capabilities=["ship"], handling_cost=1.0),
        Location(id="WH-B", kind="warehouse", lat=45.76, lon=4.84, capabilities=["ship"], handling_cost=1.0),
        Location(id="ST-P", kind="store", lat=48.87, lon=2.33, capabilities=["pickup", "reserve"], handling_cost=2.0),
    ):
        view.apply(loc, 1)
    return view


class Story:
    """One order's messages through the saga, with a clock and a stock snapshot the test controls."""

    def __init__(self, availability: Availability, supply: Supply | None = None, rules: RuleSet | None = None):
        self.availability = availability
        self.supply = supply or {}
        self.rules = rules or RuleSet()
        self.now = T0
        self.state: OrderState | None = None
        self.n = 0

    def send(self, message: Message, after_s: float = 0.0) -> list[Emit]:
        self.now += timedelta(seconds=after_s)
        self.n += 1
        snapshot = Snapshot(network=network(), availability=self.availability, supply=self.supply,
                            rules=self.rules, now=self.now)
        decision = OrderSaga(snapshot.network, snapshot=snapshot).handle(self.state, message, f"m-{self.n}")
        self.state = decision.state
        return decision.emits

    @property
    def st(self) -> OrderState:
        assert self.state is not None
        return self.state

    def deadline_reached(self) -> list[Emit]:
        deadline = self.st.deadline
        assert deadline is not None, "no deadline set"
        reached = OrderDeadlineReached(order_id=self.st.order_id, kind=deadline.kind, due=deadline.due)
        return self.send(reached, after_s=(deadline.due - self.now).total_seconds())


def order(delivery: object = CUSTOMER, channel: str = "web", **qty: int) -> OrderPlaced:
    return OrderPlaced(order_id="O-1", channel=channel, customer_id="C-1",  # type: ignore[arg-type]
                       lines=[OrderLine(sku=s, qty=q, unit_price=10.0) for s, q in qty.items()],
                       delivery=delivery)  # type: ignore[arg-type]


def hold_all(story: Story, emits: list[Emit]) -> list[Emit]:
    out: list[Emit] = []
    for cmd in of(emits, ReserveStock):
        out = story.send(reserved(cmd))
    return out


# ---------------------------------------------------------------- deadlines


def test_a_reservation_that_never_answers_is_released_and_replanned() -> None:
    story = Story({"X": {"WH-A": 5, "WH-B": 5}})
    first = of(story.send(order(X=1)), ReserveStock)[0]
    assert story.st.deadline is not None and story.st.deadline.kind == "reserve"
    emits = story.deadline_reached()
    assert [r.reservation_id for r in of(emits, ReleaseReservation)] == [first.reservation_id]  # type: ignore[attr-defined]
    assert len(of(emits, ReserveStock)) == 1 and story.st.attempt == 2 and story.st.status == "accepted"


def test_a_stale_deadline_does_nothing() -> None:
    story = Story({"X": {"WH-A": 5}})
    story.send(order(X=1))
    stale = OrderDeadlineReached(order_id="O-1", kind="reserve", due=T0 - timedelta(hours=1))
    assert story.send(stale) == []


def test_a_location_that_does_not_accept_in_time_loses_the_request() -> None:
    story = Story({"X": {"WH-A": 5, "WH-B": 5}})
    fulfil = of(hold_all(story, story.send(order(X=1))), FulfilOrder)
    assert [f.location for f in fulfil] == ["WH-A"] and story.st.deadline.kind == "accept"  # type: ignore[union-attr,attr-defined]
    emits = story.deadline_reached()
    assert [c.location for c in of(emits, CancelFulfilment)] == ["WH-A"]  # type: ignore[attr-defined]
    assert len(of(emits, ReleaseReservation)) == 1
    moved = of(emits, ReserveStock)
    assert [m.location for m in moved] == ["WH-B"]  # type: ignore[attr-defined]
    fulfil_b = of(story.send(reserved(moved[0])), FulfilOrder)
    assert [f.location for f in fulfil_b] == ["WH-B"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- backorders


def test_backorder_against_supply_then_released_when_it_lands() -> None:
    eta = datetime(2026, 12, 1, tzinfo=UTC)
    story = Story({"X": {"WH-A": 0}}, supply={"X": {"WH-A": (10, eta.isoformat())}})
    reserve = of(story.send(order(X=3)), ReserveStock)
    assert [(r.location, r.backorder) for r in reserve] == [("WH-A", True)]  # type: ignore[attr-defined]
    held = reserved(reserve[0]).model_copy(update={"against_supply": "PO-1", "eta": eta})
    assert kinds(story.send(held)) == ["OrderStatusChanged"]
    assert story.st.status == "backordered" and story.st.promised_date == eta + timedelta(days=1)
    filled = BackorderFilled(reservation_id=reserve[0].reservation_id, order_id="O-1", sku="X",  # type: ignore[attr-defined]
                             location="WH-A", qty=3, supply_id="PO-1")
    emits = story.send(filled)
    assert kinds(emits) == ["OrderAllocated", "FulfilOrder", "OrderStatusChanged"] and story.st.status == "allocated"


def test_no_stock_and_no_supply_is_rejected_and_fallback_reject_skips_backorders() -> None:
    story = Story({"X": {"WH-A": 0}})
    story.send(order(X=1))
    assert story.st.status == "rejected" and "no source and no supply" in (story.st.reason or "")
    rules = parse_rule_set({"fallback": "reject"})
    strict = Story({"X": {"WH-A": 0}}, supply={"X": {"WH-A": (10, None)}}, rules=rules)
    strict.send(order(X=1))
    assert strict.st.status == "rejected"


# ---------------------------------------------------------------- stores


def test_bopis_at_the_store_then_collected_consumes_the_hold() -> None:
    story = Story({"X": {"ST-P": 2}})
    fulfil = of(hold_all(story, story.send(order(PickupAt(location="ST-P"), X=1))), FulfilOrder)
    assert [(f.location, f.delivery_mode) for f in fulfil] == [("ST-P", "pickup")]  # type: ignore[attr-defined]
    from schemas.wms import ReadyForPickup

    story.send(ReadyForPickup(request_id=fulfil[0].request_id, order_id="O-1", location="ST-P",  # type: ignore[attr-defined]
                              lines=fulfil[0].lines))  # type: ignore[attr-defined]
    assert story.st.status == "ready_for_pickup" and story.st.deadline.kind == "pickup"  # type: ignore[union-attr]
    emits = story.send(PickupCollected(order_id="O-1"))
    assert [c.qty for c in of(emits, ConsumeReservation)] == [1]  # type: ignore[attr-defined]
    assert story.st.status == "collected" and story.st.line_statuses()[0].shipped == 1


def test_bopis_ship_to_store_then_uncollected_expires() -> None:
    story = Story({"X": {"ST-P": 0, "WH-B": 4}})
    fulfil = of(hold_all(story, story.send(order(PickupAt(location="ST-P"), X=2))), FulfilOrder)
    assert [(f.location, f.delivery_mode) for f in fulfil] == [("WH-B", "ship")]  # type: ignore[attr-defined]
    story.send(shipped(fulfil[0]))
    assert story.st.status == "ready_for_pickup"
    story.deadline_reached()
    assert story.st.status == "expired"


def test_ropis_hold_lapses_and_expires_its_reservation() -> None:
    story = Story({"X": {"ST-P": 3}})
    reserve = of(story.send(order(ReserveAt(location="ST-P", hold_s=60), X=1)), ReserveStock)
    assert reserve[0].expires_at == T0 + timedelta(seconds=60)  # type: ignore[attr-defined]
    story.send(reserved(reserve[0]))
    assert story.st.status == "reserved" and story.st.deadline.kind == "hold"  # type: ignore[union-attr]
    emits = story.deadline_reached()
    assert [e.reservation_id for e in of(emits, ExpireReservation)] == [reserve[0].reservation_id]  # type: ignore[attr-defined]
    assert story.st.status == "expired" and story.st.line_statuses()[0].open == 0


def test_an_invalid_store_is_rejected_with_a_reason() -> None:
    story = Story({"X": {"ST-P": 3}})
    story.send(order(PickupAt(location="ST-GONE"), X=1))
    assert story.st.status == "rejected" and "ST-GONE" in (story.st.reason or "")


# ---------------------------------------------------------------- re-sourcing


def test_a_short_pick_is_resourced_elsewhere() -> None:
    story = Story({"X": {"WH-A": 3, "WH-B": 5}})
    fulfil = of(hold_all(story, story.send(order(X=3))), FulfilOrder)
    story.send(accepted(fulfil[0]))
    short = ShortPicked(request_id=fulfil[0].request_id, order_id="O-1", location="WH-A",  # type: ignore[attr-defined]
                        lines=[ShortPickLine(sku="X", missing=2, reservation_id=fulfil[0].lines[0].reservation_id)])  # type: ignore[attr-defined]
    emits = story.send(short)
    moved = of(emits, ReserveStock)
    assert [(m.location, m.qty) for m in moved] == [("WH-B", 2)]  # type: ignore[attr-defined]
    second = of(story.send(reserved(moved[0])), FulfilOrder)
    assert [(f.location, f.lines[0].qty) for f in second] == [("WH-B", 2)]  # type: ignore[attr-defined]
    first_parcel = shipped(fulfil[0]).model_copy(update={"lines": [fulfil[0].lines[0].model_copy(update={"qty": 1})]})  # type: ignore[attr-defined]
    story.send(first_parcel)
    assert story.st.status == "partially_shipped"
    story.send(shipped(second[0], parcel="P-2"))
    assert story.st.status == "shipped" and story.st.line_statuses()[0].shipped == 3


def test_a_rejected_request_is_resourced_and_the_location_avoided() -> None:
    story = Story({"X": {"WH-A": 5, "WH-B": 5}})
    fulfil = of(hold_all(story, story.send(order(X=1))), FulfilOrder)
    rejection = FulfilmentRejected(request_id=fulfil[0].request_id, order_id="O-1", location="WH-A",  # type: ignore[attr-defined]
                                   reason="closed")
    emits = story.send(rejection)
    assert len(of(emits, ReleaseReservation)) == 1
    assert [r.location for r in of(emits, ReserveStock)] == ["WH-B"]  # type: ignore[attr-defined]


def test_refusal_after_allocation_resources_only_that_line() -> None:
    story = Story({"X": {"WH-A": 5, "WH-B": 5}})
    reserves = of(story.send(order(X=1)), ReserveStock)
    story.send(refused(reserves[0]))
    assert story.st.status == "accepted" and story.st.attempt == 2


# ---------------------------------------------------------------- rules


def test_the_first_matching_rule_decides_and_is_recorded() -> None:
    rules = parse_rule_set({
        "name": "retail", "version": 4,
        "rules": [{"name": "b2b-far", "when": {"channels": ["b2b"]}, "rank": ["priority"], "priority": {"WH-B": 1}},
                  {"name": "rest"}],
    })
    b2b = Story({"X": {"WH-A": 5, "WH-B": 5}}, rules=rules)
    fulfil = of(hold_all(b2b, b2b.send(order(channel="b2b", X=1))), FulfilOrder)
    assert [f.location for f in fulfil] == ["WH-B"]  # type: ignore[attr-defined]
    assert b2b.st.last_decision["rule"].startswith("b2b-far") and b2b.st.last_decision["rule_set_version"] == 4
    web = Story({"X": {"WH-A": 5, "WH-B": 5}}, rules=rules)
    assert [f.location for f in of(hold_all(web, web.send(order(X=1))), FulfilOrder)] == ["WH-A"]  # type: ignore[attr-defined]


def test_split_never_rejects_what_only_a_split_could_serve() -> None:
    rules = parse_rule_set({"fallback": "reject", "rules": [{"name": "one-box", "split": {"policy": "never"}}]})
    story = Story({"X": {"WH-A": 1, "WH-B": 0}, "Y": {"WH-A": 0, "WH-B": 1}}, rules=rules)
    story.send(order(X=1, Y=1))
    assert story.st.status == "rejected"
    allowed = Story({"X": {"WH-A": 1, "WH-B": 0}, "Y": {"WH-A": 0, "WH-B": 1}})
    assert sorted(r.location for r in of(allowed.send(order(X=1, Y=1)), ReserveStock)) == ["WH-A", "WH-B"]  # type: ignore[attr-defined]


def test_stock_reserved_after_cancellation_is_given_back() -> None:
    story = Story({"X": {"WH-A": 5}})
    reserve = of(story.send(order(X=1)), ReserveStock)[0]
    from schemas.orders import OrderCancelRequested

    story.send(OrderCancelRequested(order_id="O-1"))
    late = story.send(StockReserved(reservation_id=reserve.reservation_id, order_id="O-1", sku="X",  # type: ignore[attr-defined]
                                    location="WH-A", qty=1))
    assert late == [] and story.st.status == "cancelled"


def test_the_store_hears_of_the_collection_and_of_the_expiry() -> None:
    from schemas.wms import HandOver, ReadyForPickup

    collected = Story({"X": {"ST-P": 2}})
    fulfil = of(hold_all(collected, collected.send(order(PickupAt(location="ST-P"), X=1))), FulfilOrder)
    collected.send(ReadyForPickup(request_id=fulfil[0].request_id, order_id="O-1", location="ST-P",  # type: ignore[attr-defined]
                                  lines=fulfil[0].lines))  # type: ignore[attr-defined]
    handover = of(collected.send(PickupCollected(order_id="O-1")), HandOver)
    assert [(h.location, h.request_id) for h in handover] == [("ST-P", fulfil[0].request_id)]  # type: ignore[attr-defined]

    lapsed = Story({"X": {"ST-P": 2}})
    fulfil = of(hold_all(lapsed, lapsed.send(order(ReserveAt(location="ST-P", hold_s=5), X=1))), FulfilOrder)
    withdrawn = of(lapsed.deadline_reached(), CancelFulfilment)
    assert [(c.location, c.request_id, c.reason) for c in withdrawn] == [  # type: ignore[attr-defined]
        ("ST-P", fulfil[0].request_id, "not collected")  # type: ignore[attr-defined]
    ]


def test_a_return_request_is_recorded_once_on_the_order() -> None:
    from schemas.orders import ReturnLine, ReturnRequested

    story = Story({"X": {"WH-A": 5}})
    fulfil = of(hold_all(story, story.send(order(X=1))), FulfilOrder)
    story.send(shipped(fulfil[0]))
    request = ReturnRequested(order_id="O-1", return_id="R-1", lines=[ReturnLine(sku="X", qty=1)])
    story.send(request)
    story.send(request)
    assert [(r["return_id"], r["status"]) for r in story.st.view()["returns"]] == [("R-1", "rejected")]  # no reason


def test_a_moved_promise_updates_the_date_and_keeps_the_reservation() -> None:
    first_eta, later_eta = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 9, tzinfo=UTC)
    story = Story({"X": {"WH-A": 0}}, supply={"X": {"WH-A": (10, first_eta.isoformat())}})
    reserve = of(story.send(order(X=3)), ReserveStock)[0]
    story.send(reserved(reserve).model_copy(update={"against_supply": "PO-1", "eta": first_eta}))
    moved = story.send(reserved(reserve).model_copy(update={"against_supply": "PO-2", "eta": later_eta}))
    assert of(moved, ReleaseReservation) == [] and kinds(moved) == ["OrderStatusChanged"]
    assert story.st.status == "backordered" and story.st.promised_date == later_eta + timedelta(days=1)
