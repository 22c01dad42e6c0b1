"""The last steps while the bound is not yet tight: the whole contested part as one
MIP over more candidates, and a tiny batch as one unpruned MIP whose own bound is a
bound for the batch."""

from __future__ import annotations

from dataclasses import replace

from solver.budget import part_abs_gap, remaining
from solver.child import PATIENCE, InChild
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
    units, bound, finished = exact_mip(
        problem,
        incumbent,
        MipParams(
            time_limit=remaining(params, clock, 0.0),
            rel_gap=params.rel_gap / 4 if rel_gap is None else rel_gap,
            abs_gap=part_abs_gap(params, batch_cost) if rel_gap is None else 1e-6,
            seed=params.seed,
        ),
        stop=stop_requested(clock),
    )
    if units is None or evaluate(problem, units).total_cost > batch_cost:
        units = incumbent
    return units, bound, finished


def start_exact_mip(
    problem, incumbent, mip_params: MipParams, time_left, background: bool = True
) -> InChild:
    """:func:`exact_mip` on the other core (:mod:`solver.child`). The model is
    built here first; then the MIP gets ``time_left()`` seconds, and its one
    answer, (units or ``None``, bound, finished), comes back by then."""
    model, v, start = _unpruned(problem, incumbent)
    mip_params = replace(mip_params, time_limit=max(time_left(), 0.0))
    return InChild(
        lambda: [_solved(model, v, start, mip_params)],
        [mip_params.time_limit + PATIENCE],
        background,
    )


def exact_mip(problem, incumbent, mip_params: MipParams, stop=None):
    """The unpruned model (every order, every candidate, full stock) as one MIP
    from ``incumbent``: (units or ``None``, its proven bound of the batch, finished)."""
    model, v, start = _unpruned(problem, incumbent)
    return _solved(model, v, start, mip_params, stop)


def _unpruned(problem, incumbent):
    part = ModelInput.whole(problem)
    model, v, _keys, _rows = build_model(problem, part)
    return model, v, start_vector(problem, part, v, incumbent)


def _solved(model, v, start, mip_params: MipParams, stop=None):
    mip = solve_mip(model, mip_params, start=start, stop=stop)
    units = None if mip.x is None else v.extract(mip.x)
    return units, mip.bound, mip.status == SolveStatus.OPTIMAL
