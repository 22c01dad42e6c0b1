"""The FastAPI application: ``create_app()`` wires the pool, the routers and the
cross-cutting pieces (problem+json errors, request ids, metrics, expiry sweep)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api import logs, problems
from api.metrics import Metrics, count_closed
from api.middleware import RequestContextMiddleware, request_id_middleware_options
from api.routes import (
    campaigns,
    channels,
    explanations,
    health,
    inventory,
    kits,
    nodes,
    profiles,
    rejections,
    reoptimizations,
    reservations,
    returns,
    route,
    waves,
)
from router.geocode import AddressGeocoder, GeocoderSettings
from router.pool import Pool
from router.pool.callbacks import CallbackSettings, deliver_due
from router.pool.geocache import PoolGeocodeCache
from router.pool.reoptimizations import Reoptimizations, ReoptimizationSettings
from router.pool.waves import Waves, WaveSettings

log = logging.getLogger("omniroute.api")
DEFAULT_SWEEP_SECONDS = 5.0
DEFAULT_WAVE_TICK_SECONDS = 0.5


async def _sweep_expired(pool: Pool, metrics: Metrics, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            expired = await run_in_threadpool(pool.expire_due)
            count_closed(metrics, "expire", expired)
            await run_in_threadpool(pool.expire_locks_due)  # campaign windows that ended
            await run_in_threadpool(pool.prune_idempotency)
        except Exception:  # a failed sweep is retried at the next tick
            log.exception("expiry sweep failed")


# --- waves (issue 8): the background closer and the callback outbox ------------------------


async def _run_periodically(run, wakeup: asyncio.Event, every: float, what: str) -> None:
    """Call ``run`` (blocking, in the thread pool) every ``every`` seconds or when woken.

    Used for waves (close due waves, solve closed ones) and re-optimization jobs (run
    queued ones, restart those whose process stopped); a failure leaves the work
    claimable, and the next tick (or another process) retries it."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=every)
        wakeup.clear()
        try:
            await run_in_threadpool(run)
        except Exception:
            log.exception("%s failed", what)


async def _deliver_callbacks(pool: Pool, settings: CallbackSettings, every: float) -> None:
    import httpx

    with httpx.Client(follow_redirects=False) as client:
        while True:
            await asyncio.sleep(every)
            try:
                await run_in_threadpool(deliver_due, pool, settings, client)
            except Exception:  # delivery is retried at the next tick
                log.exception("callback delivery failed")


def create_app(
    pool: Pool | None = None,
    *,
    sweep_seconds: float = DEFAULT_SWEEP_SECONDS,
    wave_tick_seconds: float = DEFAULT_WAVE_TICK_SECONDS,
) -> FastAPI:
    """Build the app; without ``pool`` it opens (and migrates) ``OMNIROUTE_DATABASE_URL``.

    ``sweep_seconds <= 0`` turns the background expiry sweep off (tests call
    ``pool.expire_due()`` themselves).
    """
    logs.configure_unless_configured()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = app.state.pool is None
        if owned:
            app.state.pool = await run_in_threadpool(
                functools.partial(Pool.open, background_checkpoint=True)
            )
        await run_in_threadpool(app.state.pool.read_model)
        app.state.geocoder = AddressGeocoder(
            GeocoderSettings.from_env(),
            PoolGeocodeCache(app.state.pool.db, app.state.pool.clock),
        )
        sweeper = (
            asyncio.create_task(_sweep_expired(app.state.pool, metrics, sweep_seconds))
            if sweep_seconds > 0
            else None
        )
        callback_settings = CallbackSettings.from_env()
        app.state.waves = Waves(
            app.state.pool,
            WaveSettings.from_env(),
            callbacks_enabled=callback_settings.enabled,
        )
        app.state.wave_wakeup = asyncio.Event()
        app.state.reoptimizations = Reoptimizations(
            app.state.pool, ReoptimizationSettings.from_env()
        )
        app.state.reoptimization_wakeup = asyncio.Event()
        background = (
            [
                asyncio.create_task(
                    _run_periodically(
                        app.state.waves.run_due,
                        app.state.wave_wakeup,
                        wave_tick_seconds,
                        "wave closer",
                    )
                ),
                asyncio.create_task(
                    _deliver_callbacks(app.state.pool, callback_settings, wave_tick_seconds)
                ),
                asyncio.create_task(
                    _run_periodically(
                        app.state.reoptimizations.run_due,
                        app.state.reoptimization_wakeup,
                        wave_tick_seconds,
                        "re-optimization runner",
                    )
                ),
            ]
            if wave_tick_seconds > 0
            else []
        )
        try:
            yield
        finally:
            for task in [sweeper, *background]:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if owned:
                app.state.pool.close()

    app = FastAPI(
        title="omniroute",
        version="1.0",
        summary="Real-time order routing over one omnichannel inventory pool.",
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.metrics = metrics
    problems.install(app)
    # rejections before reservations: POST /v1/orders/{id}/{action} would match it first.
    for module in (
        route,
        rejections,
        reservations,
        returns,
        inventory,
        nodes,
        campaigns,
        waves,
        reoptimizations,
        explanations,
        profiles,
        kits,
        channels,
        health,
    ):
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # Added last, so outermost: the request id is set before anything else runs.
    app.add_middleware(CorrelationIdMiddleware, **request_id_middleware_options())
    return app
