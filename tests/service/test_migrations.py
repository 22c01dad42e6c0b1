"""The Alembic revisions shipped in router/pool/migrations build the schema the code uses."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from router.pool.db import Database, migrate
from router.pool.schema import metadata


def test_migrating_twice_is_a_no_op_and_matches_the_schema(db_url):
    database = Database(db_url)
    try:
        migrate(database)
        migrate(database)  # a second server start must not fail or change anything
        with database.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            tables = set(inspect(conn).get_table_names())
            for table in metadata.tables.values():
                columns = {c["name"] for c in inspect(conn).get_columns(table.name)}
                assert columns == {c.name for c in table.columns}, table.name
        config = Config()
        config.set_main_option("script_location", "router.pool:migrations")
        assert version == ScriptDirectory.from_config(config).get_current_head()
        assert set(metadata.tables) <= tables
    finally:
        database.dispose()
