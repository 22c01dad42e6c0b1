"""Big linear relaxations by a first-order method: OR-Tools PDLP.

The joint LP of a national batch has millions of columns; HiGHS's simplex and
interior point need minutes to an hour there, PDLP (primal-dual hybrid gradient,
one thread) seconds to minutes at a modest tolerance. Its answer is approximate,
so nothing here trusts it blindly:

- the **bound** is recomputed from the returned duals alone: for any row duals
  ``y`` (signs clipped to the rows' finite sides) and finite column bounds,
  ``g(y) = sum_i (y_i^+ lo_i - y_i^- hi_i) + sum_j min over [l_j, u_j] of
  (c_j - a_j.y) x_j`` is a proven lower bound of the LP (weak duality), hence of
  the MIP, whatever PDLP's accuracy;
- the **primal** is only a guide (prices, fractional routings to fix); every
  answer built from it is repaired and checked elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.mip import MipModel


@dataclass(frozen=True)
class FirstOrderResult:
    x: np.ndarray
    """Approximate primal solution (clipped to the column bounds)."""
    row_duals: np.ndarray
    """Row duals in HiGHS's sign convention (<= rows of a minimisation: <= 0)."""
    bound: float
    """Proven lower bound of the LP, recomputed from ``row_duals``."""
    primal_objective: float
    iterations: int
    seconds: float
    termination: str
    converged: bool
    """PDLP met its optimality tolerance (otherwise: a time or iteration limit)."""
    raw_primal: np.ndarray | None = None
    """PDLP's own primal and dual iterates, to warm-start a later run from."""
    raw_dual: np.ndarray | None = None


@dataclass(frozen=True)
class WarmStart:
    """Primal and dual iterates to start PDLP from (any vectors of the model's
    column and row counts: a start only speeds the solve, it proves nothing)."""

    raw_primal: np.ndarray
    raw_dual: np.ndarray


def solve_lp_first_order(
    model: MipModel,
    time_limit: float,
    rel_tol: float = 1e-4,
    threads: int = 1,
    start: FirstOrderResult | WarmStart | None = None,
) -> FirstOrderResult:
    """Solve the LP relaxation of ``model`` with PDLP within ``time_limit`` seconds,
    warm-started from an earlier run's iterates (``start``) when given."""
    import scipy.sparse as sp
    from ortools.pdlp import solve_log_pb2, solvers_pb2
    from ortools.pdlp.python import pdlp

    qp = pdlp.QuadraticProgram()
    qp.objective_vector = model.c
    qp.objective_offset = model.offset
    qp.constraint_lower_bounds = model.row_lo
    qp.constraint_upper_bounds = model.row_hi
    qp.variable_lower_bounds = model.col_lo
    qp.variable_upper_bounds = model.col_hi
    qp.constraint_matrix = sp.csc_matrix(model.A)
    params = solvers_pb2.PrimalDualHybridGradientParams()
    criteria = params.termination_criteria.simple_optimality_criteria
    criteria.eps_optimal_relative = rel_tol
    criteria.eps_optimal_absolute = rel_tol
    params.termination_criteria.time_sec_limit = max(time_limit, 0.1)
    params.num_threads = threads
    params.verbosity_level = 0
    initial = None
    if start is not None and start.raw_primal is not None:
        initial = pdlp.PrimalAndDualSolution()
        initial.primal_solution = start.raw_primal
        initial.dual_solution = start.raw_dual
    result = pdlp.primal_dual_hybrid_gradient(qp, params, initial_solution=initial)
    raw_primal = np.asarray(result.primal_solution, dtype=np.float64)
    x = np.clip(raw_primal, model.col_lo, model.col_hi)
    # PDLP's duals are positive on a binding lower side; HiGHS's convention is the same
    # for >= rows and <= 0 on a binding upper side, which is what y means here too.
    y = np.asarray(result.dual_solution, dtype=np.float64)
    log = result.solve_log
    return FirstOrderResult(
        x=x,
        row_duals=y,
        bound=dual_bound(model, y),
        primal_objective=float(model.c @ x + model.offset),
        iterations=int(log.iteration_count),
        seconds=float(log.solve_time_sec),
        termination=solve_log_pb2.TerminationReason.Name(log.termination_reason),
        converged=log.termination_reason == solve_log_pb2.TERMINATION_REASON_OPTIMAL,
        raw_primal=raw_primal,
        raw_dual=y,
    )


def dual_bound(model: MipModel, row_duals: np.ndarray) -> float:
    """Weak-duality bound of ``model``'s LP from any row duals (see the module docstring).

    Duals of the wrong sign for a row's finite sides are clipped to 0. A column
    whose reduced cost points to an infinite bound makes the bound ``-inf``.
    """
    y = np.asarray(row_duals, dtype=np.float64).copy()
    y[~np.isfinite(model.row_lo) & (y > 0)] = 0.0
    y[~np.isfinite(model.row_hi) & (y < 0)] = 0.0
    rows = np.where(y > 0, y * np.where(np.isfinite(model.row_lo), model.row_lo, 0.0), 0.0)
    rows += np.where(y < 0, y * np.where(np.isfinite(model.row_hi), model.row_hi, 0.0), 0.0)
    reduced = model.c - model.A.T @ y
    at = np.where(reduced >= 0, model.col_lo, model.col_hi)
    if not np.all(np.isfinite(at[reduced != 0])):
        return float("-inf")
    cols = np.where(reduced != 0, reduced * np.where(np.isfinite(at), at, 0.0), 0.0)
    return float(rows.sum() + cols.sum() + model.offset)
