"""Waves: queue an order for the joint solve, read orders and waves, close a wave."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import GeocoderDep, OmsKey
from api.locate import coordinates, place_of
from api.routes.route import IdempotencyKey
from api.schemas_waves import OrderOut, QueuedOut, QueueRequest, WaveOut
from router.pool.waves import Waves

router = APIRouter(prefix="/v1", tags=["waves"])


async def get_waves(request: Request) -> Waves:
    return request.app.state.waves


WavesDep = Annotated[Waves, Depends(get_waves)]


@router.post("/orders", status_code=202, response_model=QueuedOut)
def queue_order(
    body: QueueRequest,
    waves: WavesDep,
    principal: OmsKey,
    geocoder: GeocoderDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedOut:
    """Queue an order that can wait; it is routed when its channel's wave closes. An
    `address` is placed now; the wave routes the order to that place."""
    place = place_of(body.customer, body.address, geocoder)
    queued = waves.queue(
        body.to_order(coordinates(place)),
        hold_seconds=body.hold_seconds,
        callback_url=body.callback_url,
        actor=principal.key_id,
        idempotency_key=idempotency_key,
    )
    return QueuedOut.of(queued)


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: str, waves: WavesDep, _key: OmsKey) -> OrderOut:
    """A queued order: its state, and once routed its allocation and reservations."""
    return OrderOut.of(waves.order(order_id))


@router.get("/waves/{wave_id}", response_model=WaveOut)
def get_wave(wave_id: str, waves: WavesDep, _key: OmsKey) -> WaveOut:
    """A wave: state, planned close, and once done its KPIs."""
    return WaveOut.of(waves.wave(wave_id))


@router.post("/waves/{wave_id}/close", status_code=202, response_model=WaveOut)
async def close_wave(wave_id: str, waves: WavesDep, _key: OmsKey, request: Request) -> Response:
    """Close the wave now; it is solved in the background (poll ``GET /v1/waves/{id}``)."""
    view = await run_in_threadpool(waves.close, wave_id)
    request.app.state.wave_wakeup.set()  # the closer solves it now, not at its next tick
    return Response(
        WaveOut.of(view).model_dump_json(), status_code=202, media_type="application/json"
    )
