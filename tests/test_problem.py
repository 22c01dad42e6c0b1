"""Tests for router.problem: indices, stock and the candidates that encode the rules.

A candidate (line, node) exists only where the feasibility rules allow it, so
the reach and pickup rules are tested here on the candidate lists, each with a
pair where the rule binds and one where it does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from router.geo import haversine_km
from router.problem import build_problem
from router.scenario import load_scenario
from tests.conftest import DEG_KM, line_row, node_row

ONE_DEGREE_KM = float(haversine_km(0.0, 0.0, 0.0, 1.0))


def _problem(make, **tables):
    return build_problem(load_scenario(make(**tables)))


def _candidate_nodes(problem, line: int) -> list[str]:
    return list(problem.node_ids[problem.cand_node[problem.candidates_of(line)]])


def test_one_degree_on_the_equator_is_deg_km():
    assert pytest.approx(DEG_KM, rel=1e-12) == ONE_DEGREE_KM


# --- reach: a delivery order may use n only within max_km of n -------------------


def _reach_problem(make, max_km):
    # S sits one degree (111.195 km) east of the customer; W has no max_km.
    return _problem(
        make,
        nodes=[node_row("W", lon=5), node_row("S", "store", lon=1, max_km=max_km)],
        inventory=["W,A,5", "S,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )


def test_reach_customer_exactly_at_max_km_is_a_candidate(tiny_scenario_dir):
    # distance <= max_km with no tolerance: max_km equal to the distance keeps S.
    problem = _reach_problem(tiny_scenario_dir, repr(ONE_DEGREE_KM))
    assert _candidate_nodes(problem, 0) == ["W", "S"]


def test_reach_customer_just_beyond_max_km_is_not_a_candidate(tiny_scenario_dir):
    just_short = repr(float(np.nextafter(ONE_DEGREE_KM, 0.0)))
    problem = _reach_problem(tiny_scenario_dir, just_short)
    assert _candidate_nodes(problem, 0) == ["W"]


def test_reach_empty_max_km_means_no_limit(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("S", "store", lon=100)],
        inventory=["S,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )
    assert _candidate_nodes(problem, 0) == ["S"]


# --- pickup: a pickup order may use only its pickup node -----------------------------


def _pickup_problem(make, pickup, store_stock=5):
    # S's max_km (10) is far below the customer's distance (3 degrees): reach
    # does not apply to pickups.
    return _problem(
        make,
        nodes=[node_row("W"), node_row("S", "store", lon=3, ship_fixed=2, max_km=10)],
        inventory=["W,A,5", f"S,A,{store_stock}"],
        orders=[line_row("O1", "L1", "A", pickup=pickup)],
    )


def test_pickup_order_has_only_its_pickup_node_at_no_shipping_cost(tiny_scenario_dir):
    problem = _pickup_problem(tiny_scenario_dir, "S")
    assert _candidate_nodes(problem, 0) == ["S"]
    assert problem.order_pickup.tolist() == [1]
    assert problem.pair_ship_cost.tolist() == [0.0]


def test_pickup_node_without_the_sku_leaves_no_candidate(tiny_scenario_dir):
    problem = _pickup_problem(tiny_scenario_dir, "S", store_stock=0)
    assert _candidate_nodes(problem, 0) == []  # W holds A, but may not serve a pickup at S


def test_delivery_order_is_not_limited_to_one_node(tiny_scenario_dir):
    problem = _pickup_problem(tiny_scenario_dir, "")
    assert _candidate_nodes(problem, 0) == ["W"]  # S is out of reach (3 degrees > 10 km)
    assert problem.order_pickup.tolist() == [-1]


# --- stock and costs ----------------------------------------------------------------


def test_node_without_stock_of_the_sku_is_not_a_candidate(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("W"), node_row("S", "store")],
        inventory=["W,A,0", "S,A,1", "W,B,2"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "B"), line_row("O1", "L3", "C")],
    )
    assert _candidate_nodes(problem, 0) == ["S"]
    assert _candidate_nodes(problem, 1) == ["W"]
    assert _candidate_nodes(problem, 2) == []  # C is held nowhere
    sku = {s: i for i, s in enumerate(problem.sku_ids)}
    assert problem.stock[0, sku["A"]] == 0 and problem.stock[1, sku["A"]] == 1
    assert problem.stock[:, sku["C"]].tolist() == [0, 0]


def test_shipping_cost_is_fixed_plus_per_km_times_distance(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("W", lon=2, ship_fixed=5, ship_per_km=0.25, handling=0.5, capacity=7)],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )
    # 5 + 0.25 * 2 degrees = 5 + 0.5 * 111.19508 = 60.59754
    assert problem.pair_km[0] == pytest.approx(2 * DEG_KM)
    assert problem.pair_ship_cost[0] == pytest.approx(5 + 0.25 * 2 * DEG_KM)
    assert problem.handling.tolist() == [0.5]
    assert problem.capacity.tolist() == [7.0]


def test_empty_capacity_is_infinite(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("W")],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )
    assert problem.capacity.tolist() == [np.inf]


# --- indices -------------------------------------------------------------------------


def test_lines_grouped_by_order_in_first_appearance_order(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("W")],
        inventory=["W,A,5", "W,B,5"],
        orders=[
            line_row("O2", "L1", "A"),
            line_row("O1", "L1", "B", 2),
            line_row("O2", "L2", "B", 3),
        ],
    )
    assert problem.order_ids.tolist() == ["O2", "O1"]
    assert problem.line_ids.tolist() == ["L1", "L2", "L1"]
    assert problem.line_qty.tolist() == [1, 3, 2]
    assert problem.line_order.tolist() == [0, 0, 1]
    assert problem.order_line_start.tolist() == [0, 2, 3]


def test_same_sku_on_two_lines_shares_one_shipment_candidate(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("W"), node_row("S", "store")],
        inventory=["W,A,5", "S,A,1"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "A")],
    )
    assert problem.pair_order.tolist() == [0, 0]
    assert problem.cand_line.tolist() == [0, 0, 1, 1]
    # both lines use the same (order, node) pairs: one shipment per node
    assert problem.cand_pair.tolist() == [0, 1, 0, 1]


def test_replace_returns_a_copy_and_leaves_the_original(tiny_scenario_dir):
    problem = _problem(
        tiny_scenario_dir,
        nodes=[node_row("W")],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )
    changed = problem.replace(split_penalty=0.0)
    assert changed.split_penalty == 0.0 and problem.split_penalty == 6.0
    assert changed.stock is problem.stock


# --- the reach test through a k-d tree finds what testing every pair finds -----------


def test_candidates_in_reach_are_every_pairs_test(tmp_path):
    """Without profiles, candidates come from a k-d tree of the limited-reach nodes:
    the same (line, node) candidates, in the same order and with the same distances
    to the last bit, as the reach rule tested on every (order, node)."""
    from router.generate import generate_scenario

    generate_scenario(tmp_path / "g", orders=600, stores=80, warehouses=5, skus=200, seed=4)
    problem = build_problem(load_scenario(tmp_path / "g"))
    km = haversine_km(
        problem.order_lat[:, None],
        problem.order_lon[:, None],
        problem.node_lat[None, :],
        problem.node_lon[None, :],
    )
    allowed = km <= problem.max_km[None, :]
    pickup = problem.order_pickup >= 0
    allowed[pickup] = False
    allowed[np.flatnonzero(pickup), problem.order_pickup[pickup]] = True
    usable = allowed[problem.line_order] & (problem.stock[:, problem.line_sku].T > 0)
    line, node = np.nonzero(usable)
    assert pickup.any() and np.isfinite(problem.max_km).any() and line.size > 0
    assert np.array_equal(problem.cand_line, line)
    assert np.array_equal(problem.cand_node, node)
    cand_km = problem.pair_km[problem.cand_pair]
    assert cand_km.tobytes() == km[problem.line_order[line], node].tobytes()
