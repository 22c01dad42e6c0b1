"""Service commands of the ``omniroute`` CLI: ``serve``, ``load``, ``keys create``.

``router.cli`` calls :func:`register` to add them to its typer app.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

UVICORN_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="OMNIROUTE_DATABASE_URL",
        help="SQLAlchemy URL; default sqlite:///./omniroute.db",
    ),
]


def _open_pool(database_url: str | None):
    from router.pool import Pool

    return Pool.open(database_url)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, 1-65535.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes, 1 or more (they share the database).")
    ] = 1,
    database_url: DatabaseUrl = None,
    log_level: Annotated[
        str, typer.Option(help=f"uvicorn's own log level: {', '.join(UVICORN_LOG_LEVELS)}.")
    ] = "warning",
) -> None:
    """Run the routing service (OpenAPI at /docs). Every log record is one JSON line on
    stderr with the request id; the address is printed on stdout at start."""
    import uvicorn

    from api.logs import log_config

    for ok, message in (
        (1 <= port <= 65535, f"--port: must be 1-65535, got {port}"),
        (workers >= 1, f"--workers: must be 1 or more, got {workers}"),
        (log_level in UVICORN_LOG_LEVELS, f"--log-level: must be one of {UVICORN_LOG_LEVELS}"),
    ):
        if not ok:
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code=2)
    if database_url:
        os.environ["OMNIROUTE_DATABASE_URL"] = database_url
    # Waves and callbacks (issue 8) are configured by environment: refuse bad values here,
    # with the variable's name, rather than in every worker.
    from router.pool.callbacks import CallbackSettings
    from router.pool.waves import WaveSettings

    try:
        WaveSettings.from_env()
        CallbackSettings.from_env()
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    # Migrate once before the workers start, so they do not race to do it.
    _open_pool(database_url).close()
    # Several workers: prometheus-client keeps the values in files of one folder so that
    # /metrics adds up all processes; it must be set before the workers import it.
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="omniroute-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(
        f"omniroute: listening on http://{shown_host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''})"
    )
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config(uvicorn_level=log_level),
            log_level=log_level,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def load(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder (omniroute-scenario/1).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Load a scenario's nodes, stock (on_hand = available) and penalties into the pool."""
    from router.pool.errors import PoolError
    from router.pool.scenario_load import load_into_pool
    from router.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(scenario_dir)
    except ScenarioError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    pool = _open_pool(database_url)
    try:
        summary = load_into_pool(pool, scenario)
    except PoolError as error:
        typer.echo(f"error: {error.field}: {error.message}", err=True)
        raise typer.Exit(code=2) from error
    finally:
        pool.close()
    typer.echo(f"loaded {summary.name}: {summary.nodes} nodes, {summary.stock_rows} stock rows")


keys_app = typer.Typer(
    help="API keys (stored hashed; a key is shown only once).", no_args_is_help=True
)


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Option(help="oms (route, reservations, availability) or admin.")],
    label: Annotated[str | None, typer.Option(help="Free text, e.g. who holds the key.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it (the only time it is shown)."""
    from router.pool.errors import PoolError

    pool = _open_pool(database_url)
    try:
        key = pool.create_key(role, label=label)
    except PoolError as error:
        typer.echo(f"error: --{error.field}: {error.message}", err=True)
        raise typer.Exit(code=2) from error
    finally:
        pool.close()
    typer.echo(key)


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``load`` and ``keys`` to the omniroute CLI."""
    app.command("serve")(serve)
    app.command("load")(load)
    app.add_typer(keys_app, name="keys")
