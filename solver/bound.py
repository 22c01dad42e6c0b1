"""The Lagrangian lower bound: relax the stock and capacity rows with nonnegative
prices; every order alone at those prices, minus the prices times the limits, is a
bound for the whole batch (valid for any nonnegative prices)."""

from __future__ import annotations

import numpy as np

from solver.alone import (
    Alone,
    orders_alone,
)


class Prices:
    """Nonnegative prices of stock (node, sku) and node capacity, from LP duals.

    A later LP overwrites the prices of the rows it shares with an earlier one;
    any nonnegative prices give a valid bound, good ones a tight one.
    """

    def __init__(self, problem) -> None:
        self.key = np.zeros(problem.stock.shape)
        self.node = np.zeros(problem.num_nodes)

    def record(self, lp, keys, rows) -> None:
        if lp.row_duals is None:
            return
        # HiGHS reports the duals of <= rows in a minimisation as <= 0.
        stock_keys = keys["stock"]
        self.key[stock_keys[:, 0], stock_keys[:, 1]] = np.maximum(-lp.row_duals[rows["stock"]], 0.0)
        self.node[keys["capacity"]] = np.maximum(-lp.row_duals[rows["capacity"]], 0.0)


def lagrangian_bound(problem, alone: Alone, prices: Prices) -> float:
    """L(prices) = sum over orders of the priced optimum alone - prices . limits.

    Valid for any nonnegative prices: relaxing the stock and capacity rows
    into the objective can only lower the optimum. Orders with no priced
    candidate keep their unpriced optimum alone.
    """
    price = prices.key + prices.node[:, None]
    touched = price[problem.cand_node, problem.line_sku[problem.cand_line]] > 0
    orders = np.zeros(problem.num_orders, dtype=bool)
    orders[problem.line_order[problem.cand_line[touched]]] = True
    _units, priced_cost, _exact = orders_alone(problem, orders, price)
    total = float(alone.cost[~orders].sum() + priced_cost[orders].sum())
    total -= float((prices.key * problem.stock).sum())
    finite = np.isfinite(problem.capacity)
    total -= float((prices.node[finite] * problem.capacity[finite]).sum())
    return total
