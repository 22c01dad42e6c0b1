"""Re-optimization of held reservations: create a job, poll it, download its moves, apply it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import OmsKey, RequestIdDep
from api.schemas import Id
from api.schemas_reoptimizations import ReoptimizationIn, ReoptimizationOut
from router.pool.reoptimizations import Reoptimizations

router = APIRouter(prefix="/v1", tags=["reoptimizations"])


async def get_reoptimizations(request: Request) -> Reoptimizations:
    return request.app.state.reoptimizations


ReoptimizationsDep = Annotated[Reoptimizations, Depends(get_reoptimizations)]


@router.post("/reoptimizations", status_code=202, response_model=ReoptimizationOut)
async def create_reoptimization(
    body: ReoptimizationIn, jobs: ReoptimizationsDep, principal: OmsKey, request: Request
) -> Response:
    """Queue a re-optimization of the selected held reservations; poll its state."""
    view = await run_in_threadpool(jobs.create, body.to_request(), actor=principal.key_id)
    request.app.state.reoptimization_wakeup.set()
    return Response(
        ReoptimizationOut.of(view).model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/reoptimizations/{view.job_id}"},
    )


@router.get("/reoptimizations/{reoptimization_id}", response_model=ReoptimizationOut)
def get_reoptimization(
    reoptimization_id: Id, jobs: ReoptimizationsDep, _key: OmsKey
) -> ReoptimizationOut:
    """The job: state, progress (phase, best cost and bound so far), and its plan once ready."""
    return ReoptimizationOut.of(jobs.job(reoptimization_id))


@router.get("/reoptimizations/{reoptimization_id}/moves.csv", response_class=Response)
def get_moves(reoptimization_id: Id, jobs: ReoptimizationsDep, _key: OmsKey) -> Response:
    """The plan's diff per order: ``order_id,moved,old_nodes,new_nodes,old_cost,new_cost``."""
    return Response(
        jobs.moves_csv(reoptimization_id),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="reoptimization-{reoptimization_id}-moves.csv"'
        },
    )


@router.post("/reoptimizations/{reoptimization_id}/apply", response_model=ReoptimizationOut)
def apply_reoptimization(
    reoptimization_id: Id, jobs: ReoptimizationsDep, principal: OmsKey, request_id: RequestIdDep
) -> ReoptimizationOut:
    """Swap the moved orders' reservations in one transaction; 409 (and nothing changed)
    when a balance, reservation or node the plan touches changed since its snapshot, or
    when the plan was already applied."""
    view = jobs.apply(reoptimization_id, actor=principal.key_id, request_id=request_id)
    return ReoptimizationOut.of(view)
