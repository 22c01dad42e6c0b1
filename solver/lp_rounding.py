"""A whole answer from the joint LP: keep what it decides, repair the rest.

The LP of the contested orders (solved once, for the whole part, so that every
decision sees every other order's scarcity) routes most orders in whole units.
Those keep that routing wherever the kept plans fit the stock and capacity
together; an order whose plan touches a resource the kept plans over-use is
dropped with every other order touching it (so what remains fits for sure).
The fractional and dropped orders are then routed greedily on what is left,
with the LP's prices of scarce stock and capacity added to every unit's cost,
and finally the one-unit orders among them are re-routed exactly by a
min-cost flow (:mod:`solver.unit_flow`). The answer is always feasible.
"""

from __future__ import annotations

import numpy as np

from solver.contention import orders_using, overused, usage
from solver.greedy import greedy_units
from solver.unit_flow import route_single_units_by_flow

INTEGRAL_TOLERANCE = 0.05
"""A first-order LP's answer is approximate: values this close to an integer count as it."""


def round_joint_lp(
    problem,
    units: np.ndarray,
    part,
    v,
    x: np.ndarray,
    unit_price: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """An integral answer from the part's LP solution ``x``.

    ``units`` is the incumbent (feasible); orders outside ``part`` keep its
    plans. Returns (units, mask of the part's orders that did not keep the LP's
    routing: fractional or dropped, routed by the repair).
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
    over_line = line_units > problem.line_qty
    keep[problem.line_order[over_line]] = False
    over_stock, over_capacity = overused(problem, result)
    if over_stock.any() or over_capacity.any():
        keep &= ~orders_using(problem, result, over_stock, over_capacity)
    result *= ~(in_part & ~keep)[problem.line_order[problem.cand_line]]

    repair = in_part & ~keep
    used_key, used_node = usage(problem, result)
    result += greedy_units(
        problem,
        orders=np.flatnonzero(repair),
        stock=problem.stock - used_key.astype(np.int64),
        capacity=problem.capacity - used_node,
        unit_price=unit_price,
    )
    flowed = route_single_units_by_flow(problem, result, in_part)
    if flowed is not None:
        result = flowed
    return result, repair
