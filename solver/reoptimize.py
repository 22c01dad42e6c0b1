"""Re-optimization of held orders under a churn rule: the ``reoptimize`` method.

The problem carries a :class:`solver.churn.Churn`: the orders' current routing
(feasible on the problem's stock, which includes what the orders hold), a cost
per moved order and a limit on the moves. The method:

1. **Current routing** is the first incumbent: nothing moves, nothing to pay.
2. **Tiny batches**: one MIP with the move rule over every candidate, to the
   proven optimum.
3. **Free solve.** The batch as if every order could move at no cost
   (:func:`solver.batch.optimize` on the problem without the rule): the best
   each order could get, global stock prices, and a bound.
4. **Choose the moves.** A MIP over the orders whose free routing differs from
   their current one: each keeps its current routing or takes the free one,
   within stock, capacity and the move limit, for the largest saving net of
   move costs (:func:`choose_moves`). Feasible by construction.
5. **Re-decide** the orders that could move, in geographic blocks, by relax
   and fix on the model *with* the move rule (its move budget is the limit
   less the moves outside the block), from the incumbent: cost never rises,
   the limit always holds. A moderate part is then solved as one MIP.
6. **Proven bound** (:func:`churn_bound`): at nonnegative stock and capacity
   prices and a price ``mu`` on the move limit, each order alone takes the
   cheaper of keeping its current routing and its best priced routing plus the
   move cost plus ``mu``; the sum, less the prices times the limits, bounds the
   re-optimization for any such prices (``mu`` is set to its exact best).

The answer is re-checked like any other; it is always feasible, and never
moves more orders than the limit allows.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from solver.batch import RoutingResult, _model_columns, optimize
from solver.blocks import geographic_blocks
from solver.bound import Prices
from solver.budget import remaining, within
from solver.churn import moved_orders
from solver.churn_bound import churn_bound
from solver.contention import overused, usage
from solver.cost import evaluate, order_costs, within_shipment_caps
from solver.joint_lp import solve_joint_lp
from solver.mip import MipModel, MipParams, solve_mip
from solver.params import Clock, OptimizeParams, Progress, stop_requested
from solver.polish import polish, solve_exactly
from solver.relax_fix import relax_and_fix


def reoptimize(
    problem, params: OptimizeParams, clock: Clock, progress: Progress | None = None
) -> RoutingResult:
    """Re-decide the orders of ``problem`` (``problem.churn`` set) jointly; see the module."""
    churn = problem.churn
    if churn is None:
        raise ValueError("reoptimize needs a problem with a churn rule (Problem.churn)")
    emit = progress or (lambda _phase, _details: None)
    over_stock, over_capacity = overused(problem, churn.current)
    if over_stock.any() or over_capacity.any():
        raise ValueError("the current routing uses more stock or capacity than the problem has")
    stats: dict = {"current_cost": evaluate(problem, churn.current).total_cost}
    best = churn.current.copy()
    best_cost = stats["current_cost"]
    bound = -np.inf
    timed_out = False

    def offer(units) -> None:
        nonlocal best, best_cost
        if units is None or not within_shipment_caps(problem, units):
            return
        cost = evaluate(problem, units)
        if churn.max_moves is not None and cost.moves > churn.max_moves:
            return  # never offered by the steps below; kept as a guard
        if cost.total_cost < best_cost - 1e-9:
            best, best_cost = units, cost.total_cost

    emit("current routing", {"best": best_cost})
    if (
        problem.cand_line.size <= params.exact_candidates
        or problem.num_orders <= params.exact_orders
    ):
        emit("exact MIP", {"best": best_cost})
        units, mip_bound, finished = solve_exactly(
            problem, best, params, clock, best_cost, rel_gap=min(params.rel_gap, 1e-4)
        )
        offer(units)
        bound = max(bound, mip_bound)
        timed_out = not finished
    else:
        free_problem = problem.replace(churn=None)
        emit("free solve", {"best": best_cost})
        # The time: about half to the free solve, a tenth at most to the choice,
        # the re-decide until the bound's share is left. The bound's share is 15%
        # when the LP of the whole model fits (``whole_lp_columns``), else 5%: the
        # price search alone gains little there (measured at 50,000 orders), and
        # the free solve gets that time.
        # Without a limit or a cost per move the rule is void: the free solve
        # is the re-optimization, and gets the whole time.
        void = churn.max_moves is None and churn.move_cost == 0
        lp_fits = _model_columns(problem) <= params.whole_lp_columns
        bound_share = (0.15 if lp_fits else 0.05) * params.time_limit
        reserve = 0.0 if void else 0.4 * params.time_limit + bound_share
        free_params = replace(params, time_limit=clock() + remaining(params, clock, reserve))
        free = optimize(free_problem, free_params, clock)
        stats["free"] = {
            "cost": free.cost.total_cost,
            "lower_bound": free.lower_bound,
            "status": free.status,
        }
        if free.lower_bound is not None:
            # the move rule only adds costs and removes routings
            bound = max(bound, free.lower_bound)
        if void:
            offer(free.units)
            timed_out = free.status == "time_limit"
            return _result(problem, params, clock, best, bound, timed_out, stats, emit)
        emit("choose moves", {"best": best_cost, "bound": bound})
        chosen, choice_status = choose_moves(
            problem,
            free.units,
            min(0.1 * params.time_limit, remaining(params, clock, 0.3 * params.time_limit)),
            clock,
        )
        stats["choice"] = {
            "status": choice_status,
            "moved": int(moved_orders(problem, chosen).sum()),
        }
        offer(chosen)
        emit("choose moves", {"best": best_cost, "bound": bound})

        may_move = moved_orders(problem, free.units) | moved_orders(problem, best)
        blocks = geographic_blocks(problem, may_move, params.block_orders) if may_move.any() else []
        stats["blocks"] = len(blocks)
        for index, block in enumerate(blocks):
            share = remaining(params, clock, bound_share) / (len(blocks) - index)
            if share < 1.0 + 5e-4 * block.sum():
                timed_out = True
                break
            emit(f"re-decide block {index + 1}/{len(blocks)}", {"best": best_cost, "bound": bound})
            candidate, _fractional = relax_and_fix(
                problem,
                best,
                block,
                params,
                share,
                Prices(problem),
                clock,
                stats,
                params.block_candidates_per_line if len(blocks) > 1 else params.candidates_per_line,
                lambda _units: False,
            )
            timed_out |= candidate is None
            offer(candidate)
        if 0 < may_move.sum() <= params.polish_orders and clock() < 0.8 * params.time_limit:
            # A moderate part: once more as one MIP, with the move rule, from the best.
            emit("re-decide: one MIP", {"best": best_cost, "bound": bound})
            polished, finished = polish(
                problem, best, may_move, params, clock, emit, reserve=bound_share
            )
            timed_out |= not finished
            offer(polished)
        emit("lower bound", {"best": best_cost, "bound": bound})
        prices = free.prices or Prices(problem)
        if lp_fits:
            # The LP relaxation of the whole model with the move rule: a proven
            # bound by weak duality, and the prices the search starts from.
            joint = solve_joint_lp(
                problem, best, None, params, clock, 0.6 * remaining(params, clock, 0.0), whole=True
            )
            if joint is not None:
                bound = max(bound, joint.bound)
                prices = joint.prices
                stats["lp_bound"] = {
                    "solver": joint.solver,
                    "seconds": joint.seconds,
                    "converged": joint.converged,
                    "bound": joint.bound,
                }
        deadline = clock() + remaining(params, clock, 0.0)
        value, details = churn_bound(problem, prices, best_cost, clock, deadline)
        stats["bound"] = details
        bound = max(bound, value)
    return _result(problem, params, clock, best, bound, timed_out, stats, emit)


def _result(problem, params, clock, best, bound, timed_out, stats, emit) -> RoutingResult:
    """The answer with its cost, bound and honest status."""
    cost = evaluate(problem, best)
    bound = min(bound, cost.total_cost)
    stats["moved_orders"] = cost.moves
    if within(cost.total_cost, bound, params.rel_gap):
        status = "optimal"
    elif timed_out or clock() >= params.time_limit:
        status = "time_limit"
    else:
        status = "feasible"
    emit("done", {"best": cost.total_cost, "bound": bound})
    return RoutingResult("reoptimize", status, best, cost, float(bound), stats)


def choose_moves(problem, target: np.ndarray, time_limit: float, clock: Clock):
    """For each order whose ``target`` routing differs from its current one: keep
    the current routing or take the target one, within stock, capacity and the
    move limit, for the least total cost (move costs included).

    One binary per such order; a row per (node, SKU) and per node that some
    switch draws on more than it frees. Keeping everything is feasible, so the
    MIP starts there. Returns (units, the MIP's status).
    """
    churn = problem.churn
    current = churn.current
    switch = moved_orders(problem, target)
    orders = np.flatnonzero(switch)
    if orders.size == 0:
        return current.copy(), "nothing to move"
    saving = order_costs(problem, current) - order_costs(problem, target)
    c = -(saving[orders] - churn.move_cost)

    cand_order = problem.line_order[problem.cand_line]
    local = np.full(problem.num_orders, -1, dtype=np.int64)
    local[orders] = np.arange(orders.size)
    delta = (target - current).astype(np.float64)
    moving = (delta != 0) & switch[cand_order]
    cand = np.flatnonzero(moving)
    n_skus = problem.sku_ids.size
    key = problem.cand_node[cand] * n_skus + problem.line_sku[problem.cand_line[cand]]
    used_key, used_node = usage(problem, current)
    rows, cols, vals, limits = [], [], [], []
    # stock (node, SKU)
    stock_slack = (problem.stock - used_key).ravel().astype(np.float64)
    pair = np.unique(np.stack([local[cand_order[cand]], key], axis=1), axis=0, return_inverse=True)
    (pair_codes, pair_of) = pair
    pair_delta = np.bincount(pair_of.ravel(), weights=delta[cand], minlength=len(pair_codes))
    keys, key_row = np.unique(pair_codes[:, 1], return_inverse=True)
    key_row = key_row.ravel()
    draws = np.bincount(key_row, weights=np.maximum(pair_delta, 0), minlength=keys.size) > 0
    take = draws[key_row] & (pair_delta != 0)
    row_number = np.cumsum(draws) - 1
    rows.append(row_number[key_row[take]])
    cols.append(pair_codes[take, 0])
    vals.append(pair_delta[take])
    limits.append(stock_slack[keys[draws]])
    n_rows = int(draws.sum())
    # capacity (nodes with a limit)
    finite = np.isfinite(problem.capacity)
    cap_cand = cand[finite[problem.cand_node[cand]]]
    if cap_cand.size:
        code = np.unique(
            np.stack([local[cand_order[cap_cand]], problem.cand_node[cap_cand]], axis=1),
            axis=0,
            return_inverse=True,
        )
        node_codes, node_of = code
        node_delta = np.bincount(
            node_of.ravel(), weights=delta[cap_cand], minlength=len(node_codes)
        )
        nodes, node_row = np.unique(node_codes[:, 1], return_inverse=True)
        node_row = node_row.ravel()
        draws_n = np.bincount(node_row, weights=np.maximum(node_delta, 0), minlength=nodes.size) > 0
        take_n = draws_n[node_row] & (node_delta != 0)
        rows.append(n_rows + (np.cumsum(draws_n) - 1)[node_row[take_n]])
        cols.append(node_codes[take_n, 0])
        vals.append(node_delta[take_n])
        limits.append((problem.capacity - used_node)[nodes[draws_n]])
        n_rows += int(draws_n.sum())
    if churn.max_moves is not None:
        rows.append(np.full(orders.size, n_rows))
        cols.append(np.arange(orders.size))
        vals.append(np.ones(orders.size))
        limits.append(np.array([float(churn.max_moves)]))
        n_rows += 1
    A = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, orders.size),
    )
    model = MipModel(
        c,
        np.zeros(orders.size),
        np.ones(orders.size),
        np.ones(orders.size, dtype=bool),
        A,
        np.full(n_rows, -np.inf),
        np.concatenate(limits),
    )
    start = _greedy_choice(c, A.tocsc(), np.concatenate(limits))
    mip = solve_mip(
        model,
        MipParams(time_limit=max(time_limit, 0.05), rel_gap=1e-4),
        start=start,
        stop=stop_requested(clock),
    )
    units = current.copy()
    pick = start if mip.x is None or c @ np.rint(mip.x) > c @ start else np.rint(mip.x)
    chosen = np.zeros(problem.num_orders, dtype=bool)
    chosen[orders[pick > 0.5]] = True
    take_target = chosen[cand_order]
    units[take_target] = target[take_target]
    return units, str(mip.status)


def _greedy_choice(cost: np.ndarray, columns: sp.csc_matrix, limits: np.ndarray) -> np.ndarray:
    """A feasible start for :func:`choose_moves`: switches by largest saving first,
    each taken if what it draws fits what is left (the rows are ``A s <= limits``,
    and ``s = 0`` is feasible)."""
    slack = limits.astype(np.float64).copy()
    chosen = np.zeros(cost.size)
    for j in np.argsort(cost, kind="stable").tolist():
        if cost[j] >= 0:
            break
        lo, hi = columns.indptr[j], columns.indptr[j + 1]
        rows, vals = columns.indices[lo:hi], columns.data[lo:hi]
        if np.all(slack[rows] - vals >= -1e-9):
            slack[rows] -= vals
            chosen[j] = 1.0
    return chosen
