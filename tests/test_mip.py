"""Tests for solver.mip: the objective check and the stop test of the HiGHS wrapper.

The hand-checkable model used below: two binary columns, ``min x0 + 2 x1``
subject to ``x0 + x1 = 1``; its optimum is x = (1, 0) with cost 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from router.generate import generate_scenario
from router.problem import build_problem
from router.scenario import load_scenario
from solver.greedy import greedy_units
from solver.mip import (
    MipModel,
    MipParams,
    ObjectiveCheck,
    SolveStatus,
    check_solution,
    from_check,
    solve_mip,
)
from solver.model import ModelInput, build_model, start_vector

DATA = Path(__file__).resolve().parent / "data"


def _pick_one() -> MipModel:
    return MipModel(
        c=np.array([1.0, 2.0]),
        col_lo=np.zeros(2),
        col_hi=np.ones(2),
        integer=np.array([True, True]),
        A=sp.csr_matrix(np.array([[1.0, 1.0]])),
        row_lo=np.array([1.0]),
        row_hi=np.array([1.0]),
    )


# --- check_solution: the (model, solution, objective) seam -------------------------


def test_check_accepts_an_objective_equal_to_the_solution_cost():
    checked = check_solution(_pick_one(), np.array([1.0, 0.0]), 1.0)
    assert checked.cost == 1.0
    assert checked.trusted


def test_check_catches_an_objective_that_is_not_the_solution_cost():
    # The shape of the HiGHS 1.16 report: an objective below the returned solution's cost.
    checked = check_solution(_pick_one(), np.array([0.0, 1.0]), 1.0)
    assert checked.cost == 2.0
    assert checked.feasible
    assert not checked.objective_agrees
    assert not checked.trusted


def test_check_counts_the_offset_in_the_cost():
    model = _pick_one()
    shifted = MipModel(**{**model.__dict__, "offset": 10.0})
    assert check_solution(shifted, np.array([1.0, 0.0]), 11.0).trusted
    assert not check_solution(shifted, np.array([1.0, 0.0]), 1.0).objective_agrees


def test_check_catches_a_violated_row():
    checked = check_solution(_pick_one(), np.array([1.0, 1.0]), 3.0)
    assert checked.objective_agrees
    assert checked.violation == pytest.approx(1.0)
    assert not checked.feasible


def test_check_catches_a_fractional_integer_column():
    checked = check_solution(_pick_one(), np.array([0.5, 0.5]), 1.5)
    assert checked.violation == pytest.approx(0.5)
    assert not checked.feasible
    assert check_solution(_pick_one(), np.array([0.5, 0.5]), 1.5, relax=True).feasible


def test_a_disagreeing_result_keeps_its_true_cost_and_no_unproven_bound():
    x = np.array([0.0, 1.0])
    checked = check_solution(_pick_one(), x, 1.0)
    # Presolve on: the bound HiGHS reported is not trusted.
    result = from_check(SolveStatus.OPTIMAL, x, 1.0, 1.0, checked, presolve=True)
    assert result.status == SolveStatus.FEASIBLE
    assert result.objective == 2.0
    assert result.bound == float("-inf")
    assert result.check == ObjectiveCheck.TRUE_COST
    assert result.reported_objective == 1.0
    # Presolve off: min(dual bound, reported objective) stays a proof.
    result = from_check(SolveStatus.OPTIMAL, x, 1.0, 0.9, checked, presolve=False)
    assert result.bound == 0.9
    assert result.objective == 2.0


def test_an_infeasible_returned_solution_is_dropped():
    x = np.array([1.0, 1.0])
    result = from_check(SolveStatus.OPTIMAL, x, 3.0, 1.0, check_solution(_pick_one(), x, 3.0), True)
    assert result.status == SolveStatus.NO_SOLUTION
    assert result.x is None


def test_an_agreeing_solve_is_reported_as_checked():
    result = solve_mip(_pick_one(), MipParams(time_limit=5))
    assert result.status == SolveStatus.OPTIMAL
    assert result.check == ObjectiveCheck.AGREED
    assert result.objective == result.reported_objective == 1.0
    np.testing.assert_allclose(result.x, [1.0, 0.0])


# --- the HiGHS 1.16 disagreement, reproduced -----------------------------------------


def _whole_model(folder: Path):
    problem = build_problem(load_scenario(folder))
    part = ModelInput.whole(problem)
    model, v, _keys, _rows = build_model(problem, part)
    return problem, part, model, v


def test_highs_start_with_presolve_disagreement_is_caught_and_resolved():
    """Found by searching generated 8-20 order batches (generator seed 3): given the
    greedy answer as a start, HiGHS 1.16 with presolve reports an objective of
    368.59 while returning the start itself (cost 517.87); the optimum is 488.68."""
    problem, part, model, v = _whole_model(DATA / "highs-start-objective")
    start = start_vector(problem, part, v, greedy_units(problem))
    plain = solve_mip(model, MipParams(time_limit=10, rel_gap=0.0))
    assert plain.check == ObjectiveCheck.AGREED
    assert plain.objective == pytest.approx(488.6779676341664, abs=1e-6)

    result = solve_mip(model, MipParams(time_limit=10, rel_gap=0.0), start=start)
    assert result.reported_objective == pytest.approx(368.58639430114357, abs=1e-6)
    assert result.check == ObjectiveCheck.RESOLVED_WITHOUT_START
    assert result.status == SolveStatus.OPTIMAL
    assert result.objective == pytest.approx(plain.objective, abs=1e-6)
    assert result.objective == pytest.approx(float(model.c @ result.x), abs=1e-9)
    assert result.bound <= result.objective


# --- stop: a caller's request ends a running solve -------------------------------------


def test_stop_ends_a_solve_with_the_start_as_best_answer(tmp_path):
    # 300 orders on scarce stock: HiGHS needs a few tenths of a second to prove it.
    generate_scenario(
        tmp_path / "s", orders=300, stores=30, warehouses=3, skus=60, seed=1, scarcity=3.0
    )
    problem, part, model, v = _whole_model(tmp_path / "s")
    start = start_vector(problem, part, v, greedy_units(problem))
    result = solve_mip(model, MipParams(time_limit=60, rel_gap=0.0), start=start, stop=lambda: True)
    assert result.interrupted
    assert result.status == SolveStatus.FEASIBLE
    assert result.objective <= float(model.c @ start) + 1e-6
    assert result.bound <= result.objective


def test_stop_never_asked_changes_nothing():
    result = solve_mip(_pick_one(), MipParams(time_limit=5), stop=lambda: False)
    assert not result.interrupted
    assert result.status == SolveStatus.OPTIMAL
