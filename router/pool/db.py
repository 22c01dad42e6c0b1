"""Database engine of the pool: SQLite (default) or PostgreSQL, and migrations.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (a committed transaction
survives a killed process) and a busy timeout, and every write transaction
starts with ``BEGIN IMMEDIATE`` so that a read-then-write transaction can never
fail half-way on a lock upgrade. Writers of one process queue on a Python lock
rather than spinning on SQLite's busy handler; other processes (``omniroute
load`` while the server runs) still wait on the busy timeout.

PostgreSQL runs at READ COMMITTED; oversell safety comes from conditional
updates (see ``router.pool.routing``), not from the isolation level.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from router.pool.errors import InvalidInput

DEFAULT_DATABASE_URL = "sqlite:///./omniroute.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_ID = 7_146_213_901  # pg_advisory lock taken while migrating


def database_url_from_env() -> str:
    """``OMNIROUTE_DATABASE_URL``, or an SQLite file in the working directory."""
    return os.environ.get("OMNIROUTE_DATABASE_URL") or DEFAULT_DATABASE_URL


def _configure_sqlite(engine: Engine, *, background_checkpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if background_checkpoint:
            # The committing request would otherwise run every 1000th-page checkpoint
            # (copy + fsync) itself: that is the p99 of routing. A thread does it instead.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("pool_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # psycopg prepares a statement after 5 runs; PostgreSQL may then switch to a
        # generic plan, which for "node_pk = ANY(:nodes) AND sku = ANY(:skus)" is a scan
        # of the whole balance table. Plans stay custom: planning costs microseconds.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode TO force_custom_plan")
        dbapi_connection.commit()


@dataclass
class Database:
    """One engine plus the transaction helpers every pool operation uses."""

    url: str
    background_checkpoint: bool = False
    """SQLite: checkpoint the WAL from a background thread every second (servers)."""
    engine: Engine = field(init=False)
    is_sqlite: bool = field(init=False)
    _write_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _checkpointer: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        try:
            self._create_engine()
        except (ArgumentError, NoSuchModuleError) as error:
            raise InvalidInput(
                f"database URL {self.url!r} not understood: {error}",
                field="database_url",
                rule="sqlalchemy_url",
            ) from None
        except ModuleNotFoundError as error:
            # A plain `pip install omniroute` has no PostgreSQL driver: say which extra has it.
            hint = ""
            if error.name == "psycopg":
                hint = " (pip install 'omniroute[postgres]')"
            elif error.name == "psycopg2":
                hint = " (omniroute uses psycopg 3: postgresql+psycopg://, pip install 'omniroute[postgres]')"
            raise InvalidInput(
                f"database URL {self.url.split(':', 1)[0]}://... needs the Python module "
                f"{error.name!r}, which is not installed{hint}",
                field="database_url",
                rule="driver_installed",
            ) from None

    def _create_engine(self) -> None:
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                pool_size=8,
                max_overflow=8,
            )
            _configure_sqlite(self.engine, background_checkpoint=self.background_checkpoint)
            if self.background_checkpoint:
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_every_second, name="sqlite-checkpoint", daemon=True
                )
                self._checkpointer.start()
        else:
            self.engine = create_engine(self.url, pool_size=16, max_overflow=16, pool_pre_ping=True)
            _configure_postgresql(self.engine)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: commits on success, rolls back on any exception."""
        if self.is_sqlite:
            with self._write_lock, self.engine.connect() as conn:
                conn = conn.execution_options(pool_write=True)
                with conn.begin():
                    yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot on SQLite)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database file; never blocks writers."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cursor.close()
        finally:
            raw.close()

    def _checkpoint_every_second(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.checkpoint()
            except Exception:  # a failed checkpoint is retried a second later
                continue

    def dispose(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        self.engine.dispose()


def migrate(database: Database) -> None:
    """Bring the schema to the newest revision (safe to run from several processes)."""
    from alembic import command
    from alembic.config import Config

    script_location = str(resources.files("router.pool") / "migrations")
    config = Config()
    config.set_main_option("script_location", script_location)
    with database.write() as conn:
        if not database.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
