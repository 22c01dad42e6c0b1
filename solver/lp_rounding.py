"""A whole answer from the joint LP: keep what it decides, repair the rest.

The joint LP (solved once, for the whole batch or contested part, so that every
decision sees every other order's scarcity) routes most orders in whole units.
Those keep that routing wherever the kept plans fit the stock and capacity
together: per over-used resource, the plans the LP is most confident of are
kept while they fit, and the orders of the others are dropped (so what remains
fits for sure). The fractional and dropped orders are then routed greedily on what is left,
with the LP's prices of scarce stock and capacity added to every unit's cost,
and finally the one-unit orders among them are re-routed exactly by a
min-cost flow (:mod:`solver.unit_flow`). The answer is always feasible.

A second rounding (:func:`guided_shipment_costs`) keeps the LP's shipments, not
its units: the shipments the LP opens are cheap in one min-cost flow over all
lines, every other costs a whole shipment per unit. Given which shipments are
open, routing the units is exactly a flow, so the flow settles the fill of the
scarce stock jointly while the LP's choice of shipments keeps orders together;
an unconverged LP's shipments are a good guide where its units are not.
"""

from __future__ import annotations

import numpy as np

from solver.contention import overused, usage
from solver.greedy import greedy_units
from solver.unit_flow import route_single_units_by_flow, shipment_cost_per_unit

INTEGRAL_TOLERANCE = 0.05
"""A first-order LP's answer is approximate: values this close to an integer count as it."""


def keep_whole_units(problem, units: np.ndarray, part, v, x: np.ndarray, converged: bool = True):
    """The part's orders that the LP ``x`` routes in whole units, where they fit.

    From an LP stopped before its tolerance (``converged`` false) only plans that
    fill every unit are kept: its near-zero values would pass for whole units.

    Returns (units with those orders' LP plans and no units for the part's
    other orders, mask of those other orders: fractional or dropped). Orders
    outside ``part`` keep their plans in ``units``. The result is feasible.
    """
    cand_x = x[: v.num_x]
    pair_y = x[v.y0 : v.y0 + v.num_y]
    fractional = np.zeros(problem.num_orders, dtype=bool)
    off_cand = np.abs(cand_x - np.rint(cand_x)) > INTEGRAL_TOLERANCE
    off_pair = np.abs(pair_y - np.rint(pair_y)) > INTEGRAL_TOLERANCE
    fractional[problem.line_order[problem.cand_line[part.cands[off_cand]]]] = True
    fractional[problem.pair_order[part.pairs[off_pair]]] = True
    in_part = np.zeros(problem.num_orders, dtype=bool)
    in_part[part.orders] = True

    result = units * ~in_part[problem.line_order[problem.cand_line]]
    keep = in_part & ~fractional
    rounded = np.rint(cand_x).astype(np.int64)
    take = keep[problem.line_order[problem.cand_line[part.cands]]]
    result[part.cands[take]] = rounded[take]
    # A line never gets more than it asks (the rounding could, by tolerance).
    line_units = np.bincount(problem.cand_line, weights=result, minlength=problem.num_lines)
    keep[problem.line_order[line_units > problem.line_qty]] = False
    if not converged:
        keep[problem.line_order[line_units < problem.line_qty]] = False
    keep &= ~_orders_beyond_limits(problem, result, keep, cand_x, part)
    undecided = in_part & ~keep
    result *= ~undecided[problem.line_order[problem.cand_line]]
    return result, undecided


def repair(problem, units: np.ndarray, undecided, movable, unit_price) -> np.ndarray:
    """Route the ``undecided`` orders (no units in ``units``) greedily on what is
    left, at costs plus ``unit_price``; then the one-unit orders of ``movable``
    exactly by a min-cost flow. Feasible in, feasible out."""
    used_key, used_node = usage(problem, units)
    result = units + greedy_units(
        problem,
        orders=np.flatnonzero(undecided),
        stock=problem.stock - used_key.astype(np.int64),
        capacity=problem.capacity - used_node,
        unit_price=unit_price,
    )
    flowed = route_single_units_by_flow(problem, result, movable)
    return result if flowed is None else flowed


def guided_shipment_costs(problem, part, v, x: np.ndarray, threshold: float) -> np.ndarray:
    """(P,) a shipment's cost per unit for the LP-guided flow (see the module's text).

    Open: the shipments the LP ``x`` of ``part`` uses at least ``threshold``,
    and each order's most used one; they cost their share of the order's units.
    Every other shipment of the part's orders costs itself plus a split penalty
    per unit; those of orders outside the part their cost in the unguided flow
    (:func:`solver.unit_flow.shipment_cost_per_unit`).
    """
    y = np.zeros(problem.pair_order.size)
    y[part.pairs] = x[v.y0 : v.y0 + v.num_y]
    strongest = np.zeros(problem.num_orders)
    np.maximum.at(strongest, problem.pair_order, y)
    opened = (y >= threshold) | ((y >= strongest[problem.pair_order] - 1e-9) & (y > 0.05))
    order_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    share = problem.pair_ship_cost / np.maximum(order_units[problem.pair_order], 1)
    guided = np.where(opened, share, problem.pair_ship_cost + problem.split_penalty)
    in_part = np.zeros(problem.num_orders, dtype=bool)
    in_part[part.orders] = True
    outside = ~in_part[problem.pair_order]
    if outside.any():
        guided[outside] = shipment_cost_per_unit(problem)[outside]
    return guided


def _orders_beyond_limits(problem, units, keep, cand_x, part) -> np.ndarray:
    """Kept orders to drop so that the kept plans fit every stock and capacity.

    Per over-used (node, SKU) and per over-loaded node, the kept plans are
    taken in order of the LP's confidence (its value on the candidate, most
    first) while they fit; the orders of the rest are dropped. Orders outside
    the part (fixed) always stay: without the part they fitted.
    """
    over_stock, over_capacity = overused(problem, units)
    drop = np.zeros(problem.num_orders, dtype=bool)
    if not over_stock.any() and not over_capacity.any():
        return drop
    confidence = np.zeros(problem.cand_line.size)
    confidence[part.cands] = cand_x
    cand_order = problem.line_order[problem.cand_line]
    fixed = ~keep[cand_order]
    cand_sku = problem.line_sku[problem.cand_line]
    n_skus = problem.sku_ids.size
    used = np.flatnonzero(units > 0)
    for group, limit_of, over in (
        (
            problem.cand_node[used] * n_skus + cand_sku[used],
            problem.stock.ravel(),
            over_stock.ravel(),
        ),
        (problem.cand_node[used], problem.capacity, over_capacity),
    ):
        hot = over[group]
        cands, keys = used[hot], group[hot]
        if cands.size == 0:
            continue
        # fixed units first (they must stay), then by confidence, most first
        order = np.lexsort((-confidence[cands], ~fixed[cands], keys))
        cands, keys = cands[order], keys[order]
        taken = units[cands].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        running = np.cumsum(taken)
        before = np.repeat(running[starts] - taken[starts], np.diff(np.r_[starts, keys.size]))
        beyond = running - before > limit_of[keys]
        drop[cand_order[cands[beyond & ~fixed[cands]]]] = True
    return drop & keep
