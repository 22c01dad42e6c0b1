"""Probes and metrics. The probes need no key (orchestrators call them); /metrics does."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import AnyKey, MetricsDep, PoolDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(pool: PoolDep) -> JSONResponse:
    """The database answers and the node read model is loaded."""
    ready = pool.ready()
    return JSONResponse(
        {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
    )


@router.get("/metrics")
def metrics(metrics: MetricsDep, pool: PoolDep, _key: AnyKey) -> Response:
    # Low-stock alerts live in the database (every worker raises them): counted there.
    counts = pool.alert_counts()
    lines = [
        "# HELP omniroute_low_stock_alerts_open Open low-stock alerts of the channels' "
        "sellable quantities, by channel.",
        "# TYPE omniroute_low_stock_alerts_open gauge",
        *(
            f'omniroute_low_stock_alerts_open{{channel="{c}"}} {n}'
            for c, n in sorted(counts.items())
        ),
    ]
    text = metrics.exposition() + ("\n".join(lines) + "\n").encode()
    return Response(text, media_type=CONTENT_TYPE_LATEST)
