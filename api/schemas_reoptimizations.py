"""Request and response bodies of ``/v1/reoptimizations`` (re-optimization before a promotion)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from api.schemas import Channel, Id, NonNegative, OrderId, Strict, Timestamp
from router.pool.reoptimizations import (
    MAX_NODE_IDS,
    MAX_ORDER_IDS,
    MAX_TIME_LIMIT,
    JobView,
    ReoptimizationRequest,
    Selection,
)


def _number_or_share(value: Any) -> Any:
    """A JSON integer or a string (its content is checked by the pool, naming the rule)."""
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError(
        "max_moves_format", 'max_moves is a number of orders (250) or a share ("10%")'
    )


MaxMoves = Annotated[int | str, BeforeValidator(_number_or_share)]


class ReoptimizationIn(Strict):
    """Which held reservations to re-decide (every given selector must match), and the
    churn rule (``max_moves``, ``move_cost`` or both)."""

    channel: Channel | None = Field(None, description="Orders routed for this channel.")
    campaign: Id | None = Field(None, description="Orders of this campaign.")
    node_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_NODE_IDS)] | None = Field(
        None, description="Orders holding a reservation at one of these nodes."
    )
    created_before: Timestamp | None = Field(
        None, description="Orders whose held reservations were all created before this time."
    )
    order_ids: Annotated[list[OrderId], Field(min_length=1, max_length=MAX_ORDER_IDS)] | None = (
        Field(None, description="These orders.")
    )
    max_moves: MaxMoves | None = Field(
        None, description='At most this many orders move: a number, or a share such as "10%".'
    )
    move_cost: NonNegative | None = Field(None, description="Cost added per moved order.")
    time_limit: (
        Annotated[float, Field(strict=True, gt=0, le=MAX_TIME_LIMIT, allow_inf_nan=False)] | None
    ) = Field(None, description="Seconds the solve may take (default: the server's).")

    def to_request(self) -> ReoptimizationRequest:
        return ReoptimizationRequest(
            Selection(
                channel=self.channel,
                campaign=self.campaign,
                node_ids=tuple(self.node_ids) if self.node_ids is not None else None,
                created_before=self.created_before,
                order_ids=tuple(self.order_ids) if self.order_ids is not None else None,
            ),
            max_moves=self.max_moves,
            move_cost=self.move_cost,
            time_limit=self.time_limit,
        )


class ProgressOut(BaseModel):
    phase: str = Field(description="queued, snapshot, the solver's phase, then done.")
    best_cost: float | None = Field(None, description="Best cost found so far (moves included).")
    bound: float | None = Field(None, description="Best proven lower bound so far.")


class ReoptimizationOut(BaseModel):
    reoptimization_id: str
    state: Literal["queued", "running", "ready", "failed", "applied"]
    request: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    applied_at: datetime | None
    attempts: int = Field(description="Runs started (a run whose process stopped is re-run).")
    progress: ProgressOut | None
    plan: dict | None = Field(
        None,
        description="Once ready: KPIs before/after, saving, orders moved, gap to the lower "
        "bound, skipped orders; once applied, what apply did.",
    )
    error: dict | None = Field(None, description="Why a failed job failed (rule, detail).")
    moves_url: str

    @classmethod
    def of(cls, view: JobView) -> ReoptimizationOut:
        return cls(
            reoptimization_id=view.job_id,
            state=view.state,  # type: ignore[arg-type]
            request=view.request,
            created_at=view.created_at,
            started_at=view.started_at,
            finished_at=view.finished_at,
            applied_at=view.applied_at,
            attempts=view.attempts,
            progress=ProgressOut(**view.progress) if view.progress else None,
            plan=view.plan,
            error=view.error,
            moves_url=f"/v1/reoptimizations/{view.job_id}/moves.csv",
        )
