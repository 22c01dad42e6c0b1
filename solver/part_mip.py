"""A part of the batch re-decided by MIP on what the other orders leave: split into
independent components, and for a big linked part a large neighbourhood search (small
MIPs around one node at a time) before the whole-part MIP."""

from __future__ import annotations

import numpy as np

from solver.budget import part_abs_gap
from solver.candidates import model_part
from solver.contention import independent_components
from solver.cost import evaluate
from solver.cost import unit_cost as cand_unit_cost
from solver.mip import MipParams, SolveStatus, solve_mip
from solver.model import ModelInput, build_model, start_vector
from solver.params import stop_requested


def solve_part(
    problem,
    units,
    orders,
    params,
    time_limit,
    batch_cost,
    clock,
    start=None,
    per_line=None,
    on_progress=None,
    search=False,
    also=None,
):
    """Re-route the masked orders by MIP on what the others in ``units`` leave.

    ``start`` (default: greedy) must be feasible; the MIP can only improve on
    it. Orders that share no stock or capacity row that could bind form
    independent components, each solved as its own (much easier) MIP, smallest
    first. With ``search``, a big linked part first goes through a large
    neighbourhood search. ``also`` masks candidates to model besides each line's
    ``per_line`` cheapest. Returns the new units and the worst MIP status.
    """
    deadline = clock() + time_limit
    part, start_units = model_part(
        problem, units, orders, params, start=start, per_line=per_line, also=also
    )
    model, v, _keys, rows = build_model(problem, part)
    result = units.copy()
    result[part.cands] = start_units
    components = independent_components(problem, part, model, v, rows)
    if search and len(components) == 1 and orders.sum() > params.lns_orders:
        # A big tightly linked part: improve it by many small MIPs first, so
        # that the whole-part MIP starts from a good answer and may prove it.
        result = large_neighbourhood_search(
            problem, result, orders, part, params, 0.7 * time_limit, batch_cost, clock, per_line
        )
        part, start_units = model_part(
            problem, result, orders, params, start=result, per_line=per_line, also=also
        )
        model, v, _keys, rows = build_model(problem, part)
        time_limit *= 0.3
    if len(components) == 1:
        mip = solve_mip(
            model,
            MipParams(
                time_limit=time_limit,
                rel_gap=params.rel_gap / 4,
                abs_gap=part_abs_gap(params, batch_cost),
                seed=params.seed,
            ),
            start=start_vector(problem, part, v, start_units),
            on_progress=on_progress,
            stop=stop_requested(clock),
        )
        if mip.x is not None:
            result[part.cands] = v.extract(mip.x)
        return result, mip.status
    worst = SolveStatus.OPTIMAL
    total = sum(int(c.sum()) for c in components)
    for component in sorted(components, key=lambda c: int(c.sum())):
        if clock() >= deadline:
            # Each component's model is built on what the whole batch leaves
            # (about 0.2 s at 100,000 orders): hundreds of them overran a
            # limit of 8 s by 90 s there. The rest keep their start.
            worst = SolveStatus.FEASIBLE
            break
        budget = min(time_limit * int(component.sum()) / total, deadline - clock())
        result, status = solve_part(
            problem,
            result,
            component,
            params,
            budget,
            batch_cost,
            clock,
            start=result,
            per_line=per_line,
            search=search,
            also=also,
        )
        if status != SolveStatus.OPTIMAL:
            worst = status
    return result, worst


def large_neighbourhood_search(
    problem, units, orders, part: ModelInput, params, time_limit, batch_cost, clock, per_line
) -> np.ndarray:
    """Improve ``units`` for the masked orders by re-solving small neighbourhoods.

    A neighbourhood is the orders that have one node among their candidates
    (at most ``params.lns_orders`` of them, the ones for which the node is
    cheapest); nodes are visited in a seeded random order, round after round,
    until a round improves nothing or the time is used up. Each step is a
    small MIP started from the current answer, so the cost never goes up.
    """
    deadline = clock() + time_limit
    rng = np.random.default_rng(params.seed)
    cand_orders = problem.line_order[problem.cand_line[part.cands]]
    cand_nodes = problem.cand_node[part.cands]
    unit_cost = problem.pair_ship_cost[problem.cand_pair[part.cands]] + cand_unit_cost(
        problem, part.cands
    )
    nodes = np.unique(cand_nodes)
    best = evaluate(problem, units).total_cost
    for _round in range(params.lns_rounds):
        improved = False
        for node in rng.permutation(nodes).tolist():
            if clock() >= deadline:
                return units
            at_node = cand_nodes == node
            by_cost = cand_orders[at_node][np.argsort(unit_cost[at_node], kind="stable")]
            _orders, first = np.unique(by_cost, return_index=True)
            chosen = by_cost[np.sort(first)][: params.lns_orders]  # the cheapest first
            if chosen.size < 2:
                continue
            mask = np.zeros(problem.num_orders, dtype=bool)
            mask[chosen] = True
            candidate, _status = solve_part(
                problem,
                units,
                mask,
                params,
                min(1.0, deadline - clock()),
                batch_cost,
                clock,
                start=units,
                per_line=per_line,
            )
            cost = evaluate(problem, candidate).total_cost
            if cost < best - 1e-9:
                units, best, improved = candidate, cost, True
        if not improved:
            break
    return units
