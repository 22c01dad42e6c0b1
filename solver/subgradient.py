"""Projected subgradient steps on the Lagrangian prices (Polyak's step towards the
incumbent's cost); every evaluated bound is valid, the best is kept."""

from __future__ import annotations

import numpy as np

from solver.alone import (
    Alone,
    orders_alone,
)
from solver.bound import Prices
from solver.contention import (
    usage,
)


def subgradient_bound(
    problem, alone: Alone, prices: Prices, upper, clock, deadline, stats
) -> float:
    """Improve the Lagrangian bound by projected subgradient steps from the LP prices.

    Each step routes every priced order alone at the current prices, moves
    each price along its row's excess (units used - limit) with Polyak's step
    towards ``upper``, and keeps the best bound seen: every one is valid.
    """
    key, node = prices.key.copy(), prices.node.copy()
    finite = np.isfinite(problem.capacity)
    capacity = np.where(finite, problem.capacity, 0.0)
    best = float("-inf")
    theta, stall = 1.0, 0
    iterations = 0
    while clock() < deadline and iterations < 200:
        iterations += 1
        price = key + node[:, None]
        touched = np.zeros(problem.num_orders, dtype=bool)
        touched[
            problem.line_order[
                problem.cand_line[price[problem.cand_node, problem.line_sku[problem.cand_line]] > 0]
            ]
        ] = True
        units, cost, _exact = orders_alone(problem, touched, price)
        cand_touched = touched[problem.line_order[problem.cand_line]]
        units = np.where(cand_touched, units, alone.units)
        value = float(alone.cost[~touched].sum() + cost[touched].sum())
        value -= float((key * problem.stock).sum() + (node * capacity).sum())
        if value > best + 1e-9:
            best, stall = value, 0
        else:
            stall += 1
            if stall >= 3:
                theta, stall = theta / 2, 0
        used_key, used_node = usage(problem, units)
        g_key = used_key - problem.stock
        g_node = np.where(finite, used_node - capacity, 0.0)
        g_key[(key <= 0) & (g_key < 0)] = 0.0
        g_node[(node <= 0) & (g_node < 0)] = 0.0
        norm = float((g_key**2).sum() + (g_node**2).sum())
        if norm == 0 or upper - value <= 0 or theta < 1e-4:
            break
        step = theta * (upper - value) / norm
        key = np.maximum(key + step * g_key, 0.0)
        node = np.maximum(node + step * g_node, 0.0)
    stats["subgradient_iterations"] = iterations
    return best
