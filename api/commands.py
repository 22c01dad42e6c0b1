"""Service commands of the ``omniroute`` CLI: ``serve``, ``load``, ``keys create|list|revoke``.

``router.cli`` calls :func:`register` to add them to its typer app.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
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
    from router.pool.reoptimizations import ReoptimizationSettings
    from router.pool.waves import WaveSettings

    try:
        WaveSettings.from_env()
        CallbackSettings.from_env()
        ReoptimizationSettings.from_env()
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


EXPIRES_IN = re.compile(r"(\d+)([mhdw])")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _key_error(error) -> None:
    typer.echo(f"error: --{error.field.replace('_', '-')}: {error.message}", err=True)
    raise typer.Exit(code=2) from error


def expiry(expires_in: str | None, expires_at: str | None, now: datetime) -> datetime | None:
    """The naive-UTC expiry of ``--expires-in`` (30d, 12h, 90m, 2w) or ``--expires-at``
    (RFC 3339 with an offset); raise ``typer.BadParameter`` naming the option."""
    if expires_in is not None and expires_at is not None:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        match = EXPIRES_IN.fullmatch(expires_in.strip())
        if match is None or int(match[1]) == 0:
            raise typer.BadParameter(
                f"--expires-in must be a positive count and a unit m, h, d or w, "
                f"e.g. 30d (got {expires_in!r})"
            )
        seconds = int(match[1]) * UNIT_SECONDS[match[2]]
        if seconds > 100 * 365 * 86400:
            raise typer.BadParameter(f"--expires-in must be at most 100 years (got {expires_in!r})")
        return now + timedelta(seconds=seconds)
    if expires_at is not None:
        try:
            moment = datetime.fromisoformat(expires_at.strip())
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise typer.BadParameter(
                f"--expires-at must be an RFC 3339 time with an offset, "
                f"e.g. 2027-01-31T18:00:00+08:00 (got {expires_at!r})"
            )
        return moment.astimezone(UTC).replace(tzinfo=None)
    return None


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Option(help="oms (route, reservations, availability) or admin.")],
    label: Annotated[str | None, typer.Option(help="Free text, e.g. who holds the key.")] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Expire after 90m, 12h, 30d or 2w.")] = None,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="Expire at this RFC 3339 time with an offset.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it (the only time it is shown)."""
    from router.pool.errors import PoolError

    until = expiry(expires_in, expires_at, datetime.now(UTC).replace(tzinfo=None))
    pool = _open_pool(database_url)
    try:
        key = pool.create_key(role, label=label, expires_at=until)
    except PoolError as error:
        _key_error(error)
    finally:
        pool.close()
    typer.echo(key)


def _utc(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds") + "Z"


@keys_app.command("list")
def list_keys(database_url: DatabaseUrl = None) -> None:
    """List the keys (id, role, label, created, expires, revoked; never the secret)."""
    pool = _open_pool(database_url)
    try:
        infos = pool.list_keys()
    finally:
        pool.close()
    rows = [("KEY_ID", "ROLE", "CREATED", "EXPIRES", "REVOKED", "LABEL")]
    rows += [
        (k.key_id, k.role, _utc(k.created_at), _utc(k.expires_at), _utc(k.revoked_at), k.label or "-")
        for k in infos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        typer.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[5]]))


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The KEY_ID column of `omniroute keys list`.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key: it gets 401 from now on (a running server forgets it within 30 s)."""
    from router.pool.errors import PoolError

    pool = _open_pool(database_url)
    try:
        pool.revoke_key(key_id)
    except PoolError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(code=2) from error
    finally:
        pool.close()
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``load`` and ``keys`` to the omniroute CLI."""
    app.command("serve")(serve)
    app.command("load")(load)
    app.add_typer(keys_app, name="keys")
