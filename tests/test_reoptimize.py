"""Re-optimization under the churn rule: the move rule, the move limit, the bound,
and the ``omniroute reoptimize`` command.

The hand-checked case is the ``greedy-trap`` fixture (see its expected.json):
one unit of A at W1 and one at S1; greedy gives O1 the W1 unit (9.75) and leaves
O2 unfilled (150): 159.75. The optimum, 21.7545, moves *both* orders (O1 to S1,
O2 to W1, taking the unit O1 frees). So with one move allowed nothing can
improve; with two, moving pays while 2 x move cost < 159.75 - 21.7545 = 137.9955.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from router.checker import check, load_assignments
from router.generate import generate_scenario
from router.problem import build_problem
from router.reoptimize import current_units, parse_max_moves, reoptimize_scenario
from router.run import solve_scenario
from router.scenario import ScenarioError, load_scenario
from solver.batch import OptimizeParams, optimize
from solver.bound import Prices
from solver.churn import Churn, moved_orders
from solver.cost import evaluate, order_costs
from solver.reoptimize import churn_bound, reoptimize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TRAP = FIXTURES / "greedy-trap"
TRAP_OPTIMUM = 21.754534332610827
TRAP_GREEDY = 159.75
PARAMS = OptimizeParams(time_limit=10.0, rel_gap=1e-9)


def _trap(move_cost: float = 0.0, max_moves: int | None = None):
    scenario = load_scenario(TRAP)
    current = solve_scenario(scenario, strategy="greedy").assignments
    return reoptimize_scenario(
        scenario, current, move_cost=move_cost, max_moves=max_moves, params=PARAMS
    )


# --- the move cost -------------------------------------------------------------------


def test_moving_pays_when_the_saving_beats_the_move_cost():
    output = _trap(move_cost=68.0)
    assert output.summary["orders_moved"] == 2
    assert output.summary["after"]["cost"] == pytest.approx(TRAP_OPTIMUM)
    assert output.summary["objective"] == pytest.approx(TRAP_OPTIMUM + 2 * 68.0)
    assert output.summary["status"] == "optimal"


def test_nothing_moves_when_the_move_cost_eats_the_saving():
    output = _trap(move_cost=69.0)
    assert output.summary["orders_moved"] == 0
    assert output.summary["after"]["cost"] == pytest.approx(TRAP_GREEDY)
    assert not output.moves["moved"].any()
    assert output.summary["status"] == "optimal"


# --- the move limit ------------------------------------------------------------------


def test_move_limit_binds():
    # One move cannot help: O2 needs the unit O1 holds, and O1 alone moving costs more.
    output = _trap(max_moves=1)
    assert output.summary["orders_moved"] == 0
    assert output.summary["after"]["cost"] == pytest.approx(TRAP_GREEDY)


def test_move_limit_does_not_bind():
    output = _trap(max_moves=2)
    assert output.summary["orders_moved"] == 2
    assert output.summary["after"]["cost"] == pytest.approx(TRAP_OPTIMUM)
    moves = output.moves.set_index("order_id")
    assert moves.loc["O1", "old_nodes"] == "W1" and moves.loc["O1", "new_nodes"] == "S1"
    assert moves.loc["O2", "old_nodes"] == "" and moves.loc["O2", "new_nodes"] == "W1"


def test_without_a_rule_it_is_the_batch_optimum():
    output = _trap()
    assert output.summary["after"]["cost"] == pytest.approx(TRAP_OPTIMUM)


# --- what counts as a move -----------------------------------------------------------


def test_an_order_moves_when_any_unit_changes(tiny_scenario_dir):
    from tests.conftest import line_row, node_row

    folder = tiny_scenario_dir(
        nodes=[node_row("W", ship_fixed=10), node_row("S", "store", ship_fixed=1)],
        inventory=["W,A,5", "S,A,5"],
        orders=[line_row("O1", "L1", "A", qty=2), line_row("O2", "L1", "A")],
    )
    problem = build_problem(load_scenario(folder))
    current = np.zeros(problem.cand_line.size, dtype=np.int64)
    current[0] = 2  # O1: 2 units on its first candidate
    current[2] = 1  # O2
    churned = problem.replace(churn=Churn(current))
    same = current.copy()
    fewer = current.copy()
    fewer[0] = 1  # O1 keeps its node, one unit fewer: that is a move too
    assert not moved_orders(churned, same).any()
    assert moved_orders(churned, fewer).tolist() == [True, False]


def test_order_costs_sum_to_the_routing_cost():
    problem = build_problem(load_scenario(FIXTURES / "cn-2000"))
    result = optimize(problem, OptimizeParams(time_limit=5.0), _clock())
    assert order_costs(problem, result.units).sum() == pytest.approx(result.cost.total_cost)


# --- larger batches: feasible, within the limit, bounded -----------------------------


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["scarce", "plentiful"])
def test_decomposition_respects_the_limit_and_the_bound(regime, tmp_path):
    # 400 orders, forced down the large-batch path (free solve, move choice,
    # block re-decide, Lagrangian bound), then compared with the exact MIP.
    folder = tmp_path / "batch"
    generate_scenario(folder, orders=400, stores=60, warehouses=4, skus=120, seed=3, regime=regime)
    scenario = load_scenario(folder)
    current = solve_scenario(scenario, strategy="greedy").assignments
    limit = 40
    output = reoptimize_scenario(
        scenario,
        current,
        move_cost=1.0,
        max_moves=limit,
        params=OptimizeParams(time_limit=20, exact_orders=0, exact_candidates=0),
    )
    summary = output.summary
    assert "choice" in summary["details"]  # the large-batch path ran
    assert summary["orders_moved"] <= limit
    assert int(output.moves["moved"].sum()) == summary["orders_moved"]
    assert summary["after"]["cost"] < summary["before"]["cost"]
    report = check(scenario, output.assignments)
    assert report.feasible
    assert report.total_cost == pytest.approx(summary["after"]["cost"])
    exact = reoptimize(output.problem, OptimizeParams(time_limit=60, rel_gap=1e-6), _clock())
    assert exact.status == "optimal"
    assert summary["lower_bound"] <= exact.cost.total_cost + 1e-6
    assert summary["objective"] >= exact.cost.total_cost - 1e-6
    assert exact.cost.moves <= limit


def test_churn_bound_is_valid_at_any_prices():
    scenario = load_scenario(FIXTURES / "cn-2000")
    current = solve_scenario(scenario, strategy="greedy").assignments
    problem = build_problem(scenario)
    held = current_units(problem, scenario, current, "current.csv")
    churned = problem.replace(churn=Churn(held, 1.0, 50))
    rng = np.random.default_rng(0)
    prices = Prices(churned)
    upper = evaluate(churned, held).total_cost  # keeping everything is feasible
    clock = _clock()
    at_zero, _ = churn_bound(churned, prices, upper, clock, deadline=0.0)  # one evaluation
    assert at_zero <= upper + 1e-6
    prices.key = rng.uniform(0, 5, prices.key.shape)
    at_random, _ = churn_bound(churned, prices, upper, clock, deadline=0.0)
    assert at_random <= upper + 1e-6
    searched, details = churn_bound(churned, Prices(churned), upper, clock, deadline=clock() + 5)
    assert details["steps"] > 1
    assert at_zero - 1e-6 <= searched <= upper + 1e-6


# --- bad input -----------------------------------------------------------------------


def test_current_routing_must_be_feasible():
    scenario = load_scenario(TRAP)
    current = pd.DataFrame(
        {"order_id": ["O1", "O2"], "line_id": ["L1", "L1"], "node_id": ["W1", "W1"], "qty": [1, 1]}
    )
    with pytest.raises(ScenarioError, match=r"current\.csv.*not feasible"):
        reoptimize_scenario(scenario, current, current_file="current.csv")


@pytest.mark.parametrize(
    ("text", "orders", "expected"),
    [("10%", 2000, 200), ("0%", 50, 0), ("12.5%", 10, 1), ("250", 2000, 250), ("100%", 7, 7)],
)
def test_parse_max_moves(text, orders, expected):
    assert parse_max_moves(text, orders) == expected


@pytest.mark.parametrize("text", ["-1", "ten", "101%", "1e3", ""])
def test_parse_max_moves_rejects(text):
    with pytest.raises(ValueError, match="--max-moves"):
        parse_max_moves(text, 100)


def test_churn_rejects_a_negative_move_cost():
    with pytest.raises(ValueError, match="move_cost"):
        Churn(np.zeros(1, dtype=np.int64), -1.0)


# --- the command ---------------------------------------------------------------------


def test_cli_reoptimize_writes_the_plan(cli, tmp_path):
    greedy = tmp_path / "greedy"
    cli("solve", str(TRAP), "--strategy", "greedy", "--out", str(greedy), "--quiet")
    out = tmp_path / "plan"
    result = cli(
        "reoptimize", str(TRAP), "--current", str(greedy / "assignments.csv"),
        "--max-moves", "100%", "--move-cost", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "orders moved: 2 of 2" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"]["cost"] == pytest.approx(TRAP_OPTIMUM)
    moves = pd.read_csv(out / "moves.csv", keep_default_na=False)
    assert list(moves.columns) == ["order_id", "moved", "old_nodes", "new_nodes", "old_cost", "new_cost"]
    assert check(load_scenario(TRAP), load_assignments(out / "assignments.csv")).feasible


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-moves", "lots"], "--max-moves 'lots'"),
        (["--move-cost", "-2"], "--move-cost must be"),
        (["--time-limit", "0"], "--time-limit must be"),
    ],
)
def test_cli_reoptimize_bad_options(cli, tmp_path, args, message):
    greedy = tmp_path / "greedy"
    cli("solve", str(TRAP), "--strategy", "greedy", "--out", str(greedy), "--quiet")
    out = tmp_path / "plan"
    result = cli(
        "reoptimize", str(TRAP), "--current", str(greedy / "assignments.csv"), "--out", str(out),
        "--quiet", *args,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_reoptimize_infeasible_current_changes_nothing(cli, tmp_path):
    current = tmp_path / "current.csv"
    current.write_text("order_id,line_id,node_id,qty\nO1,L1,W1,1\nO2,L1,W1,1\n")
    out = tmp_path / "plan"
    result = cli(
        "reoptimize", str(TRAP), "--current", str(current), "--out", str(out), "--quiet"
    )
    assert result.returncode == 2
    assert "current.csv" in result.stderr and "not feasible" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.fixture
def cli():
    """Run the real ``omniroute`` process (as tests/test_cli.py does)."""
    from tests.test_cli import omniroute

    return omniroute


def _clock():
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


@pytest.mark.slow
def test_without_a_rule_the_large_path_is_the_batch_optimizer(tmp_path):
    # No limit and no cost per move: the rule is void, the free solve is the answer.
    folder = tmp_path / "batch"
    generate_scenario(folder, orders=400, stores=60, warehouses=4, skus=120, seed=5)
    scenario = load_scenario(folder)
    current = solve_scenario(scenario, strategy="greedy").assignments
    params = OptimizeParams(time_limit=20, exact_orders=0, exact_candidates=0)
    output = reoptimize_scenario(scenario, current, params=params)
    details = output.summary["details"]
    assert "choice" not in details and "free" in details
    assert output.summary["after"]["cost"] == pytest.approx(
        min(details["free"]["cost"], output.summary["before"]["cost"])
    )
    assert output.summary["lower_bound"] <= output.summary["objective"] + 1e-6
