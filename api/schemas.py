"""Request and response bodies of the API (separate models, converted at the edge)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from router.pool import inventory
from router.pool.locks import MAX_LOCK_ROWS, CampaignView, LockRow, LockView
from router.pool.nodes import NodeSpec
from router.pool.reservations import ReservationView
from router.pool.routing import MAX_LINES, Order, OrderLine, RouteResult
from router.pool.service import DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
OrderId = Annotated[str, Field(min_length=1, max_length=128)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
Units = Annotated[int, Field(ge=0, le=1_000_000_000)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- route --------------------------------------------------------------------------------


class Customer(Strict):
    lat: Latitude
    lon: Longitude


class LineIn(Strict):
    line_id: Id
    sku: Id
    qty: Annotated[int, Field(ge=1, le=1_000_000)]


class RouteRequest(Strict):
    order_id: OrderId
    channel: Annotated[str, Field(min_length=1, max_length=32)] = "web"
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]
    customer: Customer | None = Field(
        None, description="Delivery location; may be omitted for a pickup order."
    )
    pickup_node: Id | None = Field(None, description="Buy online, pick up at this node.")
    quote_only: bool = Field(False, description="Answer the allocation but reserve nothing.")
    hold_seconds: Annotated[int, Field(ge=1, le=MAX_HOLD_SECONDS)] = DEFAULT_HOLD_SECONDS
    campaign: Id | None = Field(
        None,
        description="Route from this campaign's locked units first (then the pool, if allowed).",
    )

    def to_order(self) -> Order:
        return Order(
            order_id=self.order_id,
            lines=tuple(OrderLine(ln.line_id, ln.sku, ln.qty) for ln in self.lines),
            lat=self.customer.lat if self.customer else None,
            lon=self.customer.lon if self.customer else None,
            pickup_node=self.pickup_node,
            channel=self.channel,
            campaign=self.campaign,
        )


class AllocationOut(BaseModel):
    node_id: str
    qty: int
    reservation_id: str | None


class LineOut(BaseModel):
    line_id: str
    sku: str
    qty: int
    allocations: list[AllocationOut]
    unfilled: int


class ShipmentOut(BaseModel):
    node_id: str
    kind: str
    distance_km: float | None
    units: int
    shipping_cost: float
    handling_cost: float


class CostOut(BaseModel):
    shipping: float
    handling: float
    splits: int
    split_penalty: float
    unfilled_units: int
    unfilled_penalty: float
    total: float


class RouteResponse(BaseModel):
    order_id: str
    status: Literal["filled", "partial", "unfilled"]
    quote_only: bool
    exact: bool
    lines: list[LineOut]
    shipments: list[ShipmentOut]
    cost: CostOut
    hold_expires_at: datetime | None
    attempts: int
    replayed: bool
    locked_units: int = Field(description="Units taken from the campaign's locks.")

    @classmethod
    def of(cls, result: RouteResult) -> RouteResponse:
        return cls.model_validate(result, from_attributes=True)


# --- reservations -------------------------------------------------------------------------


class ReservationOut(BaseModel):
    reservation_id: str
    order_id: str
    line_id: str
    node_id: str
    sku: str
    qty: int
    status: Literal["held", "committed", "released", "expired"]
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, view: ReservationView) -> ReservationOut:
        return cls.model_validate(view, from_attributes=True)


class ReservationList(BaseModel):
    order_id: str | None = None
    reservations: list[ReservationOut]

    @classmethod
    def of(cls, views: list[ReservationView], order_id: str | None = None) -> ReservationList:
        return cls(order_id=order_id, reservations=[ReservationOut.of(v) for v in views])


# --- inventory ----------------------------------------------------------------------------


class SetRowIn(Strict):
    node_id: Id
    sku: Id
    on_hand: Units
    unsellable: Units | None = None
    safety_stock: Units | None = None
    expected_version: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Compare-and-set: apply only if the pair is at this version (0 = new)."
    )


class AdjustRowIn(Strict):
    node_id: Id
    sku: Id
    delta_on_hand: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)] = 0
    delta_unsellable: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)] = 0


FeedRows = Field(min_length=1, max_length=inventory.MAX_FEED_ROWS)


class SetFeed(Strict):
    rows: Annotated[list[SetRowIn], FeedRows]
    reason: Annotated[str, Field(max_length=200)] | None = None

    def to_rows(self) -> list[inventory.SetRow]:
        return [
            inventory.SetRow(
                r.node_id, r.sku, r.on_hand, r.unsellable, r.safety_stock, r.expected_version
            )
            for r in self.rows
        ]


class AdjustFeed(Strict):
    rows: Annotated[list[AdjustRowIn], FeedRows]
    reason: Annotated[str, Field(max_length=200)] | None = None

    def to_rows(self) -> list[inventory.AdjustRow]:
        return [
            inventory.AdjustRow(r.node_id, r.sku, r.delta_on_hand, r.delta_unsellable)
            for r in self.rows
        ]


class FeedOut(BaseModel):
    rows: int
    created: int
    updated: int


class NodeStockOut(BaseModel):
    node_id: str
    status: str
    on_hand: int
    unsellable: int
    safety_stock: int
    reserved: int
    locked: int = Field(description="Units locked for campaigns; no other channel sells them.")
    available: int
    version: int


class SkuAvailabilityOut(BaseModel):
    sku: str
    pooled_available: int = Field(description="Available units over every node.")
    active_available: int = Field(
        description="Available units over active nodes: what routing can promise now."
    )
    nodes: list[NodeStockOut]


class AvailabilityOut(BaseModel):
    skus: list[SkuAvailabilityOut]

    @classmethod
    def of(cls, found: list[inventory.SkuAvailability]) -> AvailabilityOut:
        return cls(skus=[SkuAvailabilityOut.model_validate(s, from_attributes=True) for s in found])


class LedgerEntryOut(BaseModel):
    entry_id: int
    at: datetime
    movement: str
    d_on_hand: int
    d_unsellable: int
    d_safety: int
    d_reserved: int
    d_locked: int
    actor: str
    reason: str | None
    ref: str | None
    idempotency_key: str | None
    request_id: str | None


class LedgerOut(BaseModel):
    node_id: str
    sku: str
    entries: list[LedgerEntryOut]
    next_after: int | None


# --- campaigns (stock locks) ---------------------------------------------------------------

Rfc3339 = Annotated[
    AwareDatetime, Field(description="RFC 3339 with an offset, e.g. 2026-03-01T00:00:00+08:00.")
]


def naive_utc(value: datetime) -> datetime:
    """An aware timestamp as the pool stores it (naive UTC)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def aware_utc(value: datetime) -> datetime:
    """A stored (naive UTC) timestamp as the API answers it (with its offset, Z)."""
    return value.replace(tzinfo=UTC)


class LockRowIn(Strict):
    node_id: Id
    sku: Id
    qty: Annotated[int, Field(ge=1, le=1_000_000_000)]


class LockRequest(Strict):
    locks: Annotated[list[LockRowIn], Field(min_length=1, max_length=MAX_LOCK_ROWS)]
    starts_at: Rfc3339
    ends_at: Rfc3339
    allow_pool: bool | None = Field(
        None,
        description="May the campaign's orders take pool stock once its locked units run out? "
        "Omitted: unchanged (true for a new campaign).",
    )
    reason: Annotated[str, Field(max_length=200)] | None = None

    def to_rows(self) -> list[LockRow]:
        return [LockRow(r.node_id, r.sku, r.qty) for r in self.locks]


class LockOut(BaseModel):
    lock_id: str
    node_id: str
    sku: str
    qty: int = Field(description="Units locked at creation.")
    used: int = Field(description="Units the campaign's orders took.")
    remaining: int = Field(description="Units still locked.")
    returned: int = Field(description="Units given back to the pool when the lock closed.")
    starts_at: datetime
    ends_at: datetime
    status: Literal["active", "released", "expired"]
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, view: LockView) -> LockOut:
        return cls(
            **{
                **view.__dict__,
                "starts_at": aware_utc(view.starts_at),
                "ends_at": aware_utc(view.ends_at),
                "created_at": aware_utc(view.created_at),
                "closed_at": aware_utc(view.closed_at) if view.closed_at else None,
            }
        )


class CampaignOut(BaseModel):
    campaign_id: str
    allow_pool: bool
    locked: int = Field(description="Units still locked over all active locks.")
    used: int = Field(description="Units the campaign's orders took over all locks.")
    created_at: datetime
    updated_at: datetime
    locks: list[LockOut]

    @classmethod
    def of(cls, view: CampaignView) -> CampaignOut:
        return cls(
            campaign_id=view.campaign_id,
            allow_pool=view.allow_pool,
            locked=sum(lk.remaining for lk in view.locks),
            used=sum(lk.used for lk in view.locks),
            created_at=aware_utc(view.created_at),
            updated_at=aware_utc(view.updated_at),
            locks=[LockOut.of(lk) for lk in view.locks],
        )


# --- nodes --------------------------------------------------------------------------------


class NodeIn(Strict):
    node_id: Id
    kind: Literal["warehouse", "store"]
    lat: Latitude
    lon: Longitude
    ship_fixed: NonNegative = 0.0
    ship_per_km: NonNegative = 0.0
    handling_per_unit: NonNegative = 0.0
    capacity_units: Units | None = None
    max_km: NonNegative | None = None
    default_safety_stock: Units = 0

    def to_spec(self) -> NodeSpec:
        return NodeSpec(**self.model_dump())


class NodePatch(Strict):
    kind: Literal["warehouse", "store"] | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    ship_fixed: NonNegative | None = None
    ship_per_km: NonNegative | None = None
    handling_per_unit: NonNegative | None = None
    capacity_units: Units | None = None
    max_km: NonNegative | None = None
    default_safety_stock: Units | None = None

    def changes(self) -> dict:
        """Only the fields the client sent; an explicit null clears capacity or max_km."""
        sent = self.model_dump(exclude_unset=True)
        return {k: v for k, v in sent.items() if v is not None or k in ("capacity_units", "max_km")}


class NodeOut(BaseModel):
    node_id: str
    kind: str
    lat: float
    lon: float
    ship_fixed: float
    ship_per_km: float
    handling_per_unit: float
    capacity_units: int | None
    max_km: float | None
    default_safety_stock: int
    status: Literal["active", "paused", "closed"]
    backlog_units: int
    updated_at: datetime

    @classmethod
    def of(cls, row) -> NodeOut:
        return cls.model_validate(row, from_attributes=True)


class NodeList(BaseModel):
    nodes: list[NodeOut]
