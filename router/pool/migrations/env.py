"""Alembic environment of the inventory pool.

Used programmatically (``router.pool.db.migrate``): the caller passes an open
connection in ``config.attributes["connection"]``. Run from the command line,
``alembic -x url=...`` or ``OMNIROUTE_DATABASE_URL`` names the database.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from router.pool.schema import metadata

config = context.config
target_metadata = metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "OMNIROUTE_DATABASE_URL", "sqlite:///./omniroute.db"
    )
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
