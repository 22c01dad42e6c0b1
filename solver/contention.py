"""Where orders collide: usage of stock and capacity, the orders that use what is
scarce, their neighbours, and the independent components of a part."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from solver.cost import orders_left, shares_left
from solver.greedy import greedy_units
from solver.model import ModelInput


def usage(problem, units, cands=None):
    """Units per (node, sku) key and per node, of ``units`` over ``cands`` (default: all)."""
    if cands is None:  # (no index copies: (C,) arrays are 570 MB each at national size)
        nodes, weights = problem.cand_node, units
        key = problem.line_sku[problem.cand_line]
    else:
        nodes, weights = problem.cand_node[cands], units[cands]
        key = problem.line_sku[problem.cand_line[cands]]
    n_skus = problem.sku_ids.size
    key += nodes * n_skus
    by_key = np.bincount(key, weights=weights, minlength=problem.num_nodes * n_skus).reshape(
        problem.num_nodes, n_skus
    )
    del key
    by_node = np.bincount(nodes, weights=weights, minlength=problem.num_nodes)
    return by_key, by_node


def overused(problem, units):
    by_key, by_node = usage(problem, units)
    return by_key > problem.stock, by_node > problem.capacity


def orders_using(problem, units, scarce_key, scarce_node) -> np.ndarray:
    """Boolean (O,) mask of orders whose plan uses scarce stock or capacity."""
    used = units > 0
    nodes = problem.cand_node[used]
    skus = problem.line_sku[problem.cand_line[used]]
    hit = scarce_key[nodes, skus] | scarce_node[nodes]
    mask = np.zeros(problem.num_orders, dtype=bool)
    mask[problem.line_order[problem.cand_line[used][hit]]] = True
    return mask


def with_neighbours(problem, units, contested) -> np.ndarray:
    """``contested`` plus the orders whose plan in ``units`` holds stock or
    capacity that the contested orders could want and are short of."""
    # What could the contested orders want? All stock and capacity of their
    # candidates; where that exceeds what the others leave, the others that
    # use it join them (one hop).
    in_lines = contested[problem.line_order[problem.cand_line]]
    want_key, want_node = usage(
        problem, problem.line_qty[problem.cand_line].astype(float), np.flatnonzero(in_lines)
    )
    others = units * ~in_lines
    left_key, left_node = usage(problem, others)
    short_key = (want_key > 0) & (want_key > problem.stock - left_key)
    short_node = (want_node > 0) & (want_node > problem.capacity - left_node)
    return contested | orders_using(problem, others, short_key, short_node)


def reroute_greedily(problem, units, orders_mask) -> np.ndarray:
    """``units`` with the masked orders re-routed greedily on the stock left."""
    kept = units * ~orders_mask[problem.line_order[problem.cand_line]]
    used_key, used_node = usage(problem, kept)
    rerouted = greedy_units(
        problem,
        orders=np.flatnonzero(orders_mask),
        stock=problem.stock - used_key.astype(np.int64),
        capacity=problem.capacity - used_node,
        orders_left=orders_left(problem, kept),
        shares_left=shares_left(problem, kept),
    )
    return kept + rerouted


def fractional_orders(problem, part: ModelInput, v, solution) -> np.ndarray:
    """Boolean (O,) mask of the part's orders with a fractional x, y or m in ``solution``."""
    frac = np.abs(solution - np.rint(solution)) > 1e-6
    mask = np.zeros(problem.num_orders, dtype=bool)
    mask[problem.line_order[problem.cand_line[part.cands[frac[: v.num_x]]]]] = True
    mask[problem.pair_order[part.pairs[frac[v.y0 : v.y0 + v.num_y]]]] = True
    if v.num_m:
        # a fractional move would let a rounded order move without paying for it
        mask[part.orders[frac[v.m0 : v.m0 + v.num_m]]] = True
    return mask


def independent_components(problem, part: ModelInput, model, v, rows) -> list[np.ndarray]:
    """Order masks of the part's independent components (linked by the stock
    and capacity rows of the model, the only rows that span orders)."""
    if "moves" in rows:
        # the churn limit spans every order of the part: one component
        return [np.isin(np.arange(problem.num_orders), part.orders)]
    linking = np.r_[
        np.arange(rows["stock"].start, rows["stock"].stop),
        np.arange(rows["capacity"].start, rows["capacity"].stop),
    ]
    local_order = np.searchsorted(part.orders, problem.line_order[problem.cand_line[part.cands]])
    sub = model.A[linking][:, : v.num_x].tocoo()
    # A bipartite graph of orders and linking rows; its components are the answer.
    n_orders = part.orders.size
    graph = sp.coo_matrix(
        (np.ones(sub.nnz), (local_order[sub.col], n_orders + sub.row)),
        shape=(n_orders + linking.size, n_orders + linking.size),
    )
    _count, label = connected_components(graph, directed=False)
    order_label = label[:n_orders]
    components = []
    for value in np.unique(order_label):
        mask = np.zeros(problem.num_orders, dtype=bool)
        mask[part.orders[order_label == value]] = True
        components.append(mask)
    return components
