"""Rejections: a node rejects or short-picks a line; the part is re-routed elsewhere."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import MetricsDep, OmsKey, PoolDep, RequestIdDep
from api.routes.route import IdempotencyKey
from api.schemas import LineRejectionIn, LineRejectionList, LineRejectionOut, OrderId

router = APIRouter(prefix="/v1", tags=["rejections"])


@router.post("/orders/{order_id}/rejections", response_model=LineRejectionOut)
def reject_line(
    order_id: OrderId,
    body: LineRejectionIn,
    pool: PoolDep,
    principal: OmsKey,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    idempotency_key: IdempotencyKey = None,
) -> LineRejectionOut:
    """Take `qty` units of the line off the node and route them again without it; the
    rest of the order stays where it is. A retry with the same Idempotency-Key moves
    nothing again and answers the same."""
    rejection = pool.reject(
        body.to_request(order_id),
        actor=principal.key_id,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    if not rejection.replayed:
        metrics.rejections.labels(rejection.kind, rejection.status).inc()
    return LineRejectionOut.of(rejection)


@router.get("/orders/{order_id}/rejections", response_model=LineRejectionList)
def rejections_of_order(order_id: OrderId, pool: PoolDep, _key: OmsKey) -> LineRejectionList:
    return LineRejectionList(
        order_id=order_id, rejections=[LineRejectionOut.of(r) for r in pool.rejections_of(order_id)]
    )
