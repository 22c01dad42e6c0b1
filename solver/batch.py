"""Joint routing of a batch of orders: the ``optimize`` strategy.

The batch objective is a sum over orders; orders interact only through stock
and node capacity. The method exploits that:

1. **Each order alone.** Every order is routed exactly as if it were alone in
   the pool (:func:`solver.order_dp.solve_order`). The sum of these costs is a
   lower bound (dropping other orders only enlarges each order's choices). If
   the plans fit the stock and capacity together, they are optimal: done.
2. **Contested part.** Orders whose plan uses an over-demanded (node, SKU) or
   an over-loaded node are *contested*, and so is every order whose plan holds
   stock or capacity that the contested orders could want and are short of.
   All other orders keep their own optimum; the contested ones are first
   re-routed greedily, which gives a feasible incumbent at once.
3. **Relax and fix, block by block.** The contested part (in geographic blocks
   when it is large) is solved as an LP over each line's cheapest candidates,
   on what the other orders leave. Orders the LP routes in whole units keep
   that routing; the fractional ones, then the fractional ones with their
   neighbours, are decided by MIPs warm-started from the previous answer.
4. **Proven bound.** The LP duals price the scarce stock and capacity; routing
   every order alone at those prices is a Lagrangian bound, valid for the whole
   batch for any nonnegative prices; a few subgradient steps improve it.
5. **Polish.** While the bound is not yet tight, a contested part of moderate
   size is solved as one MIP over more candidates, and a tiny batch as one
   unpruned MIP (whose own bound is then a bound for the batch).

Every step only accepts answers that are feasible and cheaper, so the answer
is always feasible and the reported gap is a proof, not an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from solver.cost import CostBreakdown, evaluate
from solver.greedy import greedy_units
from solver.mip import MipParams, SolveStatus, solve_mip
from solver.model import ModelInput, build_model, start_vector
from solver.order_dp import OrderProblem, order_relaxation_cost, solve_order

Progress = Callable[[str, dict], None]
"""Receives (phase, details) events: phase names and best cost / bound so far."""

Clock = Callable[[], float]
"""Seconds elapsed since the solve started (the caller owns the clock)."""


@dataclass(frozen=True)
class OptimizeParams:
    time_limit: float = 60.0
    """Seconds for the whole solve; the answer says when it was reached."""
    rel_gap: float = 1e-3
    """Stop the MIP once proven within this relative gap."""
    seed: int = 0
    candidates_per_line: int = 8
    """Cheapest line candidates kept per line in the joint MIP."""
    polish_candidates_per_line: int = 16
    """Cheapest line candidates kept per line in the final whole-part MIP."""
    block_candidates_per_line: int = 5
    """The same, when the contested part is cut into several blocks."""
    block_orders: int = 10000
    """Most contested orders re-routed in one LP (larger parts go block by block)."""
    lns_orders: int = 60
    """Orders re-solved together in one step of the large neighbourhood search."""
    lns_rounds: int = 3
    """Most rounds over the nodes in the large neighbourhood search."""
    exact_candidates: int = 5000
    """Batches with at most this many line candidates are solved as one
    unpruned MIP when the bound is not yet tight (tiny scenarios: proven optimum)."""
    polish_orders: int = 3000
    """Contested parts up to this size get a final MIP over the whole part."""


@dataclass(frozen=True)
class RoutingResult:
    strategy: str
    status: str
    """``optimal`` (proven within the gap), ``feasible``, or ``time_limit``."""
    units: np.ndarray
    """(C,) units per line candidate of the problem."""
    cost: CostBreakdown
    lower_bound: float | None
    stats: dict = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        if self.lower_bound is None or self.cost.total_cost <= 0:
            return None if self.lower_bound is None else 0.0
        return max(0.0, (self.cost.total_cost - self.lower_bound) / self.cost.total_cost)


def solve_greedy(problem) -> RoutingResult:
    """The rule-engine baseline (:mod:`solver.greedy`) as a result."""
    units = greedy_units(problem)
    return RoutingResult("greedy", "feasible", units, evaluate(problem, units), None)


def optimize(
    problem,
    params: OptimizeParams,
    clock: Clock,
    progress: Progress | None = None,
) -> RoutingResult:
    """Route the whole batch jointly; the answer is always feasible."""
    emit = progress or (lambda _phase, _details: None)
    stats: dict = {}

    emit("each order alone", {})
    alone = _route_each_order_alone(problem)
    stats["orders_exact_alone"] = int(alone.exact.sum())
    over_stock, over_capacity = _overused(problem, alone.units)
    if not over_stock.any() and not over_capacity.any():
        cost = evaluate(problem, alone.units)
        bound = min(alone.bound, cost.total_cost)
        if _within(cost.total_cost, bound, params.rel_gap):
            status = "optimal"
        else:
            status = "time_limit" if clock() >= params.time_limit else "feasible"
        stats["contested_orders"] = 0
        return RoutingResult("optimize", status, alone.units, cost, bound, stats)

    emit("contested part", {})
    colliding = _orders_using(problem, alone.units, over_stock, over_capacity)
    contested = _with_neighbours(problem, alone.units, colliding)
    stats["colliding_orders"] = int(colliding.sum())
    stats["contested_orders"] = int(contested.sum())
    # A feasible incumbent from the start: without the colliding orders no
    # stock or capacity is over-used, so every other order keeps its own
    # optimum and the colliding ones are routed greedily on what is left.
    incumbent = _reroute_greedily(problem, alone.units, colliding)
    best = evaluate(problem, incumbent).total_cost
    emit("contested part", {"best": best})

    prices = _Prices(problem)
    blocks = _blocks(problem, contested, params.block_orders)
    # Big parts: fewer candidates per line keep each block's LP fast enough
    # for a second pass, whose shifted blocks re-decide the first's borders.
    per_line = params.candidates_per_line if len(blocks) == 1 else params.block_candidates_per_line
    schedule = [(1, b) for b in blocks]
    if len(blocks) > 1:
        schedule += [(2, b) for b in _blocks(problem, contested, params.block_orders, shift=0.5)]
    stats["blocks"] = len(blocks)
    stats["lp_fractional_orders"] = 0

    def good_enough(units) -> bool:
        """Already proven within the gap? (Only asked when one block covers all.)"""
        if len(blocks) > 1 or clock() >= params.time_limit:
            return False
        bound = max(alone.bound, _lagrangian_bound(problem, alone, prices))
        return _within(evaluate(problem, units).total_cost, bound, params.rel_gap)

    timed_out = False
    for step, (sweep, block) in enumerate(schedule):
        steps_left = len(schedule) - step if sweep == 1 else len(schedule) - step + len(blocks)
        share = _remaining(params, clock, 0.1 * params.time_limit) / steps_left
        if clock() >= 0.85 * params.time_limit:
            timed_out = sweep == 1  # an unfinished second sweep is only an unused chance
            break
        label = f"sweep {sweep}, block {step % len(blocks) + 1}/{len(blocks)}"
        emit(f"{label}: linear relaxation", {"orders": int(block.sum())})
        started = clock()
        candidate, fractional = _relax_and_fix(
            problem, incumbent, block, params, share, prices, clock, stats, per_line, good_enough
        )
        stats.setdefault("block_seconds", []).append(round(clock() - started, 2))
        stats["lp_fractional_orders"] += fractional
        if candidate is None:
            timed_out = True
            continue
        candidate_cost = evaluate(problem, candidate).total_cost
        if candidate_cost < best:
            incumbent, best = candidate, candidate_cost
        emit(f"{label}: joint MIP", {"best": best})

    emit("lower bound", {"best": best})
    started = clock()
    bound = alone.bound
    # Past the time limit the answer goes out with the bound it already has.
    if clock() < params.time_limit:
        bound = max(bound, _lagrangian_bound(problem, alone, prices))
    if not _within(best, bound, params.rel_gap) and clock() < params.time_limit:
        deadline = started + max(0.25 * _remaining(params, clock, 0.0), 0.1)
        bound = max(bound, _subgradient_bound(problem, alone, prices, best, clock, deadline, stats))
    stats["bound_seconds"] = round(clock() - started, 2)
    emit("lower bound", {"best": best, "bound": bound})

    if not _within(best, bound, params.rel_gap) and contested.sum() <= params.polish_orders:
        emit("joint MIP polish", {"best": best, "bound": bound})
        started = clock()
        polished, finished = _polish(problem, incumbent, contested, params, clock, emit)
        stats["polish_seconds"] = round(clock() - started, 2)
        timed_out |= not finished
        polished_cost = evaluate(problem, polished).total_cost
        if polished_cost < best:
            incumbent, best = polished, polished_cost

    if (
        not _within(best, bound, params.rel_gap)
        and problem.cand_line.size <= params.exact_candidates
    ):
        emit("exact MIP", {"best": best, "bound": bound})
        incumbent, exact_bound, finished = _solve_exactly(problem, incumbent, params, clock, best)
        bound = max(bound, exact_bound)
        timed_out |= not finished
        best = evaluate(problem, incumbent).total_cost

    cost = evaluate(problem, incumbent)
    bound = min(bound, cost.total_cost)
    if _within(cost.total_cost, bound, params.rel_gap):
        status = "optimal"
    elif timed_out or clock() >= params.time_limit:
        status = "time_limit"
    else:
        status = "feasible"
    return RoutingResult("optimize", status, incumbent, cost, bound, stats)


def _reroute_greedily(problem, units, orders_mask) -> np.ndarray:
    """``units`` with the masked orders re-routed greedily on the stock left."""
    kept = units * ~orders_mask[problem.line_order[problem.cand_line]]
    used_key, used_node = _usage(problem, kept)
    rerouted = greedy_units(
        problem,
        orders=np.flatnonzero(orders_mask),
        stock=problem.stock - used_key.astype(np.int64),
        capacity=problem.capacity - used_node,
    )
    return kept + rerouted


def _blocks(problem, contested, block_orders, shift: float = 0.0) -> list[np.ndarray]:
    """Split the contested orders into geographic blocks of at most ``block_orders``.

    Stores reach only nearby customers, so most contention is local: orders
    sorted along a Morton (Z-order) curve of their location and cut into
    consecutive runs keep neighbours together.
    """
    orders = np.flatnonzero(contested)
    if orders.size <= block_orders:
        return [contested]
    lat = ((problem.order_lat[orders] + 90.0) / 180.0 * 65535).astype(np.uint64)
    lon = ((problem.order_lon[orders] + 180.0) / 360.0 * 65535).astype(np.uint64)
    code = _interleave_bits(lat) | (_interleave_bits(lon) << np.uint64(1))
    ordered = orders[np.argsort(code, kind="stable")]
    count = -(-orders.size // block_orders)
    # ``shift`` moves the borders by a fraction of a block (wrapping around).
    ordered = np.roll(ordered, -int(shift * orders.size / count))
    blocks = []
    for chunk in np.array_split(ordered, count):
        mask = np.zeros(problem.num_orders, dtype=bool)
        mask[chunk] = True
        blocks.append(mask)
    return blocks


def _interleave_bits(v: np.ndarray) -> np.ndarray:
    """Spread the 16 low bits of v to the even bit positions."""
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
    return (v | (v << np.uint64(1))) & np.uint64(0x55555555)


def _relax_and_fix(
    problem, incumbent, block, params, time_limit, prices, clock, stats, per_line, good_enough
):
    """Re-route one block on what the others leave.

    The block's LP relaxation routes most orders in whole units: they keep
    that routing, and a small MIP decides the fractional rest. Then, time
    permitting, the fractional orders are decided again together with their
    neighbours (the orders holding the stock they are short of), warm-started
    from the first answer. Returns (units or None when the LP did not finish,
    number of fractional orders).
    """
    deadline = clock() + time_limit
    part, _ = _model_part(problem, incumbent, block, params, start=incumbent, per_line=per_line)
    model, v, keys, rows = build_model(problem, part)
    started = clock()
    lp = solve_mip(model, MipParams(time_limit=time_limit, relax=True))
    stats.setdefault("lp_seconds", []).append(round(clock() - started, 2))
    if lp.x is None:
        return None, 0
    prices.record(lp, keys, rows)
    fractional = _fractional_orders(problem, part, v, lp.x)
    units = incumbent.copy()
    units[part.cands] = v.extract(lp.x)
    if not fractional.any():
        return units, 0
    batch_cost = evaluate(problem, incumbent).total_cost
    units[part.cands] *= ~fractional[problem.line_order[problem.cand_line[part.cands]]]
    units, _ = _solve_part(
        problem, units, fractional, params, max(0.5 * (deadline - clock()), 1.0), batch_cost, clock
    )
    neighbourhood = _with_neighbours(problem, units, fractional) & block
    if (
        neighbourhood.sum() > fractional.sum()
        and deadline - clock() > 0.5
        and not good_enough(units)
    ):
        started = clock()
        # Leave time for the bound and later blocks: this step only improves.
        budget = 0.6 * (deadline - clock())
        units, status = _solve_part(
            problem,
            units,
            neighbourhood,
            params,
            budget,
            batch_cost,
            clock,
            start=units,
            search=True,
        )
        stats.setdefault("neighbourhood_mip", []).append(
            (int(neighbourhood.sum()), round(clock() - started, 2), str(status))
        )
    return units, int(fractional.sum())


def _polish(problem, incumbent, contested, params, clock, emit):
    """The whole contested part as one MIP, warm-started from the incumbent."""

    def on_progress(best: float, bound: float) -> None:
        emit("joint MIP polish", {"part_best": best, "part_bound": bound})

    units, status = _solve_part(
        problem,
        incumbent,
        contested,
        params,
        _remaining(params, clock, 0.0),
        evaluate(problem, incumbent).total_cost,
        clock,
        start=incumbent,
        per_line=params.polish_candidates_per_line,
        on_progress=on_progress,
        search=True,
    )
    return units, status == SolveStatus.OPTIMAL


def _solve_exactly(problem, incumbent, params, clock, batch_cost):
    """Small batches: the whole model over every candidate, so that the MIP's
    own bound is a bound for the batch. Returns (units, bound, finished)."""
    part = ModelInput.whole(problem)
    model, v, _keys, _rows = build_model(problem, part)
    mip = solve_mip(
        model,
        MipParams(
            time_limit=_remaining(params, clock, 0.0),
            rel_gap=params.rel_gap / 4,
            abs_gap=_part_abs_gap(params, batch_cost),
            seed=params.seed,
        ),
        start=start_vector(problem, part, v, incumbent),
    )
    if mip.x is None:
        return incumbent, mip.bound, False
    units = v.extract(mip.x)
    if evaluate(problem, units).total_cost > batch_cost:
        units = incumbent
    return units, mip.bound, mip.status == SolveStatus.OPTIMAL


def _solve_part(
    problem,
    units,
    orders,
    params,
    time_limit,
    batch_cost,
    clock,
    start=None,
    per_line=None,
    on_progress=None,
    search=False,
):
    """Re-route the masked orders by MIP on what the others in ``units`` leave.

    ``start`` (default: greedy) must be feasible; the MIP can only improve on
    it. Orders that share no stock or capacity row that could bind form
    independent components, each solved as its own (much easier) MIP, smallest
    first. With ``search``, a big linked part first goes through a large
    neighbourhood search. Returns the new units and the worst MIP status.
    """
    part, start_units = _model_part(problem, units, orders, params, start=start, per_line=per_line)
    model, v, _keys, rows = build_model(problem, part)
    result = units.copy()
    result[part.cands] = start_units
    components = _components(problem, part, model, v, rows)
    if search and len(components) == 1 and orders.sum() > params.lns_orders:
        # A big tightly linked part: improve it by many small MIPs first, so
        # that the whole-part MIP starts from a good answer and may prove it.
        result = _large_neighbourhood_search(
            problem, result, orders, part, params, 0.7 * time_limit, batch_cost, clock, per_line
        )
        part, start_units = _model_part(
            problem, result, orders, params, start=result, per_line=per_line
        )
        model, v, _keys, rows = build_model(problem, part)
        time_limit *= 0.3
    if len(components) == 1:
        mip = solve_mip(
            model,
            MipParams(
                time_limit=time_limit,
                rel_gap=params.rel_gap / 4,
                abs_gap=_part_abs_gap(params, batch_cost),
                seed=params.seed,
            ),
            start=start_vector(problem, part, v, start_units),
            on_progress=on_progress,
        )
        if mip.x is not None:
            result[part.cands] = v.extract(mip.x)
        return result, mip.status
    worst = SolveStatus.OPTIMAL
    total = sum(int(c.sum()) for c in components)
    for component in sorted(components, key=lambda c: int(c.sum())):
        budget = time_limit * int(component.sum()) / total
        result, status = _solve_part(
            problem,
            result,
            component,
            params,
            budget,
            batch_cost,
            clock,
            start=result,
            per_line=per_line,
            search=search,
        )
        if status != SolveStatus.OPTIMAL:
            worst = status
    return result, worst


def _large_neighbourhood_search(
    problem, units, orders, part: ModelInput, params, time_limit, batch_cost, clock, per_line
) -> np.ndarray:
    """Improve ``units`` for the masked orders by re-solving small neighbourhoods.

    A neighbourhood is the orders that have one node among their candidates
    (at most ``params.lns_orders`` of them, the ones for which the node is
    cheapest); nodes are visited in a seeded random order, round after round,
    until a round improves nothing or the time is used up. Each step is a
    small MIP started from the current answer, so the cost never goes up.
    """
    deadline = clock() + time_limit
    rng = np.random.default_rng(params.seed)
    cand_orders = problem.line_order[problem.cand_line[part.cands]]
    cand_nodes = problem.cand_node[part.cands]
    unit_cost = problem.pair_ship_cost[problem.cand_pair[part.cands]] + problem.handling[cand_nodes]
    nodes = np.unique(cand_nodes)
    best = evaluate(problem, units).total_cost
    for _round in range(params.lns_rounds):
        improved = False
        for node in rng.permutation(nodes).tolist():
            if clock() >= deadline:
                return units
            at_node = cand_nodes == node
            near = np.unique(cand_orders[at_node][np.argsort(unit_cost[at_node], kind="stable")])
            chosen = near[: params.lns_orders]
            if chosen.size < 2:
                continue
            mask = np.zeros(problem.num_orders, dtype=bool)
            mask[chosen] = True
            candidate, _status = _solve_part(
                problem,
                units,
                mask,
                params,
                min(1.0, deadline - clock()),
                batch_cost,
                clock,
                start=units,
                per_line=per_line,
            )
            cost = evaluate(problem, candidate).total_cost
            if cost < best - 1e-9:
                units, best, improved = candidate, cost, True
        if not improved:
            break
    return units


def _components(problem, part: ModelInput, model, v, rows) -> list[np.ndarray]:
    """Order masks of the part's independent components (linked by the stock
    and capacity rows of the model, the only rows that span orders)."""
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


# --- step 1: every order alone ---------------------------------------------------


@dataclass(frozen=True)
class _Alone:
    units: np.ndarray
    cost: np.ndarray
    """(O,) each order's optimum alone (or its relaxation bound when not exact)."""
    exact: np.ndarray
    bound: float


def _order_problem(problem, order: int, price: np.ndarray | None = None):
    """The OrderProblem of one order over its shipment candidates.

    ``price`` (N, S), when given, is added to the per-unit cost (Lagrangian
    prices of stock and capacity).
    """
    pairs = problem.pairs_of(order)
    nodes = problem.pair_node[pairs]
    lines = problem.lines_of(order)
    skus, sku_of_line = np.unique(problem.line_sku[lines], return_inverse=True)
    qty = np.bincount(sku_of_line, weights=problem.line_qty[lines]).astype(np.int64)
    unit_cost = np.broadcast_to(problem.handling[nodes], (skus.size, nodes.size)).copy()
    if price is not None:
        unit_cost += price[np.ix_(nodes, skus)].T
    op = OrderProblem(
        qty=qty,
        stock=problem.stock[np.ix_(nodes, skus)].T,
        ship_cost=problem.pair_ship_cost[pairs],
        unit_cost=unit_cost,
        capacity=problem.capacity[nodes],
        split_penalty=problem.split_penalty,
        unfilled_penalty=problem.unfilled_penalty,
    )
    return op, nodes, skus, sku_of_line


def _route_each_order_alone(problem) -> _Alone:
    units, cost, exact = _orders_alone(problem, np.ones(problem.num_orders, dtype=bool))
    return _Alone(units, cost, exact, float(cost.sum()))


def _orders_alone(problem, orders: np.ndarray, price: np.ndarray | None = None):
    """Route each of the masked orders as if alone, at optional unit prices (N, S).

    Returns units (C,), cost (O,) (0 for orders not masked; for an order not
    solved exactly, its relaxation bound) and an exact mask (O,).
    Orders of one line and one unit, the commonest kind, are routed all at
    once: the cheapest candidate, if cheaper than leaving the unit unfilled.
    """
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    cost = np.zeros(problem.num_orders)
    exact = np.ones(problem.num_orders, dtype=bool)
    lines_per_order = np.diff(problem.order_line_start)
    first_qty = problem.line_qty[np.minimum(problem.order_line_start[:-1], problem.num_lines - 1)]
    single = orders & (lines_per_order == 1) & (first_qty == 1)
    _route_single_units(problem, single, price, units, cost)
    for order in np.flatnonzero(orders & ~single).tolist():
        op, nodes, _skus, sku_of_line = _order_problem(problem, order, price)
        if nodes.size == 0:
            cost[order] = problem.unfilled_penalty * problem.line_qty[problem.lines_of(order)].sum()
            continue
        plan = solve_order(op)
        _write_plan(problem, order, plan.alloc, nodes, sku_of_line, units)
        if plan.exact:
            cost[order] = plan.total_cost
        else:
            exact[order] = False
            cost[order] = order_relaxation_cost(
                op.qty,
                op.stock > 0,
                op.ship_cost,
                op.unit_cost,
                op.split_penalty,
                op.unfilled_penalty,
            )
    return units, cost, exact


def _route_single_units(problem, single, price, units, cost) -> None:
    """Vectorised exact routing of one-line, one-unit orders (see _orders_alone)."""
    cost[single] = problem.unfilled_penalty
    cands = np.flatnonzero(single[problem.line_order[problem.cand_line]])
    if cands.size == 0:
        return
    nodes = problem.cand_node[cands]
    unit_cost = problem.pair_ship_cost[problem.cand_pair[cands]] + problem.handling[nodes]
    if price is not None:
        unit_cost = unit_cost + price[nodes, problem.line_sku[problem.cand_line[cands]]]
    unit_cost = np.where(problem.capacity[nodes] >= 1, unit_cost, np.inf)
    lines = problem.cand_line[cands]
    order = np.lexsort((unit_cost, lines))  # by line, then cost; ties keep node order
    first = np.flatnonzero(np.r_[True, lines[order][1:] != lines[order][:-1]])
    best = order[first]
    served = unit_cost[best] < problem.unfilled_penalty
    units[cands[best[served]]] = 1
    cost[problem.line_order[lines[best[served]]]] = unit_cost[best[served]]


def _write_plan(problem, order, alloc, nodes, sku_of_line, units) -> None:
    """Spread a per-(SKU, node) plan over the order's lines (lines in order)."""
    remaining = alloc.copy()
    for offset, line in enumerate(range(*problem.lines_of(order).indices(problem.num_lines))):
        k = sku_of_line[offset]
        need = int(problem.line_qty[line])
        cands = problem.candidates_of(line)
        cand_nodes = problem.cand_node[cands]
        for j in np.flatnonzero(remaining[k]):
            if need == 0:
                break
            take = int(min(need, remaining[k, j]))
            c = cands.start + int(np.searchsorted(cand_nodes, nodes[j]))
            units[c] += take
            remaining[k, j] -= take
            need -= take


# --- step 2: the contested part ----------------------------------------------------


def _usage(problem, units, cands=None):
    """Units per (node, sku) key and per node, of ``units`` over ``cands``."""
    cands = np.arange(problem.cand_line.size) if cands is None else cands
    nodes = problem.cand_node[cands]
    skus = problem.line_sku[problem.cand_line[cands]]
    n_skus = problem.sku_ids.size
    by_key = np.bincount(
        nodes * n_skus + skus, weights=units[cands], minlength=problem.num_nodes * n_skus
    ).reshape(problem.num_nodes, n_skus)
    by_node = np.bincount(nodes, weights=units[cands], minlength=problem.num_nodes)
    return by_key, by_node


def _overused(problem, units):
    by_key, by_node = _usage(problem, units)
    return by_key > problem.stock, by_node > problem.capacity


def _orders_using(problem, units, scarce_key, scarce_node) -> np.ndarray:
    """Boolean (O,) mask of orders whose plan uses scarce stock or capacity."""
    used = units > 0
    nodes = problem.cand_node[used]
    skus = problem.line_sku[problem.cand_line[used]]
    hit = scarce_key[nodes, skus] | scarce_node[nodes]
    mask = np.zeros(problem.num_orders, dtype=bool)
    mask[problem.line_order[problem.cand_line[used][hit]]] = True
    return mask


def _with_neighbours(problem, units, contested) -> np.ndarray:
    """``contested`` plus the orders whose plan in ``units`` holds stock or
    capacity that the contested orders could want and are short of."""
    # What could the contested orders want? All stock and capacity of their
    # candidates; where that exceeds what the others leave, the others that
    # use it join them (one hop).
    in_lines = contested[problem.line_order[problem.cand_line]]
    want_key, want_node = _usage(
        problem, problem.line_qty[problem.cand_line].astype(float), np.flatnonzero(in_lines)
    )
    others = units * ~in_lines
    left_key, left_node = _usage(problem, others)
    short_key = (want_key > 0) & (want_key > problem.stock - left_key)
    short_node = (want_node > 0) & (want_node > problem.capacity - left_node)
    return contested | _orders_using(problem, others, short_key, short_node)


def _model_part(problem, units, contested, params, start=None, per_line=None):
    """The model of the ``contested`` orders on what the other orders of ``units`` leave.

    Candidates: each line's cheapest, plus those used by ``units`` and by the
    start. ``start`` (units over all candidates, feasible for the contested
    orders on that residual) defaults to a greedy routing. Returns the part and
    the start's units over the part's candidates.
    """
    orders = np.flatnonzero(contested)
    line_in = contested[problem.line_order]
    lines = np.flatnonzero(line_in)
    fixed = units * ~line_in[problem.cand_line]
    used_key, used_node = _usage(problem, fixed)
    stock = problem.stock - used_key.astype(np.int64)
    capacity = problem.capacity - used_node

    if start is None:
        start = greedy_units(problem, orders=orders, stock=stock, capacity=capacity)
    start = start * line_in[problem.cand_line]
    keep = _cheapest_candidates(problem, lines, per_line or params.candidates_per_line)
    keep |= (units > 0) & line_in[problem.cand_line]
    keep |= start > 0
    cands = np.flatnonzero(keep)
    pairs = np.unique(problem.cand_pair[cands])
    part = ModelInput(cands, pairs, lines, orders, stock, capacity)
    return part, start[cands]


def _cheapest_candidates(problem, lines, per_line) -> np.ndarray:
    """Mask of the candidates worth modelling for ``lines``.

    Two views of "cheap", since a node that can serve a whole order shares
    one shipment among its lines: each line's ``per_line`` cheapest
    candidates (shipping + handling of the line alone), and every candidate
    of each order's ``per_line`` best nodes, scored by the cost of serving as
    much of the order as the node holds, the rest at the unfilled penalty.
    """
    in_lines = np.zeros(problem.num_lines, dtype=bool)
    in_lines[lines] = True
    cands = np.flatnonzero(in_lines[problem.cand_line])
    line = problem.cand_line[cands]
    node = problem.cand_node[cands]
    qty = problem.line_qty[line]
    held = np.minimum(qty, problem.stock[node, problem.line_sku[line]])
    alone_cost = problem.pair_ship_cost[problem.cand_pair[cands]] + problem.handling[node] * qty

    pairs, pair_of = np.unique(problem.cand_pair[cands], return_inverse=True)
    covered = np.bincount(pair_of, weights=held, minlength=pairs.size)
    handled = np.bincount(pair_of, weights=problem.handling[node] * held, minlength=pairs.size)
    pair_order = problem.pair_order[pairs]
    order_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    pair_cost = (
        problem.pair_ship_cost[pairs]
        + handled
        + problem.unfilled_penalty * (order_units[pair_order] - covered)
    )
    good_pair = _rank_within(pair_order, pair_cost) < per_line
    keep = np.zeros(problem.cand_line.size, dtype=bool)
    keep[cands] = (_rank_within(line, alone_cost) < per_line) | good_pair[pair_of]
    return keep


def _rank_within(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Rank of each element by ``value`` among the elements of its group (0 = least)."""
    order = np.lexsort((value, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, group.size]))
    rank = np.empty(group.size, dtype=np.int64)
    rank[order] = np.arange(group.size) - first
    return rank


def _fractional_orders(problem, part: ModelInput, v, solution) -> np.ndarray:
    """Boolean (O,) mask of the part's orders with a fractional x or y in ``solution``."""
    frac = np.abs(solution - np.rint(solution)) > 1e-6
    mask = np.zeros(problem.num_orders, dtype=bool)
    mask[problem.line_order[problem.cand_line[part.cands[frac[: v.num_x]]]]] = True
    mask[problem.pair_order[part.pairs[frac[v.y0 : v.y0 + v.num_y]]]] = True
    return mask


# --- step 4: the lower bound -------------------------------------------------------


class _Prices:
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


def _lagrangian_bound(problem, alone: _Alone, prices: _Prices) -> float:
    """L(prices) = sum over orders of the priced optimum alone - prices . limits.

    Valid for any nonnegative prices: relaxing the stock and capacity rows
    into the objective can only lower the optimum. Orders with no priced
    candidate keep their unpriced optimum alone.
    """
    price = prices.key + prices.node[:, None]
    touched = price[problem.cand_node, problem.line_sku[problem.cand_line]] > 0
    orders = np.zeros(problem.num_orders, dtype=bool)
    orders[problem.line_order[problem.cand_line[touched]]] = True
    _units, priced_cost, _exact = _orders_alone(problem, orders, price)
    total = float(alone.cost[~orders].sum() + priced_cost[orders].sum())
    total -= float((prices.key * problem.stock).sum())
    finite = np.isfinite(problem.capacity)
    total -= float((prices.node[finite] * problem.capacity[finite]).sum())
    return total


def _subgradient_bound(
    problem, alone: _Alone, prices: _Prices, upper, clock, deadline, stats
) -> float:
    """Improve the Lagrangian bound by projected subgradient steps from the LP prices.

    Each step routes every priced order alone at the current prices, moves
    each price along its row's excess (units used - limit) with Polyak's step
    towards ``upper``, and keeps the best bound seen: every one is valid.
    """
    key, node = prices.key.copy(), prices.node.copy()
    finite = np.isfinite(problem.capacity)
    capacity = np.where(finite, problem.capacity, 0.0)
    best = float("-inf")
    theta, stall = 1.0, 0
    iterations = 0
    while clock() < deadline and iterations < 200:
        iterations += 1
        price = key + node[:, None]
        touched = np.zeros(problem.num_orders, dtype=bool)
        touched[
            problem.line_order[
                problem.cand_line[price[problem.cand_node, problem.line_sku[problem.cand_line]] > 0]
            ]
        ] = True
        units, cost, _exact = _orders_alone(problem, touched, price)
        cand_touched = touched[problem.line_order[problem.cand_line]]
        units = np.where(cand_touched, units, alone.units)
        value = float(alone.cost[~touched].sum() + cost[touched].sum())
        value -= float((key * problem.stock).sum() + (node * capacity).sum())
        if value > best + 1e-9:
            best, stall = value, 0
        else:
            stall += 1
            if stall >= 3:
                theta, stall = theta / 2, 0
        used_key, used_node = _usage(problem, units)
        g_key = used_key - problem.stock
        g_node = np.where(finite, used_node - capacity, 0.0)
        g_key[(key <= 0) & (g_key < 0)] = 0.0
        g_node[(node <= 0) & (g_node < 0)] = 0.0
        norm = float((g_key**2).sum() + (g_node**2).sum())
        if norm == 0 or upper - value <= 0 or theta < 1e-4:
            break
        step = theta * (upper - value) / norm
        key = np.maximum(key + step * g_key, 0.0)
        node = np.maximum(node + step * g_node, 0.0)
    stats["subgradient_iterations"] = iterations
    return best


# --- helpers -----------------------------------------------------------------------


def _part_abs_gap(params: OptimizeParams, batch_cost: float) -> float:
    """A part's MIP may stop within a quarter of the batch's gap budget: a gap
    relative to the part alone would chase cents on a batch of millions."""
    return max(params.rel_gap * batch_cost / 4.0, 1e-4)


def _within(cost: float, bound: float, rel_gap: float) -> bool:
    return cost <= 0 or (cost - bound) / cost <= rel_gap + 1e-12


def _remaining(params: OptimizeParams, clock: Clock, reserve: float) -> float:
    """Seconds left for a step, keeping ``reserve`` and a margin for writing
    the answer (HiGHS checks its own limit only now and then)."""
    margin = 0.03 * params.time_limit + 0.2
    return max(params.time_limit - margin - clock() - reserve, 0.05)
