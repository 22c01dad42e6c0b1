"""Fixtures of the service tests: a pool on SQLite or on the real PostgreSQL (a fresh
schema per test), a fake clock, API keys, a small network, a real uvicorn server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import typer

from api.commands import register
from benchmarks.load import free_port, wait_until_ready
from router.pool import Pool
from router.pool.inventory import SetRow
from router.pool.nodes import NodeSpec

PG_DSN = os.environ.get("OMNIROUTE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[2]


def _pg_skip_reason() -> str | None:
    """None when the test PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # any failure means: skip, and say why
        return f"PostgreSQL at {PG_DSN} is not reachable ({error.__class__.__name__}: {error})"
    return None


PG_SKIP = _pg_skip_reason()


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a new, empty schema; dropped afterwards."""
    if PG_SKIP:
        if os.environ.get("OMNIROUTE_REQUIRE_POSTGRES"):
            # CI starts PostgreSQL itself: a skip there would hide a real failure.
            pytest.fail(PG_SKIP)
        pytest.skip(PG_SKIP)
    import psycopg

    schema = f"omr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    rest = PG_DSN.split("://", 1)[1]
    try:
        yield f"postgresql+psycopg://{rest}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class FakeClock:
    """Naive-UTC clock that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """Every storage test runs on both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pool.db'}"
    else:
        with pg_schema_url() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pool.db'}"


@pytest.fixture
def pool(db_url, clock) -> Iterator[Pool]:
    pool = Pool.open(db_url, clock=clock, index_ttl=0.0)
    yield pool
    pool.close()


@pytest.fixture
def sqlite_pool(sqlite_url, clock) -> Iterator[Pool]:
    pool = Pool.open(sqlite_url, clock=clock, index_ttl=0.0)
    yield pool
    pool.close()


# A small network around Shanghai, by hand: W1 is a warehouse 0 km from the
# customer C, S1 a store 10 km away, S2 a store 120 km away with a 50 km reach.
CUSTOMER = (31.2304, 121.4737)
NETWORK = [
    NodeSpec(
        "W1",
        "warehouse",
        31.2304,
        121.4737,
        ship_fixed=10.0,
        ship_per_km=0.05,
        handling_per_unit=1.0,
    ),
    NodeSpec(
        "S1", "store", 31.3203, 121.4737, ship_fixed=4.0, ship_per_km=0.05, handling_per_unit=2.0
    ),
    NodeSpec(
        "S2",
        "store",
        32.3097,
        121.4737,
        ship_fixed=1.0,
        ship_per_km=0.01,
        handling_per_unit=0.5,
        max_km=50.0,
    ),
]


def seed_network(pool: Pool, stock: dict[tuple[str, str], int]) -> None:
    for spec in NETWORK:
        pool.create_node(spec)
    if stock:
        pool.set_stock([SetRow(n, s, q) for (n, s), q in stock.items()], actor="test")


SERVE_SCRIPT = (
    "import sys, typer; from api.commands import register; "
    "app = typer.Typer(); register(app); app(sys.argv[1:])"
)


@contextlib.contextmanager
def running_server(
    database_url: str,
    *,
    port: int | None = None,
    kill: bool = False,
    workers: int = 1,
    log_dir: Path | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[str]:
    """``omniroute serve`` (through ``api.commands``) in a subprocess; yields its base URL.

    ``kill`` ends it with SIGKILL (no shutdown hooks) instead of SIGTERM; ``log_dir``
    keeps its stdout and stderr there (``stdout.txt``, ``stderr.txt``).
    """
    port = port or free_port()
    env = {**os.environ, "OMNIROUTE_DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-c", SERVE_SCRIPT, "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers), *args]
    with contextlib.ExitStack() as files:
        out, err = (
            (
                files.enter_context(open(log_dir / "stdout.txt", "wb")),
                files.enter_context(open(log_dir / "stderr.txt", "wb")),
            )
            if log_dir is not None
            else (subprocess.DEVNULL, subprocess.DEVNULL)
        )
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=err)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base, proc, timeout=30)
            yield base
        finally:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def served_clients(
    database_url: str, stock: dict[tuple[str, str], int]
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The small network seeded with ``stock`` behind ``omniroute serve``:
    (client with an admin key, client with an oms key)."""
    pool = Pool.open(database_url)
    seed_network(pool, stock)
    admin, oms = pool.create_key("admin"), pool.create_key("oms")
    pool.close()
    with (
        running_server(database_url) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as a,
        httpx.Client(base_url=base, headers={"X-API-Key": oms}) as o,
    ):
        yield a, o


@pytest.fixture
def cli() -> typer.Typer:
    """The service commands (``keys``, ``load``, ...) on a typer app of their own."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """omniroute (test copy)"""

    register(app)
    return app
