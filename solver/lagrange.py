"""Price search for the Lagrangian bound: projected subgradient steps with
Polyak's step size towards the incumbent's cost, on the vectorised oracle of
:mod:`solver.pricing`. Every evaluated price vector gives a valid bound; the
best one (and its prices and plans) is kept. Cheap enough for tens of steps at
100,000 orders, which is what a tight bound needs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from solver.pricing import Priced, PricingStructure, price_orders


@dataclass
class PriceSearch:
    """State and trajectory of the search (reported in the result's details)."""

    key_price: np.ndarray
    node_price: np.ndarray
    best_value: float = float("-inf")
    best_key_price: np.ndarray | None = None
    best_node_price: np.ndarray | None = None
    best_priced: Priced | None = None
    trajectory: list[tuple[float, float]] = field(default_factory=list)
    """(seconds, bound) after each step."""
    iterations: int = 0


def search_prices(
    problem,
    structure: PricingStructure,
    search: PriceSearch,
    upper: float,
    clock,
    deadline: float,
    max_iterations: int = 200,
) -> PriceSearch:
    """Improve ``search`` by subgradient steps until ``deadline`` (clock seconds).

    ``upper`` is the cost of a feasible answer (Polyak's target). The step
    factor halves after three steps without a new best bound.
    """
    n_skus = problem.sku_ids.size
    finite = np.isfinite(problem.capacity)
    capacity = np.where(finite, problem.capacity, 0.0)
    cand_key = structure.cand_key
    key = search.key_price
    node = search.node_price
    theta, stall = 1.0, 0
    for _ in range(max_iterations):
        if clock() >= deadline:
            break
        priced = price_orders(problem, structure, key, node)
        search.iterations += 1
        if priced.value > search.best_value + 1e-9:
            search.best_value = priced.value
            search.best_key_price, search.best_node_price = key.copy(), node.copy()
            search.best_priced = priced
            stall = 0
        else:
            stall += 1
            if stall >= 3:
                theta, stall = theta / 2, 0
        search.trajectory.append((round(clock(), 3), search.best_value))
        used_key = np.bincount(cand_key, weights=priced.units, minlength=key.size)
        used_node = np.bincount(problem.cand_node, weights=priced.units, minlength=node.size)
        g_key = used_key - structure.key_stock
        g_node = np.where(finite, used_node - capacity, 0.0)
        g_key[(key <= 0) & (g_key < 0)] = 0.0
        g_node[(node <= 0) & (g_node < 0)] = 0.0
        norm = float(g_key @ g_key + g_node @ g_node)
        gap = upper - priced.value
        if norm == 0 or gap <= 0 or theta < 1e-4:
            break
        step = theta * gap / norm
        key = np.maximum(key + step * g_key, 0.0)
        node = np.maximum(node + step * g_node, 0.0)
    search.key_price, search.node_price = key, node
    del n_skus
    return search
