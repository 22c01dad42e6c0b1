"""Relax and fix: a part's LP routes most orders in whole units; they keep that
routing and MIPs decide the fractional rest, then the fractional orders with their
neighbours."""

from __future__ import annotations

from solver.candidates import model_part
from solver.contention import (
    fractional_orders,
    with_neighbours,
)
from solver.cost import evaluate
from solver.mip import MipParams, solve_mip
from solver.model import build_model
from solver.params import stop_requested
from solver.part_mip import solve_part


def relax_and_fix(
    problem, incumbent, block, params, time_limit, prices, clock, stats, per_line, good_enough
):
    """Re-route one block on what the others leave.

    The block's LP relaxation routes most orders in whole units: they keep
    that routing, and a small MIP decides the fractional rest. Then, time
    permitting, the fractional orders are decided again together with their
    neighbours (the orders holding the stock they are short of), warm-started
    from the first answer. Returns (units or None when the LP did not finish,
    number of fractional orders).
    """
    deadline = clock() + time_limit
    part, _ = model_part(problem, incumbent, block, params, start=incumbent, per_line=per_line)
    model, v, keys, rows = build_model(problem, part)
    started = clock()
    lp = solve_mip(model, MipParams(time_limit=time_limit, relax=True), stop=stop_requested(clock))
    stats.setdefault("lp_seconds", []).append(round(clock() - started, 2))
    if lp.x is None:
        return None, 0
    prices.record(lp, keys, rows)
    fractional = fractional_orders(problem, part, v, lp.x)
    units = incumbent.copy()
    units[part.cands] = v.extract(lp.x)
    if not fractional.any():
        return units, 0
    batch_cost = evaluate(problem, incumbent).total_cost
    units[part.cands] *= ~fractional[problem.line_order[problem.cand_line[part.cands]]]
    units = fix_the_rest(
        problem, units, fractional, block, params, deadline, batch_cost, clock, stats, good_enough
    )
    return units, int(fractional.sum())


def fix_the_rest(
    problem,
    units,
    undecided,
    block,
    params,
    deadline,
    batch_cost,
    clock,
    stats,
    good_enough,
    start=None,
):
    """The orders the LP left undecided, by MIP on what the decided ones leave.

    ``units`` holds the decided orders' plans (the undecided ones' are
    replaced); ``start`` (default: greedy) is a feasible start for the
    undecided ones. Then, time permitting, the undecided orders are decided
    again together with their neighbours (the orders holding the stock they
    are short of) within ``block``, warm-started from the first answer, by a
    large neighbourhood search and a MIP (each step only improves).
    """
    units, _ = solve_part(
        problem,
        units,
        undecided,
        params,
        max(0.5 * (deadline - clock()), 1.0),
        batch_cost,
        clock,
        start=start,
    )
    neighbourhood = with_neighbours(problem, units, undecided) & block
    if (
        neighbourhood.sum() > undecided.sum()
        and deadline - clock() > 0.5
        and not good_enough(units)
    ):
        started = clock()
        # Leave time for the bound and later blocks: this step only improves.
        budget = 0.6 * (deadline - clock())
        units, status = solve_part(
            problem,
            units,
            neighbourhood,
            params,
            budget,
            batch_cost,
            clock,
            start=units,
            search=True,
        )
        stats.setdefault("neighbourhood_mip", []).append(
            (int(neighbourhood.sum()), round(clock() - started, 2), str(status))
        )
    return units
