"""Tests for solver.greedy: the rule-engine baseline follows its documented rule.

Orders in file order; each goes whole to the cheapest single node that holds
all of it, else line by line to the cheapest node with stock (an open shipment
costs nothing more), splitting a line when a node is short; stock and capacity
are consumed as it goes. Costs are computed by hand (split 6, unfilled 150,
every point at (0, 0) so distances are 0 and shipping is ``ship_fixed``).
"""

from __future__ import annotations

import numpy as np
import pytest

from router.problem import build_problem
from router.run import solve_scenario
from router.scenario import load_scenario
from solver.cost import evaluate
from solver.greedy import greedy_units
from tests.conftest import line_row, node_row


def _greedy(folder):
    problem = build_problem(load_scenario(folder))
    units = greedy_units(problem)
    allocation = {}
    for c in np.flatnonzero(units):
        line = problem.cand_line[c]
        key = (
            problem.order_ids[problem.line_order[line]],
            problem.line_ids[line],
            problem.node_ids[problem.cand_node[c]],
        )
        allocation[key] = int(units[c])
    return allocation, evaluate(problem, units).total_cost


# --- first come, first served -------------------------------------------------------

LAST_UNIT_NODES = [node_row("W", ship_fixed=10), node_row("S", "store", ship_fixed=1)]
LAST_UNIT_INVENTORY = ["W,A,5", "S,A,1"]
DELIVERY = line_row("O1", "L1", "A")
PICKUP = line_row("O2", "L1", "A", pickup="S")


def test_first_come_consumes_the_stores_last_unit(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=LAST_UNIT_NODES, inventory=LAST_UNIT_INVENTORY, orders=[DELIVERY, PICKUP]
    )
    allocation, cost = _greedy(folder)
    # O1 comes first and takes S's last unit (1 < 10); the pickup at S finds nothing.
    assert allocation == {("O1", "L1", "S"): 1}
    assert cost == pytest.approx(1 + 150)


def test_file_order_decides_who_gets_the_last_unit(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=LAST_UNIT_NODES, inventory=LAST_UNIT_INVENTORY, orders=[PICKUP, DELIVERY]
    )
    allocation, cost = _greedy(folder)
    # The pickup (no shipping) takes S's unit; O1 then ships from W for 10.
    assert allocation == {("O2", "L1", "S"): 1, ("O1", "L1", "W"): 1}
    assert cost == pytest.approx(10)


# --- whole order first ---------------------------------------------------------------


def test_whole_order_node_preferred_over_a_cheaper_split(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[
            node_row("X", ship_fixed=1),
            node_row("Y", ship_fixed=1),
            node_row("Z", ship_fixed=5),
        ],
        inventory=["X,A,5", "Y,B,5", "Z,A,5", "Z,B,5"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "B")],
        split_penalty=0.0,
    )
    allocation, cost = _greedy(folder)
    # Z holds the whole order (5) although X + Y would cost 1 + 1 + 0 = 2.
    assert allocation == {("O1", "L1", "Z"): 1, ("O1", "L2", "Z"): 1}
    assert cost == pytest.approx(5)


def test_whole_order_choice_counts_handling_per_unit(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("X", ship_fixed=1, handling=2), node_row("Y", ship_fixed=4, handling=0)],
        inventory=["X,A,5", "Y,A,5"],
        orders=[line_row("O1", "L1", "A", 2)],
    )
    allocation, cost = _greedy(folder)
    # X: 1 + 2 * 2 = 5; Y: 4 + 0 = 4.
    assert allocation == {("O1", "L1", "Y"): 2}
    assert cost == pytest.approx(4)


# --- line by line ------------------------------------------------------------------------


def test_a_short_node_splits_the_line(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("S", "store", ship_fixed=1), node_row("W", ship_fixed=10)],
        inventory=["S,A,2", "W,A,2"],
        orders=[line_row("O1", "L1", "A", 3)],
    )
    allocation, cost = _greedy(folder)
    # No node holds 3: S (cheapest) gives its 2, W the last one: 1 + 10 + split 6.
    assert allocation == {("O1", "L1", "S"): 2, ("O1", "L1", "W"): 1}
    assert cost == pytest.approx(17)


def test_an_open_shipment_costs_nothing_more(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("X", ship_fixed=3), node_row("W", ship_fixed=2.5)],
        inventory=["X,A,5", "X,B,5", "W,B,5", "W,C,5"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "B"), line_row("O1", "L3", "C")],
    )
    allocation, cost = _greedy(folder)
    # No node holds A, B and C. L1 opens X (the only A); L2's B then comes from
    # the open X (0) rather than W (2.5); L3 opens W. 3 + 2.5 + split 6.
    assert allocation == {("O1", "L1", "X"): 1, ("O1", "L2", "X"): 1, ("O1", "L3", "W"): 1}
    assert cost == pytest.approx(11.5)


def test_a_sku_held_nowhere_is_left_unfilled(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("W", ship_fixed=4)],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "Z", 2)],
    )
    allocation, cost = _greedy(folder)
    assert allocation == {("O1", "L1", "W"): 1}
    assert cost == pytest.approx(4 + 2 * 150)


# --- capacity consumed as it goes -------------------------------------------------------


def test_capacity_is_consumed_by_earlier_orders(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("S", "store", ship_fixed=1, capacity=1), node_row("W", ship_fixed=10)],
        inventory=["S,A,5", "S,B,5", "W,A,5", "W,B,5"],
        orders=[line_row("O1", "L1", "A"), line_row("O2", "L1", "B")],
    )
    allocation, cost = _greedy(folder)
    # S can allocate 1 unit in all (any SKU): O1 takes it, O2 ships from W.
    assert allocation == {("O1", "L1", "S"): 1, ("O2", "L1", "W"): 1}
    assert cost == pytest.approx(11)


def test_greedy_leaves_the_problem_untouched(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=LAST_UNIT_NODES, inventory=LAST_UNIT_INVENTORY, orders=[DELIVERY, PICKUP]
    )
    problem = build_problem(load_scenario(folder))
    stock = problem.stock.copy()
    greedy_units(problem)
    assert (problem.stock == stock).all()


def test_greedy_answer_passes_the_checker(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=LAST_UNIT_NODES, inventory=LAST_UNIT_INVENTORY, orders=[DELIVERY, PICKUP]
    )
    output = solve_scenario(load_scenario(folder), strategy="greedy")  # checks, or raises
    assert output.summary["strategy"] == "greedy"
    assert output.summary["total_cost"] == pytest.approx(151)
    assert output.summary["lower_bound"] is None


# --- the fast path gives the rule's units exactly ---------------------------------------


def _reference(problem, monkeypatch, **kwargs):
    """greedy_units through the order-by-order path (the rule as first written)."""
    import solver.greedy as greedy

    with monkeypatch.context() as patch:
        patch.setattr(greedy, "_plain", lambda _problem: False)
        return greedy_units(problem, **kwargs)


def _contested_problem(tmp_path_factory):
    from tests.scarce import small_scarce_folder

    return build_problem(load_scenario(small_scarce_folder(tmp_path_factory, seed=3, orders=400)))


@pytest.mark.parametrize("source", ["cn-2000", "scarce"])
def test_fast_path_gives_the_same_units(source, tmp_path_factory, monkeypatch):
    """Same units per candidate as the order-by-order rule: all orders; a subset on
    thinner stock and capacity with unit prices; and with a clearance credit."""
    from router.bundled import fixtures_dir

    if source == "cn-2000":
        problem = build_problem(load_scenario(fixtures_dir() / "cn-2000"))
    else:
        problem = _contested_problem(tmp_path_factory)
    assert problem.line_group is None and problem.order_max_shipments is None
    fast = greedy_units(problem)
    assert np.array_equal(fast, _reference(problem, monkeypatch))
    assert 0 < fast.sum() < problem.line_qty.sum() or source == "cn-2000"

    rng = np.random.default_rng(0)
    thinner = {
        "orders": np.sort(rng.choice(problem.num_orders, problem.num_orders // 2, replace=False)),
        "stock": problem.stock // 2,
        "capacity": np.floor(problem.capacity * 0.5),
        "unit_price": rng.random(problem.stock.shape) * (rng.random(problem.stock.shape) < 0.3),
    }
    assert np.array_equal(
        greedy_units(problem, **thinner), _reference(problem, monkeypatch, **thinner)
    )

    credited = problem.replace(cand_credit=np.round(rng.random(problem.cand_line.size), 2))
    assert np.array_equal(greedy_units(credited), _reference(credited, monkeypatch))


def test_a_fractional_capacity_holds_its_whole_units(monkeypatch):
    """A room of 2.5 units takes 2: the same units as a room of 2, on both paths.
    (A fraction left used to let no unit in while the search for room never ended.)"""
    from router.bundled import fixtures_dir

    problem = build_problem(load_scenario(fixtures_dir() / "cn-2000"))
    half = problem.capacity * 0.5  # x.5 wherever the capacity is odd
    assert (half % 1 == 0.5).any()
    whole = greedy_units(problem, capacity=np.floor(half))
    assert np.array_equal(greedy_units(problem, capacity=half), whole)
    assert np.array_equal(_reference(problem, monkeypatch, capacity=half), whole)
