"""A thin, honest wrapper around the HiGHS MIP solver.

omniroute builds its models as sparse matrices (numpy/scipy), never variable by
variable, and hands them to HiGHS in one call. This module is the only place
that talks to HiGHS: it maps every model status to an honest result that carries
its status, objective and proven bound.

Why HiGHS through ``highspy`` and not through OR-Tools' ``model_builder``: the
OR-Tools HiGHS backend (9.15) crashes with a segmentation fault as soon as a
solution hint is given, and exposes neither HiGHS's improving-solution callback
(needed for progress display) nor its log switch. ``highspy`` exposes all three.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import highspy
import numpy as np
import scipy.sparse as sp


class SolveStatus(StrEnum):
    """Outcome of a solve, as reported to users."""

    OPTIMAL = "optimal"
    """Proven optimal (within the requested relative gap)."""
    FEASIBLE = "feasible"
    """A feasible answer, stopped by the time limit before proof."""
    INFEASIBLE = "infeasible"
    NO_SOLUTION = "no_solution"
    """Stopped by the limit before any feasible answer was found."""


@dataclass(frozen=True)
class MipModel:
    """``min c.x  s.t.  row_lo <= A x <= row_hi,  col_lo <= x <= col_hi``, some x integer."""

    c: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    integer: np.ndarray
    """Boolean mask of the integer columns."""
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    offset: float = 0.0


@dataclass(frozen=True)
class MipParams:
    time_limit: float = 60.0
    rel_gap: float = 1e-4
    abs_gap: float = 1e-4
    """Costs are in currency units: below a hundredth of a cent is noise."""
    seed: int = 0
    objective_target: float = float("-inf")
    """Stop as soon as a solution costing at most this is found (the caller has
    a bound of its own that proves such a solution good enough)."""
    threads: int = 1
    relax: bool = False
    """Solve the linear relaxation only (all columns continuous)."""


@dataclass(frozen=True)
class MipResult:
    status: SolveStatus
    x: np.ndarray | None
    objective: float
    bound: float
    """Proven lower bound on the model's optimum (``-inf`` when none)."""
    row_duals: np.ndarray | None = None
    """Row duals of an LP relaxation solve (``relax=True``), else ``None``."""


ProgressCallback = Callable[[float, float], None]
"""Called with (best objective so far, best bound so far) during a MIP solve."""


def solve_mip(
    model: MipModel,
    params: MipParams,
    *,
    start: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
) -> MipResult:
    """Solve ``model`` with HiGHS; ``start`` is a feasible solution to warm-start from."""
    h = _quiet_highs()
    h.setOptionValue("time_limit", float(max(params.time_limit, 0.01)))
    h.setOptionValue("mip_rel_gap", float(params.rel_gap))
    h.setOptionValue("random_seed", int(params.seed))
    h.setOptionValue("threads", int(params.threads))
    h.setOptionValue("mip_abs_gap", float(params.abs_gap))

    csc = model.A.tocsc()
    csc.sort_indices()
    lp = highspy.HighsLp()
    lp.num_col_ = int(model.c.size)
    lp.num_row_ = int(model.row_lo.size)
    lp.col_cost_ = np.asarray(model.c, dtype=np.float64)
    lp.col_lower_ = np.asarray(model.col_lo, dtype=np.float64)
    lp.col_upper_ = np.asarray(model.col_hi, dtype=np.float64)
    lp.row_lower_ = np.asarray(model.row_lo, dtype=np.float64)
    lp.row_upper_ = np.asarray(model.row_hi, dtype=np.float64)
    lp.offset_ = float(model.offset)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(np.float64)
    if not params.relax:
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous
            for flag in np.asarray(model.integer, dtype=bool)
        ]
    h.passModel(lp)

    if start is not None and not params.relax:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, dtype=np.float64).tolist()
        sol.value_valid = True
        h.setSolution(sol)

    stop_at = params.objective_target
    if (on_progress is not None or np.isfinite(stop_at)) and not params.relax:
        kinds = highspy.cb.HighsCallbackType

        def _callback(kind, _message, data_out, data_in, _user):
            if kind == kinds.kCallbackMipImprovingSolution and on_progress is not None:
                on_progress(
                    float(data_out.objective_function_value), float(data_out.mip_dual_bound)
                )
            elif (
                kind == kinds.kCallbackMipInterrupt
                and float(data_out.objective_function_value) <= stop_at
            ):
                # HiGHS's own ``objective_target`` option does not stop its MIP
                # solver reliably (1.16): the incumbent is checked here instead.
                data_in.user_interrupt = True

        h.setCallback(_callback, None)
        h.startCallback(kinds.kCallbackMipImprovingSolution)
        if np.isfinite(stop_at):
            h.startCallback(kinds.kCallbackMipInterrupt)

    h.run()
    return _result(h, params.relax)


_banner_shown = False


def _quiet_highs() -> highspy.Highs:
    """A HiGHS instance with logging off.

    HiGHS prints a copyright banner on stdout when the first instance of a
    process is created, before any option can be set; it would corrupt the
    CLI's machine-readable output, so the first construction runs with the
    stdout file descriptor pointed at /dev/null.
    """
    global _banner_shown
    if _banner_shown:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _banner_shown = True
    h.setOptionValue("output_flag", False)
    return h


def _result(h: highspy.Highs, relax: bool) -> MipResult:
    status = h.getModelStatus()
    info = h.getInfo()
    ms = highspy.HighsModelStatus
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_solution else None
    if status == ms.kInfeasible:
        return MipResult(SolveStatus.INFEASIBLE, None, float("inf"), float("inf"))
    if relax:
        if status != ms.kOptimal:
            return MipResult(SolveStatus.NO_SOLUTION, None, float("inf"), float("-inf"))
        objective = float(info.objective_function_value)
        duals = np.asarray(h.getSolution().row_dual, dtype=np.float64)
        return MipResult(SolveStatus.OPTIMAL, x, objective, objective, duals)
    bound = float(info.mip_dual_bound)
    if not np.isfinite(bound):
        bound = float("-inf")
    if x is None:
        return MipResult(SolveStatus.NO_SOLUTION, None, float("inf"), bound)
    objective = float(info.objective_function_value)
    solved = status == ms.kOptimal
    return MipResult(
        SolveStatus.OPTIMAL if solved else SolveStatus.FEASIBLE, x, objective, min(bound, objective)
    )
