"""The joint LP: the linear relaxation of *all* contested orders at once.

One LP over the whole contested part (each line's cheapest candidates, on what
the other orders leave) gives one global price vector for scarce stock and
capacity, and a fractional routing that sees every order's competition at once,
instead of blocks that decide blind to each other. HiGHS solves it when it is
moderate; above ``first_order_columns`` columns OR-Tools PDLP does (see
:mod:`solver.first_order_lp`), whose approximate answer is fine here: prices
only need to be nonnegative for the Lagrangian bound, and the routing is only
a guide that :mod:`solver.lp_rounding` repairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.bound import Prices
from solver.candidates import model_part
from solver.column_generation import extended_start
from solver.first_order_lp import dual_bound
from solver.lp_process import start_first_order_lp
from solver.lp_reduce import fold_single_shipments
from solver.mip import MipParams, solve_mip
from solver.model import ModelInput, build_model
from solver.params import stop_requested


@dataclass(frozen=True)
class JointLp:
    part: object
    vars: object
    x: np.ndarray
    prices: Prices
    solver: str
    seconds: float
    columns: int
    bound: float
    """A proven lower bound of the batch when the LP covered the whole batch
    (every order, every candidate, full stock), else ``-inf``."""
    converged: bool
    """The LP solver met its tolerance (PDLP may stop at its time limit first:
    then its routing is only a rough guide)."""
    duals: np.ndarray | None = None
    """The model's row duals (PDLP's sign convention), with ``keys`` and ``rows``
    of :func:`solver.model.build_model`: what a larger LP starts from
    (:mod:`solver.column_generation`)."""
    keys: dict | None = None
    rows: dict | None = None


def solve_joint_lp(
    problem, incumbent, contested, params, clock, time_limit: float, whole: bool = False
) -> JointLp | None:
    """The LP of the ``contested`` orders on what the others in ``incumbent`` leave.

    With ``whole``, the LP of the whole batch instead (every order, every
    candidate): its weak-duality bound from the duals is then a proven bound
    of the batch. Returns ``None`` when no LP answer came back within ``time_limit``.
    """
    return start_joint_lp(
        problem, incumbent, contested, params, clock, time_limit, whole, background=False
    ).result()


class PendingJointLp:
    """A joint LP started by :func:`start_joint_lp`; :meth:`result` waits for it."""

    def __init__(
        self, problem, part, model, v, keys, rows, clock, started, whole, pending, done, reduced
    ):
        self._args = (problem, part, model, v, keys, rows, clock, started, whole)
        self._reduced = reduced
        self._pending = pending
        self._done = done

    def result(self) -> JointLp | None:
        """The LP's (next) answer; ``None`` when there is none (any more)."""
        problem, part, model, v, keys, rows, clock, started, whole = self._args
        if self._pending is not None:
            answer = self._pending.result(stop_requested(clock))
            if answer is None:
                return None
            # (solved folded: the same LP, smaller; its duals prove its bound)
            x = self._reduced.full_x(answer.x)
            duals = self._reduced.full_duals(answer.row_duals)
            solver, converged = "pdlp", answer.converged
            bound = dual_bound(self._reduced.model, answer.row_duals)
        elif self._done is not None:
            x, duals, solver, converged = self._done
            self._done = None
            bound = dual_bound(model, duals)
        else:
            return None
        prices = Prices(problem)
        prices.record_duals(duals, keys, rows)
        # Weak duality from the duals alone: proven whatever the LP solver's accuracy.
        bound = bound if whole else float("-inf")
        return JointLp(
            part,
            v,
            x,
            prices,
            solver,
            round(clock() - started, 2),
            int(model.c.size),
            bound,
            converged,
            duals,
            keys,
            rows,
        )

    @property
    def in_background(self) -> bool:
        return self._pending is not None and self._pending.background

    @property
    def legs_left(self) -> int:
        """Refined answers still to come from a first-order LP solved in legs."""
        return 0 if self._pending is None else self._pending.legs_left

    def ready(self) -> bool:
        return self._pending is None or self._pending.ready()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.close()


def start_joint_lp(
    problem,
    incumbent,
    contested,
    params,
    clock,
    time_limit: float,
    whole: bool = False,
    background: bool = True,
    refine: float = 0.0,
    also: np.ndarray | None = None,
    warm: JointLp | None = None,
    rel_tol: float | None = None,
) -> PendingJointLp:
    """:func:`solve_joint_lp`, started: a first-order LP runs on the other core
    (:mod:`solver.lp_process`) while the caller goes on; HiGHS's are solved now.
    With ``refine`` seconds, a first-order LP that has not converged within
    ``time_limit`` goes on from where it stopped for that long, and
    :meth:`PendingJointLp.result` gives that better answer next. ``also`` masks
    candidates to model besides a part's cheapest; ``warm``: an earlier LP of
    fewer candidates, whose answer starts a first-order LP's; ``rel_tol``: its
    tolerance (default ``params.first_order_tolerance``)."""
    started = clock()
    if whole:
        part = ModelInput.whole(problem)
    else:
        # Big parts keep fewer candidates per line: the LP stays within reach.
        big = contested.sum() > params.block_orders
        per_line = params.block_candidates_per_line if big else params.candidates_per_line
        part, _ = model_part(
            problem, incumbent, contested, params, start=incumbent, per_line=per_line, also=also
        )
    model, v, keys, rows = build_model(problem, part)
    pending, done, reduced = None, None, None
    if model.c.size > params.first_order_columns:
        legs = [time_limit, refine] if refine > 0 else [time_limit]
        reduced = fold_single_shipments(model, v, rows)
        start = None
        if warm is not None and warm.duals is not None:
            start = extended_start(warm, part, v, keys, rows, reduced)
        pending = start_first_order_lp(
            reduced.model,
            legs,
            params.first_order_tolerance if rel_tol is None else rel_tol,
            background and params.lp_in_background,
            # (a whole LP's only: a part's converged duals bound worse, see batch)
            first_tol=params.first_leg_tolerance if whole else None,
            threads=params.first_order_threads if model.c.size > params.threaded_lp_columns else 1,
            start=start,
        )
    else:
        lp = solve_mip(
            model, MipParams(time_limit=time_limit, relax=True), stop=stop_requested(clock)
        )
        if lp.x is not None and lp.row_duals is not None:
            done = (lp.x, lp.row_duals, "highs", True)
    return PendingJointLp(
        problem, part, model, v, keys, rows, clock, started, whole, pending, done, reduced
    )
