"""Request and response bodies of the API (separate models, converted at the edge)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from router.geocode import Place
from router.pool import inventory
from router.pool.locks import MAX_LOCK_ROWS, CampaignView, LockRow, LockView
from router.pool.nodes import NodeSpec
from router.pool.rejections import Rejection, RejectionRequest
from router.pool.reservations import ReservationView
from router.pool.returns import ReturnRequest, ReturnView
from router.pool.routing import MAX_LINES, Order, OrderLine, RouteResult
from router.pool.service import DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS

# --- reusable field types --------------------------------------------------------------
#
# Every endpoint (and every new one) takes its ids, quantities and times through these
# types, so a rule is written once and binds the same on SQLite and PostgreSQL: an id
# never carries a control character (PostgreSQL refuses NUL, SQLite would store it), an
# integer never exceeds what a BIGINT column holds, a quantity is a JSON integer (not
# true, "2" or 1.0), and a time carries its offset.

MAX_DB_INT = 2**63 - 1
"""Largest value of a BIGINT column (both backends); the bound of every integer input."""

_NOT_IN_ID = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_id(value: str) -> str:
    if _NOT_IN_ID.search(value):
        raise PydanticCustomError(
            "id_characters", "an id has no whitespace, control or surrogate characters"
        )
    return value


def _check_text(value: str) -> str:
    if _NOT_IN_TEXT.search(value):
        raise PydanticCustomError(
            "text_characters", "text has no control characters other than tab and newline"
        )
    return value


def _to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _to_naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class _Documented:
    """Puts ``pattern`` into the OpenAPI schema (so clients and fuzzers see the rule);
    the check itself is the validator beside it, whose error says the rule in words."""

    pattern: str

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


_ID_PATTERN = _Documented(r"^[^\s\x00-\x1f\x7f-\x9f]+$")
_TEXT_PATTERN = _Documented(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")
IdChars = AfterValidator(_check_id)
TextChars = AfterValidator(_check_text)

Id = Annotated[str, StringConstraints(min_length=1, max_length=64), IdChars, _ID_PATTERN]
"""Node, SKU, line and other short ids (their database columns hold 64 characters)."""
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=128), IdChars, _ID_PATTERN]
Channel = Annotated[str, StringConstraints(min_length=1, max_length=32), IdChars, _ID_PATTERN]
IdempotencyKeyValue = Annotated[
    str, StringConstraints(min_length=1, max_length=200), IdChars, _ID_PATTERN
]
Text = Annotated[str, StringConstraints(max_length=200), TextChars, _TEXT_PATTERN]
Address = Annotated[str, StringConstraints(min_length=1, max_length=200), TextChars, _TEXT_PATTERN]
"""A postal address on one or more lines (parts separated by commas)."""
"""Free text (a reason, a label): tab and newline allowed, other control characters not."""

Quantity = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
"""Units of one order line: a JSON integer (``true``, ``"2"`` and ``1.0`` are refused)."""
Units = Annotated[int, Field(strict=True, ge=0, le=1_000_000_000)]
"""A stock level or capacity (strict integer)."""
Delta = Annotated[int, Field(strict=True, ge=-1_000_000_000, le=1_000_000_000)]
"""A signed change of a stock level (strict integer)."""
Version = Annotated[int, Field(strict=True, ge=0, le=MAX_DB_INT)]
"""A row version or other BIGINT counter (strict integer)."""
HoldSeconds = Annotated[int, Field(strict=True, ge=1, le=MAX_HOLD_SECONDS)]
QueryInt = Annotated[int, Field(ge=0, le=MAX_DB_INT)]
"""A non-negative integer query or path parameter (query strings are text, so not strict)."""
Timestamp = Annotated[AwareDatetime, AfterValidator(_to_naive_utc)]
"""An input time: RFC 3339 with an offset (naive is refused), stored as naive UTC."""
UtcTime = Annotated[datetime, AfterValidator(_to_utc)]
"""An output time: the pool's naive UTC marked as UTC, serialised as ``...Z``."""

Latitude = Annotated[float, Field(strict=True, ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(strict=True, ge=-180.0, le=180.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, ge=0.0, le=1e9, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- route --------------------------------------------------------------------------------


class Customer(Strict):
    lat: Latitude
    lon: Longitude


class LineIn(Strict):
    line_id: Id
    sku: Id
    qty: Quantity
    ship_group: Id | None = Field(
        None, description="Lines of one group ship whole from one node, or not at all."
    )


class OrderIn(Strict):
    """An order as the OMS sends it, routed now (``/v1/route``) or queued (``/v1/orders``)."""

    order_id: OrderId
    channel: Channel = "web"
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]
    customer: Customer | None = Field(
        None, description="Delivery location; may be omitted for a pickup order."
    )
    pickup_node: Id | None = Field(None, description="Buy online, pick up at this node.")
    promised_date: date | None = Field(
        None,
        description="The delivery date promised to the customer: the channel's profile "
        "routes to nodes that meet it, or flags the order (`promise_late`).",
    )
    origin_store: Id | None = Field(
        None,
        description="Endless aisle: the store the order was taken in, shipped from "
        "elsewhere; its channel's profile may exclude or prefer it.",
    )
    address: Address | None = Field(
        None,
        description="Delivery address, instead of `customer`: placed by the configured "
        "geocoder (cached), else at the centroid of a city it names.",
    )

    def to_order(self, located: tuple[float, float] | None = None) -> Order:
        """The order; ``located``: where its ``address`` was placed."""
        lat, lon = located or (
            (self.customer.lat, self.customer.lon) if self.customer else (None, None)
        )
        return Order(
            order_id=self.order_id,
            lines=tuple(OrderLine(ln.line_id, ln.sku, ln.qty, ln.ship_group) for ln in self.lines),
            lat=lat,
            lon=lon,
            pickup_node=self.pickup_node,
            channel=self.channel,
            campaign=getattr(self, "campaign", None),
            promised_date=self.promised_date.isoformat() if self.promised_date else None,
            origin_store=self.origin_store,
        )


class RouteRequest(OrderIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "ord-1001",
                    "lines": [{"line_id": "1", "sku": "SKU-1001", "qty": 2}],
                    "customer": {"lat": 31.2304, "lon": 121.4737},
                }
            ]
        },
    )

    quote_only: StrictBool = Field(False, description="Answer the allocation but reserve nothing.")
    hold_seconds: HoldSeconds = DEFAULT_HOLD_SECONDS
    campaign: Id | None = Field(
        None,
        description="Route from this campaign's locked units first (then the pool, if allowed).",
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
    kit_line: str | None = Field(
        None, description="The kit line this component line serves (docs/profiles.md, Kits)."
    )


class ShipmentOut(BaseModel):
    node_id: str
    kind: str
    distance_km: float | None
    units: int
    shipping_cost: float
    handling_cost: float
    mode: (
        Literal["warehouse_ship", "store_ship", "pickup", "pickup_transfer", "same_city"] | None
    ) = Field(None, description="How the shipment reaches the customer (docs/profiles.md).")


class CostOut(BaseModel):
    shipping: float
    handling: float
    splits: int
    split_penalty: float
    unfilled_units: int
    unfilled_penalty: float
    total: float


class LocatedOut(BaseModel):
    lat: float
    lon: float
    source: Literal["cache", "geocoder", "city_centroid"] = Field(
        description="city_centroid: no geocoder could place it; the centroid of `label`."
    )
    label: str | None = None

    @classmethod
    def of(cls, place: Place) -> LocatedOut:
        return cls.model_validate(place, from_attributes=True)


class RouteResponse(BaseModel):
    order_id: str
    status: Literal["filled", "partial", "unfilled"]
    quote_only: bool
    exact: bool
    lines: list[LineOut]
    shipments: list[ShipmentOut]
    cost: CostOut
    hold_expires_at: UtcTime | None
    attempts: int
    replayed: bool
    locked_units: int = Field(description="Units taken from the campaign's locks.")
    promise_late: bool = Field(
        False, description="No node its profile allows could meet the promised date."
    )
    origin_store: str | None = Field(
        None, description="Endless aisle: the store the order was taken in."
    )
    located: LocatedOut | None = Field(
        None, description="Where the order's `address` was placed (absent for coordinates)."
    )

    @classmethod
    def of(cls, result: RouteResult) -> RouteResponse:
        return cls.model_validate(result, from_attributes=True)


# --- rejections (issue 9) ------------------------------------------------------------------


class LineRejectionIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"node_id": "S1", "line_id": "1", "qty": 1, "kind": "short_pick"}]
        },
    )

    node_id: Id = Field(description="The node that rejects or short-picks the line.")
    line_id: Id
    qty: Quantity = Field(description="Units of the line the node will not ship.")
    kind: Literal["reject", "short_pick"] = "reject"
    reason: Text | None = None

    def to_request(self, order_id: str) -> RejectionRequest:
        return RejectionRequest(
            order_id, self.line_id, self.node_id, self.qty, self.kind, self.reason
        )


class LineRejectionOut(BaseModel):
    rejection_id: str
    order_id: str
    line_id: str
    sku: str
    node_id: str = Field(description="The node that rejected; it does not serve the line again.")
    kind: Literal["reject", "short_pick"]
    qty: int
    status: Literal["rerouted", "partial", "unfilled"]
    rerouted: int = Field(description="Units reserved at other nodes.")
    unfilled: int = Field(description="Units no other node could serve.")
    reroute: RouteResponse = Field(description="The routing of the rejected part alone.")
    created_at: UtcTime
    replayed: bool

    @classmethod
    def of(cls, rejection: Rejection) -> LineRejectionOut:
        return cls.model_validate(rejection, from_attributes=True)


class LineRejectionList(BaseModel):
    order_id: str
    rejections: list[LineRejectionOut]


# --- returns (issue 9) ----------------------------------------------------------------------


class ReturnIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"order_id": "ord-1001", "line_id": "1", "qty": 1}]},
    )

    order_id: OrderId
    line_id: Id
    qty: Quantity
    customer: Customer | None = Field(
        None, description="Where the return starts; omitted: where the order was delivered."
    )
    address: Address | None = Field(None, description="Where the return starts, as an address.")
    node_id: Id | None = Field(
        None, description="The node the return is brought to (no choice is made)."
    )
    prefer: Literal["store", "warehouse"] = Field(
        "store",
        description="store: the nearest store carrying the SKU, else the cheapest warehouse; "
        "warehouse: the warehouse with the lowest restocking cost, else the nearest store.",
    )

    def to_request(self, located: tuple[float, float] | None = None) -> ReturnRequest:
        """The request; ``located``: where its ``address`` was placed."""
        lat, lon = located or (
            (self.customer.lat, self.customer.lon) if self.customer else (None, None)
        )
        return ReturnRequest(
            self.order_id,
            self.line_id,
            self.qty,
            lat=lat,
            lon=lon,
            node_id=self.node_id,
            prefer=self.prefer,
        )


class ReceiptIn(Strict):
    sellable: Annotated[int, Field(strict=True, ge=0, le=1_000_000)] = Field(
        description="Units that go back on sale (available rises)."
    )
    unsellable: Annotated[int, Field(strict=True, ge=0, le=1_000_000)] = Field(
        description="Units kept but not sold (the unsellable layer rises)."
    )


class ReturnOut(BaseModel):
    return_id: str
    order_id: str
    line_id: str
    sku: str
    qty: int
    node_id: str = Field(description="Where the units come back.")
    chosen_by: Literal["nearest_store", "cheapest_warehouse", "given"]
    distance_km: float | None
    restocking_cost: float | None = Field(
        description="ship_fixed + ship_per_km * distance + handling_per_unit * qty at the node."
    )
    state: Literal["expected", "received"]
    sellable: int | None
    unsellable: int | None
    created_at: UtcTime
    received_at: UtcTime | None
    replayed: bool = Field(description="A retry's stored answer: nothing moved again.")

    @classmethod
    def of(cls, view: ReturnView) -> ReturnOut:
        return cls.model_validate(view, from_attributes=True)


# --- reservations -------------------------------------------------------------------------


class ReservationOut(BaseModel):
    reservation_id: str
    order_id: str
    line_id: str
    node_id: str
    sku: str
    qty: int
    status: Literal["held", "committed", "released", "expired"]
    created_at: UtcTime
    expires_at: UtcTime
    closed_at: UtcTime | None

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
    expected_version: Version | None = Field(
        None, description="Compare-and-set: apply only if the pair is at this version (0 = new)."
    )
    weekly_sales: NonNegative | None = Field(
        None, description="Units sold a week: a routing profile's clearance target."
    )


class AdjustRowIn(Strict):
    node_id: Id
    sku: Id
    delta_on_hand: Delta = 0
    delta_unsellable: Delta = 0


FeedRows = Field(min_length=1, max_length=inventory.MAX_FEED_ROWS)


class SetFeed(Strict):
    rows: Annotated[list[SetRowIn], FeedRows]
    reason: Text | None = None

    def to_rows(self) -> list[inventory.SetRow]:
        return [
            inventory.SetRow(
                r.node_id,
                r.sku,
                r.on_hand,
                r.unsellable,
                r.safety_stock,
                r.expected_version,
                r.weekly_sales,
            )
            for r in self.rows
        ]


class AdjustFeed(Strict):
    rows: Annotated[list[AdjustRowIn], FeedRows]
    reason: Text | None = None

    def to_rows(self) -> list[inventory.AdjustRow]:
        return [
            inventory.AdjustRow(r.node_id, r.sku, r.delta_on_hand, r.delta_unsellable)
            for r in self.rows
        ]


class FeedOut(BaseModel):
    rows: int
    created: int
    updated: int


class KitComponent(Strict):
    component_sku: Id
    quantity: Annotated[int, Field(strict=True, ge=1, le=1_000_000)]


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
    components: list[KitComponent] | None = Field(
        None,
        description="For a kit: its components. Its availability is the minimum over "
        "components of floor(available / quantity), per node and pooled; a node's other "
        "layers are 0.",
    )


class AvailabilityOut(BaseModel):
    skus: list[SkuAvailabilityOut]

    @classmethod
    def of(cls, found: list[inventory.SkuAvailability]) -> AvailabilityOut:
        return cls(skus=[SkuAvailabilityOut.model_validate(s, from_attributes=True) for s in found])


class LedgerEntryOut(BaseModel):
    entry_id: int
    at: UtcTime
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

LockUnits = Annotated[int, Field(strict=True, ge=1, le=1_000_000_000)]
"""Units of one lock (strict integer)."""


class LockRowIn(Strict):
    node_id: Id
    sku: Id
    qty: LockUnits


class LockRequest(Strict):
    locks: Annotated[list[LockRowIn], Field(min_length=1, max_length=MAX_LOCK_ROWS)]
    starts_at: Timestamp = Field(description="RFC 3339 with an offset; the window starts.")
    ends_at: Timestamp = Field(description="RFC 3339 with an offset; the window ends (excluded).")
    allow_pool: StrictBool | None = Field(
        None,
        description="May the campaign's orders take pool stock once its locked units run out? "
        "Omitted: unchanged (true for a new campaign).",
    )
    reason: Text | None = None

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
    starts_at: UtcTime
    ends_at: UtcTime
    status: Literal["active", "released", "expired"]
    created_at: UtcTime
    closed_at: UtcTime | None

    @classmethod
    def of(cls, view: LockView) -> LockOut:
        return cls.model_validate(view, from_attributes=True)


class CampaignOut(BaseModel):
    campaign_id: str
    allow_pool: bool
    locked: int = Field(description="Units still locked over all active locks.")
    used: int = Field(description="Units the campaign's orders took over all locks.")
    created_at: UtcTime
    updated_at: UtcTime
    locks: list[LockOut]

    @classmethod
    def of(cls, view: CampaignView) -> CampaignOut:
        return cls(
            campaign_id=view.campaign_id,
            allow_pool=view.allow_pool,
            locked=sum(lk.remaining for lk in view.locks),
            used=sum(lk.used for lk in view.locks),
            created_at=view.created_at,
            updated_at=view.updated_at,
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
    node_group: Id | None = None

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
    node_group: Id | None = None

    def changes(self) -> dict:
        """Only the fields the client sent; an explicit null clears capacity or max_km."""
        sent = self.model_dump(exclude_unset=True)
        return {
            k: v
            for k, v in sent.items()
            if v is not None or k in ("capacity_units", "max_km", "node_group")
        }


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
    node_group: str | None = None
    status: Literal["active", "paused", "closed"]
    backlog_units: int
    updated_at: UtcTime

    @classmethod
    def of(cls, row) -> NodeOut:
        return cls.model_validate(row, from_attributes=True)


class NodeList(BaseModel):
    nodes: list[NodeOut]


# --- routing profiles (issue 9) ------------------------------------------------------------


class ProfileOut(BaseModel):
    channel: str
    version: int
    profile: dict[str, Any] = Field(description="The profile, its preset expanded.")
    actor: str
    created_at: UtcTime

    @classmethod
    def of(cls, version) -> ProfileOut:
        return cls(
            channel=version.channel,
            version=version.version,
            profile=version.document,
            actor=version.actor,
            created_at=version.created_at,
        )


class ProfileVersions(BaseModel):
    versions: list[ProfileOut]


# --- kits ---------------------------------------------------------------------------------


class KitIn(Strict):
    components: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=100)] = Field(
        description="The kit's components: {component_sku, quantity} (quantity >= 1)."
    )


class KitOut(BaseModel):
    kit_sku: str
    components: list[KitComponent]
    actor: str
    updated_at: UtcTime

    @classmethod
    def of(cls, view) -> KitOut:
        return cls(
            kit_sku=view.kit_sku,
            components=[KitComponent(component_sku=s, quantity=q) for s, q in view.components],
            actor=view.actor,
            updated_at=view.updated_at,
        )


# --- channel shares -----------------------------------------------------------------------


class ChannelSkuOut(BaseModel):
    sku: str
    pooled_available: int = Field(description="Available units over the active nodes.")
    sellable: int = Field(
        description="What the channel may sell: its share of the unreserved units plus "
        "its reservations (docs/profiles.md, Channel shares)."
    )
    reserved: int = Field(description="Units reserved for this channel.")
    low_stock_threshold: int | None
    low: bool = Field(description="sellable < low_stock_threshold")


class ChannelAvailabilityOut(BaseModel):
    channel: str
    skus: list[ChannelSkuOut]

    @classmethod
    def of(cls, channel: str, found) -> ChannelAvailabilityOut:
        return cls(
            channel=channel,
            skus=[ChannelSkuOut.model_validate(s, from_attributes=True) for s in found],
        )


class AlertOut(BaseModel):
    alert_id: int
    channel: str
    sku: str
    sellable: int = Field(description="The channel's sellable quantity when raised.")
    threshold: int
    raised_at: UtcTime
    cleared_at: UtcTime | None


class AlertsOut(BaseModel):
    alerts: list[AlertOut]

    @classmethod
    def of(cls, found) -> AlertsOut:
        return cls(alerts=[AlertOut.model_validate(a, from_attributes=True) for a in found])
