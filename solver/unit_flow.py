"""Lines routed all at once as a min-cost flow: exact for one-unit orders,
a linearised shipment cost for the others.

With every other order's plan fixed, the moved orders interact only through
what the others leave of each (node, SKU) stock and each node's capacity.
Each line either takes units from its candidates or leaves them unfilled:

    source -> line (its quantity) -> (node, SKU) key (per unit: handling plus
           the shipment's cost per unit) -> node (at most the stock left of
           the key) -> sink (at most the capacity left of the node);
    line -> sink (the unfilled penalty per unit)

For an order of one line and one unit the shipment's cost per unit *is* its
cost, so routing those orders this way is exact
(:func:`route_single_units_by_flow`). For bigger orders a shipment's cost is
shared by the units it carries, which a flow cannot see; it is linearised
(:func:`route_lines_by_flow`): the shipment's cost (plus one split penalty)
spread over all the order's units, as if the whole order shipped from that
node. The flow then settles the question that dominates a scarce batch, which
lines get the scarce units, exactly and jointly; consolidating shipments is
left to the steps after it (:mod:`solver.order_moves`).

OR-Tools' ``SimpleMinCostFlow`` solves it in about two seconds for 20,000
orders and half a million candidates. A national batch's flow would have tens
of millions of candidate arcs (and the graph about a hundred bytes per arc):
past ``max_arcs``, each line keeps only the arcs worth having
(:func:`capped_arcs`). Costs are integers there: they are scaled
by ``COST_SCALE`` and rounded. The answer is feasible whatever the rounding, and
callers keep it only when its true cost is lower.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from solver.cost import unit_cost as cand_unit_cost

FLOW_PATIENCE = 3600.0
"""Seconds a flow solved in a child may take before it is given up (the
caller then keeps its answer); measured at most a few minutes at 1,000,000 orders."""

COST_SCALE = 10_000
"""Cost units per currency unit in the flow (costs are integers there)."""


def route_single_units_by_flow(
    problem, units: np.ndarray, movable: np.ndarray
) -> np.ndarray | None:
    """``units`` with the one-line, one-unit orders of mask ``movable`` re-routed optimally.

    The other orders keep their plans in ``units``. Returns ``None`` when the
    flow solver fails (the caller keeps its answer).
    """
    lines_per_order = np.diff(problem.order_line_start)
    first_line = problem.order_line_start[:-1].clip(max=max(problem.num_lines - 1, 0))
    single = movable & (lines_per_order == 1) & (problem.line_qty[first_line] == 1)
    return route_lines_by_flow(problem, units, single)


@dataclass(frozen=True)
class FlowPrices:
    """The flow's dual prices: what one more unit of a (node, SKU) key's stock,
    or of a node's capacity, would save the flow (from its optimal potentials)."""

    key_code: np.ndarray
    """(K,) flat (node * SKUs + SKU) codes of the flow's stock keys."""
    key_price: np.ndarray
    """(K,) price of one unit of each key's stock, >= 0."""
    node_price: np.ndarray
    """(N,) price of one unit of each node's capacity, >= 0."""
    rounds: int = 0
    """Times the left-out candidates were priced and the flow solved again."""
    arcs: int = 0
    """Candidate arcs of the last flow."""
    arc_cands: np.ndarray | None = None
    """The candidates that were its arcs, when not every one was (``arcs=`` of
    :func:`priced_flow` takes them back)."""


def route_lines_by_flow(
    problem,
    units: np.ndarray,
    movable: np.ndarray,
    per_unit: np.ndarray | None = None,
    max_arcs: int | None = None,
    per_line: int = 8,
    spare_per_line: int = 2,
    also: np.ndarray | None = None,
    arcs: np.ndarray | None = None,
) -> np.ndarray | None:
    """``units`` with every line of the orders of mask ``movable`` re-routed by one
    min-cost flow on what the other orders leave (see the module's text).

    ``per_unit`` (P,) is each shipment's cost per unit carried in the flow
    (default :func:`shipment_cost_per_unit`; the LP's rounding passes its own,
    :func:`solver.lp_rounding.guided_shipment_costs`). When the lines have more
    than ``max_arcs`` candidates (default: no limit), only :func:`capped_arcs`
    (``per_line``, ``spare_per_line``) are arcs, and the flow is solved in a
    forked child (:func:`_solve_flow`); the arcs of ``also`` (C,), a second
    routing, are kept too, so that the flow can give it back as well (its
    lines, at least: the other orders' plans are those of ``units``); with
    ``arcs``, those and the ones ``units`` uses are the arcs. Returns
    ``None`` when the flow solver fails (the caller keeps its answer).
    """
    answer = priced_flow(
        problem, units, movable, per_unit, max_arcs, per_line, spare_per_line, also,
        prices=False, arcs=arcs,
    )  # fmt: skip
    return None if answer is None else answer[0]


def priced_flow(
    problem,
    units: np.ndarray,
    movable: np.ndarray,
    per_unit: np.ndarray | None = None,
    max_arcs: int | None = None,
    per_line: int = 8,
    spare_per_line: int = 2,
    also: np.ndarray | None = None,
    prices: bool = True,
    pricing_rounds: int = 0,
    more: Callable[[], bool] | None = None,
    arcs: np.ndarray | None = None,
) -> tuple[np.ndarray, FlowPrices | None] | None:
    """:func:`route_lines_by_flow`, and (with ``prices``) the flow's prices of
    stock and capacity (from :func:`flow_potentials`; ``None`` if they could
    not be had). Nonnegative, they bound the batch like any prices
    (:mod:`solver.lagrange`), and the flow prices every contested line at once.

    A capped flow's prices are those of its few arcs: a line that lost its
    cheap arcs' stock looks worth its unfilled penalty, and the stock it could
    have had elsewhere is priced too high. Up to ``pricing_rounds`` times
    (while ``more()``), every candidate left out is priced at them
    (:func:`_priced_out`); those cheaper than their line's value become arcs
    and the flow is solved again. When none is left out, the prices are the
    uncapped flow's own: at 100,000 orders over 5,000 stores, the Lagrangian
    at a capped flow's prices was 915,826, at the uncapped flow's 3,135,131.

    ``arcs`` (candidate indices, e.g. an earlier flow's ``arc_cands``): these
    and the ones ``units`` uses are the arcs, instead of every candidate or
    the capped ones (no pass over every candidate: a national batch's slope
    scaling, :mod:`solver.slope_scaling`)."""
    lines = np.flatnonzero(movable[problem.line_order])
    if lines.size == 0:
        return units, None
    cands = movable_candidates(problem, movable)
    # (C,) arrays are 570 MB each at national size: each freed as soon as it is used
    kept = units.copy()
    kept[cands] = 0
    left_of = _StockLeft(problem, kept)
    if per_unit is None:
        per_unit = shipment_cost_per_unit(problem)
    capped = max_arcs is not None and cands.size > max_arcs
    if arcs is not None:
        in_use = cands[units[cands] > 0]
        cands = np.union1d(arcs[movable[problem.line_order[problem.cand_line[arcs]]]], in_use)
        del in_use
    cand_cost, cand_key, left = _arcs(problem, cands, per_unit, left_of)
    if capped and arcs is None:
        used = units[cands] > 0
        if also is not None:
            used |= also[cands] > 0
        keep = capped_arcs(
            problem, cands, cand_cost, cand_key, left, used, per_line, spare_per_line
        )
        del used
        cands, cand_cost, cand_key, left = cands[keep], cand_cost[keep], cand_key[keep], left[keep]
        del keep
    rounds = 0
    while True:
        solved = _flow_on(problem, lines, cands, cand_cost, cand_key, left, left_of, capped, prices)
        if solved is None:
            return None
        flows, flow_prices = solved
        if (
            not capped
            or flow_prices is None
            or rounds >= pricing_rounds
            or (more is not None and not more())
        ):
            break
        added = _priced_out(
            problem, movable, lines, per_unit, left_of, cands, cand_cost, cand_key,
            flow_prices, per_line,
        )  # fmt: skip
        if added.size == 0:
            break
        rounds += 1
        cands = np.union1d(cands, added)
        del added
        cand_cost, cand_key, left = _arcs(problem, cands, per_unit, left_of)
    kept[cands] = flows
    if flow_prices is not None:
        flow_prices = replace(
            flow_prices,
            rounds=rounds,
            arcs=int(cands.size),
            arc_cands=cands.astype(np.int32) if capped else None,
        )
    return kept, flow_prices


def movable_candidates(problem, movable: np.ndarray) -> np.ndarray:
    """The line candidates of the orders of mask ``movable``, in order."""
    in_flow = movable[problem.line_order[problem.cand_line]]
    cands = np.flatnonzero(in_flow)
    del in_flow
    return cands.astype(np.int32) if problem.cand_line.size < 2**31 else cands


class _StockLeft:
    """What the orders kept out of a flow (their plans in ``kept``) leave of
    each (node, SKU) key's stock and each node's capacity."""

    def __init__(self, problem, kept: np.ndarray) -> None:
        self.n_skus = problem.sku_ids.size
        held = np.flatnonzero(kept)
        codes = problem.cand_node[held] * self.n_skus + problem.line_sku[problem.cand_line[held]]
        # (sparse: a dense table of every key is 800 MB at national size)
        self.codes, where = np.unique(codes, return_inverse=True)
        self.held = np.bincount(where, weights=kept[held], minlength=self.codes.size)
        used_node = np.bincount(
            problem.cand_node[held], weights=kept[held], minlength=problem.num_nodes
        )
        self.capacity = problem.capacity - used_node
        self.stock = problem.stock.ravel()

    def of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Stock left of each key code of ``keys``."""
        left = self.stock[keys].astype(np.float64)
        if self.codes.size:
            at = np.searchsorted(self.codes, keys).clip(max=self.codes.size - 1)
            left -= np.where(self.codes[at] == keys, self.held[at], 0.0)
        return left


def _arcs(problem, cands: np.ndarray, per_unit: np.ndarray, left_of: _StockLeft):
    """(cost per unit in the flow, key code, stock left of the key) of each of ``cands``."""
    cand_cost = per_unit[problem.cand_pair[cands]]
    cand_cost += cand_unit_cost(problem, cands)
    cand_key = problem.line_sku[problem.cand_line[cands]]
    cand_key += problem.cand_node[cands] * left_of.n_skus
    return cand_cost, cand_key, left_of.of_keys(cand_key)


def _flow_on(problem, lines, cands, cand_cost, cand_key, left, left_of: _StockLeft,
             background: bool, prices: bool):  # fmt: skip
    """The min-cost flow of ``lines`` on the arcs ``cands`` (see the module's
    text): (the flows of the arcs, their :class:`FlowPrices` or ``None``), or
    ``None`` when the solver fails."""
    n_skus = left_of.n_skus
    keys, first, key_of = np.unique(cand_key, return_index=True, return_inverse=True)
    stock_left = left[first]
    del first
    key_node = keys // n_skus
    nodes, node_of_key = np.unique(key_node, return_inverse=True)
    demand = problem.line_qty[lines]
    total = int(demand.sum())
    cap_left = left_of.capacity[nodes]
    cap_left = np.where(np.isfinite(cap_left), cap_left, total)

    n_lines, n_keys, n_nodes = lines.size, keys.size, nodes.size
    source = 0
    line_vertex = 1 + np.arange(n_lines, dtype=np.int32)
    key_vertex = 1 + n_lines + np.arange(n_keys, dtype=np.int32)
    node_vertex = 1 + n_lines + n_keys + np.arange(n_nodes, dtype=np.int32)
    sink = 1 + n_lines + n_keys + n_nodes
    # arcs: candidate arcs first (their flows are read back), then the rest
    tails = np.concatenate(
        [
            line_vertex[np.searchsorted(lines, problem.cand_line[cands])],
            np.full(n_lines, source, dtype=np.int32),
            line_vertex,
            key_vertex,
            node_vertex,
        ]
    )
    heads = np.concatenate(
        [
            key_vertex[key_of],
            line_vertex,
            np.full(n_lines, sink, dtype=np.int32),
            node_vertex[node_of_key],
            np.full(n_nodes, sink, dtype=np.int32),
        ]
    )
    del key_of
    capacity = np.concatenate(
        [
            problem.line_qty[problem.cand_line[cands]],
            demand,
            demand,
            np.maximum(stock_left, 0),
            np.maximum(np.floor(cap_left), 0),
        ]
    ).astype(np.int64)
    cost = np.concatenate(
        [
            np.rint(cand_cost * COST_SCALE),
            np.zeros(n_lines),
            np.full(n_lines, np.rint(problem.unfilled_penalty * COST_SCALE)),
            np.zeros(n_keys),
            np.zeros(n_nodes),
        ]
    ).astype(np.int64)
    supplies = np.zeros(sink + 1, dtype=np.int64)
    supplies[source], supplies[sink] = total, -total
    # the potentials of the key, node and sink vertices, when asked
    priced = np.concatenate([key_vertex, node_vertex, [sink]]) if prices else None
    solved = _solve_flow(tails, heads, capacity, cost, supplies, cands.size, background, priced)
    if solved is None:
        return None
    flows, potential = solved
    if potential is None:
        return flows, None
    key_pot, node_pot, sink_pot = potential[:n_keys], potential[n_keys:-1], potential[-1]
    node_price = np.zeros(problem.num_nodes)
    node_price[nodes] = np.maximum(sink_pot - node_pot, 0.0) / COST_SCALE
    key_price = np.maximum(node_pot[node_of_key] - key_pot, 0.0) / COST_SCALE
    return flows, FlowPrices(keys, key_price, node_price)


def _priced_out(problem, movable, lines, per_unit, left_of: _StockLeft, cands, cand_cost,
                cand_key, prices: FlowPrices, per_line: int):  # fmt: skip
    """The candidates of the lines ``lines`` (of the orders ``movable``) left
    out of a flow on ``cands`` that its ``prices`` say it should have: a
    line's value is its cheapest arc at the prices (stock, capacity and the
    arc's own cost; at most the unfilled penalty), and a candidate costing
    less than that at the same prices has a negative reduced cost. At most
    ``per_line`` per line, the most negative; none means the prices are
    optimal duals of the flow with every candidate as an arc. Candidates whose
    key or node has nothing left are skipped (their rows can take any price).
    Integers throughout, as in the flow: no tolerance."""
    n_skus = left_of.n_skus
    key_price = np.rint(prices.key_price * COST_SCALE)
    node_price = np.rint(prices.node_price * COST_SCALE)

    def at_prices(codes, cost):
        at = np.searchsorted(prices.key_code, codes).clip(max=max(prices.key_code.size - 1, 0))
        hit = prices.key_code[at] == codes if prices.key_code.size else np.zeros(codes.size, bool)
        return (
            np.rint(cost * COST_SCALE)
            + np.where(hit, key_price[at], 0.0)
            + node_price[codes // n_skus]
        )

    value = np.full(lines.size, np.rint(problem.unfilled_penalty * COST_SCALE))
    line = problem.cand_line[cands]
    starts = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])
    cheapest = np.minimum.reduceat(at_prices(cand_key, cand_cost), starts)
    at = np.searchsorted(lines, line[starts])
    value[at] = np.minimum(value[at], cheapest)
    del line, starts, cheapest, at

    found = []
    room = left_of.capacity >= 1
    # chunks of whole lines, each line's best few kept per chunk: at national
    # size most candidates can be below their line's value in the first round
    step = max(1, PRICING_CHUNK * problem.num_lines // max(problem.cand_line.size, 1))
    cuts = problem.line_cand_start[::step]
    cuts = np.unique(np.r_[cuts, problem.cand_line.size])
    for begin, end in itertools.pairwise(cuts):
        part = np.arange(begin, end)
        part = part[movable[problem.line_order[problem.cand_line[part]]]]
        cost, codes, left = _arcs(problem, part, per_unit, left_of)
        cost = at_prices(codes, cost) - value[np.searchsorted(lines, problem.cand_line[part])]
        below = np.flatnonzero((cost < 0) & (left >= 1) & room[problem.cand_node[part]])
        best = _rank_in_line(problem.cand_line[part[below]], cost[below]) < per_line
        found.append(part[below[best]])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _solve_flow(tails, heads, capacity, cost, supplies, read: int, background: bool, priced):
    """The optimal flows of the first ``read`` arcs of the min-cost flow and
    the potentials of the vertices ``priced`` (``None``: not asked, or not
    had), or ``None``.

    With ``background`` in a forked child (:mod:`solver.child`): OR-Tools' graph
    and its feasibility max-flow take about 6 GB at national size (measured at
    1,000,000 orders), freed with the child instead of adding to this
    process's peak; the same answer."""

    def produce():
        from ortools.graph.python import min_cost_flow

        flow = min_cost_flow.SimpleMinCostFlow()
        arcs = flow.add_arcs_with_capacity_and_unit_cost(tails, heads, capacity, cost)
        flow.set_nodes_supplies(np.arange(supplies.size, dtype=np.int32), supplies)
        if flow.solve() != flow.OPTIMAL:
            yield None
            return
        # (every arc's flow only for the potentials)
        flows = np.asarray(flow.flows(arcs if priced is not None else arcs[:read]), np.int64)
        del flow, arcs
        potential = None
        if priced is not None:
            potential = flow_potentials(tails, heads, capacity, cost, flows, supplies.size)
            potential = None if potential is None else potential[priced]
        yield flows[:read], potential

    from solver.child import InChild

    child = InChild(produce, [FLOW_PATIENCE], background)
    try:
        return child.result()
    finally:
        child.close()


def flow_potentials(tails, heads, capacity, cost, flows, n: int) -> np.ndarray | None:
    """(n,) potentials of an optimal flow's vertices: shortest distances in its
    residual graph from a root joined to every vertex at no cost, so that every
    residual arc (t, h) has ``d[h] <= d[t] + cost`` (the flow is optimal: no
    negative cycle, so they exist). They are the flow LP's duals: a saturated
    arc's capacity is worth ``max(d[h] - d[t] - cost, 0)`` per unit.
    Bellman-Ford, each round vectorised over all the arcs (it settled in 41
    rounds on a 20,000-order scarce batch's flow, 33 at 100,000); ``None`` if
    it has not settled within ``POTENTIAL_ROUNDS``."""
    forward, backward = flows < capacity, flows > 0
    tail = np.concatenate([tails[forward], heads[backward]])
    head = np.concatenate([heads[forward], tails[backward]])
    weight = np.concatenate([cost[forward], -cost[backward]]).astype(np.float64)
    del forward, backward
    order = np.argsort(head, kind="stable")
    tail, head, weight = tail[order], head[order], weight[order]
    del order
    distance = np.zeros(n)
    if head.size == 0:
        return distance
    starts = np.flatnonzero(np.r_[True, head[1:] != head[:-1]])
    targets = head[starts]
    for _round in range(POTENTIAL_ROUNDS):
        best = np.minimum.reduceat(distance[tail] + weight, starts)
        lower = best < distance[targets]
        if not lower.any():
            return distance
        distance[targets[lower]] = best[lower]
    return None


PRICING_CHUNK = 4_000_000
"""About how many candidates :func:`_priced_out` prices at once."""

POTENTIAL_ROUNDS = 10_000
"""Bellman-Ford rounds :func:`flow_potentials` may take (one per arc of the
longest shortest path; tens on a batch's flow)."""


def capped_arcs(
    problem,
    cands: np.ndarray,
    cand_cost: np.ndarray,
    cand_key: np.ndarray,
    stock_left: np.ndarray,
    used: np.ndarray,
    per_line: int,
    spare_per_line: int,
) -> np.ndarray:
    """Mask over ``cands`` (the flow's candidates, by line) of the arcs a capped flow keeps.

    Per line: its ``per_line`` cheapest candidates (by ``cand_cost``, the flow's
    cost per unit); the ones it uses now (``used``: the flow can always give
    the incumbent's routing back); and, so that a line outbid at its cheap
    nodes still has somewhere to go, its ``spare_per_line`` cheapest among the
    candidates whose stock key (``cand_key``, any nonnegative code of the (node,
    SKU)) has units to spare: ``stock_left`` (what the other orders leave of
    the candidate's key) above the units that all the lines keeping an arc
    there want.
    """
    line = problem.cand_line[cands]
    keep = _rank_in_line(line, cand_cost) < per_line
    keep |= used
    # (dense over the key codes: no sort of the 55 million candidates)
    wanted = np.bincount(cand_key[keep], weights=problem.line_qty[line[keep]])
    wanted.resize(int(cand_key.max()) + 1 if cand_key.size else 0, refcheck=False)
    spare = stock_left > wanted[cand_key]
    del wanted
    idle = np.flatnonzero(spare & ~keep)
    del spare
    if idle.size and spare_per_line > 0:
        cheap = _rank_in_line(line[idle], cand_cost[idle]) < spare_per_line
        keep[idle[cheap]] = True
    return keep


def _rank_in_line(line: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Rank of each candidate by ``cost`` among its line's (0 = the cheapest);
    ``line`` is sorted. One sort of line + cost scaled into [0, 1): a third of
    the time of a two-key lexsort on the 55 million candidates of a national
    batch (costs closer than a two-billionth of their range may rank either way)."""
    if line.size == 0:
        return np.zeros(0, dtype=np.int64)
    low = float(cost.min())
    order = np.argsort(line + (cost - low) / (float(cost.max()) - low + 1.0))
    starts = np.flatnonzero(np.r_[True, line[1:] != line[:-1]]).astype(np.int32)
    rank = np.arange(line.size, dtype=np.int32)
    rank -= np.repeat(starts, np.diff(np.r_[starts, line.size]))
    ranked = np.empty(line.size, dtype=np.int32)
    ranked[order] = rank
    return ranked


def shipment_cost_per_unit(problem) -> np.ndarray:
    """(P,) each shipment candidate's cost per unit when it carries its whole order:
    exact for one-unit orders; for others, the split penalty is added once (a
    second shipment pays it), so the flow is not drawn to split for nothing."""
    order_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    single = order_units[problem.pair_order] <= 1
    fixed = problem.pair_ship_cost + np.where(single, 0.0, problem.split_penalty)
    return fixed / np.maximum(order_units[problem.pair_order], 1)
