"""Inventory pool: nodes, balances, reservations, ledger, idempotency, API keys.

Revision ID: 0001_pool
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_pool"
down_revision = None
branch_labels = None
depends_on = None

LedgerId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pool_nodes",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("ship_fixed", sa.Float, nullable=False),
        sa.Column("ship_per_km", sa.Float, nullable=False),
        sa.Column("handling_per_unit", sa.Float, nullable=False),
        sa.Column("capacity_units", sa.BigInteger, nullable=True),
        sa.Column("max_km", sa.Float, nullable=True),
        sa.Column("default_safety_stock", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("status", sa.String(8), nullable=False, server_default="active"),
        sa.Column("backlog_units", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "pool_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "pool_balances",
        sa.Column("node_pk", sa.Integer, sa.ForeignKey("pool_nodes.pk"), primary_key=True),
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("on_hand", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("unsellable", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("safety_stock", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("safety_explicit", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    )
    op.create_index("ix_pool_balances_sku", "pool_balances", ["sku"])
    op.create_table("pool_skus", sa.Column("sku", sa.String(64), primary_key=True))
    op.create_table(
        "pool_reservations",
        sa.Column("reservation_id", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("node_pk", sa.Integer, sa.ForeignKey("pool_nodes.pk"), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_pool_reservations_order", "pool_reservations", ["order_id", "status"])
    op.create_index("ix_pool_reservations_due", "pool_reservations", ["status", "expires_at"])
    op.create_table(
        "pool_ledger",
        sa.Column("entry_id", LedgerId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("node_pk", sa.Integer, nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("movement", sa.String(12), nullable=False),
        sa.Column("d_on_hand", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("d_unsellable", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("d_safety", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("d_reserved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("ref", sa.String(200), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_pool_ledger_pair", "pool_ledger", ["node_pk", "sku", "entry_id"])
    op.create_table(
        "pool_idempotency",
        sa.Column("scope_key", sa.String(300), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "pool_api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    for table in (
        "pool_api_keys",
        "pool_idempotency",
        "pool_ledger",
        "pool_reservations",
        "pool_skus",
        "pool_balances",
        "pool_meta",
        "pool_nodes",
    ):
        op.drop_table(table)
