"""Returns: choose where a returned line goes back; take it into the pool on receipt."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import GeocoderDep, MetricsDep, OmsKey, PoolDep, RequestIdDep
from api.locate import coordinates, place_of
from api.routes.route import IdempotencyKey
from api.schemas import Id, ReceiptIn, ReturnIn, ReturnOut

router = APIRouter(prefix="/v1", tags=["returns"])


@router.post("/returns", status_code=201, response_model=ReturnOut)
def create_return(
    body: ReturnIn,
    pool: PoolDep,
    principal: OmsKey,
    geocoder: GeocoderDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKey = None,
) -> ReturnOut:
    """Choose the return node for shipped units of a line; they are expected there."""
    place = place_of(body.customer, body.address, geocoder)
    view = pool.create_return(
        body.to_request(coordinates(place)),
        actor=principal.key_id,
        idempotency_key=idempotency_key,
    )
    if not view.replayed:
        metrics.returns.labels("expected").inc(view.qty)
    return ReturnOut.of(view)


@router.get("/returns/{return_id}", response_model=ReturnOut)
def get_return(return_id: Id, pool: PoolDep, _key: OmsKey) -> ReturnOut:
    return ReturnOut.of(pool.return_of(return_id))


@router.post("/returns/{return_id}/receipt", response_model=ReturnOut)
def receive_return(
    return_id: Id,
    body: ReceiptIn,
    pool: PoolDep,
    principal: OmsKey,
    metrics: MetricsDep,
    request_id: RequestIdDep,
) -> ReturnOut:
    """The node received the units: sellable ones go back on sale, the rest are kept
    as unsellable. A repeat of the same receipt changes nothing."""
    view = pool.receive_return(
        return_id,
        sellable=body.sellable,
        unsellable=body.unsellable,
        actor=principal.key_id,
        request_id=request_id,
    )
    if not view.replayed:
        metrics.returns.labels("sellable").inc(body.sellable)
        metrics.returns.labels("unsellable").inc(body.unsellable)
    return ReturnOut.of(view)
