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
        if lp.row_duals is not None:
            self.record_duals(lp.row_duals, keys, rows)

    def record_duals(self, row_duals, keys, rows) -> None:
        """Prices from the stock and capacity rows' duals of a part's model."""
        # HiGHS (and PDLP) report the duals of <= rows in a minimisation as <= 0.
        stock_keys = keys["stock"]
        self.key[stock_keys[:, 0], stock_keys[:, 1]] = np.maximum(-row_duals[rows["stock"]], 0.0)
        self.node[keys["capacity"]] = np.maximum(-row_duals[rows["capacity"]], 0.0)

    def record_flow(self, flow) -> None:
        """Prices from a flow's potentials (:class:`solver.unit_flow.FlowPrices`)."""
        self.key.reshape(-1)[flow.key_code] = flow.key_price
        self.node[:] = flow.node_price

    def unit_price(self) -> np.ndarray:
        """(N, S) price of one unit of each SKU at each node (stock plus capacity)."""
        return self.key + self.node[:, None]


def lagrangian_bound(problem, alone: Alone, prices: Prices) -> float:
    """L(prices) = sum over orders of the priced optimum alone - prices . limits.

    Valid for any nonnegative prices: relaxing the stock and capacity rows
    into the objective can only lower the optimum. Orders with no priced
    candidate keep their unpriced optimum alone.
    """
    # A price on a node without a capacity limit prices no row: it must not
    # enter the orders' costs (it is never subtracted below).
    node_price = np.where(np.isfinite(problem.capacity), prices.node, 0.0)
    price = prices.key + node_price[:, None]
    touched = price[problem.cand_node, problem.line_sku[problem.cand_line]] > 0
    orders = np.zeros(problem.num_orders, dtype=bool)
    orders[problem.line_order[problem.cand_line[touched]]] = True
    _units, priced_cost, _exact = orders_alone(problem, orders, price)
    total = float(alone.cost[~orders].sum() + priced_cost[orders].sum())
    total -= float((prices.key * problem.stock).sum())
    finite = np.isfinite(problem.capacity)
    total -= float((node_price[finite] * problem.capacity[finite]).sum())
    return total
