"""Rejections and returns (issue 9): where a reservation's order ships, the rejections
that moved reservations, the returns on their way back, and the geocoder's cache.

Revision ID: 0006_rules
Revises: 0005_key_expiry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rules"
down_revision = "0005_key_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pool_reservations", sa.Column("dest_lat", sa.Float, nullable=True))
    op.add_column("pool_reservations", sa.Column("dest_lon", sa.Float, nullable=True))
    op.add_column("pool_reservations", sa.Column("pickup_node", sa.String(64), nullable=True))
    op.add_column("pool_reservations", sa.Column("campaign", sa.String(64), nullable=True))
    op.create_table(
        "pool_rejections",
        sa.Column("rejection_id", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("node_pk", sa.Integer, sa.ForeignKey("pool_nodes.pk"), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("rerouted", sa.BigInteger, nullable=False),
        sa.Column("unfilled", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )
    op.create_index("ix_pool_rejections_order", "pool_rejections", ["order_id"])
    op.create_table(
        "pool_returns",
        sa.Column("return_id", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("node_pk", sa.Integer, sa.ForeignKey("pool_nodes.pk"), nullable=False),
        sa.Column("chosen_by", sa.String(20), nullable=False),
        sa.Column("distance_km", sa.Float, nullable=True),
        sa.Column("restocking_cost", sa.Float, nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("sellable", sa.BigInteger, nullable=True),
        sa.Column("unsellable", sa.BigInteger, nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_pool_returns_order", "pool_returns", ["order_id", "line_id"])
    op.create_table(
        "pool_geocode_cache",
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pool_geocode_cache")
    op.drop_index("ix_pool_returns_order", "pool_returns")
    op.drop_table("pool_returns")
    op.drop_index("ix_pool_rejections_order", "pool_rejections")
    op.drop_table("pool_rejections")
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("pool_reservations") as batch:
        for column in ("campaign", "pickup_node", "dest_lon", "dest_lat"):
            batch.drop_column(column)
