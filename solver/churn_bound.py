"""The proven lower bound of a re-optimization, and its price search.

Relax stock and capacity with nonnegative prices, and the move limit with a
price ``mu >= 0``. Each order alone then takes the cheaper of keeping its
current routing (its cost plus the prices of what it holds) and its best
priced routing (the vectorised oracle's relaxed optimum, :mod:`solver.pricing`,
a lower bound of it) plus the move cost plus ``mu``. The sum over orders, less
the prices times the limits and ``mu`` times the move limit, is a lower bound
of the re-optimization for every such price vector: dropping constraints and
pricing them can only lower the optimum.

For given stock prices the best ``mu`` is exact: the bound is concave and
piecewise linear in it, with slope (orders better off moving) - (move limit),
so ``mu`` is the (limit + 1)-th largest advantage of moving. The stock prices
are improved by projected subgradient steps (Polyak's step towards a feasible
answer's cost), from the free solve's prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.bound import Prices
from solver.cost import order_costs
from solver.pricing import PricingStructure, build_structure, price_orders


@dataclass(frozen=True)
class ChurnDual:
    """The Lagrangian at one price vector."""

    value: float
    used_key: np.ndarray
    """(K,) units each stock key would give in the relaxed answer."""
    used_node: np.ndarray
    """(N,) units each node would handle."""
    moving: int
    """Orders that take their priced routing."""


def churn_lagrangian(
    problem, structure: PricingStructure, key_price: np.ndarray, node_price: np.ndarray
) -> ChurnDual:
    """The bound at stock prices ``key_price`` (K,) and capacity prices ``node_price`` (N,)."""
    churn = problem.churn
    finite = np.isfinite(problem.capacity)
    node_price = np.where(finite, node_price, 0.0)
    priced = price_orders(problem, structure, key_price, node_price)
    cand_price = key_price[structure.cand_key] + node_price[problem.cand_node]
    cand_order = problem.line_order[problem.cand_line]
    keep = order_costs(problem.replace(churn=None), churn.current) + np.bincount(
        cand_order, weights=cand_price * churn.current, minlength=problem.num_orders
    )
    move = priced.order_cost + churn.move_cost
    advantage = keep - move  # moving pays off while its price mu is below this
    mu = 0.0
    if churn.max_moves is not None:
        gains = np.sort(advantage[advantage > 0])[::-1]
        if gains.size > churn.max_moves:
            mu = float(gains[churn.max_moves])
    moving = advantage > mu
    value = float(np.minimum(keep, move + mu).sum())
    value -= float(key_price @ structure.key_stock)
    value -= float(node_price[finite] @ problem.capacity[finite])
    if churn.max_moves is not None:
        value -= mu * churn.max_moves
    units = np.where(moving[cand_order], priced.units, churn.current)
    used_key = np.bincount(structure.cand_key, weights=units, minlength=key_price.size)
    used_node = np.bincount(problem.cand_node, weights=units, minlength=problem.num_nodes)
    return ChurnDual(value, used_key, used_node, int(moving.sum()))


def churn_bound(
    problem, prices: Prices, upper: float, clock, deadline: float, max_steps: int = 200
):
    """The best bound found by a price search from ``prices`` until ``deadline``.

    Returns (bound, details). ``upper`` is the cost of a feasible answer (the
    target of the steps). The first evaluation, at ``prices``, is always made.
    """
    structure = build_structure(problem, exact_short=False)
    key = prices.key[structure.key_node, structure.key_sku].copy()
    finite = np.isfinite(problem.capacity)
    node = np.where(finite, prices.node, 0.0)
    capacity = np.where(finite, problem.capacity, 0.0)
    best, theta, stall, steps = -np.inf, 1.0, 0, 0
    started = clock()
    trajectory = []
    while steps < max_steps:
        dual = churn_lagrangian(problem, structure, key, node)
        steps += 1
        if dual.value > best + 1e-9:
            best, stall = dual.value, 0
        else:
            stall += 1
            if stall >= 3:
                theta, stall = theta / 2, 0
        trajectory.append(round(best, 4))
        g_key = dual.used_key - structure.key_stock
        g_node = np.where(finite, dual.used_node - capacity, 0.0)
        g_key[(key <= 0) & (g_key < 0)] = 0.0
        g_node[(node <= 0) & (g_node < 0)] = 0.0
        norm = float(g_key @ g_key + g_node @ g_node)
        gap = upper - dual.value
        if norm == 0 or gap <= 0 or theta < 1e-3 or clock() >= deadline:
            break
        step = theta * gap / norm
        key = np.maximum(key + step * g_key, 0.0)
        node = np.maximum(node + step * g_node, 0.0)
    details = {
        "steps": steps,
        "seconds": round(clock() - started, 2),
        "trajectory": trajectory[:: max(1, len(trajectory) // 10)],
    }
    return float(best), details
