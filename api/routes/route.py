"""POST /v1/route: route one order and reserve its allocation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import GeocoderDep, MetricsDep, OmsKey, PoolDep, RequestIdDep
from api.locate import coordinates, place_of
from api.metrics import count_route
from api.schemas import IdempotencyKeyValue, LocatedOut, RouteRequest, RouteResponse
from router.pool.errors import Busy, PoolError

router = APIRouter(prefix="/v1", tags=["route"])

IdempotencyKey = Annotated[
    IdempotencyKeyValue | None,
    Header(
        alias="Idempotency-Key",
        description="A retry with the same key returns the same answer and reserves once.",
    ),
]


@router.post("/route", response_model=RouteResponse)
def route_order(
    body: RouteRequest,
    pool: PoolDep,
    principal: OmsKey,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    geocoder: GeocoderDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Choose the nodes for every line and, unless `quote_only`, reserve the units."""
    try:
        place = place_of(body.customer, body.address, geocoder)
        result = pool.route(
            body.to_order(coordinates(place)),
            quote_only=body.quote_only,
            hold_seconds=body.hold_seconds,
            actor=principal.key_id,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )
    except PoolError as error:
        metrics.routes.labels("busy" if isinstance(error, Busy) else "rejected").inc()
        raise
    count_route(metrics, result)
    # The model is built once and dumped directly: returning it would make FastAPI
    # validate it a second time on the hottest endpoint. The schema stays documented
    # through response_model.
    response = RouteResponse.of(result)
    if place is not None:
        response.located = LocatedOut.of(place)
    return Response(response.model_dump_json(), media_type="application/json")
