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
from api.routes import campaigns, health, inventory, nodes, reservations, route
from router.pool import Pool

log = logging.getLogger("omniroute.api")
DEFAULT_SWEEP_SECONDS = 5.0


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


def create_app(
    pool: Pool | None = None, *, sweep_seconds: float = DEFAULT_SWEEP_SECONDS
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
        sweeper = (
            asyncio.create_task(_sweep_expired(app.state.pool, metrics, sweep_seconds))
            if sweep_seconds > 0
            else None
        )
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
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
    for module in (route, reservations, inventory, nodes, campaigns, health):
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # Added last, so outermost: the request id is set before anything else runs.
    app.add_middleware(CorrelationIdMiddleware, **request_id_middleware_options())
    return app
