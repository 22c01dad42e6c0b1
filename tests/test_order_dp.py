"""Tests for solver.order_dp: exact single-order routing and its relaxation.

``solve_order`` is checked against a brute-force enumeration of every
allocation (units per (SKU, node)) on small random orders: partial stock,
capacity limits, several SKUs, and orders above ``MAX_DP_SKUS`` units (the MIP
fallback). ``order_relaxation_cost`` must never exceed the exact optimum.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from solver.order_dp import MAX_DP_SKUS, OrderProblem, order_relaxation_cost, solve_order

INF = math.inf


def _order(qty, stock, ship_cost, unit_cost=None, capacity=None, split=6.0, unfilled=150.0):
    stock = np.asarray(stock, dtype=np.int64)
    k, n = stock.shape
    return OrderProblem(
        qty=np.asarray(qty, dtype=np.int64),
        stock=stock,
        ship_cost=np.asarray(ship_cost, dtype=np.float64),
        unit_cost=np.zeros((k, n))
        if unit_cost is None
        else np.asarray(unit_cost, dtype=np.float64),
        capacity=np.full(n, INF) if capacity is None else np.asarray(capacity, dtype=np.float64),
        split_penalty=float(split),
        unfilled_penalty=float(unfilled),
    )


def _cost(op: OrderProblem, alloc) -> float:
    """The scenario cost formula for one order, written out independently."""
    k, n = op.stock.shape
    shipments = [j for j in range(n) if sum(alloc[s][j] for s in range(k)) > 0]
    cost = sum(float(op.ship_cost[j]) for j in shipments)
    cost += sum(float(op.unit_cost[s, j]) * alloc[s][j] for s in range(k) for j in range(n))
    cost += op.split_penalty * max(0, len(shipments) - 1)
    cost += op.unfilled_penalty * sum(int(op.qty[s]) - sum(alloc[s]) for s in range(k))
    return cost


def _brute_force(op: OrderProblem) -> float:
    """Cheapest cost over every allocation that respects qty, stock and capacity."""
    k, n = op.stock.shape
    per_sku = []
    for s in range(k):
        ranges = [range(min(int(op.stock[s, j]), int(op.qty[s])) + 1) for j in range(n)]
        per_sku.append([a for a in itertools.product(*ranges) if sum(a) <= op.qty[s]])
    best = INF
    for alloc in itertools.product(*per_sku):
        if all(sum(alloc[s][j] for s in range(k)) <= op.capacity[j] for j in range(n)):
            best = min(best, _cost(op, alloc))
    return best


def _assert_feasible(op: OrderProblem, alloc: np.ndarray) -> None:
    assert alloc.shape == op.stock.shape
    assert (alloc >= 0).all()
    assert (alloc <= op.stock).all(), "stock exceeded"
    assert (alloc.sum(axis=1) <= op.qty).all(), "more units than ordered"
    assert (alloc.sum(axis=0) <= op.capacity).all(), "capacity exceeded"


def _random_order(rng: np.random.Generator, big: bool) -> OrderProblem:
    if big:  # above MAX_DP_SKUS units: the MIP fallback
        k, n = 2, 2
        qty = rng.integers(4, 7, size=k)
    else:
        k, n = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        qty = rng.integers(1, 3 if k == 3 else 4, size=k)
    stock = rng.integers(0, 4 if not big else 8, size=(k, n)) * (rng.random((k, n)) < 0.8)
    capacity = np.where(rng.random(n) < 0.4, rng.integers(0, 5, size=n), INF)
    return _order(
        qty,
        stock,
        ship_cost=np.round(rng.uniform(0, 20, size=n), 2),
        unit_cost=np.round(rng.uniform(0, 3, size=(k, n)), 2),
        capacity=capacity,
        split=float(rng.choice([0.0, 2.5, 6.0])),
        unfilled=float(rng.choice([4.0, 15.0, 150.0])),
    )


# --- exact against brute force -------------------------------------------------------


@pytest.mark.parametrize("seed", range(80))
def test_solve_order_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    op = _random_order(rng, big=seed % 8 == 7)
    plan = solve_order(op)
    _assert_feasible(op, plan.alloc)
    best = _brute_force(op)
    assert plan.total_cost == pytest.approx(_cost(op, plan.alloc.tolist()), abs=1e-9)
    assert plan.total_cost == pytest.approx(best, abs=1e-6), op
    assert plan.exact


@pytest.mark.parametrize("seed", range(80))
def test_relaxation_never_exceeds_the_order_optimum(seed):
    rng = np.random.default_rng(seed)
    op = _random_order(rng, big=seed % 8 == 7)
    relaxed = order_relaxation_cost(
        op.qty, op.stock > 0, op.ship_cost, op.unit_cost, op.split_penalty, op.unfilled_penalty
    )
    assert relaxed <= solve_order(op).total_cost + 1e-9


def test_big_orders_take_the_mip_fallback_and_stay_exact():
    # 3 SKUs x 3 units = 9 > MAX_DP_SKUS items: the subset DP is skipped.
    op = _order([3, 3, 3], [[3, 1], [3, 3], [0, 3]], ship_cost=[10, 4], split=6.0)
    assert op.qty.sum() > MAX_DP_SKUS
    plan = solve_order(op)
    # W0 alone: 10 + 150 * 3 (SKU 2 unfilled) = 460; W1 alone: 4 + 150 * 2 = 304;
    # both: 10 + 4 + 6 = 20 (SKU 0 from W0, SKU 1 and 2 anywhere).
    assert plan.total_cost == pytest.approx(20.0)
    assert plan.exact
    assert plan.alloc.sum() == 9


# --- tiny hand-checked cases ---------------------------------------------------------


def test_partial_stock_ships_what_there_is():
    # one node, 2 of 3 units: ship 2 (5), leave 1 unfilled (150) = 155
    plan = solve_order(_order([3], [[2]], ship_cost=[5]))
    assert plan.alloc.tolist() == [[2]]
    assert plan.total_cost == pytest.approx(155.0)


def test_partial_stock_split_over_two_nodes_when_cheaper_than_unfilled():
    # 2 + 1 units from two nodes: 5 + 7 + split 6 = 18 < 5 + 150
    plan = solve_order(_order([3], [[2, 1]], ship_cost=[5, 7]))
    assert plan.alloc.tolist() == [[2, 1]]
    assert plan.total_cost == pytest.approx(18.0)


def _two_units(capacity_of_node_0):
    # node 0: ship 1, handling 0; node 1: ship 10, handling 5; split penalty 2
    return _order(
        [1, 1],
        [[1, 1], [1, 1]],
        ship_cost=[1, 10],
        unit_cost=[[0, 5], [0, 5]],
        capacity=[capacity_of_node_0, INF],
        split=2.0,
    )


def test_capacity_binds_forces_a_second_node():
    # node 0 allocates 1 unit only: 1 + (10 + 5) + split 2 = 18 < both at node 1: 10 + 2 * 5 = 20
    plan = solve_order(_two_units(1))
    assert plan.alloc.sum(axis=0).tolist() == [1, 1]
    assert plan.total_cost == pytest.approx(18.0)


def test_capacity_does_not_bind():
    # capacity 2 lets node 0 take both units: 1
    plan = solve_order(_two_units(2))
    assert plan.alloc.sum(axis=0).tolist() == [2, 0]
    assert plan.total_cost == pytest.approx(1.0)


def test_nothing_ships_when_shipping_costs_more_than_the_penalty():
    # ship 200 > unfilled 150: leave the unit unfilled
    plan = solve_order(_order([1], [[5]], ship_cost=[200]))
    assert plan.alloc.sum() == 0
    assert plan.total_cost == pytest.approx(150.0)


def test_no_candidate_node_leaves_everything_unfilled():
    plan = solve_order(_order([2, 1], np.zeros((2, 0)), ship_cost=[]))
    assert plan.alloc.shape == (2, 0)
    assert plan.total_cost == pytest.approx(450.0)


# --- the relaxation --------------------------------------------------------------------


def test_relaxation_is_exact_when_no_limit_binds():
    # ample stock, no capacity: SKU 0 and 1 at node 1 (ship 3, handling 1 + 1) = 5
    op = _order([1, 1], [[9, 9], [0, 9]], ship_cost=[1, 3], unit_cost=[[0, 1], [0, 1]])
    relaxed = order_relaxation_cost(
        op.qty, op.stock > 0, op.ship_cost, op.unit_cost, op.split_penalty, op.unfilled_penalty
    )
    assert relaxed == pytest.approx(solve_order(op).total_cost) == pytest.approx(5.0)


def test_relaxation_drops_the_stock_limit():
    # stock 1 of 2 units: exact 1 + 150 = 151; relaxed (stock ignored) = 1
    op = _order([2], [[1]], ship_cost=[1])
    relaxed = order_relaxation_cost(
        op.qty, op.stock > 0, op.ship_cost, op.unit_cost, op.split_penalty, op.unfilled_penalty
    )
    assert relaxed == pytest.approx(1.0)
    assert solve_order(op).total_cost == pytest.approx(151.0)


def test_relaxation_of_a_many_sku_order_is_a_lower_bound():
    k = MAX_DP_SKUS + 1
    # 9 SKUs, 1 unit each, free to handle, but the only shipment costs 100 and
    # a unit left unfilled costs 1: the optimum is 9 x 1 = 9 (nothing ships).
    op = _order(np.ones(k), np.ones((k, 1)), ship_cost=[100], split=6.0, unfilled=1.0)
    assert solve_order(op).total_cost == pytest.approx(9.0)
    relaxed = order_relaxation_cost(
        op.qty, op.stock > 0, op.ship_cost, op.unit_cost, op.split_penalty, op.unfilled_penalty
    )
    assert relaxed <= 9.0


def test_two_blocks_on_one_node_that_do_not_fit_are_settled_exactly():
    # 2 units of one SKU; A holds 1 and ships for 1, B holds 1 and ships for 10.
    # The subset DP alone would serve each unit from A as its own block (each fits,
    # both do not): the exact answer ships one unit from each node.
    problem = OrderProblem(
        qty=np.array([2]),
        stock=np.array([[1, 1]]),
        ship_cost=np.array([1.0, 10.0]),
        unit_cost=np.zeros((1, 2)),
        capacity=np.array([np.inf, np.inf]),
        split_penalty=6.0,
        unfilled_penalty=150.0,
    )
    plan = solve_order(problem)
    assert plan.exact
    assert plan.alloc.tolist() == [[1, 1]]
    assert plan.total_cost == pytest.approx(1 + 10 + 6)


def test_the_exact_search_over_node_reuse_matches_the_mip_on_tight_stock():
    from solver.order_dp import _solve_order_mip

    rng = np.random.default_rng(5)
    for _ in range(400):
        k, n = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        qty = rng.integers(1, 4, k)
        if qty.sum() > 8:
            continue
        capacity = np.where(rng.random(n) < 0.3, rng.integers(0, 4, n), np.inf).astype(float)
        problem = OrderProblem(
            qty=qty,
            stock=rng.integers(0, 3, (k, n)),
            ship_cost=rng.uniform(1, 20, n),
            unit_cost=rng.uniform(0, 3, (k, n)),
            capacity=capacity,
            split_penalty=float(rng.choice([0.0, 6.0])),
            unfilled_penalty=float(rng.choice([5.0, 50.0, 150.0])),
        )
        plan = solve_order(problem)
        assert np.all(plan.alloc <= problem.stock)
        assert np.all(plan.alloc.sum(axis=0) <= problem.capacity)
        assert plan.total_cost == pytest.approx(_solve_order_mip(problem).total_cost, abs=1e-6)
