"""The rule-engine baseline that most order-management systems ship.

Orders are taken one at a time in file order. Each goes whole to the cheapest
single eligible node that holds all of it (shipping plus handling); failing
that, line by line to the cheapest eligible node with stock (a node already
shipping this order costs no new shipment), splitting a line over nodes when
one is short. Stock and capacity are consumed as it goes. It never looks ahead,
which is exactly why a joint optimizer beats it.

A batch without a routing profile's order-level rules (daily orders limit,
channel share, ship group, split cap) takes a fast path that gives the same
units: the rule needs a Python step per order, so everything that does not
depend on the stock left (each shipment's cost and the order of the nodes by
it, which lines a node can serve) is computed for thousands of orders at once,
and the stock left is one plain list over the (node, SKU) keys the candidates
use, not an (N, S) matrix. A national batch (a million orders, 5,000 nodes,
20,000 SKUs) then routes in seconds per hundred thousand orders, without a copy
of its stock matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    limit = getattr(problem, "node_order_limit", None)
    left = limit if orders_left is None else orders_left
    cap = getattr(problem, "share_cap", None)
    # Units are whole: a fractional room holds its whole part (a fraction left
    # would let no unit in, and the search for room would never end).
    room = np.floor((problem.capacity if capacity is None else capacity).astype(np.float64))
    if left is None and cap is None and _plain(problem):
        return _plain_greedy(
            problem,
            np.arange(problem.num_orders) if orders is None else np.asarray(orders, np.int64),
            problem.stock if stock is None else stock,
            room,
            unit_price,
        )
    stock = (problem.stock if stock is None else stock).copy()
    capacity = room
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    left = None if left is None else np.asarray(left, dtype=np.float64).copy()
    order_list = range(problem.num_orders) if orders is None else orders
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


# --- the fast path: a batch without order-level profile rules ---------------------------

SLOT_CHUNK_ORDERS = 65536
"""Orders whose candidates' keys are marked at once (bounds the index arrays)."""

PLAIN_CHUNK_ORDERS = 4096
"""Orders whose static data (shipment costs, node order, slots) the fast path
prepares at once: large enough that numpy's per-call cost vanishes, small enough
that the prepared lists stay a few megabytes."""


def _plain(problem) -> bool:
    """Whether no order-level rule of a routing profile applies (the fast path's case)."""
    return (
        getattr(problem, "line_group", None) is None
        and getattr(problem, "order_max_shipments", None) is None
    )


def _plain_greedy(problem, orders, stock, capacity, unit_price) -> np.ndarray:
    """:func:`greedy_units` without order-level rules, chunk by chunk of ``orders``.

    The stock left lives in one list over the distinct (node, SKU) keys of the
    routed orders' candidates (slots): the rule only ever reads or takes
    stock where a candidate is, since a node without a line's candidate cannot
    give that line (it held none of the SKU when the problem was built).
    """
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    if orders.size == 0:
        return units
    slot_of_key, slot_stock = _stock_slots(problem, orders, stock)
    left = slot_stock.tolist()
    room = np.asarray(capacity, dtype=np.float64).tolist()
    for start in range(0, orders.size, PLAIN_CHUNK_ORDERS):
        chunk = _prepare_chunk(
            problem, orders[start : start + PLAIN_CHUNK_ORDERS], slot_of_key, unit_price
        )
        taken_cand, taken_units = _route_chunk(chunk, left, room, unit_price)
        np.add.at(units, np.asarray(taken_cand, dtype=np.int64), taken_units)
    return units


def _order_cands(problem, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each order's line candidates, as (first, end) offsets (candidates are by line)."""
    first_line = problem.order_line_start[orders]
    end_line = problem.order_line_start[orders + 1]
    return problem.line_cand_start[first_line], problem.line_cand_start[end_line]


def _ranges(first: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The concatenation of ``range(first[i], end[i])`` for every i, vectorised."""
    sizes = end - first
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(sizes) - sizes
    return np.repeat(first - offsets, sizes) + np.arange(total, dtype=np.int64)


def _stock_slots(problem, orders: np.ndarray, stock: np.ndarray):
    """(N * S,) the slot of each (node, SKU) key that the routed orders' candidates
    use (other keys: anything), and (K,) the stock of each slot.

    Keys are marked in a boolean array and numbered by a running count: linear,
    and much lighter than sorting the candidates' keys (60 million of them in a
    national batch, a few million distinct).
    """
    skus = problem.sku_ids.size
    used = np.zeros(problem.num_nodes * skus, dtype=bool)
    for start in range(0, orders.size, SLOT_CHUNK_ORDERS):
        first, end = _order_cands(problem, orders[start : start + SLOT_CHUNK_ORDERS])
        cands = _ranges(first, end)
        used[problem.cand_node[cands] * skus + problem.line_sku[problem.cand_line[cands]]] = True
    count = np.int32 if used.size < 2**31 else np.int64
    slot_of_key = np.cumsum(used, dtype=count) - 1
    distinct = np.flatnonzero(used)
    return slot_of_key, np.asarray(stock)[distinct // skus, distinct % skus]


@dataclass(frozen=True)
class _Chunk:
    """What the fast path needs of a chunk of orders, as plain lists for the Python step.

    Orders are numbered 0..k-1 in routing order, their shipment candidates
    ("pairs") in one local numbering, their line candidates by pair.
    """

    order: list[int]
    total: list[int]
    """Units of each order."""
    pair_node: list[int]
    pair_first: list[int]
    """Each order's pairs are pair_first[i]:pair_first[i + 1] (in node order)."""
    whole: list[int]
    """Each order's pairs that have a candidate for every line, cheapest first (ties:
    node order) without unit prices, in node order with them."""
    whole_first: list[int]
    by_pair_first: list[int]
    """Pair q's line candidates are by_pair_*[by_pair_first[q]:by_pair_first[q + 1]]."""
    by_pair_cand: list[int]
    by_pair_slot: list[int]
    by_pair_qty: list[int]
    by_pair_need: list[int]
    """Units of the candidate's SKU the whole order wants (a SKU may be on two lines)."""
    line_first: list[int]
    """Each order's lines are line_first[i]:line_first[i + 1], local numbers."""
    line_qty: list[int]
    line_cand_first: list[int]
    """Local line j's candidates are cand_*[line_cand_first[j]:line_cand_first[j + 1]]."""
    cand: list[int]
    cand_node: list[int]
    cand_slot: list[int]
    cand_open: list[float]
    """Shipping cost of the candidate's shipment (paid once per order and node)."""
    cand_unit: list[float]
    """Cost per unit: handling, less a clearance credit, plus any unit price."""
    pair_cost: list[float]
    """Whole-order cost at each pair, before unit prices."""
    pair_global: np.ndarray
    order_skus: list[np.ndarray] | None
    """With unit prices: each order's distinct SKUs and units of each (for the cost)."""
    order_need: list[np.ndarray] | None


def _prepare_chunk(problem, orders: np.ndarray, slot_of_key: np.ndarray, unit_price) -> _Chunk:
    """The chunk's static data: everything of the rule that the stock left does not change."""
    k = orders.size
    pair_start = problem.order_pair_start[orders]
    pair_end = problem.order_pair_start[orders + 1]
    pairs = _ranges(pair_start, pair_end)
    pair_counts = pair_end - pair_start
    pair_first = np.concatenate([[0], np.cumsum(pair_counts)])
    pair_owner = np.repeat(np.arange(k), pair_counts)
    local_pair_offset = pair_first[:-1] - pair_start  # global pair + this = local pair

    line_start = problem.order_line_start[orders]
    line_end = problem.order_line_start[orders + 1]
    lines = _ranges(line_start, line_end)
    line_counts = line_end - line_start
    line_owner = np.repeat(np.arange(k), line_counts)
    line_qty = problem.line_qty[lines]
    total = np.bincount(line_owner, weights=line_qty, minlength=k).astype(np.int64)
    # Units of the line's SKU over the whole order (a SKU may repeat on two lines).
    sku_key = line_owner * problem.sku_ids.size + problem.line_sku[lines]
    _, sku_of_line = np.unique(sku_key, return_inverse=True)
    line_need = np.bincount(sku_of_line, weights=line_qty)[sku_of_line].astype(np.int64)

    cand_first, cand_end = problem.line_cand_start[lines], problem.line_cand_start[lines + 1]
    cands = _ranges(cand_first, cand_end)
    cand_local_line = np.repeat(np.arange(lines.size), cand_end - cand_first)
    cand_owner = line_owner[cand_local_line]
    cand_pair = problem.cand_pair[cands] + local_pair_offset[cand_owner]
    cand_node = problem.cand_node[cands]
    cand_qty = line_qty[cand_local_line]
    slot = slot_of_key[cand_node * problem.sku_ids.size + problem.line_sku[lines][cand_local_line]]

    nodes = problem.pair_node[pairs]
    cost = problem.pair_ship_cost[pairs] + problem.handling[nodes] * total[pair_owner]
    credit = getattr(problem, "cand_credit", None)
    if credit is not None:
        cost = cost - np.bincount(cand_pair, weights=credit[cands] * cand_qty, minlength=pairs.size)
    per_pair = np.bincount(cand_pair, minlength=pairs.size)
    holds_every_line = per_pair == line_counts[pair_owner]
    local = np.arange(pairs.size)
    # By order, then cost, then node order (with unit prices the cost comes later).
    ranked = np.lexsort((local, cost, pair_owner)) if unit_price is None else local
    ranked = ranked[holds_every_line[ranked]]
    whole_counts = np.bincount(pair_owner[ranked], minlength=k)

    by_pair = np.argsort(cand_pair, kind="stable")
    per_unit = cand_unit_cost(problem, cands)
    if unit_price is not None:
        per_unit = per_unit + unit_price[cand_node, problem.line_sku[problem.cand_line[cands]]]
    order_skus = order_need = None
    if unit_price is not None:
        order_skus, order_need = _order_skus(problem, orders)
    return _Chunk(
        order=orders.tolist(),
        total=total.tolist(),
        pair_node=nodes.tolist(),
        pair_first=pair_first.tolist(),
        whole=ranked.tolist(),
        whole_first=np.concatenate([[0], np.cumsum(whole_counts)]).tolist(),
        by_pair_first=np.concatenate([[0], np.cumsum(per_pair)]).tolist(),
        by_pair_cand=cands[by_pair].tolist(),
        by_pair_slot=slot[by_pair].tolist(),
        by_pair_qty=cand_qty[by_pair].tolist(),
        by_pair_need=line_need[cand_local_line][by_pair].tolist(),
        line_first=np.concatenate([[0], np.cumsum(line_counts)]).tolist(),
        line_qty=line_qty.tolist(),
        line_cand_first=np.concatenate([[0], np.cumsum(cand_end - cand_first)]).tolist(),
        cand=cands.tolist(),
        cand_node=cand_node.tolist(),
        cand_slot=slot.tolist(),
        cand_open=problem.pair_ship_cost[problem.cand_pair[cands]].tolist(),
        cand_unit=per_unit.tolist(),
        pair_cost=cost.tolist(),
        pair_global=pairs,
        order_skus=order_skus,
        order_need=order_need,
    )


def _order_skus(problem, orders: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each order's distinct SKUs and the units it wants of each, as ``_route_order``
    computes them (for the unit prices' part of a whole order's cost)."""
    skus, need = [], []
    for order in orders.tolist():
        lines = np.arange(problem.order_line_start[order], problem.order_line_start[order + 1])
        distinct, which = np.unique(problem.line_sku[lines], return_inverse=True)
        skus.append(distinct)
        need.append(np.bincount(which, weights=problem.line_qty[lines]).astype(np.int64))
    return skus, need


def _route_chunk(chunk: _Chunk, left: list, room: list, unit_price):
    """Route the chunk's orders in turn on the stock ``left`` (by slot) and the
    capacity ``room`` (by node), both updated; returns the candidates given units
    and how many (each candidate once)."""
    taken_cand: list[int] = []
    taken_units: list[int] = []
    node_of = chunk.pair_node
    whole, whole_first = chunk.whole, chunk.whole_first
    pc_first, pc_slot, pc_need = chunk.by_pair_first, chunk.by_pair_slot, chunk.by_pair_need
    for i in range(len(chunk.order)):
        if chunk.pair_first[i] == chunk.pair_first[i + 1]:
            continue  # no node may serve the order
        total = chunk.total[i]
        holders = []
        for q in whole[whole_first[i] : whole_first[i + 1]]:
            if room[node_of[q]] < total:
                continue
            for j in range(pc_first[q], pc_first[q + 1]):
                if left[pc_slot[j]] < pc_need[j]:
                    break
            else:
                holders.append(q)
                if unit_price is None:
                    break  # the cheapest holder: pairs are ranked by cost
        if holders:
            q = (
                holders[0]
                if unit_price is None
                else _cheapest_priced(chunk, i, holders, unit_price)
            )
            for j in range(pc_first[q], pc_first[q + 1]):
                left[pc_slot[j]] -= chunk.by_pair_qty[j]
                taken_cand.append(chunk.by_pair_cand[j])
                taken_units.append(chunk.by_pair_qty[j])
            room[node_of[q]] -= total
            continue
        _route_lines(chunk, i, left, room, taken_cand, taken_units)
    return taken_cand, taken_units


def _cheapest_priced(chunk: _Chunk, i: int, holders: list[int], unit_price) -> int:
    """The holder (pairs in node order) with the least whole-order cost at unit prices,
    the first on a tie; the prices' part computed as ``_route_order`` does."""
    first, end = chunk.pair_first[i], chunk.pair_first[i + 1]
    nodes = np.asarray(chunk.pair_node[first:end], dtype=np.int64)
    skus, need = chunk.order_skus[i], chunk.order_need[i]
    cost = np.asarray(chunk.pair_cost[first:end]) + unit_price[np.ix_(nodes, skus)] @ need
    best = holders[0]
    for q in holders[1:]:
        if cost[q - first] < cost[best - first]:
            best = q
    return best


def _route_lines(chunk: _Chunk, i: int, left: list, room: list, taken_cand, taken_units) -> None:
    """No node holds order i whole: line by line, each from the cheapest candidate
    that can give (an open shipment costs no new shipping), split when short."""
    shipping: set[int] = set()
    cand_node, cand_slot = chunk.cand_node, chunk.cand_slot
    cand_open, cand_unit = chunk.cand_open, chunk.cand_unit
    for line in range(chunk.line_first[i], chunk.line_first[i + 1]):
        remaining = chunk.line_qty[line]
        first, end = chunk.line_cand_first[line], chunk.line_cand_first[line + 1]
        while remaining > 0:
            pick, best, best_give = -1, 0.0, 0.0
            for j in range(first, end):
                node = cand_node[j]
                give = min(left[cand_slot[j]], room[node])
                if give <= 0:
                    continue
                cost = (0.0 if node in shipping else cand_open[j]) + cand_unit[j] * remaining
                if pick < 0 or cost < best:
                    pick, best, best_give = j, cost, give
            if pick < 0:
                break
            take = int(min(remaining, best_give))
            node = cand_node[pick]
            taken_cand.append(chunk.cand[pick])
            taken_units.append(take)
            left[cand_slot[pick]] -= take
            room[node] -= take
            shipping.add(node)
            remaining -= take
