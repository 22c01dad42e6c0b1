"""Tables of the inventory pool (SQLAlchemy Core).

The Alembic revisions in ``migrations/versions`` create exactly these tables;
this module is what the code queries against.

Quantities are integer units. Times are naive UTC ``datetime`` values, the same
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL wants a bigint ledger id.
LedgerId = BigInteger().with_variant(Integer(), "sqlite")

nodes = Table(
    "pool_nodes",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("node_id", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("ship_fixed", Float, nullable=False),
    Column("ship_per_km", Float, nullable=False),
    Column("handling_per_unit", Float, nullable=False),
    # Most units the node may hold in open (held) reservations: its pick/pack backlog.
    Column("capacity_units", BigInteger, nullable=True),
    Column("max_km", Float, nullable=True),
    Column("default_safety_stock", BigInteger, nullable=False, default=0),
    Column("status", String(8), nullable=False, default="active"),
    # Units in held reservations at this node; checked against capacity_units.
    Column("backlog_units", BigInteger, nullable=False, default=0),
    Column("updated_at", DateTime, nullable=False),
    # A group that routing profiles select nodes by (migration 0009_profiles).
    Column("node_group", String(64), nullable=True),
)

pool_meta = Table(
    "pool_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

balances = Table(
    "pool_balances",
    metadata,
    Column("node_pk", Integer, ForeignKey("pool_nodes.pk"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("on_hand", BigInteger, nullable=False, default=0),
    Column("unsellable", BigInteger, nullable=False, default=0),
    Column("safety_stock", BigInteger, nullable=False, default=0),
    # False: safety_stock follows the node's default_safety_stock.
    Column("safety_explicit", Boolean, nullable=False, default=False),
    Column("reserved", BigInteger, nullable=False, default=0),
    # Units locked for campaigns (issue 8.3): the sum of ``remaining`` over the pair's
    # active rows of pool_campaign_locks; other channels cannot sell them.
    Column("locked", BigInteger, nullable=False, default=0),
    # Bumped by every feed change; the compare-and-set token of stock feeds.
    Column("version", BigInteger, nullable=False, default=1),
    # Units sold a week (migration 0009_profiles): a profile's clearance target.
    Column("weekly_sales", Float, nullable=True),
    Index("ix_pool_balances_sku", "sku"),
)

skus = Table(
    "pool_skus",
    metadata,
    Column("sku", String(64), primary_key=True),
)

reservations = Table(
    "pool_reservations",
    metadata,
    Column("reservation_id", String(32), primary_key=True),
    Column("order_id", String(128), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("node_pk", Integer, ForeignKey("pool_nodes.pk"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("status", String(12), nullable=False),  # held | committed | released | expired
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("closed_at", DateTime, nullable=True),
    # Where the order ships (migration 0006_rules), so that a rejected part is re-routed
    # to the same place: the customer's lat/lon, or the pickup node; the campaign it used.
    Column("dest_lat", Float, nullable=True),
    Column("dest_lon", Float, nullable=True),
    Column("pickup_node", String(64), nullable=True),
    Column("campaign", String(64), nullable=True),
    Index("ix_pool_reservations_order", "order_id", "status"),
    Index("ix_pool_reservations_due", "status", "expires_at"),
)

ledger = Table(
    "pool_ledger",
    metadata,
    Column("entry_id", LedgerId, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("node_pk", Integer, nullable=False),
    Column("sku", String(64), nullable=False),
    # set | adjust | reserve | commit | release | expire | safety
    # | lock | lock_use | unlock | lock_expire (campaign locks)
    Column("movement", String(12), nullable=False),
    Column("d_on_hand", BigInteger, nullable=False, default=0),
    Column("d_unsellable", BigInteger, nullable=False, default=0),
    Column("d_safety", BigInteger, nullable=False, default=0),
    Column("d_reserved", BigInteger, nullable=False, default=0),
    Column("d_locked", BigInteger, nullable=False, default=0),
    Column("actor", String(64), nullable=False),
    Column("reason", String(200), nullable=True),
    Column("ref", String(200), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_id", String(64), nullable=True),
    Index("ix_pool_ledger_pair", "node_pk", "sku", "entry_id"),
)

# --- campaign stock locks (issue 8.3, migration 0003_campaign_locks) ---------------------

campaigns = Table(
    "pool_campaigns",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    # May the campaign's orders take pool stock once its locked units run out?
    Column("allow_pool", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

campaign_locks = Table(
    "pool_campaign_locks",
    metadata,
    Column("lock_id", String(32), primary_key=True),
    Column("campaign_id", String(64), ForeignKey("pool_campaigns.campaign_id"), nullable=False),
    Column("node_pk", Integer, ForeignKey("pool_nodes.pk"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("qty", BigInteger, nullable=False),  # units locked at creation
    Column("used", BigInteger, nullable=False, default=0),  # units the campaign's orders took
    Column("remaining", BigInteger, nullable=False),  # still locked (0 once closed)
    Column("returned", BigInteger, nullable=False, default=0),  # given back to the pool
    Column("starts_at", DateTime, nullable=False),
    Column("ends_at", DateTime, nullable=False),
    Column("status", String(12), nullable=False),  # active | released | expired
    Column("created_at", DateTime, nullable=False),
    Column("closed_at", DateTime, nullable=True),
    Index("ix_pool_campaign_locks_campaign", "campaign_id", "status"),
    Index("ix_pool_campaign_locks_due", "status", "ends_at"),
)

idempotency = Table(
    "pool_idempotency",
    metadata,
    Column("scope_key", String(300), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

api_keys = Table(
    "pool_api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(8), nullable=False),
    Column("label", String(200), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime, nullable=True),
    Column("expires_at", DateTime, nullable=True),
)

# --- waves (issue 8; migration 0004_waves) -------------------------------------------------

waves = Table(
    "pool_waves",
    metadata,
    Column("wave_id", String(32), primary_key=True),
    Column("channel", String(32), nullable=False),
    # open -> closed -> solving -> done; a solving wave whose claim lapsed is solved again.
    Column("state", String(8), nullable=False),
    Column("orders", Integer, nullable=False, default=0),
    Column("opened_at", DateTime, nullable=False),
    Column("planned_close_at", DateTime, nullable=False),
    Column("closed_at", DateTime, nullable=True),
    Column("close_reason", String(8), nullable=True),  # window | size | demand
    # The process solving the wave; every write it makes checks the token (fencing).
    Column("claim_token", String(32), nullable=True),
    Column("claimed_at", DateTime, nullable=True),
    Column("solve_attempts", Integer, nullable=False, default=0),
    Column("done_at", DateTime, nullable=True),
    Column("kpis", Text, nullable=True),  # JSON
    Index("ix_pool_waves_channel", "channel", "state"),
    Index("ix_pool_waves_due", "state", "planned_close_at"),
)

wave_orders = Table(
    "pool_wave_orders",
    metadata,
    Column("order_id", String(128), primary_key=True),
    Column("wave_id", String(32), ForeignKey("pool_waves.wave_id"), nullable=False),
    Column("body", Text, nullable=False),  # the order as queued (JSON)
    Column("hold_seconds", Integer, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("state", String(8), nullable=False),  # queued | routed | rejected
    Column("result", Text, nullable=True),  # RouteResult JSON, or the rejection
    Column("repaired", Boolean, nullable=False, default=False),
    Column("queued_at", DateTime, nullable=False),
    Column("routed_at", DateTime, nullable=True),
    Column("callback_url", String(2000), nullable=True),
    Column("callback_state", String(10), nullable=True),  # pending | delivered | failed
    Column("callback_attempts", Integer, nullable=False, default=0),
    Column("callback_next_at", DateTime, nullable=True),
    Column("callback_error", String(200), nullable=True),
    Index("ix_pool_wave_orders_wave", "wave_id", "state"),
    Index("ix_pool_wave_orders_callback", "callback_state", "callback_next_at"),
)


# --- rejections, returns, geocoded addresses (issue 9; migration 0006_rules) ----------------

rejections = Table(
    "pool_rejections",
    metadata,
    Column("rejection_id", String(32), primary_key=True),
    Column("order_id", String(128), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("node_pk", Integer, ForeignKey("pool_nodes.pk"), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("kind", String(10), nullable=False),  # reject | short_pick
    Column("qty", BigInteger, nullable=False),  # units taken off the rejecting node
    Column("rerouted", BigInteger, nullable=False),  # units reserved elsewhere
    Column("unfilled", BigInteger, nullable=False),  # units no other node could serve
    Column("reason", String(200), nullable=True),
    Column("actor", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("result", Text, nullable=False),  # the answer (JSON)
    Index("ix_pool_rejections_order", "order_id"),
)

returns = Table(
    "pool_returns",
    metadata,
    Column("return_id", String(32), primary_key=True),
    Column("order_id", String(128), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("node_pk", Integer, ForeignKey("pool_nodes.pk"), nullable=False),
    Column("chosen_by", String(20), nullable=False),  # nearest_store | cheapest_warehouse | given
    Column("distance_km", Float, nullable=True),
    Column("restocking_cost", Float, nullable=True),
    Column("state", String(10), nullable=False),  # expected | received
    Column("sellable", BigInteger, nullable=True),  # set by the receipt
    Column("unsellable", BigInteger, nullable=True),
    Column("actor", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=True),
    Index("ix_pool_returns_order", "order_id", "line_id"),
)

geocode_cache = Table(
    "pool_geocode_cache",
    metadata,
    # The normalised address (router.geocode.normalise_address) and where the geocoder put it.
    # Text: case folding can make an address of 200 characters longer than that.
    Column("address", Text, primary_key=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("created_at", DateTime, nullable=False),
)


# --- re-optimization (issue 8.2; migration 0007_reoptimizations) ---------------------------

orders = Table(
    "pool_orders",
    metadata,
    # The order behind an order id's reservations, as it was last routed (``/v1/route`` or
    # a wave): what a re-optimization needs to route it again (where, which lines).
    Column("order_id", String(128), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("campaign", String(64), nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("pickup_node", String(64), nullable=True),
    # JSON [[line_id, sku, qty(, ship_group(, kit_line))], ...]
    Column("lines", Text, nullable=False),
    Column("routed_at", DateTime, nullable=False),
)

reoptimizations = Table(
    "pool_reoptimizations",
    metadata,
    Column("job_id", String(32), primary_key=True),
    # queued -> running -> ready -> applied; failed (bad snapshot, solver error, attempts used up)
    Column("state", String(8), nullable=False),
    Column("request", Text, nullable=False),  # JSON: selectors and churn rule
    Column("actor", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    # The process running the job; its writes check the token (fencing), as for waves.
    Column("claim_token", String(32), nullable=True),
    Column("claimed_at", DateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", DateTime, nullable=True),
    Column("finished_at", DateTime, nullable=True),
    Column("applied_at", DateTime, nullable=True),
    Column("progress", Text, nullable=True),  # JSON: phase, best cost, bound
    Column("plan", Text, nullable=True),  # JSON: KPIs before/after, gap, moves, skipped orders
    Column("moves_csv", Text, nullable=True),  # the per-order diff
    Column(
        "apply_data", Text, nullable=True
    ),  # JSON: new allocations and the snapshot's fingerprint
    Column("error", Text, nullable=True),  # JSON: rule and detail of a failed job
    Index("ix_pool_reoptimizations_state", "state", "created_at"),
)


# --- why this node (issue 10; migration 0008_explain) ---------------------------------------

explanations = Table(
    "pool_explanations",
    metadata,
    Column("order_id", String(128), primary_key=True),
    Column("source", String(8), nullable=False),  # route | wave
    # router.explain.OrderContext as JSON: the decision's arrays, explained on request.
    Column("context", Text, nullable=False),
    Column("routed_at", DateTime, nullable=False),
)


# --- routing profiles (issue 9; migration 0009_profiles) ------------------------------------

profiles = Table(
    "pool_profiles",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    # router.profiles.Profile.document as JSON (the preset expanded).
    Column("document", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

node_days = Table(
    "pool_node_days",
    metadata,
    Column("node_pk", Integer, ForeignKey("pool_nodes.pk"), primary_key=True),
    # The node's local date (its calendar's time zone): counts reset at local midnight.
    Column("day", String(10), primary_key=True),
    Column("units", BigInteger, nullable=False),
    Column("orders", BigInteger, nullable=False),
)


# --- kits and channel shares (issue 9; migration 0010_kits_channels) --------------------------

kits = Table(
    "pool_kits",
    metadata,
    # router.kits: one row per (kit, component); a kit's availability and its routing
    # come from its components.
    Column("kit_sku", String(64), primary_key=True),
    Column("component_sku", String(64), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

channel_alerts = Table(
    "pool_channel_alerts",
    metadata,
    # router.pool.channels: a channel's sellable quantity of a SKU fell below its
    # low-stock threshold; cleared when it is back at or above it.
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("sellable", BigInteger, nullable=False),
    Column("threshold", BigInteger, nullable=False),
    Column("raised_at", DateTime, nullable=False),
    Column("cleared_at", DateTime, nullable=True),
    Index("ix_pool_channel_alerts_open", "channel", "sku", "cleared_at"),
)
