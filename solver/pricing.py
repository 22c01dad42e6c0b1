"""Every order alone at given prices, all orders at once: the Lagrangian oracle.

The batch couples orders only through stock (node, SKU) and node capacity.
Put nonnegative prices on those limits and each order may be routed alone, at
its shipping and handling costs plus the prices of what it uses. Relaxing (not
enforcing) an order's own capacity limit and the joint stock limit of two lines
of the same SKU, each order's problem is: split the order's units into blocks,
each served by one node that holds every unit of the block (per line, the
node's stock of the line's SKU), or leave units unfilled; every block costs one
shipment, every block beyond the first a split. Dropping constraints only lowers
each order's optimum, so the sum over orders, minus the prices times the limits,
is a valid lower bound of the batch for any nonnegative prices.

Orders are grouped by their *pattern*, the tuple of their lines' quantities.
Units of one line are interchangeable, so a block is a vector ``b`` of units per
line (``0 <= b <= qty``), numbered in mixed radix. For every order of a pattern
at once, the cheapest node serving each block is a matrix product plus a
segmented minimum over the order's candidate nodes, and a DP over the blocks
(the block holding the first remaining unit, vectorised over the orders and the
blocks) chooses the best split. Orders whose pattern has too many blocks are
priced with whole lines and no stock limit (weaker, still valid), and orders of
more than ``MAX_GROUP_LINES`` lines by the exact per-order routine of
:mod:`solver.alone`. One evaluation costs well under a second at 100,000
orders, so tens of price updates fit in a solve (:mod:`solver.lagrange`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from solver.cost import unit_cost as cand_unit_cost

INDEX = np.int32
"""Index arrays of the structure (candidates, shipment rows, stock keys): all
below 2**31 at national size (60 million candidates), and half the memory."""

MAX_GROUP_LINES = 8
"""Orders with more lines are priced one by one."""

MAX_PATTERN_BLOCKS = 256
"""Patterns with more blocks (prod(qty + 1)) are priced with whole lines."""

_BIG = 1e15
"""Stands for 'not possible' inside matrix products (inf * 0 would be NaN)."""


@dataclass(frozen=True)
class PatternGroup:
    """All orders with one pattern (lines' quantities) and at least one candidate node.

    Rows are the orders' shipment candidates (pairs), grouped by order. With
    ``whole_lines`` the blocks are subsets of whole lines and stock is not checked.
    """

    pattern: tuple[int, ...]
    whole_lines: bool
    orders: np.ndarray
    """(G,) order indices."""
    rows: np.ndarray
    """(R,) shipment-candidate (pair) index of each row."""
    row_start: np.ndarray
    """(G,) first row of each order."""
    row_owner: np.ndarray
    """(R,) local index (0..G-1) of each row's order."""
    cand: np.ndarray
    """(R, L) line-candidate index of line j of the order at the row's node, -1 if none."""
    room: np.ndarray
    """(R, L) units of line j the row's node can give (its stock, 0 without candidate),
    at most the pattern's largest quantity (all a block can want)."""
    blocks: np.ndarray
    """(L, B) units of line j in block b (b = 0 is the empty block)."""


@dataclass(frozen=True)
class PricingStructure:
    """What does not change between price vectors: built once per problem."""

    groups: tuple[PatternGroup, ...]
    loop_orders: np.ndarray
    """Orders priced one by one, exactly (see :func:`build_structure`)."""
    no_candidate_orders: np.ndarray
    """Orders without any candidate node: all their units stay unfilled."""
    cand_key: np.ndarray
    """(C,) index of the candidate's (node, SKU) stock key."""
    key_node: np.ndarray
    key_sku: np.ndarray
    key_stock: np.ndarray
    """(K,) stock of each key."""


@dataclass(frozen=True)
class Priced:
    """The oracle's answer at one price vector."""

    order_cost: np.ndarray
    """(O,) each order's priced optimum alone (relaxed as described above)."""
    units: np.ndarray
    """(C,) the plans that reach it."""
    value: float
    """The Lagrangian bound: sum of order_cost minus prices times limits."""


def build_structure(problem, exact_short: bool = True) -> PricingStructure:
    """Index arrays of :func:`price_orders` for ``problem``.

    ``exact_short``: orders with a line that wants more units than one of its
    candidate nodes holds are priced one by one, exactly (there the relaxation
    is loose: it may use such a node in several blocks); otherwise they are
    priced like the others (faster, weaker, still valid).
    """
    n_skus = problem.sku_ids.size
    cand_order = problem.line_order[problem.cand_line]
    key_code = problem.cand_node * n_skus + problem.line_sku[problem.cand_line]
    keys, cand_key = np.unique(key_code, return_inverse=True)
    del key_code  # (C,) arrays are 480 MB each at national size: none kept longer than needed
    cand_key = cand_key.astype(INDEX)
    key_node, key_sku = keys // n_skus, keys % n_skus

    lines_per_order = np.diff(problem.order_line_start)
    pairs_per_order = np.diff(problem.order_pair_start)
    one_by_one = lines_per_order > MAX_GROUP_LINES
    cand_stock = problem.stock[problem.cand_node, problem.line_sku[problem.cand_line]].astype(
        np.int32
    )
    if exact_short:
        one_by_one[cand_order[cand_stock < problem.line_qty[problem.cand_line]]] = True
    grouped = np.flatnonzero(~one_by_one & (pairs_per_order > 0))
    # pattern of each grouped order: its lines' quantities, in line order
    patterns: dict[tuple[int, ...], list[int]] = {}
    starts = problem.order_line_start
    qty = problem.line_qty.tolist()
    for order in grouped.tolist():
        patterns.setdefault(tuple(qty[starts[order] : starts[order + 1]]), []).append(order)
    slot = (problem.cand_line - problem.order_line_start[cand_order]).astype(INDEX)
    row_of_pair = np.full(problem.pair_order.size, -1, dtype=INDEX)
    order_pattern = np.full(problem.num_orders, -1, dtype=np.int64)
    for index, members in enumerate(patterns.values()):
        order_pattern[members] = index
    cand_pattern = order_pattern[cand_order].astype(INDEX)
    del cand_order
    cand_by_pattern = np.argsort(cand_pattern, kind="stable").astype(INDEX)
    cand_pattern_sorted = cand_pattern[cand_by_pattern]
    del cand_pattern
    groups = []
    for index, (pattern, members) in enumerate(patterns.items()):
        orders = np.asarray(members, dtype=np.int64)
        counts = pairs_per_order[orders]
        row_start = np.r_[0, np.cumsum(counts)[:-1]].astype(INDEX)
        owner = np.repeat(np.arange(orders.size, dtype=INDEX), counts)
        rows = (
            problem.order_pair_start[orders][owner] + (np.arange(counts.sum()) - row_start[owner])
        ).astype(INDEX)
        row_of_pair[rows] = np.arange(rows.size, dtype=INDEX)
        lo, hi = np.searchsorted(cand_pattern_sorted, [index, index + 1])
        mine = cand_by_pattern[lo:hi]
        size = len(pattern)
        cand = np.full((rows.size, size), -1, dtype=INDEX)
        # (a block wants at most the pattern's largest quantity of a line)
        room = np.zeros((rows.size, size), dtype=np.int16 if max(pattern) < 2**15 else np.int64)
        where = (row_of_pair[problem.cand_pair[mine]], slot[mine])
        cand[where] = mine
        room[where] = np.minimum(cand_stock[mine], max(pattern))
        whole = int(np.prod(np.asarray(pattern) + 1)) > MAX_PATTERN_BLOCKS
        groups.append(
            PatternGroup(
                pattern,
                whole,
                orders,
                rows,
                row_start,
                owner,
                cand,
                room,
                _block_units(pattern, whole),
            )
        )
    return PricingStructure(
        groups=tuple(groups),
        loop_orders=np.flatnonzero(one_by_one & (pairs_per_order > 0)),
        no_candidate_orders=np.flatnonzero(pairs_per_order == 0),
        cand_key=cand_key,
        key_node=key_node,
        key_sku=key_sku,
        key_stock=problem.stock[key_node, key_sku].astype(np.float64),
    )


def _block_units(pattern: tuple[int, ...], whole_lines: bool) -> np.ndarray:
    """(L, B) units per line of every block, numbered in mixed radix (line 0 fastest)."""
    radix = [2] * len(pattern) if whole_lines else [q + 1 for q in pattern]
    codes = np.arange(int(np.prod(radix)))
    digits = []
    for r in radix:
        digits.append(codes % r)
        codes = codes // r
    units = np.array(digits, dtype=np.int64)
    if whole_lines:
        units = units * np.asarray(pattern, dtype=np.int64)[:, None]
    return units


@lru_cache(maxsize=4096)
def _transitions(radix: tuple[int, ...]) -> tuple[tuple[int, np.ndarray, np.ndarray], ...]:
    """For every state k > 0: the blocks b <= k holding k's first unit, and k - b.

    States and blocks are count vectors in the same mixed-radix numbering, so
    ``code(k - b) = code(k) - code(b)`` when b <= k.
    """
    size = int(np.prod(radix))
    codes = np.arange(size)
    digits = np.empty((len(radix), size), dtype=np.int64)
    rest = codes.copy()
    for j, r in enumerate(radix):
        digits[j] = rest % r
        rest //= r
    result = []
    for k in range(1, size):
        first = int(np.flatnonzero(digits[:, k])[0])
        fits = np.all(digits <= digits[:, [k]], axis=0) & (digits[first] >= 1)
        blocks = np.flatnonzero(fits)
        result.append((k, blocks, k - blocks))
    return tuple(result)


def price_orders(
    problem, structure: PricingStructure, key_price: np.ndarray, node_price: np.ndarray
) -> Priced:
    """Route every order alone at prices ``key_price`` (K,) and ``node_price`` (N,), both >= 0.

    A price on a node without a capacity limit prices no row and is ignored.
    """
    finite = np.isfinite(problem.capacity)
    node_price = np.where(finite, node_price, 0.0)
    unit_cost = (
        cand_unit_cost(problem) + key_price[structure.cand_key] + node_price[problem.cand_node]
    )
    order_cost = np.zeros(problem.num_orders)
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    line_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    order_cost[structure.no_candidate_orders] = (
        problem.unfilled_penalty * line_units[structure.no_candidate_orders]
    )
    for group in structure.groups:
        _price_group(problem, group, unit_cost, order_cost, units)
    if structure.loop_orders.size:
        from solver.alone import orders_alone  # the exact per-order routine

        price = np.zeros(problem.stock.shape)
        price[structure.key_node, structure.key_sku] = key_price
        price += node_price[:, None]
        mask = np.zeros(problem.num_orders, dtype=bool)
        mask[structure.loop_orders] = True
        loop_units, loop_cost, _exact = orders_alone(problem, mask, price)
        order_cost[mask] = loop_cost[mask]
        in_loop = mask[problem.line_order[problem.cand_line]]
        units[in_loop] = loop_units[in_loop]
    value = float(order_cost.sum())
    value -= float(key_price @ structure.key_stock)
    value -= float(node_price[finite] @ problem.capacity[finite])
    return Priced(order_cost, units, value)


def _price_group(problem, group: PatternGroup, unit_cost, order_cost, units) -> None:
    """Relaxed optimum of every order of ``group`` (see the module docstring)."""
    size = len(group.pattern)
    radix = (2,) * size if group.whole_lines else tuple(q + 1 for q in group.pattern)
    n_blocks = group.blocks.shape[1]
    full = n_blocks - 1
    has = group.cand >= 0
    per_unit = np.where(has, unit_cost[np.where(has, group.cand, 0)], 0.0)
    serve = per_unit @ group.blocks.astype(np.float64) + problem.pair_ship_cost[group.rows][:, None]
    if group.whole_lines:
        possible = (~has).astype(np.float64) @ (group.blocks > 0) == 0
    else:
        possible = np.all(group.blocks[None, :, :] <= group.room[:, :, None], axis=1)
    serve = np.where(possible, serve, np.inf)
    best_serve = np.minimum.reduceat(serve, group.row_start, axis=0)
    unfilled = problem.unfilled_penalty * group.blocks.sum(axis=0).astype(np.float64)
    split = problem.split_penalty

    n = group.orders.size
    # with_ship[:, k]: the units k handled with at least one shipment, every
    # shipment charged a split (the first one's is taken back at the end).
    with_ship = np.full((n, n_blocks), np.inf)
    choice = np.zeros((n, n_blocks), dtype=np.int64)  # block; negative: left unfilled
    for k, blocks, rests in _transitions(radix):
        ship = best_serve[:, blocks] + split + np.minimum(unfilled[rests], with_ship[:, rests])
        fill = unfilled[blocks] + with_ship[:, rests]
        pick_ship = np.argmin(ship, axis=1)
        pick_fill = np.argmin(fill, axis=1)
        rows = np.arange(n)
        ship_best = ship[rows, pick_ship]
        fill_best = fill[rows, pick_fill]
        use_fill = fill_best < ship_best
        with_ship[:, k] = np.where(use_fill, fill_best, ship_best)
        choice[:, k] = np.where(use_fill, -blocks[pick_fill], blocks[pick_ship])
    shipped = with_ship[:, full] - split
    use_ship = shipped < unfilled[full]
    order_cost[group.orders] = np.where(use_ship, shipped, unfilled[full])

    # Read the plans back, one block per step.
    state = np.where(use_ship, full, 0)
    row_index = np.arange(group.rows.size)
    while True:
        active = np.flatnonzero(state > 0)
        if active.size == 0:
            break
        block = choice[active, state[active]]
        ships = block > 0
        owners = active[ships]
        if owners.size:
            block_of = np.zeros(n, dtype=np.int64)
            block_of[owners] = block[ships]
            col = block_of[group.row_owner]
            hit = (col > 0) & (serve[row_index, col] <= best_serve[group.row_owner, col])
            first = np.minimum.reduceat(np.where(hit, row_index, row_index.size), group.row_start)
            chosen_rows = first[owners]
            for j in range(size):
                take = group.blocks[j, block_of[owners]]
                give = take > 0
                np.add.at(units, group.cand[chosen_rows[give], j], take[give])
        rest = state[active] - np.abs(block)
        # after a shipment the rest is all unfilled, or has more shipments
        go_on = ~ships | (with_ship[active, rest] < unfilled[rest])
        state[active] = np.where(go_on & (rest > 0), rest, 0)
