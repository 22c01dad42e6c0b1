"""Regional sweeps: the contested part's LP, region after region.

A national batch's contested part (a million orders over thousands of stores)
is far too big for one LP, and without one its answer comes from a flow that
spreads each order's shipment cost over its units, gathered afterwards by
single-order moves (:mod:`solver.order_moves`) and slope scaling
(:mod:`solver.slope_scaling`). Stores reach only nearby customers, so most of
the contention is local: the contested orders are cut into geographic regions
(:func:`solver.blocks.geographic_blocks`) and each region in turn gets what
the joint-LP path gives a whole batch: its LP over each line's cheapest
candidates and the incumbent's, on what every other order holds
(:func:`solver.joint_lp.start_joint_lp`), rounded by a min-cost flow guided by
the LP's shipments (:func:`solver.lp_rounding.guided_shipment_costs`), then
single-order moves. Regions follow one another (each on the answer its
predecessors left, so every step is feasible as a whole); the answer is kept
only where it is cheaper. A second sweep with shifted borders re-decides the
first's.

Measured on a 100,000-order scarce batch over 5,000 stores and 30 warehouses,
from its contested lines' flow (3,924,638): five regions of 20,000 orders,
3,355,935 in 97 s, 3,330,075 after a second sweep (190 s); the national path
of flow, moves and slope scaling reached 3,447,656 in 300 s.
"""

from __future__ import annotations

import numpy as np

from solver.blocks import geographic_blocks
from solver.cost import evaluate
from solver.joint_lp import start_joint_lp
from solver.lp_rounding import guided_shipment_costs
from solver.order_moves import improve_orders
from solver.unit_flow import route_lines_by_flow


def regional_sweeps(
    problem,
    units: np.ndarray,
    contested: np.ndarray,
    floor: np.ndarray,
    params,
    clock,
    deadline: float,
    accept=None,
) -> tuple[np.ndarray, dict]:
    """``units`` improved region by region (see the module) until clock ``deadline``.

    ``floor`` (O,) is each order's optimum alone (for the moves); ``accept``
    (units -> bool) may refuse an answer (e.g. one past a shipment cap).
    Regions hold ``params.region_orders`` contested orders; at most
    ``params.region_sweeps`` sweeps, each a region's LP stopping at
    ``params.first_leg_tolerance`` and its moves at most
    ``params.region_moves_share`` of the region's time. Returns the units and,
    per sweep, the cost after it and the regions solved and improved.
    """
    best = evaluate(problem, units).total_cost
    details: dict = {"costs": [], "regions": [], "improved": []}
    for sweep in range(params.region_sweeps):
        regions = geographic_blocks(problem, contested, params.region_orders, shift=0.5 * sweep)
        solved = improved = 0
        for index, region in enumerate(regions):
            left = deadline - clock()
            # a region's share of what is left (at least what a small LP needs)
            share = left / (len(regions) - index)
            if left < params.region_min_seconds:
                break
            candidate = _region(problem, units, region, floor, params, clock, share)
            solved += 1
            if candidate is None or (accept is not None and not accept(candidate)):
                continue
            cost = evaluate(problem, candidate).total_cost
            if cost < best - 1e-9:
                units, best = candidate, cost
                improved += 1
        details["costs"].append(round(best, 2))
        details["regions"].append(solved)
        details["improved"].append(improved)
        if solved < len(regions) or improved == 0:
            break
    return units, details


def _region(problem, units, region, floor, params, clock, seconds: float):
    """One region re-decided from ``units``: its LP, the LP-guided flow, moves.
    Returns the new units (feasible: the others' units are untouched) or ``None``."""
    started = clock()
    pending = start_joint_lp(
        problem,
        units,
        region,
        params,
        clock,
        seconds * (1.0 - params.region_moves_share),
        background=False,
        rel_tol=params.first_leg_tolerance,
    )
    try:
        joint = pending.result()
    finally:
        pending.close()
    if joint is None:
        return None
    per_unit = guided_shipment_costs(
        problem, joint.part, joint.vars, joint.x, params.open_shipment_threshold
    )
    del joint
    flowed = route_lines_by_flow(problem, units, region, per_unit)
    if flowed is None:
        return None
    moved, _passes = improve_orders(
        problem, flowed, region, floor, clock, max(started + seconds, clock() + 1.0)
    )
    return moved
