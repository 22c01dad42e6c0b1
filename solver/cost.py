"""The scenario cost formula over a solver's allocation vector.

Solvers describe an answer as ``units[c]``: the units given to each line
candidate ``c`` of a :class:`router.problem.Problem`. This module prices such a
vector exactly as ``omniroute-scenario/1`` defines cost. The independent
checker (``router.checker``) prices the written CSV again, from scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from solver.churn import moved_orders


@dataclass(frozen=True)
class CostBreakdown:
    total_cost: float
    shipping: float
    handling: float
    splits: int
    unfilled_units: int
    shipments: int
    moves: int = 0
    """Orders moved from their current routing (re-optimization only)."""
    move_cost: float = 0.0
    """Their cost (``moves * Churn.move_cost``), included in ``total_cost``."""


def unit_cost(problem, cands=None) -> np.ndarray:
    """Cost of one unit on each line candidate (every one when ``cands`` is None): its
    node's handling, less the clearance credit of a routing profile (``cand_credit``,
    :mod:`router.profiles`), the one place that credit enters every method's costs."""
    nodes = problem.cand_node if cands is None else problem.cand_node[cands]
    cost = problem.handling[nodes]
    credit = getattr(problem, "cand_credit", None)
    if credit is None:
        return cost
    return cost - (credit if cands is None else credit[cands])


def shipment_cap(problem, order: int) -> float:
    """Most shipments order ``order`` may use (a routing profile's split cap; ``inf``)."""
    caps = getattr(problem, "order_max_shipments", None)
    return math.inf if caps is None else float(caps[order])


def within_shipment_caps(problem, units: np.ndarray) -> bool:
    """Whether ``units`` keeps every order within its split cap and every node within
    its daily orders limit (a routing profile's): the gate every incumbent of the
    batch optimizer passes (not every step models these rules)."""
    caps = getattr(problem, "order_max_shipments", None)
    limit = getattr(problem, "node_order_limit", None)
    if (
        caps is None
        and limit is None
        and getattr(problem, "line_group", None) is None
        and getattr(problem, "share_cap", None) is None
    ):
        return True
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    used = pair_units > 0
    if caps is not None:
        shipments = np.bincount(problem.pair_order[used], minlength=problem.num_orders)
        if np.any(shipments > caps):
            return False
    if limit is not None and np.any(node_orders(problem, units) > limit):
        return False
    if not within_channel_shares(problem, units):
        return False
    return ship_groups_whole(problem, units)


def ship_groups_whole(problem, units: np.ndarray) -> bool:
    """Whether every ship group (``line_group``) is served whole by one node, or not
    at all."""
    line_group = getattr(problem, "line_group", None)
    if line_group is None:
        return True
    used = units > 0
    cand_group = line_group[problem.cand_line]
    grouped = used & (cand_group >= 0)
    groups = line_group.max() + 1
    key = np.unique(cand_group[grouped] * problem.num_nodes + problem.cand_node[grouped])
    if np.any(np.bincount(key // problem.num_nodes, minlength=groups) > 1):
        return False
    got = np.bincount(cand_group[grouped], weights=units[grouped], minlength=groups)
    ingroup = line_group >= 0
    want = np.bincount(line_group[ingroup], weights=problem.line_qty[ingroup], minlength=groups)
    return bool(np.all((got == 0) | (got == want)))


def drop_broken_ship_groups(problem, units: np.ndarray) -> np.ndarray:
    """``units`` with every ship group that is not served whole by one node left
    unfilled instead: the one repair of a step that does not model the groups (LP
    rounding, moves). Dropping units breaks no other rule (stock, capacity, split cap
    and daily orders only loosen), so the answer stays feasible."""
    line_group = getattr(problem, "line_group", None)
    if line_group is None or ship_groups_whole(problem, units):
        return units
    groups = int(line_group.max()) + 1
    cand_group = line_group[problem.cand_line]
    grouped = (units > 0) & (cand_group >= 0)
    key = np.unique(cand_group[grouped] * problem.num_nodes + problem.cand_node[grouped])
    nodes_per_group = np.bincount(key // problem.num_nodes, minlength=groups)
    got = np.bincount(cand_group[grouped], weights=units[grouped], minlength=groups)
    ingroup = line_group >= 0
    want = np.bincount(line_group[ingroup], weights=problem.line_qty[ingroup], minlength=groups)
    broken = (nodes_per_group > 1) | ((got > 0) & (got != want))
    drop = (cand_group >= 0) & broken[np.maximum(cand_group, 0)]
    return np.where(drop, 0, units).astype(units.dtype)


def share_used(problem, units: np.ndarray) -> np.ndarray | None:
    """(K,) units each binding (channel, SKU) pair of a channel share uses in ``units``;
    ``None`` without channel shares."""
    cap = getattr(problem, "share_cap", None)
    if cap is None:
        return None
    key = problem.line_share[problem.cand_line]
    on = (key >= 0) & (units > 0)
    return np.bincount(key[on], weights=units[on], minlength=cap.size)


def shares_left(problem, units: np.ndarray) -> np.ndarray | None:
    """(K,) units each binding (channel, SKU) pair may still sell beside ``units``."""
    used = share_used(problem, units)
    return None if used is None else problem.share_cap - used


def within_channel_shares(problem, units: np.ndarray) -> bool:
    """Whether every channel sells at most its sellable quantity of each SKU."""
    used = share_used(problem, units)
    return used is None or bool(np.all(used <= problem.share_cap + 1e-9))


def drop_over_channel_shares(problem, units: np.ndarray) -> np.ndarray:
    """``units`` with what a channel sells beyond its share of a SKU left unfilled,
    taken from its last orders first (first come, first served)."""
    used = share_used(problem, units)
    if used is None or np.all(used <= problem.share_cap + 1e-9):
        return units
    units = units.copy()
    key = problem.line_share[problem.cand_line]
    for k in np.flatnonzero(used > problem.share_cap + 1e-9).tolist():
        excess = int(np.rint(used[k] - problem.share_cap[k]))
        for c in np.flatnonzero((key == k) & (units > 0))[::-1].tolist():
            take = min(excess, int(units[c]))
            units[c] -= take
            excess -= take
            if excess <= 0:
                break
    return units


def keep_unmodelled_rules(problem, units: np.ndarray) -> np.ndarray:
    """The one repair of an answer from a step that does not model every rule: what
    a channel sells beyond its share is left unfilled, then every ship group (a kit)
    that is no longer whole. Both only remove units, so stock, capacity, the split
    cap and the daily orders limit still hold. Not under a re-optimization's move
    limit, which removing units could break: there the gate turns such answers down."""
    churn = getattr(problem, "churn", None)
    if churn is not None and churn.max_moves is not None:
        return units
    return drop_broken_ship_groups(problem, drop_over_channel_shares(problem, units))


def node_orders(problem, units: np.ndarray) -> np.ndarray:
    """(N,) shipments (orders served) per node in ``units``."""
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    return np.bincount(problem.pair_node[pair_units > 0], minlength=problem.num_nodes)


def orders_left(problem, units: np.ndarray) -> np.ndarray | None:
    """(N,) orders each node may still take beside ``units`` (its daily orders limit,
    a routing profile's); ``None`` without such limits."""
    limit = getattr(problem, "node_order_limit", None)
    return None if limit is None else limit - node_orders(problem, units)


def evaluate(problem, units: np.ndarray) -> CostBreakdown:
    """Price ``units`` (C,) under the scenario cost formula."""
    units = np.asarray(units, dtype=np.int64)
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    used = pair_units > 0
    shipments_per_order = np.bincount(problem.pair_order[used], minlength=problem.num_orders)
    splits = int(np.maximum(shipments_per_order - 1, 0).sum())
    shipping = float(problem.pair_ship_cost[used].sum())
    handling = float((unit_cost(problem) * units).sum())
    unfilled = int(problem.line_qty.sum() - units.sum())
    total = (
        shipping + handling + problem.split_penalty * splits + problem.unfilled_penalty * unfilled
    )
    moves, move_cost = 0, 0.0
    if problem.churn is not None:
        moves = int(moved_orders(problem, units).sum())
        move_cost = problem.churn.move_cost * moves
        total += move_cost
    return CostBreakdown(
        total, shipping, handling, splits, unfilled, int(used.sum()), moves, move_cost
    )


def order_costs(problem, units: np.ndarray) -> np.ndarray:
    """(O,) each order's share of the scenario cost of ``units`` (moves not included):
    its shipments, handling, splits and unfilled units; they sum to the routing cost."""
    units = np.asarray(units, dtype=np.int64)
    orders = problem.num_orders
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    used = pair_units > 0
    shipments = np.bincount(problem.pair_order[used], minlength=orders)
    shipping = np.bincount(
        problem.pair_order[used], weights=problem.pair_ship_cost[used], minlength=orders
    )
    cand_order = problem.line_order[problem.cand_line]
    handling = np.bincount(cand_order, weights=unit_cost(problem) * units, minlength=orders)
    wanted = np.bincount(problem.line_order, weights=problem.line_qty, minlength=orders)
    allocated = np.bincount(cand_order, weights=units, minlength=orders)
    return (
        shipping
        + handling
        + problem.split_penalty * np.maximum(shipments - 1, 0)
        + problem.unfilled_penalty * (wanted - allocated)
    )
