"""Lines routed all at once as a min-cost flow: exact for one-unit orders,
a linearised shipment cost for the others.

With every other order's plan fixed, the moved orders interact only through
what the others leave of each (node, SKU) stock and each node's capacity.
Each line either takes units from its candidates or leaves them unfilled:

    source -> line (its quantity) -> (node, SKU) key (per unit: handling plus
           the shipment's cost per unit) -> node (at most the stock left of
           the key) -> sink (at most the capacity left of the node);
    line -> sink (the unfilled penalty per unit)

For an order of one line and one unit the shipment's cost per unit *is* its
cost, so routing those orders this way is exact
(:func:`route_single_units_by_flow`). For bigger orders a shipment's cost is
shared by the units it carries, which a flow cannot see; it is linearised
(:func:`route_lines_by_flow`): the shipment's cost (plus one split penalty)
spread over all the order's units, as if the whole order shipped from that
node. The flow then settles the question that dominates a scarce batch, which
lines get the scarce units, exactly and jointly; consolidating shipments is
left to the steps after it (:mod:`solver.order_moves`).

OR-Tools' ``SimpleMinCostFlow`` solves it in about two seconds for 20,000
orders and half a million candidates. Costs are integers there: they are scaled
by ``COST_SCALE`` and rounded. The answer is feasible whatever the rounding, and
callers keep it only when its true cost is lower.
"""

from __future__ import annotations

import numpy as np

from solver.cost import unit_cost as cand_unit_cost

COST_SCALE = 10_000
"""Cost units per currency unit in the flow (costs are integers there)."""


def route_single_units_by_flow(
    problem, units: np.ndarray, movable: np.ndarray
) -> np.ndarray | None:
    """``units`` with the one-line, one-unit orders of mask ``movable`` re-routed optimally.

    The other orders keep their plans in ``units``. Returns ``None`` when the
    flow solver fails (the caller keeps its answer).
    """
    lines_per_order = np.diff(problem.order_line_start)
    first_line = problem.order_line_start[:-1].clip(max=max(problem.num_lines - 1, 0))
    single = movable & (lines_per_order == 1) & (problem.line_qty[first_line] == 1)
    return route_lines_by_flow(problem, units, single)


def route_lines_by_flow(
    problem, units: np.ndarray, movable: np.ndarray, per_unit: np.ndarray | None = None
) -> np.ndarray | None:
    """``units`` with every line of the orders of mask ``movable`` re-routed by one
    min-cost flow on what the other orders leave (see the module's text).

    ``per_unit`` (P,) is each shipment's cost per unit carried in the flow
    (default :func:`shipment_cost_per_unit`; the LP's rounding passes its own,
    :func:`solver.lp_rounding.guided_shipment_costs`). Returns ``None`` when the
    flow solver fails (the caller keeps its answer).
    """
    from ortools.graph.python import min_cost_flow

    lines = np.flatnonzero(movable[problem.line_order])
    if lines.size == 0:
        return units
    cand_order = problem.line_order[problem.cand_line]
    in_flow = movable[cand_order]
    kept = np.where(in_flow, 0, units)
    n_skus = problem.sku_ids.size
    key_code = problem.cand_node * n_skus + problem.line_sku[problem.cand_line]
    used_key = np.bincount(key_code, weights=kept, minlength=problem.num_nodes * n_skus)
    used_node = np.bincount(problem.cand_node, weights=kept, minlength=problem.num_nodes)

    cands = np.flatnonzero(in_flow)
    keys, key_of = np.unique(key_code[cands], return_inverse=True)
    key_node = keys // n_skus
    stock_left = problem.stock.ravel()[keys] - used_key[keys]
    nodes, node_of_key = np.unique(key_node, return_inverse=True)
    demand = problem.line_qty[lines]
    total = int(demand.sum())
    cap_left = problem.capacity[nodes] - used_node[nodes]
    cap_left = np.where(np.isfinite(cap_left), cap_left, total)

    n_lines, n_keys, n_nodes = lines.size, keys.size, nodes.size
    source = 0
    line_vertex = 1 + np.arange(n_lines)
    key_vertex = 1 + n_lines + np.arange(n_keys)
    node_vertex = 1 + n_lines + n_keys + np.arange(n_nodes)
    sink = 1 + n_lines + n_keys + n_nodes
    local_line = np.searchsorted(lines, problem.cand_line[cands])
    if per_unit is None:
        per_unit = shipment_cost_per_unit(problem)
    cand_cost = per_unit[problem.cand_pair[cands]] + cand_unit_cost(problem, cands)
    # arcs: candidate arcs first (their flows are read back), then the rest
    tails = np.concatenate(
        [line_vertex[local_line], np.full(n_lines, source), line_vertex, key_vertex, node_vertex]
    )
    heads = np.concatenate(
        [
            key_vertex[key_of],
            line_vertex,
            np.full(n_lines, sink),
            node_vertex[node_of_key],
            np.full(n_nodes, sink),
        ]
    )
    capacity = np.concatenate(
        [
            problem.line_qty[problem.cand_line[cands]],
            demand,
            demand,
            np.maximum(stock_left, 0),
            np.maximum(np.floor(cap_left), 0),
        ]
    ).astype(np.int64)
    cost = np.concatenate(
        [
            np.rint(cand_cost * COST_SCALE),
            np.zeros(n_lines),
            np.full(n_lines, np.rint(problem.unfilled_penalty * COST_SCALE)),
            np.zeros(n_keys),
            np.zeros(n_nodes),
        ]
    ).astype(np.int64)
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(tails, heads, capacity, cost)
    supplies = np.zeros(sink + 1, dtype=np.int64)
    supplies[source], supplies[sink] = total, -total
    flow.set_nodes_supplies(np.arange(sink + 1), supplies)
    if flow.solve() != flow.OPTIMAL:
        return None
    result = kept.copy()
    result[cands] = flow.flows(arcs[: cands.size])
    return result


def shipment_cost_per_unit(problem) -> np.ndarray:
    """(P,) each shipment candidate's cost per unit when it carries its whole order:
    exact for one-unit orders; for others, the split penalty is added once (a
    second shipment pays it), so the flow is not drawn to split for nothing."""
    order_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    single = order_units[problem.pair_order] <= 1
    fixed = problem.pair_ship_cost + np.where(single, 0.0, problem.split_penalty)
    return fixed / np.maximum(order_units[problem.pair_order], 1)
