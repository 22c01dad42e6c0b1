"""API keys may expire: ``pool_api_keys.expires_at`` (naive UTC, NULL = never).

Revision ID: 0005_key_expiry
Revises: 0004_waves
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_key_expiry"
down_revision = "0004_waves"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pool_api_keys", sa.Column("expires_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("pool_api_keys") as batch:
        batch.drop_column("expires_at")
