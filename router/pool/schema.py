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

# --- why this node (issue 10; migration 0006_explain) ---------------------------------------

explanations = Table(
    "pool_explanations",
    metadata,
    Column("order_id", String(128), primary_key=True),
    Column("source", String(8), nullable=False),  # route | wave
    # router.explain.OrderContext as JSON: the decision's arrays, explained on request.
    Column("context", Text, nullable=False),
    Column("routed_at", DateTime, nullable=False),
)
