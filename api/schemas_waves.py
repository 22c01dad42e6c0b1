"""Request and response bodies of the wave endpoints (``POST /v1/orders``, ``/v1/waves``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas import (
    HoldSeconds,
    OrderIn,
    ReservationOut,
    RouteResponse,
)
from router.pool.service import DEFAULT_HOLD_SECONDS
from router.pool.waves import MAX_CALLBACK_URL, OrderView, Queued, WaveView


class QueueRequest(OrderIn):
    """An order that can wait for its channel's wave."""

    hold_seconds: HoldSeconds = Field(
        DEFAULT_HOLD_SECONDS, description="How long the reservations hold once routed."
    )
    callback_url: Annotated[str, Field(min_length=1, max_length=MAX_CALLBACK_URL)] | None = Field(
        None, description="POSTed a signed `order.routed` event once the order is routed."
    )


class QueuedOut(BaseModel):
    order_id: str
    state: Literal["queued"]
    wave_id: str
    planned_close_at: datetime
    replayed: bool

    @classmethod
    def of(cls, queued: Queued) -> QueuedOut:
        return cls.model_validate(queued, from_attributes=True)


class RejectionOut(BaseModel):
    rule: str
    detail: str


class CallbackOut(BaseModel):
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None


class OrderOut(BaseModel):
    order_id: str
    state: Literal["queued", "routed", "rejected"]
    wave_id: str
    channel: str
    queued_at: datetime
    routed_at: datetime | None
    repaired: bool = Field(
        description="The joint plan's stock was taken meanwhile; routed alone on what was left."
    )
    result: RouteResponse | None
    reservations: list[ReservationOut] = Field(
        description="The order's reservations as they are now (held, committed, ...)."
    )
    rejection: RejectionOut | None
    callback: CallbackOut | None

    @classmethod
    def of(cls, view: OrderView) -> OrderOut:
        return cls(
            order_id=view.order_id,
            state=view.state,  # type: ignore[arg-type]
            wave_id=view.wave_id,
            channel=view.channel,
            queued_at=view.queued_at,
            routed_at=view.routed_at,
            repaired=view.repaired,
            result=RouteResponse.of(view.result) if view.result is not None else None,
            reservations=[ReservationOut.of(r) for r in view.reservations],
            rejection=RejectionOut(**view.rejection) if view.rejection else None,
            callback=CallbackOut(
                state=view.callback_state,  # type: ignore[arg-type]
                attempts=view.callback_attempts,
                last_error=view.callback_error,
            )
            if view.callback_state
            else None,
        )


class SolveKpisOut(BaseModel):
    orders: int
    status: str | None = Field(None, description="optimal | feasible | time_limit | failed")
    cost: float | None = Field(None, description="Cost of the joint answer on the snapshot.")
    lower_bound: float | None = None
    gap: float | None = Field(None, description="Proven gap of the joint answer to the bound.")
    splits: int | None = None
    seconds: float


class WaveKpisOut(BaseModel):
    orders_routed: int
    orders_rejected: int
    orders_repaired: int
    cost: float = Field(description="Total cost of what was reserved.")
    splits: int
    shipments: int
    units: int
    unfilled_units: int
    fill_rate: float
    store_unit_share: float
    solve: SolveKpisOut
    reserve_seconds: float


class WaveOut(BaseModel):
    wave_id: str
    channel: str
    state: Literal["open", "closed", "solving", "done"]
    orders: int
    opened_at: datetime
    planned_close_at: datetime
    closed_at: datetime | None
    close_reason: Literal["window", "size", "demand"] | None
    solve_attempts: int
    done_at: datetime | None
    kpis: WaveKpisOut | None

    @classmethod
    def of(cls, view: WaveView) -> WaveOut:
        return cls.model_validate(view, from_attributes=True)
