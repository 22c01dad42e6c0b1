"""Joint routing of a batch of orders: the ``optimize`` strategy.

The batch objective is a sum over orders; orders interact only through stock
and node capacity. The method exploits that:

1. **Each order alone.** Every order is routed exactly as if it were alone in
   the pool (:func:`solver.order_dp.solve_order`). The sum of these costs is a
   lower bound (dropping other orders only enlarges each order's choices). If
   the plans fit the stock and capacity together, they are optimal: done.
2. **Contested part.** Orders whose plan uses an over-demanded (node, SKU) or
   an over-loaded node are *contested*, and so is every order whose plan holds
   stock or capacity that the contested orders could want and are short of.
   All other orders keep their own optimum; the contested ones are first
   re-routed greedily, which gives a feasible incumbent at once.
3. **Relax and fix, block by block.** The contested part (in geographic blocks
   when it is large) is solved as an LP over each line's cheapest candidates,
   on what the other orders leave. Orders the LP routes in whole units keep
   that routing; the fractional ones, then the fractional ones with their
   neighbours, are decided by MIPs warm-started from the previous answer.
4. **Proven bound.** The LP duals price the scarce stock and capacity; routing
   every order alone at those prices is a Lagrangian bound, valid for the whole
   batch for any nonnegative prices; a few subgradient steps improve it.
5. **Polish.** While the bound is not yet tight, a contested part of moderate
   size is solved as one MIP over more candidates, and a tiny batch as one
   unpruned MIP (whose own bound is then a bound for the batch).

Every step only accepts answers that are feasible and cheaper, so the answer
is always feasible and the reported gap is a proof, not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from solver.alone import (
    route_each_order_alone,
)
from solver.blocks import geographic_blocks
from solver.bound import Prices, lagrangian_bound
from solver.budget import remaining, within
from solver.contention import (
    orders_using,
    overused,
    reroute_greedily,
    with_neighbours,
)
from solver.cost import CostBreakdown, evaluate
from solver.greedy import greedy_units
from solver.params import Clock, OptimizeParams, Progress
from solver.polish import polish, solve_exactly
from solver.relax_fix import relax_and_fix
from solver.subgradient import subgradient_bound


@dataclass(frozen=True)
class RoutingResult:
    strategy: str
    status: str
    """``optimal`` (proven within the gap), ``feasible``, or ``time_limit``."""
    units: np.ndarray
    """(C,) units per line candidate of the problem."""
    cost: CostBreakdown
    lower_bound: float | None
    stats: dict = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        if self.lower_bound is None or self.cost.total_cost <= 0:
            return None if self.lower_bound is None else 0.0
        return max(0.0, (self.cost.total_cost - self.lower_bound) / self.cost.total_cost)


def solve_greedy(problem) -> RoutingResult:
    """The rule-engine baseline (:mod:`solver.greedy`) as a result."""
    units = greedy_units(problem)
    return RoutingResult("greedy", "feasible", units, evaluate(problem, units), None)


def optimize(
    problem,
    params: OptimizeParams,
    clock: Clock,
    progress: Progress | None = None,
) -> RoutingResult:
    """Route the whole batch jointly; the answer is always feasible."""
    emit = progress or (lambda _phase, _details: None)
    stats: dict = {}

    emit("each order alone", {})
    alone = route_each_order_alone(problem)
    stats["orders_exact_alone"] = int(alone.exact.sum())
    over_stock, over_capacity = overused(problem, alone.units)
    if not over_stock.any() and not over_capacity.any():
        cost = evaluate(problem, alone.units)
        bound = min(alone.bound, cost.total_cost)
        if within(cost.total_cost, bound, params.rel_gap):
            status = "optimal"
        else:
            status = "time_limit" if clock() >= params.time_limit else "feasible"
        stats["contested_orders"] = 0
        return RoutingResult("optimize", status, alone.units, cost, bound, stats)

    emit("contested part", {})
    colliding = orders_using(problem, alone.units, over_stock, over_capacity)
    contested = with_neighbours(problem, alone.units, colliding)
    stats["colliding_orders"] = int(colliding.sum())
    stats["contested_orders"] = int(contested.sum())
    # A feasible incumbent from the start: without the colliding orders no
    # stock or capacity is over-used, so every other order keeps its own
    # optimum and the colliding ones are routed greedily on what is left.
    incumbent = reroute_greedily(problem, alone.units, colliding)
    best = evaluate(problem, incumbent).total_cost
    emit("contested part", {"best": best})

    prices = Prices(problem)
    blocks = geographic_blocks(problem, contested, params.block_orders)
    # Big parts: fewer candidates per line keep each block's LP fast enough
    # for a second pass, whose shifted blocks re-decide the first's borders.
    per_line = params.candidates_per_line if len(blocks) == 1 else params.block_candidates_per_line
    schedule = [(1, b) for b in blocks]
    if len(blocks) > 1:
        schedule += [
            (2, b) for b in geographic_blocks(problem, contested, params.block_orders, shift=0.5)
        ]
    stats["blocks"] = len(blocks)
    stats["lp_fractional_orders"] = 0

    def good_enough(units) -> bool:
        """Already proven within the gap? (Only asked when one block covers all.)"""
        if len(blocks) > 1 or clock() >= params.time_limit:
            return False
        bound = max(alone.bound, lagrangian_bound(problem, alone, prices))
        return within(evaluate(problem, units).total_cost, bound, params.rel_gap)

    timed_out = False
    for step, (sweep, block) in enumerate(schedule):
        steps_left = len(schedule) - step if sweep == 1 else len(schedule) - step + len(blocks)
        share = remaining(params, clock, 0.1 * params.time_limit) / steps_left
        if clock() >= 0.85 * params.time_limit:
            timed_out = sweep == 1  # an unfinished second sweep is only an unused chance
            break
        label = f"sweep {sweep}, block {step % len(blocks) + 1}/{len(blocks)}"
        emit(f"{label}: linear relaxation", {"orders": int(block.sum())})
        started = clock()
        candidate, fractional = relax_and_fix(
            problem, incumbent, block, params, share, prices, clock, stats, per_line, good_enough
        )
        stats.setdefault("block_seconds", []).append(round(clock() - started, 2))
        stats["lp_fractional_orders"] += fractional
        if candidate is None:
            timed_out = True
            continue
        candidate_cost = evaluate(problem, candidate).total_cost
        if candidate_cost < best:
            incumbent, best = candidate, candidate_cost
        emit(f"{label}: joint MIP", {"best": best})

    emit("lower bound", {"best": best})
    started = clock()
    bound = alone.bound
    # Past the time limit the answer goes out with the bound it already has.
    if clock() < params.time_limit:
        bound = max(bound, lagrangian_bound(problem, alone, prices))
    if not within(best, bound, params.rel_gap) and clock() < params.time_limit:
        deadline = started + max(0.25 * remaining(params, clock, 0.0), 0.1)
        bound = max(bound, subgradient_bound(problem, alone, prices, best, clock, deadline, stats))
    stats["bound_seconds"] = round(clock() - started, 2)
    emit("lower bound", {"best": best, "bound": bound})

    if not within(best, bound, params.rel_gap) and contested.sum() <= params.polish_orders:
        emit("joint MIP polish", {"best": best, "bound": bound})
        started = clock()
        polished, finished = polish(problem, incumbent, contested, params, clock, emit)
        stats["polish_seconds"] = round(clock() - started, 2)
        timed_out |= not finished
        polished_cost = evaluate(problem, polished).total_cost
        if polished_cost < best:
            incumbent, best = polished, polished_cost

    if (
        not within(best, bound, params.rel_gap)
        and problem.cand_line.size <= params.exact_candidates
    ):
        emit("exact MIP", {"best": best, "bound": bound})
        incumbent, exact_bound, finished = solve_exactly(problem, incumbent, params, clock, best)
        bound = max(bound, exact_bound)
        timed_out |= not finished
        best = evaluate(problem, incumbent).total_cost

    cost = evaluate(problem, incumbent)
    bound = min(bound, cost.total_cost)
    if within(cost.total_cost, bound, params.rel_gap):
        status = "optimal"
    elif timed_out or clock() >= params.time_limit:
        status = "time_limit"
    else:
        status = "feasible"
    return RoutingResult("optimize", status, incumbent, cost, bound, stats)
