"""The topic catalog: every topic, its key, its messages, its partitions, retention and cleanup policy.

Names are relative to a namespace: in the default namespace ``baton`` the public inbound topic is
``baton.orders.inbound.v1``; a scenario run in namespace ``run-5f2c`` uses ``run-5f2c.orders.inbound.v1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas import catalog, inventory, network, orders, payments, wms
from schemas.base import Message

KEEP_FOREVER = -1
# The largest record value the public inbound topic takes (docs/decisions/0011-bad-input.md): an order of the most
# lines allowed is about 30 KB; CloudEvents asks every hop to carry events up to 64 KiB. The broker refuses a bigger
# record on produce (the topic's ``max.message.bytes``: this plus room for the batch header and the key); a record
# that got in anyway (compressed under the broker's limit, a topic made before the limit) is dead-lettered.
PUBLIC_MAX_MESSAGE_BYTES = 256 * 1024
BATCH_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    messages: tuple[type[Message], ...]
    description: str
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = KEEP_FOREVER
    public: bool = False
    per_location: bool = False
    partitions: int | None = None
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    extra_config: dict[str, str] = field(default_factory=dict)
    max_message_bytes: int | None = None  # a record value over this is refused (broker) or dead-lettered (service)

    def resolve(self, location: str | None = None) -> str:
        if self.per_location:
            if location is None:
                raise ValueError(f"topic {self.name} is per location: give a location id")
            return self.name.replace("{location}", location)
        return self.name


ORDERS_INBOUND = TopicSpec(
    name="orders.inbound.v1",
    key="order_id",
    messages=(orders.OrderPlaced, orders.OrderCancelRequested, orders.ReturnRequested, orders.PickupCollected),
    description="The one public inbound topic: every channel publishes orders, cancellations, returns here.",
    public=True,
    producers=("web shop", "marketplace connector", "B2B portal", "store POS", "call centre"),
    consumers=("orchestrator",),
    max_message_bytes=PUBLIC_MAX_MESSAGE_BYTES,
    extra_config={"max.message.bytes": str(PUBLIC_MAX_MESSAGE_BYTES + BATCH_OVERHEAD_BYTES)},
)
ORDERS_STATUS = TopicSpec(
    name="orders.status.v1",
    key="order_id",
    messages=(orders.OrderStatusChanged, orders.ReturnAuthorized, orders.ReturnRejected, orders.ReturnRefunded,
              orders.OrderPlacementRefused),
    description="The public outbound topic: every status change of every order, and of its returns.",
    public=True,
    producers=("orchestrator",),
    consumers=("storefronts", "customer service"),
)
ORDERS_EVENTS = TopicSpec(
    name="orders.events.v1",
    key="order_id",
    messages=(
        orders.OrderAccepted,
        orders.OrderRejected,
        orders.OrderAllocated,
        orders.OrderCancelled,
        orders.OrderShipped,
        orders.CancelRefused,
    ),
    description="The orchestrator's decisions about each order (the audit trail of sourcing).",
    producers=("orchestrator",),
    consumers=("audit",),
)
INVENTORY_COMMANDS = TopicSpec(
    name="inventory.commands.v1",
    key="sku",
    messages=(
        inventory.ReserveStock,
        inventory.ReleaseReservation,
        inventory.ConsumeReservation,
        inventory.CountStock,
        inventory.ExpireReservation,
        inventory.RecordSupply,
        inventory.ReceiveStock,
        inventory.AdjustStock,
    ),
    description="Commands to the stock ledger, keyed by SKU so one writer decides every reservation of it.",
    producers=("orchestrator", "stock feeds", "wms nodes"),
    consumers=("inventory",),
)
INVENTORY_RESERVATIONS = TopicSpec(
    name="inventory.reservations.v1",
    key="order_id",
    messages=(
        inventory.StockReserved,
        inventory.ReservationRefused,
        inventory.ReservationReleased,
        inventory.ReservationReduced,
        inventory.ReservationConsumed,
        inventory.BackorderFilled,
        inventory.ReservationExpired,
    ),
    description="Every reservation's lifecycle, keyed by order so the orchestrator's saga sees it in order.",
    producers=("inventory",),
    consumers=("orchestrator",),
)
INVENTORY_MOVEMENTS = TopicSpec(
    name="inventory.movements.v1",
    key="sku",
    messages=(inventory.StockMoved, inventory.SupplyRecorded),
    description="Every change of on-hand stock with its kind and cause: the ledger's audit trail.",
    producers=("inventory",),
    consumers=("audit",),
)
INVENTORY_AVAILABILITY = TopicSpec(
    name="inventory.availability.v1",
    key="sku@location",
    messages=(inventory.AvailabilityChanged,),
    description="The latest availability of every SKU at every location (compacted).",
    cleanup_policy="compact",
    public=True,
    producers=("inventory",),
    consumers=("storefronts", "outside systems"),
)
WMS_COMMANDS = TopicSpec(
    name="wms.{location}.commands.v1",
    key="order_id",
    messages=(
        wms.FulfilOrder,
        wms.ConfirmTask,
        wms.SupplyArrived,
        wms.CancelFulfilment,
        wms.ClaimTask,
        wms.ReleaseTask,
        wms.HandOver,
        wms.RequestCount,
        wms.NodeTick,
        wms.ReceiveReturn,
    ),
    description=(
        "A location's inbox: fulfilment requests from the OMS, deliveries, and workers' claims and confirmations."
        " One partition: the node decides everything of its location in one order (bins, waves, claims)."
    ),
    per_location=True,
    partitions=1,
    producers=("orchestrator", "workers", "scenario runner", "wms node of the location (timer)"),
    consumers=("wms node of the location",),
)
WMS_TASKS = TopicSpec(
    name="wms.{location}.tasks.v1",
    key="task_id",
    messages=(wms.TaskCreated, wms.TaskUpdated),
    description="A location's task queue: the work its people (or the auto-workers) take and confirm.",
    per_location=True,
    producers=("wms node of the location",),
    consumers=("workers",),
)
WMS_EVENTS = TopicSpec(
    name="wms.events.v1",
    key="order_id",
    messages=(
        wms.FulfilmentAccepted,
        wms.FulfilmentRejected,
        wms.ItemsPicked,
        wms.ShortPicked,
        wms.ParcelShipped,
        wms.GoodsReceived,
        wms.FulfilmentCancelled,
        wms.ReadyForPickup,
        wms.HandedOver,
        wms.ReturnReceived,
    ),
    description="What happened in the warehouses and stores, keyed by order for the orchestrator.",
    producers=("wms nodes",),
    consumers=("orchestrator",),
)
PAYMENTS_COMMANDS = TopicSpec(
    name="payments.commands.v1",
    key="order_id",
    messages=(payments.RefundRequested,),
    description="Refund requests from the OMS to the payment adapter, each with an idempotency key derived from"
    " its return (retries reuse it). One partition: the adapter answers in one order (its first-N-fail rule).",
    partitions=1,
    producers=("orchestrator",),
    consumers=("payment adapter",),
)
PAYMENTS_EVENTS = TopicSpec(
    name="payments.events.v1",
    key="order_id",
    messages=(payments.RefundSucceeded, payments.RefundFailed),
    description="The payment adapter's answers, keyed by order so the orchestrator sees them in its order's task.",
    producers=("payment adapter",),
    consumers=("orchestrator",),
)
NETWORK = TopicSpec(
    name="network.v1",
    key="location_id",
    messages=(network.LocationConfigured,),
    description="Network master data (locations), compacted, versioned: replays see the version in force.",
    cleanup_policy="compact",
    partitions=1,
    producers=("baton network apply",),
    consumers=("orchestrator",),
)
ORDERS_TIMERS = TopicSpec(
    name="orders.timers.v1",
    key="order_id",
    messages=(orders.OrderDeadlineReached,),
    description="Deadlines the orchestrator set itself (reservation, acceptance, pickup window, hold), due now.",
    producers=("orchestrator",),
    consumers=("orchestrator",),
)
RULES = TopicSpec(
    name="rules.v1",
    key="rule set name",
    messages=(network.RuleSetPublished,),
    description="Sourcing rule sets, versioned and compacted: replays see the rule version in force.",
    cleanup_policy="compact",
    partitions=1,
    producers=("baton rules apply", "scenarios"),
    consumers=("orchestrator",),
)
CATALOG = TopicSpec(
    name="catalog.v1",
    key="sku",
    messages=(catalog.SkuConfigured,),
    description="Product master data (unit weight and volume), compacted: the latest value per SKU is in force.",
    cleanup_policy="compact",
    partitions=1,
    producers=("scenarios", "product information management"),
    consumers=("wms nodes",),
)
DEAD_LETTERS = TopicSpec(
    name="deadletter.v1",
    key="topic/partition/offset",
    messages=(network.DeadLettered,),
    description="Messages a service could not use, with the reason. Nothing is dropped silently.",
    producers=("every service",),
    consumers=("ops",),
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ORDERS_INBOUND,
    ORDERS_STATUS,
    ORDERS_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_RESERVATIONS,
    INVENTORY_MOVEMENTS,
    INVENTORY_AVAILABILITY,
    WMS_COMMANDS,
    WMS_TASKS,
    WMS_EVENTS,
    PAYMENTS_COMMANDS,
    PAYMENTS_EVENTS,
    NETWORK,
    CATALOG,
    ORDERS_TIMERS,
    RULES,
    DEAD_LETTERS,
)
