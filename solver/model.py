"""The batch assignment model, one named unit per business rule.

Decision variables (see :class:`Vars`):

- ``x[c]``   integer units of a line given by line candidate c = (line, node);
- ``y[p]``   binary: shipment candidate p = (order, node) is used;
- ``u[l]``   units of line l left unfilled;
- ``z[o]``   splits of order o (shipments beyond the first);
- ``m[o]``   binary, re-optimization only: order o moves from its current routing;
- ``w[k]``   binary, ship groups only: group g of key k = (group, shipment candidate)
             ships whole from that shipment's node.

Each rule below adds its rows (and, for cost terms, objective coefficients) to
a :class:`ModelBuilder`; :func:`build_model` lists them in one place so the
model reads as the business rules. The model covers a *subset* of orders and
candidates, with stock and capacity passed in (residual amounts when other
orders are fixed), so the same code serves the whole batch or a part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from solver.cost import unit_cost
from solver.mip import MipModel


@dataclass(frozen=True)
class ModelInput:
    """The part of the batch handed to one model.

    ``cands`` are line-candidate indices (into the problem), ``lines`` and
    ``orders`` the lines and orders they belong to (every line of every order
    in ``orders``), ``pairs`` the shipment candidates used by ``cands``.
    ``stock`` (N, S) and ``capacity`` (N,) are what these orders may use.
    """

    cands: np.ndarray
    pairs: np.ndarray
    lines: np.ndarray
    orders: np.ndarray
    stock: np.ndarray
    capacity: np.ndarray
    move_budget: float | None = None
    """Re-optimization: how many of these orders may still move (the churn
    limit less the moves of the orders outside); ``None``: the whole limit."""
    shares_left: np.ndarray | None = None
    """(K,) units each binding (channel, SKU) pair may still sell (its channel share
    less the orders outside the part); ``None``: the problem's whole ``share_cap``."""
    orders_left: np.ndarray | None = None
    """(N,) orders each node may still take (a profile's daily orders limit less the
    orders outside the part); ``None``: the problem's whole limit, if any."""

    @classmethod
    def whole(cls, problem) -> ModelInput:
        """Every order and every candidate of the problem, on its full stock:
        the unpruned model, whose MIP bound is a bound for the batch."""
        return cls(
            cands=np.arange(problem.cand_line.size),
            pairs=np.arange(problem.pair_order.size),
            lines=np.arange(problem.num_lines),
            orders=np.arange(problem.num_orders),
            stock=problem.stock,
            capacity=problem.capacity,
        )


@dataclass(frozen=True)
class Vars:
    """Column offsets of the variable groups; ``extract`` reads units back."""

    num_x: int
    num_y: int
    num_u: int
    num_z: int
    num_m: int = 0
    num_w: int = 0

    @property
    def y0(self) -> int:
        return self.num_x

    @property
    def u0(self) -> int:
        return self.num_x + self.num_y

    @property
    def z0(self) -> int:
        return self.num_x + self.num_y + self.num_u

    @property
    def m0(self) -> int:
        return self.z0 + self.num_z

    @property
    def w0(self) -> int:
        return self.m0 + self.num_m

    @property
    def size(self) -> int:
        return self.w0 + self.num_w

    def extract(self, solution: np.ndarray) -> np.ndarray:
        """Units per model line candidate, rounded to the integers they are."""
        return np.rint(solution[: self.num_x]).astype(np.int64)


class ModelBuilder:
    """Accumulates objective coefficients, bounds and sparse rows."""

    def __init__(self, num_cols: int):
        self.c = np.zeros(num_cols)
        self.col_lo = np.zeros(num_cols)
        self.col_hi = np.full(num_cols, np.inf)
        self.integer = np.zeros(num_cols, dtype=bool)
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []
        self.num_rows = 0
        self.row_group: dict[str, slice] = {}

    def add_rows(self, name, row, col, val, lo, hi) -> None:
        """Add a block of rows; ``row`` is numbered from 0 within the block."""
        count = len(lo)
        self._rows.append(np.asarray(row, dtype=np.int64) + self.num_rows)
        self._cols.append(np.asarray(col, dtype=np.int64))
        self._vals.append(np.asarray(val, dtype=np.float64))
        self._lo.append(np.asarray(lo, dtype=np.float64))
        self._hi.append(np.asarray(hi, dtype=np.float64))
        self.row_group[name] = slice(self.num_rows, self.num_rows + count)
        self.num_rows += count

    def build(self) -> MipModel:
        cat = (lambda parts: np.concatenate(parts)) if self._rows else (lambda _: np.zeros(0))
        A = sp.csr_matrix(
            (cat(self._vals), (cat(self._rows).astype(np.int64), cat(self._cols).astype(np.int64))),
            shape=(self.num_rows, self.c.size),
        )
        return MipModel(
            self.c, self.col_lo, self.col_hi, self.integer, A, cat(self._lo), cat(self._hi)
        )


def build_model(
    problem, part: ModelInput
) -> tuple[MipModel, Vars, dict[str, np.ndarray], dict[str, slice]]:
    """The assignment model of ``part`` (all index arrays of ``part`` sorted).

    Also returns the keys of the stock rows ((node, sku) pairs) and capacity
    rows (nodes) it contains, and the row range of each rule.
    """
    num_m = part.orders.size if problem.churn is not None else 0
    group_keys = ship_group_keys(problem, part)
    v = Vars(
        part.cands.size,
        part.pairs.size,
        part.lines.size,
        part.orders.size,
        num_m,
        group_keys[0].size,
    )
    mb = ModelBuilder(v.size)
    local_line = _local_index(part.lines, problem.cand_line[part.cands])
    local_pair = _local_index(part.pairs, problem.cand_pair[part.cands])
    local_order = _local_index(part.orders, problem.pair_order[part.pairs])

    handling_cost(problem, part, v, mb)
    shipping_cost(problem, part, v, mb)
    unfilled_penalty(problem, part, v, mb)
    line_fill(problem, part, v, mb, local_line)
    units_need_shipment(problem, part, v, mb, local_pair)
    split_penalty(problem, part, v, mb, local_order)
    shipment_cap_rule(problem, part, v, mb, local_order)
    daily_orders_limit(problem, part, v, mb)
    ship_group_rule(problem, part, v, mb, group_keys)
    channel_share_rule(problem, part, v, mb)
    if problem.churn is not None:
        move_rule(problem, part, v, mb)
    keys = {
        "stock": stock_limit(problem, part, v, mb),
        "capacity": capacity_limit(problem, part, v, mb),
    }
    return mb.build(), v, keys, mb.row_group


# --- cost terms ---------------------------------------------------------------


def handling_cost(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> None:
    """Every allocated unit costs its node's handling (less a profile's clearance
    credit, :func:`solver.cost.unit_cost`); x is integer units."""
    nodes = problem.cand_node[part.cands]
    skus = problem.line_sku[problem.cand_line[part.cands]]
    qty = problem.line_qty[problem.cand_line[part.cands]]
    mb.c[: v.num_x] = unit_cost(problem, part.cands)
    mb.col_hi[: v.num_x] = np.minimum(qty, part.stock[nodes, skus])
    mb.integer[: v.num_x] = True


def shipping_cost(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> None:
    """A used shipment costs ship_fixed + ship_per_km * distance (0 for pickup)."""
    y = slice(v.y0, v.y0 + v.num_y)
    mb.c[y] = problem.pair_ship_cost[part.pairs]
    mb.col_hi[y] = 1.0
    mb.integer[y] = True


def unfilled_penalty(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> None:
    """Each unit not allocated costs the unfilled penalty."""
    u = slice(v.u0, v.u0 + v.num_u)
    mb.c[u] = problem.unfilled_penalty
    mb.col_hi[u] = problem.line_qty[part.lines]


def split_penalty(problem, part: ModelInput, v: Vars, mb: ModelBuilder, local_order) -> None:
    """z[o] >= shipments of o - 1, each split costing the split penalty."""
    z = slice(v.z0, v.z0 + v.num_z)
    mb.c[z] = problem.split_penalty
    # An order cannot split more often than it has shipments beyond the first:
    # finite bounds keep every dual vector's weak-duality bound finite.
    mb.col_hi[z] = np.maximum(np.bincount(local_order, minlength=v.num_z) - 1, 0)
    idx = np.arange(v.num_z)
    mb.add_rows(
        "split",
        np.concatenate([idx, local_order]),
        np.concatenate([v.z0 + idx, v.y0 + np.arange(v.num_y)]),
        np.concatenate([np.ones(v.num_z), -np.ones(v.num_y)]),
        np.full(v.num_z, -1.0),
        np.full(v.num_z, np.inf),
    )


def shipment_cap_rule(problem, part: ModelInput, v: Vars, mb: ModelBuilder, local_order) -> None:
    """A routing profile's split cap: an order uses at most ``order_max_shipments``
    shipments (sum of its y <= cap); no rows without profiles or caps."""
    caps = getattr(problem, "order_max_shipments", None)
    if caps is None:
        return
    cap = caps[part.orders]
    capped = np.isfinite(cap)
    if not capped.any():
        return
    row_of = np.cumsum(capped) - 1
    keep = capped[local_order]
    mb.add_rows(
        "shipment_cap",
        row_of[local_order[keep]],
        v.y0 + np.flatnonzero(keep),
        np.ones(int(keep.sum())),
        np.full(int(capped.sum()), -np.inf),
        cap[capped],
    )


def ship_group_keys(problem, part: ModelInput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The w columns of ``part``: one per (ship group, shipment candidate) met by a
    candidate of a group line; returns (key group, key pair, key of each model
    candidate, -1 for candidates of lines outside any group)."""
    line_group = getattr(problem, "line_group", None)
    none = np.zeros(0, dtype=np.int64)
    if line_group is None:
        return none, none, np.full(part.cands.size, -1)
    group = line_group[problem.cand_line[part.cands]]
    grouped = group >= 0
    pair = problem.cand_pair[part.cands]
    stride = problem.pair_order.size
    keys, inverse = np.unique(group[grouped] * stride + pair[grouped], return_inverse=True)
    key_of_cand = np.full(part.cands.size, -1)
    key_of_cand[grouped] = inverse
    return keys // stride, keys % stride, key_of_cand


def ship_group_rule(problem, part: ModelInput, v: Vars, mb: ModelBuilder, group_keys) -> None:
    """A ship group's lines go whole from one node, or not at all: each of their
    candidates carries ``qty * w[group, shipment]``, and a group uses at most one w.
    A w whose node lacks a candidate for some line of the group stays 0."""
    key_group, _key_pair, key_of_cand = group_keys
    if not v.num_w:
        return
    w = slice(v.w0, v.w0 + v.num_w)
    mb.integer[w] = True
    lines_of_group = np.bincount(problem.line_group[problem.line_group >= 0])
    grouped = np.flatnonzero(key_of_cand >= 0)
    covered = np.bincount(key_of_cand[grouped], minlength=v.num_w)
    mb.col_hi[w] = (covered == lines_of_group[key_group]).astype(np.float64)
    qty = problem.line_qty[problem.cand_line[part.cands[grouped]]].astype(np.float64)
    rows = np.arange(grouped.size)
    mb.add_rows(
        "ship_group_whole",
        np.concatenate([rows, rows]),
        np.concatenate([grouped, v.w0 + key_of_cand[grouped]]),
        np.concatenate([np.ones(grouped.size), -qty]),
        np.zeros(grouped.size),
        np.zeros(grouped.size),
    )
    groups, row_of_key = np.unique(key_group, return_inverse=True)
    mb.add_rows(
        "ship_group_one_node",
        row_of_key,
        v.w0 + np.arange(v.num_w),
        np.ones(v.num_w),
        np.full(groups.size, -np.inf),
        np.ones(groups.size),
    )


def channel_share_rule(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> None:
    """A channel sells at most its sellable quantity of a SKU (its share of the pool
    plus its reservations, router/channels.py): for each binding (channel, SKU) pair,
    the units of its lines <= what it may still sell (``part.shares_left``, else the
    problem's ``share_cap``); no rows without channel shares."""
    cap = getattr(problem, "share_cap", None)
    if cap is None:
        return
    left = part.shares_left if part.shares_left is not None else cap
    key = problem.line_share[problem.cand_line[part.cands]]
    on = np.flatnonzero(key >= 0)
    if not on.size:
        return
    pairs, row = np.unique(key[on], return_inverse=True)
    mb.add_rows(
        "channel_share",
        row,
        on,
        np.ones(on.size),
        np.full(pairs.size, -np.inf),
        np.maximum(left[pairs], 0.0),
    )


def daily_orders_limit(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> None:
    """A routing profile's daily orders limit: the part's shipments from a node are
    at most the orders it may still take (``part.orders_left``, else the problem's
    ``node_order_limit``); no rows without such limits."""
    limit = (
        part.orders_left
        if part.orders_left is not None
        else getattr(problem, "node_order_limit", None)
    )
    if limit is None:
        return
    nodes = problem.pair_node[part.pairs]
    demand = np.bincount(nodes, minlength=problem.num_nodes)
    binds = demand > limit
    keep = binds[nodes]
    row_of_node = np.cumsum(binds) - 1
    mb.add_rows(
        "daily_orders",
        row_of_node[nodes[keep]],
        v.y0 + np.flatnonzero(keep),
        np.ones(int(keep.sum())),
        np.full(int(binds.sum()), -np.inf),
        np.maximum(limit[binds], 0.0),
    )


def move_rule(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> None:
    """Re-optimization (:mod:`solver.churn`): m[o] = 1 when order o's units differ
    from its current ones; each moved order costs ``move_cost``; at most the
    part's move budget of them may move.

    Per candidate: ``x - cur <= (ub - cur) m`` and ``cur - x <= cur m``, so
    m = 0 pins every unit to its current value. An order holding units on a
    candidate outside the part cannot keep them: it must move.
    """
    churn = problem.churn
    m = slice(v.m0, v.m0 + v.num_m)
    mb.c[m] = churn.move_cost
    mb.col_hi[m] = 1.0
    mb.integer[m] = True
    local_order = _local_index(part.orders, problem.line_order[problem.cand_line[part.cands]])
    current = churn.current[part.cands].astype(np.float64)
    held = np.bincount(
        problem.line_order[problem.cand_line], weights=churn.current, minlength=problem.num_orders
    )[part.orders]
    held_here = np.bincount(local_order, weights=current, minlength=v.num_m)
    mb.col_lo[m] = (held > held_here + 0.5).astype(np.float64)
    idx = np.arange(v.num_x)
    ub = mb.col_hi[: v.num_x]
    mb.add_rows(
        "move_up",
        np.concatenate([idx, idx]),
        np.concatenate([idx, v.m0 + local_order]),
        np.concatenate([np.ones(v.num_x), -(ub - current)]),
        np.full(v.num_x, -np.inf),
        current,
    )
    holds = np.flatnonzero(current > 0)
    down = np.arange(holds.size)
    mb.add_rows(
        "move_down",
        np.concatenate([down, down]),
        np.concatenate([holds, v.m0 + local_order[holds]]),
        np.concatenate([-np.ones(holds.size), -current[holds]]),
        np.full(holds.size, -np.inf),
        -current[holds],
    )
    budget = churn.max_moves if part.move_budget is None else part.move_budget
    if budget is not None:
        mb.add_rows(
            "moves",
            np.zeros(v.num_m, dtype=np.int64),
            v.m0 + np.arange(v.num_m),
            np.ones(v.num_m),
            [-np.inf],
            [float(budget)],
        )


# --- feasibility rules --------------------------------------------------------


def line_fill(problem, part: ModelInput, v: Vars, mb: ModelBuilder, local_line) -> None:
    """Units allocated to a line plus its unfilled units equal its qty (rule 1)."""
    qty = problem.line_qty[part.lines].astype(np.float64)
    mb.add_rows(
        "line",
        np.concatenate([local_line, np.arange(v.num_u)]),
        np.concatenate([np.arange(v.num_x), v.u0 + np.arange(v.num_u)]),
        np.ones(v.num_x + v.num_u),
        qty,
        qty,
    )


def units_need_shipment(problem, part: ModelInput, v: Vars, mb: ModelBuilder, local_pair) -> None:
    """A line's units leave a node only on a used shipment: x[c] <= ub[c] * y[p].

    One row per line candidate (not per shipment) keeps the relaxation tight.
    """
    idx = np.arange(v.num_x)
    mb.add_rows(
        "link",
        np.concatenate([idx, idx]),
        np.concatenate([idx, v.y0 + local_pair]),
        np.concatenate([np.ones(v.num_x), -mb.col_hi[: v.num_x]]),
        np.full(v.num_x, -np.inf),
        np.zeros(v.num_x),
    )


def stock_limit(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> np.ndarray:
    """Units of a SKU allocated at a node are at most its stock (rule 2).

    Rows are added only where the candidates could exceed the stock; a limit
    that cannot bind is left out. Returns the (node, sku) keys of the rows.
    """
    nodes = problem.cand_node[part.cands]
    skus = problem.line_sku[problem.cand_line[part.cands]]
    key = nodes * problem.sku_ids.size + skus
    keys, row = np.unique(key, return_inverse=True)
    key_nodes, key_skus = keys // problem.sku_ids.size, keys % problem.sku_ids.size
    limit = part.stock[key_nodes, key_skus].astype(np.float64)
    demand = np.bincount(row, weights=mb.col_hi[: v.num_x], minlength=keys.size)
    binds = demand > limit
    keep = binds[row]
    new_row = np.cumsum(binds) - 1
    mb.add_rows(
        "stock",
        new_row[row[keep]],
        np.flatnonzero(keep),
        np.ones(int(keep.sum())),
        np.full(int(binds.sum()), -np.inf),
        limit[binds],
    )
    return np.stack([key_nodes[binds], key_skus[binds]], axis=1)


def capacity_limit(problem, part: ModelInput, v: Vars, mb: ModelBuilder) -> np.ndarray:
    """Units allocated at a node (all SKUs, pickups included) are at most its capacity (rule 3)."""
    nodes = problem.cand_node[part.cands]
    demand = np.bincount(nodes, weights=mb.col_hi[: v.num_x], minlength=problem.num_nodes)
    binds = demand > part.capacity
    keep = binds[nodes]
    row_of_node = np.cumsum(binds) - 1
    mb.add_rows(
        "capacity",
        row_of_node[nodes[keep]],
        np.flatnonzero(keep),
        np.ones(int(keep.sum())),
        np.full(int(binds.sum()), -np.inf),
        part.capacity[binds],
    )
    return np.flatnonzero(binds)


def _local_index(universe: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in the sorted array ``universe``."""
    return np.searchsorted(universe, values)


def start_vector(problem, part: ModelInput, v: Vars, units: np.ndarray) -> np.ndarray:
    """A full MIP solution from units per model candidate (for warm starts)."""
    x = units.astype(np.float64)
    pair_units = np.bincount(
        _local_index(part.pairs, problem.cand_pair[part.cands]), weights=x, minlength=v.num_y
    )
    y = (pair_units > 0).astype(np.float64)
    line_units = np.bincount(
        _local_index(part.lines, problem.cand_line[part.cands]), weights=x, minlength=v.num_u
    )
    u = problem.line_qty[part.lines] - line_units
    ships = np.bincount(
        _local_index(part.orders, problem.pair_order[part.pairs]), weights=y, minlength=v.num_z
    )
    z = np.maximum(ships - 1, 0)
    w = np.zeros(v.num_w)
    if v.num_w:
        _group, _pair, key_of_cand = ship_group_keys(problem, part)
        grouped = key_of_cand >= 0
        w = (np.bincount(key_of_cand[grouped], weights=x[grouped], minlength=v.num_w) > 0).astype(
            np.float64
        )
    if not v.num_m:
        return np.concatenate([x, y, u, z, w])
    current = problem.churn.current[part.cands]
    local_order = _local_index(part.orders, problem.line_order[problem.cand_line[part.cands]])
    differs = np.bincount(local_order, weights=(units != current), minlength=v.num_m) > 0
    held = np.bincount(
        problem.line_order[problem.cand_line],
        weights=problem.churn.current,
        minlength=problem.num_orders,
    )[part.orders]
    held_here = np.bincount(local_order, weights=current, minlength=v.num_m)
    m = (differs | (held > held_here + 0.5)).astype(np.float64)
    return np.concatenate([x, y, u, z, m, w])
