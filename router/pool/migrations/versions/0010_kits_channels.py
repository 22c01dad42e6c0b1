"""Kits and channel shares (issue 9): the components of each kit SKU, and the low-stock
alerts of the channels' sellable quantities.

Revision ID: 0010_kits_channels
Revises: 0009_profiles
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_kits_channels"
down_revision = "0009_profiles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_kits",
        sa.Column("kit_sku", sa.String(64), primary_key=True),
        sa.Column("component_sku", sa.String(64), primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "pool_channel_alerts",
        sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("sellable", sa.BigInteger, nullable=False),
        sa.Column("threshold", sa.BigInteger, nullable=False),
        sa.Column("raised_at", sa.DateTime, nullable=False),
        sa.Column("cleared_at", sa.DateTime, nullable=True),
    )
    op.create_index(
        "ix_pool_channel_alerts_open", "pool_channel_alerts", ["channel", "sku", "cleared_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_pool_channel_alerts_open", table_name="pool_channel_alerts")
    op.drop_table("pool_channel_alerts")
    op.drop_table("pool_kits")
