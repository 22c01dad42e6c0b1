"""Which candidates a part's model keeps: each line's and each order's cheapest,
plus those an incumbent or a start uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.churn import moved_orders
from solver.contention import (
    usage,
)
from solver.cost import orders_left, shares_left
from solver.cost import unit_cost as cand_unit_cost
from solver.greedy import greedy_units
from solver.model import ModelInput


@dataclass(frozen=True)
class Allowance:
    """What one part's orders may use of every shared limit, given to it explicitly
    instead of "what the other orders leave" (:mod:`solver.parallel_blocks` gives
    independent blocks disjoint allowances). Stock is sparse: ``stock_units`` at the
    flat (node * SKUs + SKU) keys ``stock_keys``, zero elsewhere."""

    stock_keys: np.ndarray
    stock_units: np.ndarray
    capacity: np.ndarray
    """(N,) units each node may still handle for the part (``inf``: no limit)."""
    orders_left: np.ndarray | None = None
    """(N,) orders each node may still take for the part (a daily orders limit)."""
    shares_left: np.ndarray | None = None
    """(K,) units each binding (channel, SKU) pair may still sell to the part."""
    move_budget: float | None = None
    """Re-optimization: how many of the part's orders may move."""

    def stock(self, problem) -> np.ndarray:
        """(N, S) the part's stock, dense."""
        stock = np.zeros(problem.stock.shape, dtype=np.int64)
        stock.ravel()[self.stock_keys] = self.stock_units
        return stock


def model_part(
    problem, units, contested, params, start=None, per_line=None, also=None, allowance=None
):
    """The model of the ``contested`` orders on what the other orders of ``units`` leave
    (or on an explicit :class:`Allowance`, when one is given).

    Candidates: each line's ``per_line`` cheapest (default
    ``params.candidates_per_line``), those of mask ``also``, and those used by
    ``units`` and by the start. ``start`` (units over all candidates, feasible for the contested
    orders on that residual) defaults to a greedy routing. Returns the part and
    the start's units over the part's candidates.
    """
    orders = np.flatnonzero(contested)
    line_in = contested[problem.line_order]
    lines = np.flatnonzero(line_in)
    fixed = units * ~line_in[problem.cand_line]
    used_key, used_node = usage(problem, fixed)
    stock = problem.stock - used_key.astype(np.int64)
    capacity = problem.capacity - used_node
    left = orders_left(problem, fixed)

    if start is None:
        start = greedy_units(
            problem,
            orders=orders,
            stock=stock,
            capacity=capacity,
            orders_left=left,
            shares_left=shares_left(problem, fixed),
        )
    start = start * line_in[problem.cand_line]
    keep = cheapest_candidates(
        problem, lines, params.candidates_per_line if per_line is None else per_line
    )
    if also is not None:
        keep |= also & line_in[problem.cand_line]
    keep |= (units > 0) & line_in[problem.cand_line]
    keep |= start > 0
    budget = None
    if problem.churn is not None:
        # an order may always go back to its current routing
        keep |= (problem.churn.current > 0) & line_in[problem.cand_line]
        if problem.churn.max_moves is not None:
            moved_outside = moved_orders(problem, units) & ~contested
            budget = max(0, problem.churn.max_moves - int(moved_outside.sum()))
    cands = np.flatnonzero(keep)
    pairs = np.unique(problem.cand_pair[cands])
    shares = shares_left(problem, fixed)
    if allowance is not None:
        stock, capacity = allowance.stock(problem), allowance.capacity
        left, shares = allowance.orders_left, allowance.shares_left
        if problem.churn is not None and problem.churn.max_moves is not None:
            budget = allowance.move_budget
    part = ModelInput(
        cands,
        pairs,
        lines,
        orders,
        stock,
        capacity,
        budget,
        orders_left=left,
        shares_left=shares,
    )
    return part, start[cands]


def cheapest_candidates(problem, lines, per_line) -> np.ndarray:
    """Mask of the candidates worth modelling for ``lines``.

    Two views of "cheap", since a node that can serve a whole order shares
    one shipment among its lines: each line's ``per_line`` cheapest
    candidates (shipping + handling of the line alone), and every candidate
    of each order's ``per_line`` best nodes, scored by the cost of serving as
    much of the order as the node holds, the rest at the unfilled penalty.
    """
    in_lines = np.zeros(problem.num_lines, dtype=bool)
    in_lines[lines] = True
    cands = np.flatnonzero(in_lines[problem.cand_line])
    line = problem.cand_line[cands]
    node = problem.cand_node[cands]
    qty = problem.line_qty[line]
    held = np.minimum(qty, problem.stock[node, problem.line_sku[line]])
    per_unit = cand_unit_cost(problem, cands)
    alone_cost = problem.pair_ship_cost[problem.cand_pair[cands]] + per_unit * qty

    pairs, pair_of = np.unique(problem.cand_pair[cands], return_inverse=True)
    covered = np.bincount(pair_of, weights=held, minlength=pairs.size)
    handled = np.bincount(pair_of, weights=per_unit * held, minlength=pairs.size)
    pair_order = problem.pair_order[pairs]
    order_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    pair_cost = (
        problem.pair_ship_cost[pairs]
        + handled
        + problem.unfilled_penalty * (order_units[pair_order] - covered)
    )
    good_pair = rank_within(pair_order, pair_cost) < per_line
    keep = np.zeros(problem.cand_line.size, dtype=bool)
    keep[cands] = (rank_within(line, alone_cost) < per_line) | good_pair[pair_of]
    return keep


def rank_within(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Rank of each element by ``value`` among the elements of its group (0 = least)."""
    order = np.lexsort((value, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, group.size]))
    rank = np.empty(group.size, dtype=np.int64)
    rank[order] = np.arange(group.size) - first
    return rank
