"""Step 1 of the batch method: every order routed as if it were alone in the pool.

Each order's optimum alone (:func:`solver.order_dp.solve_order`) ignores the other
orders, so the sum over orders is a lower bound of the batch; at nonnegative prices on
stock and capacity the same routine evaluates the Lagrangian bound (:mod:`solver.bound`).
One-line, one-unit orders, the commonest kind, are routed all at once, vectorised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from solver.cost import shipment_cap
from solver.cost import unit_cost as cand_unit_cost
from solver.order_dp import OrderProblem, order_relaxation_cost, solve_order


@dataclass(frozen=True)
class Alone:
    units: np.ndarray
    cost: np.ndarray
    """(O,) each order's optimum alone (or its relaxation bound when not exact)."""
    exact: np.ndarray
    bound: float


def order_problem(problem, order: int, price: np.ndarray | None = None):
    """The OrderProblem of one order over its shipment candidates.

    ``price`` (N, S), when given, is added to the per-unit cost (Lagrangian
    prices of stock and capacity).
    """
    pairs = problem.pairs_of(order)
    nodes = problem.pair_node[pairs]
    lines = problem.lines_of(order)
    skus, sku_of_line = np.unique(problem.line_sku[lines], return_inverse=True)
    qty = np.bincount(sku_of_line, weights=problem.line_qty[lines]).astype(np.int64)
    unit_cost = np.broadcast_to(problem.handling[nodes], (skus.size, nodes.size)).copy()
    credit = getattr(problem, "cand_credit", None)
    if credit is not None:  # a profile's clearance credit per (SKU, node) of this order
        cands = slice(
            int(problem.line_cand_start[lines.start]), int(problem.line_cand_start[lines.stop])
        )
        k = sku_of_line[problem.cand_line[cands] - lines.start]
        j = np.searchsorted(nodes, problem.cand_node[cands])
        unit_cost[k, j] = problem.handling[nodes[j]] - credit[cands]
    if price is not None:
        unit_cost += price[np.ix_(nodes, skus)].T
    op = OrderProblem(
        qty=qty,
        stock=problem.stock[np.ix_(nodes, skus)].T,
        ship_cost=problem.pair_ship_cost[pairs],
        unit_cost=unit_cost,
        capacity=problem.capacity[nodes],
        split_penalty=problem.split_penalty,
        unfilled_penalty=problem.unfilled_penalty,
        max_shipments=_cap(problem, order),
        sku_group=_sku_group(problem, lines, skus.size, sku_of_line),
    )
    return op, nodes, skus, sku_of_line


def _sku_group(problem, lines: slice, num_skus: int, sku_of_line) -> np.ndarray | None:
    """(K,) the ship group of each SKU row of the order (-1: none)."""
    line_group = getattr(problem, "line_group", None)
    if line_group is None:
        return None
    groups = line_group[lines]
    if not np.any(groups >= 0):
        return None
    sku_group = np.full(num_skus, -1, dtype=np.int64)
    sku_group[sku_of_line] = groups
    return sku_group


def _cap(problem, order: int) -> int | None:
    cap = shipment_cap(problem, order)
    return None if math.isinf(cap) else int(cap)


SPLIT_ORDERS = 4000
"""Batches with more orders routed one by one (not vectorised) than this share
them with a forked child on the other core (:func:`route_each_order_alone`)."""


def route_each_order_alone(
    problem, background: bool = False, split_orders: int = SPLIT_ORDERS
) -> Alone:
    """Every order's optimum alone. With ``background``, a batch with more than
    ``split_orders`` orders routed one by one gives every other one of them to a
    child on the other core (:mod:`solver.child`): the same answer, sooner."""
    every = np.ones(problem.num_orders, dtype=bool)
    looped = np.flatnonzero(~_single_unit_orders(problem, every))
    if not background or looped.size <= split_orders:
        units, cost, exact = orders_alone(problem, every)
        return Alone(units, cost, exact, float(cost.sum()))
    from solver.child import PATIENCE, InChild

    theirs = np.zeros(problem.num_orders, dtype=bool)
    theirs[looped[1::2]] = True
    child = InChild(lambda: iter([orders_alone(problem, theirs)]), [PATIENCE * 20], True)
    try:
        units, cost, exact = orders_alone(problem, ~theirs)
        answer = child.result()
    finally:
        child.close()
    if answer is None:  # the child failed: its half here
        answer = orders_alone(problem, theirs)
    units += answer[0]
    cost += answer[1]
    exact &= answer[2]
    return Alone(units, cost, exact, float(cost.sum()))


def _single_unit_orders(problem, orders: np.ndarray) -> np.ndarray:
    """The masked orders of one line and one unit (routed all at once)."""
    lines_per_order = np.diff(problem.order_line_start)
    first_qty = problem.line_qty[np.minimum(problem.order_line_start[:-1], problem.num_lines - 1)]
    return orders & (lines_per_order == 1) & (first_qty == 1)


def orders_alone(problem, orders: np.ndarray, price: np.ndarray | None = None):
    """Route each of the masked orders as if alone, at optional unit prices (N, S).

    Returns units (C,), cost (O,) (0 for orders not masked; for an order not
    solved exactly, its relaxation bound) and an exact mask (O,).
    Orders of one line and one unit, the commonest kind, are routed all at
    once: the cheapest candidate, if cheaper than leaving the unit unfilled.
    """
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    cost = np.zeros(problem.num_orders)
    exact = np.ones(problem.num_orders, dtype=bool)
    single = _single_unit_orders(problem, orders)
    route_single_units(problem, single, price, units, cost)
    for order in np.flatnonzero(orders & ~single).tolist():
        op, nodes, _skus, sku_of_line = order_problem(problem, order, price)
        if nodes.size == 0:
            cost[order] = problem.unfilled_penalty * problem.line_qty[problem.lines_of(order)].sum()
            continue
        plan = solve_order(op)
        write_plan(problem, order, plan.alloc, nodes, sku_of_line, units)
        if plan.exact:
            cost[order] = plan.total_cost
        else:
            exact[order] = False
            cost[order] = order_relaxation_cost(
                op.qty,
                op.stock > 0,
                op.ship_cost,
                op.unit_cost,
                op.split_penalty,
                op.unfilled_penalty,
            )
    return units, cost, exact


def route_single_units(problem, single, price, units, cost) -> None:
    """Vectorised exact routing of one-line, one-unit orders (see orders_alone)."""
    cost[single] = problem.unfilled_penalty
    cands = np.flatnonzero(single[problem.line_order[problem.cand_line]])
    if cands.size == 0:
        return
    nodes = problem.cand_node[cands]
    unit_cost = problem.pair_ship_cost[problem.cand_pair[cands]] + cand_unit_cost(problem, cands)
    if price is not None:
        unit_cost = unit_cost + price[nodes, problem.line_sku[problem.cand_line[cands]]]
    unit_cost = np.where(problem.capacity[nodes] >= 1, unit_cost, np.inf)
    lines = problem.cand_line[cands]
    order = np.lexsort((unit_cost, lines))  # by line, then cost; ties keep node order
    first = np.flatnonzero(np.r_[True, lines[order][1:] != lines[order][:-1]])
    best = order[first]
    served = unit_cost[best] < problem.unfilled_penalty
    units[cands[best[served]]] = 1
    cost[problem.line_order[lines[best[served]]]] = unit_cost[best[served]]


def write_plan(problem, order, alloc, nodes, sku_of_line, units) -> None:
    """Spread a per-(SKU, node) plan over the order's lines (lines in order)."""
    remaining = alloc.copy()
    for offset, line in enumerate(range(*problem.lines_of(order).indices(problem.num_lines))):
        k = sku_of_line[offset]
        need = int(problem.line_qty[line])
        cands = problem.candidates_of(line)
        cand_nodes = problem.cand_node[cands]
        for j in np.flatnonzero(remaining[k]):
            if need == 0:
                break
            take = int(min(need, remaining[k, j]))
            c = cands.start + int(np.searchsorted(cand_nodes, nodes[j]))
            units[c] += take
            remaining[k, j] -= take
            need -= take
