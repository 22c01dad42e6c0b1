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
def metrics(metrics: MetricsDep, _key: AnyKey) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
