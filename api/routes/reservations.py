"""Reservations: list by order, commit (shipped) and release (cancelled)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from api.deps import MetricsDep, OmsKey, PoolDep, RequestIdDep
from api.metrics import count_closed
from api.schemas import Id, OrderId, ReservationList, ReservationOut

router = APIRouter(prefix="/v1", tags=["reservations"])
Action = Literal["commit", "release"]


@router.get("/orders/{order_id}/reservations", response_model=ReservationList)
def reservations_of_order(order_id: OrderId, pool: PoolDep, _key: OmsKey) -> ReservationList:
    return ReservationList.of(pool.reservations_of(order_id), order_id)


@router.post("/orders/{order_id}/{action}", response_model=ReservationList)
def close_order(
    order_id: OrderId,
    action: Action,
    pool: PoolDep,
    principal: OmsKey,
    metrics: MetricsDep,
    request_id: RequestIdDep,
) -> ReservationList:
    """Commit or release every held reservation of the order (a repeat is a no-op)."""
    closed = pool.close_order(order_id, action, actor=principal.key_id, request_id=request_id)
    count_closed(metrics, action, closed.closed_now)
    return ReservationList.of(closed.reservations, order_id)


@router.get("/reservations/{reservation_id}", response_model=ReservationOut)
def get_reservation(reservation_id: Id, pool: PoolDep, _key: OmsKey) -> ReservationOut:
    return ReservationOut.of(pool.reservation(reservation_id))


@router.post("/reservations/{reservation_id}/{action}", response_model=ReservationOut)
def close_reservation(
    reservation_id: Id,
    action: Action,
    pool: PoolDep,
    principal: OmsKey,
    metrics: MetricsDep,
    request_id: RequestIdDep,
) -> ReservationOut:
    """Commit or release one reservation (a repeat of the same action is a no-op)."""
    closed = pool.close_reservations(
        [reservation_id], action, actor=principal.key_id, request_id=request_id
    )
    count_closed(metrics, action, closed.closed_now)
    return ReservationOut.of(closed.reservations[0])
