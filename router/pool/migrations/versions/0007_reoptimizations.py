"""Re-optimization of held reservations (issue 8.2): the orders behind the reservations,
and the re-optimization jobs.

Revision ID: 0007_reoptimizations
Revises: 0006_rules
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_reoptimizations"
down_revision = "0006_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_orders",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=True),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("pickup_node", sa.String(64), nullable=True),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("routed_at", sa.DateTime, nullable=False),
    )
    # No index on channel or campaign: every routing writes a row here, and a job reads
    # the held reservations first (ix_pool_reservations_due) and finds their order by key.
    op.create_table(
        "pool_reoptimizations",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("applied_at", sa.DateTime, nullable=True),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("plan", sa.Text, nullable=True),
        sa.Column("moves_csv", sa.Text, nullable=True),
        sa.Column("apply_data", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_pool_reoptimizations_state", "pool_reoptimizations", ["state", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("pool_reoptimizations")
    op.drop_table("pool_orders")
