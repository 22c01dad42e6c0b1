"""Exact routing of a single order over its candidate nodes.

One order asks for a handful of distinct SKUs. A solution opens a set of
shipments (nodes) and gives every SKU to one of them or leaves it unfilled. For
the small orders that dominate e-commerce (1-8 distinct SKUs) the optimum is
found by dynamic programming over subsets: a *block* is a subset served whole
by one node, and a solution is a partition into blocks and unfilled elements.
``solve_order`` runs it over the order's units (exact for up to
``MAX_DP_SKUS`` units) and falls back to a small MIP for larger orders.

The same subset DP, with resource prices added to the per-unit costs and the
stock limits relaxed, gives each order's Lagrangian subproblem in the batch
optimizer's lower bound (see :func:`order_relaxation_cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from solver.mip import MipModel, MipParams, SolveStatus, solve_mip

MAX_DP_SKUS = 8
"""Most elements (units, or SKUs in the relaxation) for the subset DP (3^8 = 6,561 steps)."""


@dataclass(frozen=True)
class OrderProblem:
    """One order's routing problem over its N candidate nodes.

    Attributes
    ----------
    qty
        (K,) units wanted of each distinct SKU of the order.
    stock
        (K, N) units of each SKU available at each candidate node.
    ship_cost
        (N,) cost of one shipment from each node to this customer (0 for pickup).
    unit_cost
        (K, N) cost per unit of SKU k allocated at node n (handling).
    capacity
        (N,) units each node may still allocate (``np.inf`` = no limit).
    split_penalty, unfilled_penalty
        Cost per shipment beyond the first, and per unit not allocated.
    max_shipments
        Most shipments (nodes) the order may use (a routing profile's split cap);
        ``None``: no cap.
    sku_group
        (K,) the ship group of each SKU row (-1: none): the SKUs of one group are
        served whole by one node, or not at all (:func:`ship_groups_hold`).
    """

    qty: np.ndarray
    stock: np.ndarray
    ship_cost: np.ndarray
    unit_cost: np.ndarray
    capacity: np.ndarray
    split_penalty: float
    unfilled_penalty: float
    max_shipments: int | None = None
    sku_group: np.ndarray | None = None


@dataclass(frozen=True)
class OrderPlan:
    alloc: np.ndarray
    """(K, N) units of SKU k allocated at node n."""
    total_cost: float
    exact: bool
    """True when the plan is proven optimal for this order."""


def order_cost(problem: OrderProblem, alloc: np.ndarray) -> float:
    """Cost of an allocation under the scenario cost formula."""
    shipments = alloc.sum(axis=0) > 0
    n_ship = int(shipments.sum())
    unfilled = problem.qty - alloc.sum(axis=1)
    return float(
        problem.ship_cost[shipments].sum()
        + (problem.unit_cost * alloc).sum()
        + problem.split_penalty * max(0, n_ship - 1)
        + problem.unfilled_penalty * unfilled.sum()
    )


def solve_order(problem: OrderProblem) -> OrderPlan:
    """Route one order at least cost; the plan never exceeds stock or capacity.

    Orders of at most ``MAX_DP_SKUS`` units are split into unit *items*; every
    feasible plan is then a partition of the items into node blocks, so the
    subset DP over items is exact. The DP checks stock and capacity per block,
    so it may put two blocks on one node whose sum does not fit (common on the
    little stock left in a scarce batch): a branch and bound on that node then
    makes it exact (:func:`_distinct_node_blocks`), and the MIP takes what that
    search would need too many tables for, and orders of more units.
    """
    k, n = problem.stock.shape
    empty = np.zeros((k, n), dtype=np.int64)
    if k == 0 or n == 0:
        return OrderPlan(empty, order_cost(problem, empty), True)
    content = _elements(problem)
    if content.shape[0] <= MAX_DP_SKUS:
        # Elements: one per unit of a SKU outside any ship group, one per ship group
        # (all its units); ``content[e]`` is element e's units per SKU.
        members = _subset_members(content.shape[0])
        per_sku = members.astype(np.int64) @ content
        units = per_sku.sum(axis=1)
        fits = np.all(per_sku[:, :, None] <= problem.stock[None, :, :], axis=1)
        fits &= units[:, None] <= problem.capacity[None, :]
        size = content.sum(axis=1)
        args = (
            size,
            fits,
            problem.ship_cost,
            (content @ problem.unit_cost) / size[:, None],
            problem.split_penalty,
            problem.unfilled_penalty,
        )
        alloc = _allocation(_subset_dp_blocks(*args, problem.max_shipments), content, empty)
        if _fits(problem, alloc):
            return OrderPlan(alloc, order_cost(problem, alloc), True)
        if problem.max_shipments is None:
            # two blocks on one node that do not fit together: the exact search
            items = _distinct_node_blocks(*args)
            if items is not None:
                alloc = _allocation(items, content, empty)
                if _fits(problem, alloc):
                    return OrderPlan(alloc, order_cost(problem, alloc), True)
    return _solve_order_mip(problem)


def _allocation(items: np.ndarray, content: np.ndarray, empty: np.ndarray) -> np.ndarray:
    alloc = empty.copy()
    for item, node in enumerate(items):
        if node >= 0:
            alloc[:, node] += content[item]
    return alloc


def _fits(problem: OrderProblem, alloc: np.ndarray) -> bool:
    return bool(np.all(alloc <= problem.stock) and np.all(alloc.sum(axis=0) <= problem.capacity))


def _elements(problem: OrderProblem) -> np.ndarray:
    """(E, K) units per SKU of each DP element: single units of ungrouped SKUs, and one
    element per ship group (capped above ``MAX_DP_SKUS`` elements: then the MIP)."""
    qty = np.asarray(problem.qty, dtype=np.int64)
    k = qty.size
    group = problem.sku_group if problem.sku_group is not None else np.full(k, -1)
    free = group < 0
    if int(qty[free].sum()) + np.unique(group[~free]).size > MAX_DP_SKUS:
        return np.zeros((MAX_DP_SKUS + 1, k), dtype=np.int64)
    item_sku = np.repeat(np.flatnonzero(free), qty[free])
    rows = [np.eye(k, dtype=np.int64)[item_sku]]
    for g in np.unique(group[~free]):
        rows.append(np.where(group == g, qty, 0)[None, :])
    return np.concatenate(rows).astype(np.int64)


def ship_groups_hold(sku_group: np.ndarray | None, qty: np.ndarray, alloc: np.ndarray) -> bool:
    """Whether every ship group is served whole by one node, or not at all."""
    if sku_group is None:
        return True
    for g in np.unique(sku_group[sku_group >= 0]):
        rows = sku_group == g
        used = alloc[rows].sum(axis=0) > 0
        if used.sum() > 1:
            return False
        if used.any() and not np.array_equal(alloc[rows][:, used].ravel(), qty[rows]):
            return False
    return True


def order_relaxation_cost(
    qty: np.ndarray,
    holds: np.ndarray,
    ship_cost: np.ndarray,
    unit_cost: np.ndarray,
    split_penalty: float,
    unfilled_penalty: float,
) -> float:
    """Optimum of one order's problem with stock and capacity limits dropped.

    ``holds`` (K, N) says which nodes hold any of SKU k; ``unit_cost`` may carry
    Lagrangian prices. Dropping the limits only enlarges the feasible set, and
    with no limits serving each SKU whole from one node is without loss, so the
    subset DP returns the exact optimum of the relaxation: a valid lower bound
    for this order's share of any feasible batch solution.
    """
    if qty.size > MAX_DP_SKUS:
        return _big_order_relaxation_cost(qty, holds, ship_cost, unit_cost, unfilled_penalty)
    members = _subset_members(qty.size)
    fits = (members.astype(np.int64) @ (~holds).astype(np.int64)) == 0
    nodes = _subset_dp_blocks(qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty)
    served = nodes >= 0
    shipments = np.unique(nodes[served])
    return float(
        ship_cost[shipments].sum()
        + (unit_cost[served, nodes[served]] * qty[served]).sum()
        + split_penalty * max(0, shipments.size - 1)
        + unfilled_penalty * qty[~served].sum()
    )


def _big_order_relaxation_cost(qty, holds, ship_cost, unit_cost, unfilled_penalty) -> float:
    """A weaker but valid bound for orders with many SKUs: each SKU at its cheapest
    unit cost, plus the cheapest shipment if anything ships at all."""
    unit = np.where(holds, unit_cost, np.inf).min(axis=1, initial=np.inf)
    per_unit = np.minimum(unit, unfilled_penalty)
    lines = float((per_unit * qty).sum())
    if np.all(per_unit >= unfilled_penalty):
        return lines
    # Shipping anything costs at least the cheapest shipment; shipping nothing
    # costs every unit at the penalty.
    return min(lines + float(ship_cost.min()), unfilled_penalty * float(qty.sum()))


@lru_cache(maxsize=MAX_DP_SKUS + 1)
def _subset_members(k: int) -> np.ndarray:
    """(2^k, k) boolean membership matrix of every subset of k elements."""
    masks = np.arange(1 << k)
    return ((masks[:, None] >> np.arange(k)) & 1).astype(bool)


def _subset_dp_blocks(
    qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty, max_blocks=None
) -> np.ndarray:
    """Best partition of K elements into node blocks and unfilled elements.

    Element e wants ``qty[e]`` units at ``unit_cost[e, n]`` each; ``fits[t, n]``
    says whether subset t (a bitmask) may be served whole by node n. Every
    node block pays ``split_penalty`` except the first. Returns, per element,
    the node serving it or -1 for unfilled. ``max_blocks``: at most that many
    blocks (the split cap, :func:`_capped_blocks`).
    """
    k = qty.size
    if max_blocks is not None and max_blocks < k:
        return _capped_blocks(
            qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty, max_blocks
        )
    table = _DpTable(qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty)
    nodes = np.full(k, -1, dtype=np.int64)
    _value, blocks = table.best((1 << k) - 1, first_free=True)
    for subset, node in blocks:
        _assign(nodes, subset, node)
    return nodes


class _DpTable:
    """The subset DP's table over every subset of the K elements.

    ``block_cost[t]``/``best_node[t]``: the cheapest node serving subset t whole
    (``inf`` where none fits); ``f[mask]``: the cheapest way to settle ``mask``
    with every node block paying the split penalty; ``choice[mask]`` the block
    (or single unfilled element) used for mask's lowest element.
    """

    def __init__(self, qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty):
        k = qty.size
        members = _subset_members(k).astype(np.float64)
        block = ship_cost[None, :] + members @ (unit_cost * qty[:, None])
        block[~fits] = np.inf
        block[0] = np.inf
        self.block = block
        self.best_node = block.argmin(axis=1)
        self.block_cost = block[np.arange(block.shape[0]), self.best_node]
        self.split_penalty = split_penalty
        self.unfilled = unfilled_penalty * qty.astype(np.float64)
        self.unfilled_of = members @ self.unfilled
        full = (1 << k) - 1
        f_list = [0.0] * (full + 1)
        choice = [0] * (full + 1)
        chose_unfilled = [False] * (full + 1)
        cost_list = (self.block_cost + split_penalty).tolist()
        unfilled = self.unfilled.tolist()
        for mask in range(1, full + 1):
            low = mask & -mask
            best = f_list[mask ^ low] + unfilled[low.bit_length() - 1]
            best_t, best_unfilled = low, True
            rest = mask ^ low
            sub = rest
            while True:
                t = sub | low
                cand = f_list[mask ^ t] + cost_list[t]
                if cand < best:
                    best, best_t, best_unfilled = cand, t, False
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            f_list[mask] = best
            choice[mask] = best_t
            chose_unfilled[mask] = best_unfilled
        self.f = np.asarray(f_list)
        self._choice = choice
        self._chose_unfilled = chose_unfilled

    def blocks_of(self, mask: int) -> list[tuple[int, int]]:
        """The (subset, node) blocks of f's plan for ``mask``."""
        blocks = []
        while mask:
            t = self._choice[mask]
            if not self._chose_unfilled[mask]:
                blocks.append((t, int(self.best_node[t])))
            mask ^= t
        return blocks

    def best(self, universe: int, first_free: bool) -> tuple[float, list[tuple[int, int]]]:
        """The cheapest plan for the elements of ``universe`` (a relaxation: two
        blocks may share a node). With ``first_free`` one block ships without the
        split penalty (an order's first shipment); otherwise every block pays it."""
        if not first_free:
            return float(self.f[universe]), self.blocks_of(universe)
        subsets = _submasks(universe)
        first_cost = self.block_cost[subsets] + self.f[universe ^ subsets]
        pick = int(np.argmin(first_cost))
        nothing = float(self.unfilled_of[universe])
        if not np.isfinite(first_cost[pick]) or first_cost[pick] >= nothing:
            return nothing, []
        first = int(subsets[pick])
        blocks = [(first, int(self.best_node[first])), *self.blocks_of(universe ^ first)]
        return float(first_cost[pick]), blocks


def _submasks(universe: int) -> np.ndarray:
    """The nonempty subsets of ``universe`` (a bitmask)."""
    masks = np.arange(1, universe + 1)
    return masks[(masks & ~universe) == 0]


DISTINCT_NODE_TABLES = 24
"""Most DP tables the exact search over node reuse builds before the MIP takes over."""


def _distinct_node_blocks(qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty):
    """The subset DP made exact when its plan puts two blocks on one node whose sum
    does not fit there (the relaxation's only gap): branch and bound on that node.

    A feasible plan either leaves node n unused, or serves exactly one subset S
    there and the rest elsewhere; the DP's tables with n forbidden bound every
    such branch (S all at once, vectorised), and the branches are searched
    cheapest bound first. Returns the elements' nodes (-1 unfilled), or ``None``
    when more than ``DISTINCT_NODE_TABLES`` tables would be needed (the caller's
    MIP settles it).
    """
    k = qty.size
    tables: dict[frozenset, _DpTable] = {}

    def table(forbidden: frozenset) -> _DpTable:
        if forbidden not in tables:
            if len(tables) >= DISTINCT_NODE_TABLES:
                raise _TooDeep
            allowed = fits.copy()
            allowed[:, list(forbidden)] = False
            tables[forbidden] = _DpTable(
                qty, allowed, ship_cost, unit_cost, split_penalty, unfilled_penalty
            )
        return tables[forbidden]

    def reused(blocks) -> int | None:
        nodes = [node for _subset, node in blocks]
        for node in nodes:
            if nodes.count(node) > 1:
                return node
        return None

    def solve(universe: int, forbidden: frozenset, first_free: bool, ceiling: float):
        """Exact best plan of ``universe`` without the ``forbidden`` nodes, or
        (inf, None) when none is below ``ceiling``."""
        value, blocks = table(forbidden).best(universe, first_free)
        if value >= ceiling:
            return np.inf, None
        node = reused(blocks)
        if node is None:
            return value, blocks
        without = forbidden | {node}
        rest = table(without)
        subsets = _submasks(universe)
        at_node = table(forbidden).block[subsets, node]
        extra = 0.0 if first_free else split_penalty
        bounds = at_node + extra + rest.f[universe ^ subsets]
        best_value, best_blocks = ceiling, None
        # the branch "node unused", then each subset served there, cheapest bound first
        unused_value, unused_blocks = solve(universe, without, first_free, best_value)
        if unused_blocks is not None or unused_value < best_value:
            best_value, best_blocks = unused_value, unused_blocks
        for i in np.argsort(bounds, kind="stable"):
            if not bounds[i] < best_value:
                break
            s = int(subsets[i])
            rest_value, rest_blocks = solve(
                universe ^ s, without, False, best_value - at_node[i] - extra
            )
            if rest_blocks is None:
                continue
            total = at_node[i] + extra + rest_value
            if total < best_value:
                best_value, best_blocks = total, [(s, node), *rest_blocks]
        return best_value, best_blocks

    try:
        value, blocks = solve((1 << k) - 1, frozenset(), True, np.inf)
    except _TooDeep:
        return None
    nodes = np.full(k, -1, dtype=np.int64)
    if blocks is None:
        return None if not np.isfinite(value) else nodes
    for subset, node in blocks:
        _assign(nodes, subset, node)
    return nodes


class _TooDeep(Exception):
    """The exact search over node reuse would need too many DP tables."""


def _capped_blocks(
    qty, fits, ship_cost, unit_cost, split_penalty, unfilled_penalty, max_blocks
) -> np.ndarray:
    """The subset DP with at most ``max_blocks`` blocks (the split cap rule).

    Layer j holds f_j[mask], the cheapest way to settle ``mask`` with at most j
    blocks, each paying the split penalty; the answer is the best first block t
    (no penalty) plus f_{cap-1}[full ^ t], or everything unfilled. Two blocks of
    one node would be one shipment: a plan that does that is never worse than
    the DP's, so the cap holds on shipments too.
    """
    k = qty.size
    members = _subset_members(k).astype(np.float64)
    block = ship_cost[None, :] + members @ (unit_cost * qty[:, None])
    block[~fits] = np.inf
    block[0] = np.inf
    best_node = block.argmin(axis=1)
    block_cost = block[np.arange(block.shape[0]), best_node]
    unfilled = unfilled_penalty * qty.astype(np.float64)
    full = (1 << k) - 1
    unfilled_of = members @ unfilled
    cost_list = (block_cost + split_penalty).tolist()
    # layers[j][mask], choice: (block or -1 for "lowest element unfilled")
    layers = [unfilled_of.tolist()]  # 0 blocks: everything unfilled
    choices: list[list[int]] = [[]]
    for _j in range(1, max_blocks):
        prev = layers[-1]
        f = [0.0] * (full + 1)
        choice = [0] * (full + 1)
        for mask in range(1, full + 1):
            low = mask & -mask
            best = f[mask ^ low] + unfilled[low.bit_length() - 1]
            best_t = -1
            rest = mask ^ low
            sub = rest
            while True:
                t = sub | low
                cand = prev[mask ^ t] + cost_list[t]
                if cand < best:
                    best, best_t = cand, t
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            f[mask] = best
            choice[mask] = best_t
        layers.append(f)
        choices.append(choice)
    nodes = np.full(k, -1, dtype=np.int64)
    last = np.asarray(layers[max_blocks - 1])
    first_cost = block_cost[1:] + last[full ^ np.arange(1, full + 1)]
    first = int(np.argmin(first_cost)) + 1
    if not np.isfinite(first_cost[first - 1]) or first_cost[first - 1] >= unfilled.sum():
        return nodes
    _assign(nodes, first, int(best_node[first]))
    mask, j = full ^ first, max_blocks - 1
    while mask and j > 0:
        t = choices[j][mask]
        if t < 0:
            mask ^= mask & -mask  # lowest element unfilled, same layer
            continue
        _assign(nodes, t, int(best_node[t]))
        mask ^= t
        j -= 1
    return nodes


def _assign(nodes: np.ndarray, subset: int, node: int) -> None:
    for element in range(nodes.size):
        if subset >> element & 1:
            nodes[element] = node


MIP_NODES_PER_SKU = 12
"""Large orders keep, per SKU, this many cheapest holders as MIP candidates."""


def _solve_order_mip(problem: OrderProblem) -> OrderPlan:
    """Fallback for large orders: a small MIP (units per (SKU, node), a shipment
    flag per node, unfilled units, one split counter).

    With many candidate nodes only the cheapest holders of each SKU are kept,
    and the plan is then not claimed exact.
    """
    qty = np.asarray(problem.qty, dtype=np.int64)
    k, n = problem.stock.shape
    usable = (problem.stock > 0) & (problem.capacity[None, :] > 0)
    pruned = False
    if n > MIP_NODES_PER_SKU * k:
        standalone = np.where(usable, problem.ship_cost[None, :] + problem.unit_cost, np.inf)
        keep = np.zeros(n, dtype=bool)
        keep[np.argsort(standalone, axis=1, kind="stable")[:, :MIP_NODES_PER_SKU].ravel()] = True
        pruned = bool((usable & ~keep[None, :]).any())
        usable &= keep[None, :]
    sku_idx, node_idx = np.nonzero(usable)
    nx = sku_idx.size
    upper = np.minimum(problem.stock[sku_idx, node_idx], qty[sku_idx]).astype(np.float64)
    # columns: x (nx) | y (n) | unfilled (k) | split (1)
    y0, u0, s0 = nx, nx + n, nx + n + k
    ncol = s0 + 1
    c = np.concatenate(
        [
            problem.unit_cost[sku_idx, node_idx],
            problem.ship_cost,
            np.full(k, problem.unfilled_penalty),
            [problem.split_penalty],
        ]
    )
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []

    def add_row(rc, rv, rlo, rhi):
        r = len(lo)
        rows.extend([r] * len(rc))
        cols.extend(rc)
        vals.extend(rv)
        lo.append(rlo)
        hi.append(rhi)

    for s in range(k):  # every unit is allocated or unfilled
        xs = np.nonzero(sku_idx == s)[0].tolist()
        add_row([*xs, u0 + s], [1.0] * len(xs) + [1.0], float(qty[s]), float(qty[s]))
    for j in range(nx):  # units only from an open shipment
        add_row([j, y0 + int(node_idx[j])], [1.0, -upper[j]], -np.inf, 0.0)
    for v in range(n):  # node capacity
        xs = np.nonzero(node_idx == v)[0].tolist()
        if xs and np.isfinite(problem.capacity[v]):
            add_row(xs, [1.0] * len(xs), -np.inf, float(problem.capacity[v]))
    add_row([s0, *range(y0, y0 + n)], [1.0] + [-1.0] * n, -1.0, np.inf)  # split >= shipments - 1
    if problem.max_shipments is not None:  # the split cap
        add_row(list(range(y0, y0 + n)), [1.0] * n, -np.inf, float(problem.max_shipments))
    groups = (
        np.unique(problem.sku_group[problem.sku_group >= 0])
        if problem.sku_group is not None
        else np.zeros(0, dtype=np.int64)
    )
    w0 = ncol
    ncol += groups.size * n
    for gi, g in enumerate(groups.tolist()):  # ship groups: whole from one node, or none
        assert problem.sku_group is not None
        for j in np.flatnonzero(problem.sku_group[sku_idx] == g).tolist():
            s = int(sku_idx[j])
            add_row([j, w0 + gi * n + int(node_idx[j])], [1.0, -float(qty[s])], 0.0, 0.0)
        add_row(list(range(w0 + gi * n, w0 + (gi + 1) * n)), [1.0] * n, -np.inf, 1.0)

    A = sp.csr_matrix((vals, (rows, cols)), shape=(len(lo), ncol))
    nw = ncol - (s0 + 1)
    c = np.concatenate([c, np.zeros(nw)])
    col_hi = np.concatenate(
        [upper, np.ones(n), qty.astype(np.float64), [float(max(n - 1, 0))], np.ones(nw)]
    )
    integer = np.concatenate(
        [np.ones(nx + n, dtype=bool), np.zeros(k + 1, dtype=bool), np.ones(nw, dtype=bool)]
    )
    for gi, g in enumerate(groups.tolist()):
        # A group is whole at a node only if every SKU of it has a column there.
        assert problem.sku_group is not None
        for node in range(n):
            wanted = np.flatnonzero(problem.sku_group == g)
            present = set(sku_idx[node_idx == node].tolist())
            if not set(wanted.tolist()) <= present:
                col_hi[w0 + gi * n + node] = 0.0
    model = MipModel(c, np.zeros(ncol), col_hi, integer, A, np.array(lo), np.array(hi))
    # No gap at all: an "exact" plan feeds the batch's proven lower bound.
    result = solve_mip(model, MipParams(time_limit=1.0, rel_gap=0.0, abs_gap=0.0))
    alloc = np.zeros((k, n), dtype=np.int64)
    if result.x is not None:
        alloc[sku_idx, node_idx] = np.rint(result.x[:nx]).astype(np.int64)
    exact = result.status == SolveStatus.OPTIMAL and not pruned
    return OrderPlan(alloc, order_cost(problem, alloc), exact)
