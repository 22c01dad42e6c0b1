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


VECTORISED_ORDERS = 200
"""Batches with more orders than this that are not one-unit orders route the
ones the Lagrangian oracle handles exactly all at once (:func:`route_by_oracle`)."""

SPLIT_ORDERS = 4000
"""Batches with more orders routed one by one (not vectorised) than this share
them with a forked child on the other core (:func:`route_each_order_alone`)."""


def route_each_order_alone(
    problem, background: bool = False, split_orders: int = SPLIT_ORDERS
) -> Alone:
    """Every order's optimum alone (:func:`orders_alone`). With ``background``,
    when more than ``split_orders`` orders are left to route one by one, every
    other one of them goes to a child on the other core (:mod:`solver.child`):
    the same answer, sooner."""
    every = np.ones(problem.num_orders, dtype=bool)
    units, cost, done = _alone_at_once(problem, every)
    exact = np.ones(problem.num_orders, dtype=bool)
    looped = np.flatnonzero(~done)
    if not background or looped.size <= split_orders:
        _one_by_one(problem, looped, None, units, cost, exact)
        return Alone(units, cost, exact, float(cost.sum()))
    from solver.child import PATIENCE, InChild

    def theirs():
        mine = (np.zeros_like(units), np.zeros_like(cost), np.ones_like(exact))
        _one_by_one(problem, looped[1::2], None, *mine)
        yield mine

    child = InChild(theirs, [PATIENCE * 20], True)
    try:
        _one_by_one(problem, looped[::2], None, units, cost, exact)
        answer = child.result()
    finally:
        child.close()
    if answer is None:  # the child failed: its half here
        _one_by_one(problem, looped[1::2], None, units, cost, exact)
    else:
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
    once: the cheapest candidate, if cheaper than leaving the unit unfilled;
    without prices, so are those the Lagrangian oracle routes exactly
    (:func:`route_by_oracle`); the others one by one.
    """
    units, cost, done = _alone_at_once(problem, orders, price)
    exact = np.ones(problem.num_orders, dtype=bool)
    _one_by_one(problem, np.flatnonzero(orders & ~done), price, units, cost, exact)
    return units, cost, exact


def _alone_at_once(problem, orders: np.ndarray, price: np.ndarray | None = None):
    """The masked orders that can be routed all at once (see :func:`orders_alone`),
    routed: units (C,), cost (O,) and the mask of the orders routed."""
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    cost = np.zeros(problem.num_orders)
    done = _single_unit_orders(problem, orders)
    route_single_units(problem, done, price, units, cost)
    looped = orders & ~done
    if price is None and looped.sum() > VECTORISED_ORDERS:
        done = done | route_by_oracle(problem, looped, units, cost)
    return units, cost, done


def _one_by_one(problem, orders: np.ndarray, price, units, cost, exact) -> None:
    """Route the ``orders`` (indices) alone, one by one, into units, cost and exact."""
    for order in orders.tolist():
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


def route_by_oracle(problem, orders: np.ndarray, units, cost) -> np.ndarray:
    """Route alone, all at once, the masked orders whose optimum alone the
    Lagrangian oracle (:func:`solver.pricing.price_orders`) at zero prices finds
    exactly; returns their mask. The oracle relaxes a node's capacity, the stock
    two lines of one SKU share, a split cap and a ship group, and prices whole
    lines only in patterns with many blocks: so the orders it routes have none
    of these (every candidate node can take all their units, their SKUs differ,
    no cap, no group, few blocks). Where a line wants more than a node holds,
    the oracle may use the node in two blocks: an order whose plan then
    exceeds a node's stock is routed one by one too (otherwise its plan is
    feasible, at most the oracle's value, which is at most the optimum: so it
    is optimal). The rest are routed one by one (:func:`solver.order_dp.solve_order`)."""
    from dataclasses import replace

    from solver.pricing import build_structure, price_orders

    structure = build_structure(problem, exact_short=False)
    groups = tuple(g for g in structure.groups if not g.whole_lines)
    exact = np.zeros(problem.num_orders, dtype=bool)
    for group in groups:
        exact[group.orders] = True
    exact &= orders
    caps = getattr(problem, "order_max_shipments", None)
    if caps is not None:
        exact &= ~np.isfinite(caps)
    line_group = getattr(problem, "line_group", None)
    if line_group is not None:
        exact[problem.line_order[line_group >= 0]] = False
    skus = np.unique(problem.line_order * problem.sku_ids.size + problem.line_sku)
    distinct = np.bincount(skus // problem.sku_ids.size, minlength=problem.num_orders)
    exact &= np.bincount(problem.line_order, minlength=problem.num_orders) == distinct
    order_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    short = problem.capacity[problem.pair_node] < order_units[problem.pair_order]
    exact[problem.pair_order[short]] = False
    if not exact.any():
        return exact
    only = replace(
        structure,
        groups=groups,
        loop_orders=np.zeros(0, dtype=np.int64),
        no_candidate_orders=np.zeros(0, dtype=np.int64),
    )
    priced = price_orders(
        problem, only, np.zeros(structure.key_node.size), np.zeros(problem.num_nodes)
    )
    cand_stock = problem.stock[problem.cand_node, problem.line_sku[problem.cand_line]]
    cand_order = problem.line_order[problem.cand_line]
    exact[cand_order[priced.units > cand_stock]] = False
    mine = exact[cand_order]
    units[mine] = priced.units[mine]
    cost[exact] = priced.order_cost[exact]
    return exact


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
