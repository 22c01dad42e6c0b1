"""One-unit orders routed exactly, all at once, as a min-cost flow.

With every other order's plan fixed, orders of one line and one unit interact
only through what the others leave of each (node, SKU) stock and each node's
capacity; each one either takes one unit from one of its candidates (its
shipment and handling cost) or stays unfilled (the unfilled penalty). That is
exactly a min-cost flow:

    source -> order (1 unit) -> (node, SKU) key (cost of the candidate)
           -> node (at most the stock left of the key) -> sink (at most the
           capacity left of the node);   order -> sink (the unfilled penalty)

OR-Tools' ``SimpleMinCostFlow`` solves it in well under a second for tens of
thousands of orders. Costs are integers there: they are scaled by
``COST_SCALE`` and rounded, so the flow is optimal to within
``0.5 / COST_SCALE`` per order; its answer is feasible whatever the rounding,
and the caller keeps it only when its true cost is lower.
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
    from ortools.graph.python import min_cost_flow

    lines_per_order = np.diff(problem.order_line_start)
    first_line = problem.order_line_start[:-1].clip(max=max(problem.num_lines - 1, 0))
    single = movable & (lines_per_order == 1) & (problem.line_qty[first_line] == 1)
    orders = np.flatnonzero(single)
    if orders.size == 0:
        return units
    cand_order = problem.line_order[problem.cand_line]
    in_flow = single[cand_order]
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
    cap_left = problem.capacity[nodes] - used_node[nodes]
    cap_left = np.where(np.isfinite(cap_left), cap_left, orders.size)

    n_orders, n_keys, n_nodes = orders.size, keys.size, nodes.size
    source = 0
    order_vertex = 1 + np.arange(n_orders)
    key_vertex = 1 + n_orders + np.arange(n_keys)
    node_vertex = 1 + n_orders + n_keys + np.arange(n_nodes)
    sink = 1 + n_orders + n_keys + n_nodes
    local_order = np.searchsorted(orders, cand_order[cands])
    cand_cost = problem.pair_ship_cost[problem.cand_pair[cands]] + cand_unit_cost(problem, cands)
    # arcs: candidate arcs first (their flows are read back), then the rest
    tails = np.concatenate(
        [
            order_vertex[local_order],
            np.full(n_orders, source),
            order_vertex,
            key_vertex,
            node_vertex,
        ]
    )
    heads = np.concatenate(
        [
            key_vertex[key_of],
            order_vertex,
            np.full(n_orders, sink),
            node_vertex[node_of_key],
            np.full(n_nodes, sink),
        ]
    )
    capacity = np.concatenate(
        [
            np.ones(cands.size),
            np.ones(n_orders),
            np.ones(n_orders),
            np.maximum(stock_left, 0),
            np.maximum(np.floor(cap_left), 0),
        ]
    ).astype(np.int64)
    cost = np.concatenate(
        [
            np.rint(cand_cost * COST_SCALE),
            np.zeros(n_orders),
            np.full(n_orders, np.rint(problem.unfilled_penalty * COST_SCALE)),
            np.zeros(n_keys),
            np.zeros(n_nodes),
        ]
    ).astype(np.int64)
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(tails, heads, capacity, cost)
    supplies = np.zeros(sink + 1, dtype=np.int64)
    supplies[source], supplies[sink] = n_orders, -n_orders
    flow.set_nodes_supplies(np.arange(sink + 1), supplies)
    if flow.solve() != flow.OPTIMAL:
        return None
    taken = flow.flows(arcs[: cands.size]) > 0
    result = kept.copy()
    result[cands[taken]] = 1
    return result
