"""The rule-engine baseline that most order-management systems ship.

Orders are taken one at a time in file order. Each goes whole to the cheapest
single eligible node that holds all of it (shipping plus handling); failing
that, line by line to the cheapest eligible node with stock (a node already
shipping this order costs no new shipment), splitting a line over nodes when
one is short. Stock and capacity are consumed as it goes. It never looks ahead,
which is exactly why a joint optimizer beats it.
"""

from __future__ import annotations

import numpy as np

from solver.cost import shipment_cap
from solver.cost import unit_cost as cand_unit_cost


def greedy_units(
    problem,
    *,
    orders: np.ndarray | None = None,
    stock: np.ndarray | None = None,
    capacity: np.ndarray | None = None,
    unit_price: np.ndarray | None = None,
    orders_left: np.ndarray | None = None,
    shares_left: np.ndarray | None = None,
) -> np.ndarray:
    """Route ``orders`` (default: all, in file order) greedily; return units per line candidate.

    ``stock`` (N, S) and ``capacity`` (N,) default to the problem's own; they
    are copied, never changed in place. ``unit_price`` (N, S), when given, is
    added to the handling cost of every unit in the choices (the optimizer
    passes the LP's prices of scarce stock, so that a unit goes where it is
    worth most); the rule engine itself has none. ``orders_left`` (N,): orders each
    node may still take (a profile's daily orders limit; default the problem's);
    ``shares_left`` (K,): units each channel may still sell of a SKU (its channel share;
    default the problem's ``share_cap``).
    """
    stock = (problem.stock if stock is None else stock).copy()
    capacity = (problem.capacity if capacity is None else capacity).astype(np.float64).copy()
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    limit = getattr(problem, "node_order_limit", None)
    left = limit if orders_left is None else orders_left
    left = None if left is None else np.asarray(left, dtype=np.float64).copy()
    order_list = range(problem.num_orders) if orders is None else orders
    cap = getattr(problem, "share_cap", None)
    share = None if cap is None else (cap if shares_left is None else shares_left).copy()
    route = _route_order if share is None else _within_shares(share)
    for order in order_list:
        if left is None:
            route(problem, int(order), stock, capacity, units, unit_price)
            continue
        # A node out of orders for the day takes none: no capacity for this order.
        closed = left < 1
        room = capacity[closed].copy()
        capacity[closed] = 0
        lines = problem.lines_of(int(order))
        cands = slice(
            int(problem.line_cand_start[lines.start]), int(problem.line_cand_start[lines.stop])
        )
        before = units[cands].copy()
        route(problem, int(order), stock, capacity, units, unit_price)
        capacity[closed] = room
        left[np.unique(problem.cand_node[cands][units[cands] != before])] -= 1
    return units


def _within_shares(share_left: np.ndarray):
    """``_route_order`` that then gives back what the order takes beyond its channel's
    share of a SKU (and any ship group that leaves broken), and counts what it keeps."""

    def route(problem, order, stock, capacity, units, unit_price=None) -> None:
        lines = problem.lines_of(order)
        cands = slice(
            int(problem.line_cand_start[lines.start]), int(problem.line_cand_start[lines.stop])
        )
        before = units[cands].copy()
        _route_order(problem, order, stock, capacity, units, unit_price)
        mine = units[cands] - before
        key = problem.line_share[problem.cand_line[cands]]
        for k in np.unique(key[(key >= 0) & (mine > 0)]).tolist():
            excess = int(mine[key == k].sum() - share_left[k])
            for c in np.flatnonzero((key == k) & (mine > 0))[::-1].tolist():
                if excess <= 0:
                    break
                take = min(excess, int(mine[c]))
                mine[c] -= take
                excess -= take
        group = getattr(problem, "line_group", None)
        if group is not None:
            cand_group = group[problem.cand_line[cands]]
            for g in np.unique(cand_group[cand_group >= 0]).tolist():
                members = cand_group == g
                want = int(problem.line_qty[group == g].sum())
                nodes = np.unique(problem.cand_node[cands][members & (mine > 0)])
                if nodes.size > 1 or int(mine[members].sum()) not in (0, want):
                    mine[members] = 0
        given_back = units[cands] - before - mine
        if given_back.any():
            nodes = problem.cand_node[cands]
            skus = problem.line_sku[problem.cand_line[cands]]
            np.add.at(stock, (nodes, skus), given_back)
            np.add.at(capacity, nodes, given_back)
            units[cands] = before + mine
        on = (key >= 0) & (mine > 0)
        np.subtract.at(share_left, key[on], mine[on])

    return route


def _route_order(problem, order, stock, capacity, units, unit_price=None) -> None:
    pairs = problem.pairs_of(order)
    nodes = problem.pair_node[pairs]
    if nodes.size == 0:
        return
    lines = np.arange(problem.order_line_start[order], problem.order_line_start[order + 1])
    skus, need = np.unique(problem.line_sku[lines], return_inverse=True)
    need_qty = np.bincount(need, weights=problem.line_qty[lines]).astype(np.int64)
    total = int(need_qty.sum())
    holds_all = np.all(stock[np.ix_(nodes, skus)] >= need_qty[None, :], axis=1)
    holds_all &= capacity[nodes] >= total
    if holds_all.any():
        cost = problem.pair_ship_cost[pairs] + problem.handling[nodes] * total
        if getattr(problem, "cand_credit", None) is not None:
            cost = cost - _order_credit(problem, lines, nodes)
        if unit_price is not None:
            cost = cost + unit_price[np.ix_(nodes, skus)] @ need_qty
        node = nodes[np.flatnonzero(holds_all)[np.argmin(cost[holds_all])]]
        for line in lines:
            cands = problem.candidates_of(int(line))
            c = cands.start + int(np.flatnonzero(problem.cand_node[cands] == node)[0])
            units[c] += problem.line_qty[line]
        stock[node, skus] -= need_qty
        capacity[node] -= total
        return
    shipping: dict[int, bool] = {}  # node -> shipment already open for this order
    cap = shipment_cap(problem, order)
    ship_cost = dict(zip(nodes.tolist(), problem.pair_ship_cost[pairs].tolist(), strict=True))
    line_group = getattr(problem, "line_group", None)
    done_groups: set[int] = set()
    for line in lines:
        if line_group is not None and line_group[line] >= 0:
            group = int(line_group[line])
            if group not in done_groups:
                done_groups.add(group)
                members = lines[line_group[lines] == group]
                _route_group(problem, members, stock, capacity, units, shipping, ship_cost, cap)
            continue
        sku = problem.line_sku[line]
        remaining = int(problem.line_qty[line])
        cands = problem.candidates_of(int(line))
        cand_nodes = problem.cand_node[cands]
        while remaining > 0:
            can_give = np.minimum(stock[cand_nodes, sku], capacity[cand_nodes])
            ok = can_give > 0
            if len(shipping) >= cap:  # the split cap: only nodes already shipping
                ok &= np.array([n in shipping for n in cand_nodes.tolist()], dtype=bool)
            if not ok.any():
                break
            open_cost = np.array(
                [0.0 if n in shipping else ship_cost[n] for n in cand_nodes.tolist()]
            )
            per_unit = cand_unit_cost(problem, cands)
            if unit_price is not None:
                per_unit = per_unit + unit_price[cand_nodes, sku]
            cost = open_cost + per_unit * remaining
            pick = np.flatnonzero(ok)[np.argmin(cost[ok])]
            node = int(cand_nodes[pick])
            take = int(min(remaining, can_give[pick]))
            units[cands.start + pick] += take
            stock[node, sku] -= take
            capacity[node] -= take
            shipping[node] = True
            remaining -= take


def _order_credit(problem, lines: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """(len(nodes),) the clearance credit the whole order earns at each node."""
    cands = slice(
        int(problem.line_cand_start[lines[0]]), int(problem.line_cand_start[lines[-1] + 1])
    )
    qty = problem.line_qty[problem.cand_line[cands]]
    at = np.searchsorted(nodes, problem.cand_node[cands])
    return np.bincount(at, weights=problem.cand_credit[cands] * qty, minlength=nodes.size)


def _route_group(problem, members, stock, capacity, units, shipping, ship_cost, cap) -> None:
    """A ship group whole from the cheapest node that can give all of it, or not at
    all; a node not yet shipping counts against the split cap."""
    total = int(problem.line_qty[members].sum())
    options: dict[int, float] = {}
    for n in problem.cand_node[problem.candidates_of(int(members[0]))].tolist():
        if (n not in shipping and len(shipping) >= cap) or capacity[n] < total:
            continue
        options[n] = (0.0 if n in shipping else ship_cost[n]) + problem.handling[n] * total
    for line in members.tolist():
        cands = problem.candidates_of(int(line))
        here = set(problem.cand_node[cands].tolist())
        sku, qty = int(problem.line_sku[line]), int(problem.line_qty[line])
        options = {n: c for n, c in options.items() if n in here and stock[n, sku] >= qty}
    if not options:
        return
    node = min(options, key=lambda n: (options[n], n))
    for line in members.tolist():
        cands = problem.candidates_of(int(line))
        c = cands.start + int(np.flatnonzero(problem.cand_node[cands] == node)[0])
        units[c] += problem.line_qty[line]
        stock[node, problem.line_sku[line]] -= problem.line_qty[line]
    capacity[node] -= total
    shipping[node] = True
