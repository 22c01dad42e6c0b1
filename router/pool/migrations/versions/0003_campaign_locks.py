"""Campaign stock locks: the locked layer of balances, its ledger delta, campaigns, locks.

Revision ID: 0003_campaign_locks
Revises: 0001_pool
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_campaign_locks"
down_revision = "0001_pool"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool_balances") as batch:
        batch.add_column(sa.Column("locked", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("pool_ledger") as batch:
        batch.add_column(sa.Column("d_locked", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "pool_campaigns",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("allow_pool", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "pool_campaign_locks",
        sa.Column("lock_id", sa.String(32), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.String(64),
            sa.ForeignKey("pool_campaigns.campaign_id"),
            nullable=False,
        ),
        sa.Column("node_pk", sa.Integer, sa.ForeignKey("pool_nodes.pk"), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger, nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("returned", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("ends_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
    )
    op.create_index(
        "ix_pool_campaign_locks_campaign", "pool_campaign_locks", ["campaign_id", "status"]
    )
    op.create_index("ix_pool_campaign_locks_due", "pool_campaign_locks", ["status", "ends_at"])


def downgrade() -> None:
    op.drop_table("pool_campaign_locks")
    op.drop_table("pool_campaigns")
    with op.batch_alter_table("pool_ledger") as batch:
        batch.drop_column("d_locked")
    with op.batch_alter_table("pool_balances") as batch:
        batch.drop_column("locked")
