"""Waves: orders queued for a joint solve, and the waves that batch them.

Revision ID: 0004_waves
Revises: 0001_pool
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_waves"
down_revision = "0003_campaign_locks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_waves",
        sa.Column("wave_id", sa.String(32), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("orders", sa.Integer, nullable=False, server_default="0"),
        sa.Column("opened_at", sa.DateTime, nullable=False),
        sa.Column("planned_close_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
        sa.Column("close_reason", sa.String(8), nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("solve_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done_at", sa.DateTime, nullable=True),
        sa.Column("kpis", sa.Text, nullable=True),
    )
    op.create_index("ix_pool_waves_channel", "pool_waves", ["channel", "state"])
    op.create_index("ix_pool_waves_due", "pool_waves", ["state", "planned_close_at"])
    op.create_table(
        "pool_wave_orders",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("wave_id", sa.String(32), sa.ForeignKey("pool_waves.wave_id"), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("hold_seconds", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("repaired", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("queued_at", sa.DateTime, nullable=False),
        sa.Column("routed_at", sa.DateTime, nullable=True),
        sa.Column("callback_url", sa.String(2000), nullable=True),
        sa.Column("callback_state", sa.String(10), nullable=True),
        sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("callback_next_at", sa.DateTime, nullable=True),
        sa.Column("callback_error", sa.String(200), nullable=True),
    )
    op.create_index("ix_pool_wave_orders_wave", "pool_wave_orders", ["wave_id", "state"])
    op.create_index(
        "ix_pool_wave_orders_callback", "pool_wave_orders", ["callback_state", "callback_next_at"]
    )


def downgrade() -> None:
    op.drop_table("pool_wave_orders")
    op.drop_table("pool_waves")
