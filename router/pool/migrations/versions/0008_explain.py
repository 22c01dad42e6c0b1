"""Why this node: ``pool_explanations`` keeps, per routed order, the arrays of its
routing decision (``router.explain.OrderContext`` as JSON) for
``GET /v1/orders/{id}/explanation``.

Revision ID: 0008_explain
Revises: 0007_reoptimizations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_explain"
down_revision = "0007_reoptimizations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_explanations",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("routed_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pool_explanations")
