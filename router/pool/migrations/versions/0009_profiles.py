"""Routing profiles (issue 9): the versions of each channel's profile, the units each
node took per local day (its daily workload), a node's group, and the weekly sales of
a (node, SKU) that a profile's clearance credit reads.

Revision ID: 0009_profiles
Revises: 0008_explain
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_profiles"
down_revision = "0008_explain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pool_nodes", sa.Column("node_group", sa.String(64), nullable=True))
    op.add_column("pool_balances", sa.Column("weekly_sales", sa.Float, nullable=True))
    op.create_table(
        "pool_profiles",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "pool_node_days",
        sa.Column("node_pk", sa.Integer, sa.ForeignKey("pool_nodes.pk"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("orders", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pool_node_days")
    op.drop_table("pool_profiles")
    with op.batch_alter_table("pool_balances") as batch:
        batch.drop_column("weekly_sales")
    with op.batch_alter_table("pool_nodes") as batch:
        batch.drop_column("node_group")
