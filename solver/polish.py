"""The last steps while the bound is not yet tight: the whole contested part as one
MIP over more candidates, and a tiny batch as one unpruned MIP whose own bound is a
bound for the batch."""

from __future__ import annotations

from solver.budget import part_abs_gap, remaining
from solver.cost import evaluate
from solver.mip import MipParams, SolveStatus, solve_mip
from solver.model import ModelInput, build_model, start_vector
from solver.params import stop_requested
from solver.part_mip import solve_part


def polish(problem, incumbent, contested, params, clock, emit, reserve: float = 0.0):
    """The whole contested part as one MIP, warm-started from the incumbent,
    leaving ``reserve`` seconds of the time limit to later steps."""

    def on_progress(best: float, bound: float) -> None:
        emit("joint MIP polish", {"part_best": best, "part_bound": bound})

    units, status = solve_part(
        problem,
        incumbent,
        contested,
        params,
        remaining(params, clock, reserve),
        evaluate(problem, incumbent).total_cost,
        clock,
        start=incumbent,
        per_line=params.polish_candidates_per_line,
        on_progress=on_progress,
        search=True,
    )
    return units, status == SolveStatus.OPTIMAL


def solve_exactly(problem, incumbent, params, clock, batch_cost, rel_gap=None):
    """Small batches: the whole model over every candidate, so that the MIP's
    own bound is a bound for the batch. Returns (units, bound, finished).

    ``rel_gap`` defaults to a quarter of the batch's.
    """
    part = ModelInput.whole(problem)
    model, v, _keys, _rows = build_model(problem, part)
    mip = solve_mip(
        model,
        MipParams(
            time_limit=remaining(params, clock, 0.0),
            rel_gap=params.rel_gap / 4 if rel_gap is None else rel_gap,
            abs_gap=part_abs_gap(params, batch_cost) if rel_gap is None else 1e-6,
            seed=params.seed,
        ),
        start=start_vector(problem, part, v, incumbent),
        stop=stop_requested(clock),
    )
    if mip.x is None:
        return incumbent, mip.bound, False
    units = v.extract(mip.x)
    if evaluate(problem, units).total_cost > batch_cost:
        units = incumbent
    return units, mip.bound, mip.status == SolveStatus.OPTIMAL
