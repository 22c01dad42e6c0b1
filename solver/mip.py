"""A thin, honest wrapper around the HiGHS MIP solver.

omniroute builds its models as sparse matrices (numpy/scipy), never variable by
variable, and hands them to HiGHS in one call. This module is the only place
that talks to HiGHS: it maps every model status to an honest result that carries
its status, objective and proven bound.

Why HiGHS through ``highspy`` and not through OR-Tools' ``model_builder``: the
OR-Tools HiGHS backend (9.15) crashes with a segmentation fault as soon as a
solution hint is given, and exposes neither HiGHS's improving-solution callback
(needed for progress display) nor its log switch. ``highspy`` exposes all three.

Every reported objective is checked against the returned solution's own cost
``c.x`` and its row feasibility (:func:`check_solution`): HiGHS 1.16, given a
start solution with presolve on, has been seen to report an objective that is
not the cost of the solution it returns. On a disagreement the model is solved
again without the start, then with presolve off as well; the result says which
(``MipResult.check``). Which numbers stay valid when HiGHS misreports:

- the solution's true cost ``c.x`` (recomputed here) and its feasibility
  (checked here, within :data:`FEASIBILITY_TOLERANCE`);
- without presolve, ``min(dual bound, reported objective)``: every search node
  HiGHS pruned had a relaxation bound at least the (reported) incumbent value,
  and every open node's bound is at least the dual bound, so a wrong incumbent
  value only prunes the other way round than it should not. With presolve on,
  the reductions themselves are suspect, so its bound is not trusted;
- nothing is claimed optimal unless a solve's objective agreed with its solution.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import highspy
import numpy as np
import scipy.sparse as sp


class SolveStatus(StrEnum):
    """Outcome of a solve, as reported to users."""

    OPTIMAL = "optimal"
    """Proven optimal (within the requested relative gap)."""
    FEASIBLE = "feasible"
    """A feasible answer, stopped by the time limit (or a stop request) before proof."""
    INFEASIBLE = "infeasible"
    NO_SOLUTION = "no_solution"
    """Stopped by the limit before any feasible answer was found."""


class ObjectiveCheck(StrEnum):
    """What it took to get a reported objective that is the solution's own cost."""

    AGREED = "agreed"
    """The first solve's objective was ``c.x`` of its (feasible) solution."""
    RESOLVED_WITHOUT_START = "resolved_without_start"
    """It was not; a solve without the start solution agreed."""
    RESOLVED_WITHOUT_PRESOLVE = "resolved_without_presolve"
    """Only a solve without the start and with presolve off agreed."""
    TRUE_COST = "true_cost"
    """No solve agreed: the best feasible solution is returned with its true
    cost, status ``feasible``, and only the bound that stays proven."""
    NOT_CHECKED = "not_checked"
    """No solution to check (infeasible, or none found in time)."""


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
    threads: int = 1
    relax: bool = False
    """Solve the linear relaxation only (all columns continuous)."""
    presolve: bool = True


@dataclass(frozen=True)
class MipResult:
    status: SolveStatus
    x: np.ndarray | None
    objective: float
    """The cost ``c.x + offset`` of ``x`` (checked, see :func:`check_solution`)."""
    bound: float
    """Proven lower bound on the model's optimum (``-inf`` when none)."""
    row_duals: np.ndarray | None = None
    """Row duals of an LP relaxation solve (``relax=True``), else ``None``."""
    check: ObjectiveCheck = ObjectiveCheck.NOT_CHECKED
    """Whether HiGHS's reported objective had to be corrected, and how."""
    reported_objective: float | None = None
    """The objective HiGHS reported for the first solve (``None`` without a solution)."""
    interrupted: bool = False
    """The ``stop`` test asked HiGHS to stop before it finished."""


ProgressCallback = Callable[[float, float], None]
"""Called with (best objective so far, best bound so far) during a MIP solve."""

StopTest = Callable[[], bool]
"""Returns True once the caller wants the solve to stop (e.g. on Ctrl-C)."""

FEASIBILITY_TOLERANCE = 1e-5
"""Largest row, bound or integrality violation accepted in a returned solution
(HiGHS's own MIP feasibility tolerance is 1e-6; the slack covers rounding)."""

OBJECTIVE_TOLERANCE = 1e-6
"""Relative (to max(1, |c.x|)) difference at which a reported objective disagrees."""


@dataclass(frozen=True)
class SolutionCheck:
    """A solution's own cost and how far it is from feasible."""

    cost: float
    """``c.x + offset``."""
    violation: float
    """Largest violation of a row, a column bound or an integrality requirement."""
    objective_agrees: bool
    """The reported objective equals ``cost`` within :data:`OBJECTIVE_TOLERANCE`."""

    @property
    def feasible(self) -> bool:
        return self.violation <= FEASIBILITY_TOLERANCE

    @property
    def trusted(self) -> bool:
        return self.feasible and self.objective_agrees


def check_solution(
    model: MipModel, x: np.ndarray, objective: float, relax: bool = False
) -> SolutionCheck:
    """Validate a (model, solution, reported objective) triple without a solver."""
    x = np.asarray(x, dtype=np.float64)
    cost = float(model.c @ x + model.offset)
    activity = model.A @ x
    violations = [
        np.maximum(model.row_lo - activity, 0.0),
        np.maximum(activity - model.row_hi, 0.0),
        np.maximum(model.col_lo - x, 0.0),
        np.maximum(x - model.col_hi, 0.0),
    ]
    if not relax:
        integer = np.asarray(model.integer, dtype=bool)
        violations.append(np.abs(x[integer] - np.rint(x[integer])))
    violation = max((float(v.max()) for v in violations if v.size), default=0.0)
    agrees = math.isfinite(objective) and abs(objective - cost) <= OBJECTIVE_TOLERANCE * max(
        1.0, abs(cost)
    )
    return SolutionCheck(cost, violation, agrees)


def solve_mip(
    model: MipModel,
    params: MipParams,
    *,
    start: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    stop: StopTest | None = None,
) -> MipResult:
    """Solve ``model`` with HiGHS; ``start`` is a feasible solution to warm-start from.

    ``stop`` is polled while HiGHS runs (from its interrupt callbacks): once it
    returns True, HiGHS stops and the best solution so far comes back with
    status ``feasible`` (``interrupted`` set). The objective of every solution
    is checked against its own cost; see the module docstring for what is done
    when they disagree.
    """
    first, runtime = _run(model, params, start, on_progress, stop)
    if first.check in (ObjectiveCheck.AGREED, ObjectiveCheck.NOT_CHECKED):
        return first
    # Disagreement: re-solve without the start, then also without presolve,
    # in what is left of the time limit (at least a tenth of it).
    attempts = []
    if start is not None:
        attempts.append((params, ObjectiveCheck.RESOLVED_WITHOUT_START))
    attempts.append((replace(params, presolve=False), ObjectiveCheck.RESOLVED_WITHOUT_PRESOLVE))
    best, bound = first, first.bound
    for retry_params, outcome in attempts:
        if first.interrupted or (stop is not None and stop()):
            break
        time_left = max(params.time_limit - runtime, 0.1 * params.time_limit)
        retry, used = _run(model, replace(retry_params, time_limit=time_left), None, None, stop)
        runtime += used
        if retry.check == ObjectiveCheck.AGREED:
            return replace(retry, check=outcome, reported_objective=first.reported_objective)
        bound = max(bound, retry.bound)
        if retry.x is not None and retry.objective < best.objective:
            best = retry
    return MipResult(
        SolveStatus.FEASIBLE if best.x is not None else SolveStatus.NO_SOLUTION,
        best.x,
        best.objective,
        min(bound, best.objective),
        best.row_duals if params.relax else None,
        ObjectiveCheck.TRUE_COST,
        first.reported_objective,
        first.interrupted or best.interrupted,
    )


def _run(
    model: MipModel,
    params: MipParams,
    start: np.ndarray | None,
    on_progress: ProgressCallback | None,
    stop: StopTest | None,
) -> tuple[MipResult, float]:
    """One HiGHS solve; returns its checked result and HiGHS's run time."""
    h = _quiet_highs()
    h.setOptionValue("time_limit", float(max(params.time_limit, 0.01)))
    h.setOptionValue("mip_rel_gap", float(params.rel_gap))
    h.setOptionValue("random_seed", int(params.seed))
    h.setOptionValue("threads", int(params.threads))
    h.setOptionValue("mip_abs_gap", float(params.abs_gap))
    if not params.presolve:
        h.setOptionValue("presolve", "off")

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

    stopped = [False]
    on_progress_mip = None if params.relax else on_progress
    if on_progress_mip is not None or stop is not None:
        improving = highspy.cb.HighsCallbackType.kCallbackMipImprovingSolution
        interrupts = (
            highspy.cb.HighsCallbackType.kCallbackMipInterrupt,
            highspy.cb.HighsCallbackType.kCallbackSimplexInterrupt,
            highspy.cb.HighsCallbackType.kCallbackIpmInterrupt,
        )

        def _callback(kind, _message, data_out, data_in, _user):
            if kind == improving:
                if on_progress_mip is not None:
                    on_progress_mip(
                        float(data_out.objective_function_value), float(data_out.mip_dual_bound)
                    )
            elif stopped[0] or (stop is not None and stop()):
                stopped[0] = True
                data_in.user_interrupt = True

        h.setCallback(_callback, None)
        if on_progress_mip is not None:
            h.startCallback(improving)
        if stop is not None:
            for kind in interrupts:
                h.startCallback(kind)

    h.run()
    result = _result(h, model, params.relax, params.presolve, stopped[0])
    return result, float(h.getRunTime())


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


def _result(
    h: highspy.Highs, model: MipModel, relax: bool, presolve: bool, interrupted: bool
) -> MipResult:
    status = h.getModelStatus()
    info = h.getInfo()
    ms = highspy.HighsModelStatus
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_solution else None
    if status == ms.kInfeasible:
        return MipResult(SolveStatus.INFEASIBLE, None, float("inf"), float("inf"))
    if relax:
        if status != ms.kOptimal or x is None:
            return MipResult(
                SolveStatus.NO_SOLUTION, None, float("inf"), float("-inf"), interrupted=interrupted
            )
        reported = float(info.objective_function_value)
        checked = check_solution(model, x, reported, relax=True)
        duals = np.asarray(h.getSolution().row_dual, dtype=np.float64)
        return from_check(
            SolveStatus.OPTIMAL, x, reported, reported, checked, presolve, duals, interrupted
        )
    bound = float(info.mip_dual_bound)
    if not np.isfinite(bound):
        bound = float("-inf")
    if x is None:
        return MipResult(
            SolveStatus.NO_SOLUTION, None, float("inf"), bound, interrupted=interrupted
        )
    reported = float(info.objective_function_value)
    solved = SolveStatus.OPTIMAL if status == ms.kOptimal else SolveStatus.FEASIBLE
    checked = check_solution(model, x, reported)
    return from_check(solved, x, reported, bound, checked, presolve, None, interrupted)


def from_check(
    status: SolveStatus,
    x: np.ndarray,
    reported: float,
    bound: float,
    checked: SolutionCheck,
    presolve: bool,
    row_duals: np.ndarray | None = None,
    interrupted: bool = False,
) -> MipResult:
    """The honest result of one solve whose solution was checked.

    A trusted solution keeps HiGHS's status and ``min(bound, objective)``.
    Otherwise the objective becomes the solution's true cost and the status is
    at best ``feasible``; the bound stays only from a search on the original
    model (presolve off): ``min(bound, reported, true cost)``, else ``-inf``.
    An infeasible solution is dropped (``no_solution``). The caller may re-solve.
    """
    if not checked.feasible:
        return MipResult(
            SolveStatus.NO_SOLUTION,
            None,
            float("inf"),
            float("-inf"),
            None,
            ObjectiveCheck.TRUE_COST,
            reported,
            interrupted,
        )
    if checked.objective_agrees:
        return MipResult(
            status,
            x,
            checked.cost,
            min(bound, checked.cost),
            row_duals,
            ObjectiveCheck.AGREED,
            reported,
            interrupted,
        )
    proven = min(bound, reported, checked.cost) if not presolve else float("-inf")
    return MipResult(
        SolveStatus.FEASIBLE,
        x,
        checked.cost,
        proven,
        row_duals,
        ObjectiveCheck.TRUE_COST,
        reported,
        interrupted,
    )
