"""Kits and channel shares (issue 9): the components of each kit SKU.

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


def downgrade() -> None:
    op.drop_table("pool_kits")
