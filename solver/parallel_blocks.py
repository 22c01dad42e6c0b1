"""Independent geographic blocks at the global prices: a sweep whose blocks run at once.

:func:`solver.support_mip.improve_on_support` re-routes geographic blocks one
after another, each on what the others leave, so no block can start before the
previous one ends. Here every block of a sweep is given its own *allowance* of
every shared limit (stock per (node, SKU), node capacity, a node's daily orders,
a channel's share of a SKU, a re-optimization's moves): what its own orders use
in the incumbent plus a share of what no order uses. The shares partition the
residual, so the blocks' answers fit together by construction and the blocks
are independent tasks, run by whatever executor the caller passes in
(:mod:`solver.executor`). Each task is the block's MIP over the joint LP's
support plus the incumbent's candidates, started from the incumbent (so a block
never gets worse); the coordinator merges the blocks that improved, checks the
merged answer without a solver and keeps it if feasible and cheaper. A second
sweep with shifted borders re-decides the first one's borders.

The residual of a limit is split among the blocks in proportion to each block's
demand for it at the joint LP's prices: the LP units its orders put on that
(node, SKU), node or channel share (moves: in proportion to the block's orders).
The LP has already weighed every order against all the others for the scarce
units, so its units say which block can use a leftover unit best; a block whose
LP routings avoid a key gets none of it, which costs nothing, since its MIP only
models the LP's support and the incumbent's candidates. Shares are whole units,
by cumulative rounding, so they sum exactly to the residual wherever a block
wants it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from solver.blocks import geographic_blocks
from solver.budget import part_abs_gap
from solver.candidates import Allowance, model_part
from solver.churn import moved_orders
from solver.contention import overused, usage
from solver.cost import (
    evaluate,
    node_orders,
    order_costs,
    share_used,
    within_shipment_caps,
)
from solver.executor import Executor
from solver.mip import MipParams, solve_mip
from solver.model import build_model, start_vector
from solver.params import OptimizeParams
from solver.support_mip import SUPPORT

MIN_TASK_SECONDS = 1.0
"""A block's MIP gets at least this long (less would rarely improve on its start)."""


@dataclass(frozen=True)
class SweepData:
    """What every block task of a sweep reads (sent once per sweep)."""

    problem: Any
    """The prepared problem (``router.problem.Problem``)."""
    units: np.ndarray
    """(C,) the incumbent, feasible."""
    support: np.ndarray
    """(C,) mask of the candidates the joint LP uses."""
    params: OptimizeParams
    abs_gap: float


@dataclass(frozen=True)
class BlockTask:
    orders: np.ndarray
    """The block's orders (indices)."""
    allowance: Allowance
    time_limit: float


@dataclass(frozen=True)
class BlockAnswer:
    cands: np.ndarray
    """The candidates of the block's model (every one its orders use, before and after)."""
    units: np.ndarray
    """Their new units."""
    status: str
    seconds: float


def solve_block(shared: SweepData, task: BlockTask) -> BlockAnswer:
    """One block's MIP on its own allowance, from the incumbent: the task of a sweep.

    A module-level pure function of arrays; the HiGHS model is built here, in
    whichever process runs the task.
    """
    started = time.perf_counter()
    problem = shared.problem
    block = np.zeros(problem.num_orders, dtype=bool)
    block[task.orders] = True
    part, start = model_part(
        problem,
        shared.units,
        block,
        shared.params,
        start=shared.units,
        per_line=0,
        also=shared.support,
        allowance=task.allowance,
    )
    model, v, _keys, _rows = build_model(problem, part)
    mip = solve_mip(
        model,
        MipParams(
            time_limit=task.time_limit,
            rel_gap=shared.params.rel_gap / 4,
            abs_gap=shared.abs_gap,
            seed=shared.params.seed,
        ),
        start=start_vector(problem, part, v, start),
    )
    units = start if mip.x is None else v.extract(mip.x)
    return BlockAnswer(part.cands, units, str(mip.status), time.perf_counter() - started)


def improve_in_parallel(
    problem,
    units: np.ndarray,
    lp: np.ndarray,
    contested,
    params,
    clock,
    deadline: float,
    executor: Executor,
) -> tuple[np.ndarray, dict]:
    """``units`` improved by two sweeps of independent blocks (borders shifted by
    half a block in the second), each block a task of ``executor``.

    Parameters
    ----------
    units
        The incumbent (C,), feasible.
    lp
        (C,) the joint LP's units: its support is modelled, its units weigh the
        blocks' shares of what the incumbent leaves.
    contested
        (O,) mask of the orders cut into blocks of ``params.support_block_orders``.
    deadline
        Clock time by which both sweeps are done: each task's time limit is its
        share of it, ``executor.workers`` tasks at a time, at most
        ``params.support_block_seconds``; when that would be less than
        :data:`MIN_TASK_SECONDS`, only the blocks that fit at that time are solved.

    Returns the units and details: blocks solved and improved, tasks, seconds.
    """
    support = lp > SUPPORT
    details: dict = {"blocks": 0, "improved": 0, "sweeps": 0, "rejected": 0, "task_seconds": 0.0}
    sweeps = (0.0, 0.5)
    workers = max(1, executor.workers)
    for index, shift in enumerate(sweeps):
        blocks = geographic_blocks(problem, contested, params.support_block_orders, shift)
        budget = (deadline - clock()) / (len(sweeps) - index)
        per_task = min(params.support_block_seconds, budget / -(-len(blocks) // workers))
        if per_task < MIN_TASK_SECONDS:
            # Too many blocks for the time: as many as fit get a useful time each
            # (the second sweep starts half-way round, so it tries others).
            per_task = MIN_TASK_SECONDS
            if budget < per_task:
                break
            fit = int(budget / per_task) * workers
            start = index * len(blocks) // len(sweeps)
            blocks = (blocks[start:] + blocks[:start])[:fit]
        allowances = block_allowances(problem, units, lp, blocks)
        best = evaluate(problem, units).total_cost
        tasks = [
            BlockTask(np.flatnonzero(block), allowance, per_task)
            for block, allowance in zip(blocks, allowances, strict=True)
        ]
        shared = SweepData(problem, units, support, params, part_abs_gap(params, best))
        answers = executor.map(solve_block, shared, tasks)
        merged, improved = merge_blocks(problem, units, blocks, answers)
        details["blocks"] += len(blocks)
        details["sweeps"] += 1
        details["task_seconds"] += round(sum(a.seconds for a in answers), 2)
        if improved and fits(problem, merged) and evaluate(problem, merged).total_cost < best:
            units = merged
            details["improved"] += improved
        elif improved:
            details["rejected"] += 1  # never expected: the allowances make blocks fit
    return units, details


def merge_blocks(
    problem, units: np.ndarray, blocks: list[np.ndarray], answers: list[BlockAnswer]
) -> tuple[np.ndarray, int]:
    """The incumbent with every block's answer that lowers its own orders' cost.

    An order's cost depends only on its own units (shipments, handling, splits,
    unfilled units, moves), and blocks share no order, so all answers are priced
    at once and each block is judged alone. Returns the merged units and how many
    blocks were taken.
    """
    merged = units.copy()
    for answer in answers:
        merged[answer.cands] = answer.units
    before, after = _order_costs(problem, units), _order_costs(problem, merged)
    taken = 0
    for block, answer in zip(blocks, answers, strict=True):
        if after[block].sum() < before[block].sum() - 1e-9:
            taken += 1
        else:
            merged[answer.cands] = units[answer.cands]
    return merged, taken


def _order_costs(problem, units: np.ndarray) -> np.ndarray:
    """(O,) each order's cost, its move cost included."""
    costs = order_costs(problem, units)
    if problem.churn is not None:
        costs = costs + problem.churn.move_cost * moved_orders(problem, units)
    return costs


def fits(problem, units: np.ndarray) -> bool:
    """Whether ``units`` keeps every shared and per-order limit (no solver asked):
    stock, capacity, daily orders, channel shares, split caps, ship groups, moves."""
    over_stock, over_capacity = overused(problem, units)
    if over_stock.any() or over_capacity.any() or np.any(units < 0):
        return False
    if not within_shipment_caps(problem, units):
        return False
    churn = problem.churn
    return (
        churn is None
        or churn.max_moves is None
        or (int(moved_orders(problem, units).sum()) <= churn.max_moves)
    )


def block_allowances(
    problem, units: np.ndarray, lp: np.ndarray, blocks: list[np.ndarray]
) -> list[Allowance]:
    """Each block's allowance: its own use in ``units`` plus its share of the residual.

    The residual of every limit (what ``units`` leaves unused) is split among the
    blocks by :func:`split_residual`, weighted by the LP units ``lp`` of each
    block's orders; the blocks' allowances and the use of the orders outside
    every block then sum to at most each limit.
    """
    count = len(blocks)
    block_of = np.full(problem.num_orders, -1, dtype=np.int64)
    for b, block in enumerate(blocks):
        block_of[block] = b
    cand_block = block_of[problem.line_order[problem.cand_line]]
    num_skus = problem.sku_ids.size
    cand_key = problem.cand_node * num_skus + problem.line_sku[problem.cand_line]
    own = (units > 0) & (cand_block >= 0)
    wants = (lp > SUPPORT) & (cand_block >= 0)

    used_key, used_node = usage(problem, units)
    stock_left = np.maximum(problem.stock - used_key, 0).ravel()
    stock = _own_plus_share(
        stock_left, cand_block, cand_key, units, own, lp, wants, count, problem.stock.size
    )

    capacity = np.zeros((count, problem.num_nodes))
    finite = np.isfinite(problem.capacity)
    capacity_left = np.where(finite, np.maximum(problem.capacity - used_node, 0), 0.0)
    for b, keys, amounts in _own_plus_share(
        capacity_left,
        cand_block,
        problem.cand_node,
        units,
        own,
        lp,
        wants,
        count,
        problem.num_nodes,
    ):
        capacity[b, keys] = amounts
    capacity[:, ~finite] = np.inf

    orders_left = None
    limit = getattr(problem, "node_order_limit", None)
    if limit is not None:
        orders_left = np.zeros((count, problem.num_nodes))
        pair_units = np.bincount(
            problem.cand_pair, weights=units, minlength=problem.pair_order.size
        )
        shipped = np.flatnonzero((pair_units > 0) & (block_of[problem.pair_order] >= 0))
        left = np.maximum(limit - node_orders(problem, units), 0).astype(np.float64)
        own_orders = _sum_by(block_of[problem.pair_order[shipped]], problem.pair_node[shipped],
                             np.ones(shipped.size), problem.num_nodes)  # fmt: skip
        share = split_residual(
            left, cand_block[wants], problem.cand_node[wants], lp[wants], problem.num_nodes
        )
        for b, keys, amounts in (*own_orders, *share):
            np.add.at(orders_left[b], keys, amounts)

    shares_left = None
    cap = getattr(problem, "share_cap", None)
    if cap is not None:
        shares_left = np.zeros((count, cap.size))
        cand_share = problem.line_share[problem.cand_line]
        used = share_used(problem, units)
        residual = np.maximum(cap - (0 if used is None else used), 0).astype(np.float64)
        on_own, on_wants = own & (cand_share >= 0), wants & (cand_share >= 0)
        triples = (
            *_sum_by(cand_block[on_own], cand_share[on_own], units[on_own], cap.size),
            *split_residual(
                residual, cand_block[on_wants], cand_share[on_wants], lp[on_wants], cap.size
            ),
        )
        for b, keys, amounts in triples:
            np.add.at(shares_left[b], keys, amounts)

    budgets: list[float | None] = [None] * count
    churn = problem.churn
    if churn is not None and churn.max_moves is not None:
        moved = moved_orders(problem, units)
        residual = np.array([max(churn.max_moves - int(moved.sum()), 0)], dtype=np.float64)
        in_block = np.flatnonzero(block_of >= 0)
        budget = np.bincount(block_of[moved & (block_of >= 0)], minlength=count).astype(float)
        for b, _keys, amounts in split_residual(
            residual, block_of[in_block], np.zeros(in_block.size, dtype=np.int64),
            np.ones(in_block.size), 1,
        ):  # fmt: skip
            budget[b] += amounts.sum()
        budgets = [float(x) for x in budget]

    stock_of = {b: (keys, amounts) for b, keys, amounts in stock}
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return [
        Allowance(
            *stock_of.get(b, empty),
            capacity=capacity[b],
            orders_left=None if orders_left is None else orders_left[b],
            shares_left=None if shares_left is None else shares_left[b],
            move_budget=budgets[b],
        )
        for b in range(count)
    ]


def _own_plus_share(residual, cand_block, cand_key, units, own, lp, wants, count, num_keys):
    """Per block (block, keys, amounts): the units its orders use at each key in
    ``units`` plus its share of ``residual``, one entry per block with any."""
    triples = (
        *_sum_by(cand_block[own], cand_key[own], units[own], num_keys),
        *split_residual(residual, cand_block[wants], cand_key[wants], lp[wants], num_keys),
    )
    if not triples:
        return []
    block = np.concatenate([np.full(keys.size, b, dtype=np.int64) for b, keys, _ in triples])
    key = np.concatenate([keys for _, keys, _ in triples])
    amount = np.concatenate([amounts for _, _, amounts in triples])
    return _sum_by(block, key, amount, num_keys)


def _sum_by(block: np.ndarray, key: np.ndarray, amount: np.ndarray, num_keys: int):
    """``amount`` summed per (block, key), as one (block, keys, amounts) per block."""
    if block.size == 0:
        return []
    pair, index = np.unique(block.astype(np.int64) * num_keys + key, return_inverse=True)
    total = np.bincount(index, weights=amount, minlength=pair.size)
    blocks, keys = pair // num_keys, pair % num_keys
    cuts = np.flatnonzero(np.diff(blocks)) + 1
    return [
        (int(bs[0]), ks, np.rint(ts).astype(np.int64) if np.all(np.isfinite(ts)) else ts)
        for bs, ks, ts in zip(
            np.split(blocks, cuts), np.split(keys, cuts), np.split(total, cuts), strict=True
        )
    ]


def split_residual(
    residual: np.ndarray, block: np.ndarray, key: np.ndarray, demand: np.ndarray, num_keys: int
):
    """Whole-unit shares of ``residual`` (per key) among the blocks that demand it.

    ``(block, key, demand)`` triples say how much each block wants of each key
    (repeats are summed); each key's residual is split in proportion, by
    cumulative rounding: the blocks wanting a key in block order, block ``i``
    gets ``floor(R * W_i / W) - floor(R * W_{i-1} / W)`` (``W_i`` the demand of
    the first ``i``, the last getting up to ``R`` exactly), so the shares are
    whole, never negative, and sum to the residual. Returns one (block, keys,
    shares) per block with any.
    """
    take = demand > 0
    if not take.any():
        return []
    pair, index = np.unique(
        key[take].astype(np.int64) * (int(block.max()) + 1) + block[take], return_inverse=True
    )
    weight = np.bincount(index, weights=demand[take], minlength=pair.size)
    width = int(block.max()) + 1
    keys, blocks = pair // width, pair % width
    # pairs are sorted by key, then block: each key's run is contiguous
    first = np.r_[True, keys[1:] != keys[:-1]]
    last = np.r_[keys[1:] != keys[:-1], True]
    run_length = np.diff(np.r_[np.flatnonzero(first), keys.size])
    running = np.cumsum(weight)
    cumulative = running - np.repeat(running[first] - weight[first], run_length)
    total = np.repeat(cumulative[last], run_length)
    whole = residual[keys]
    upto = np.minimum(np.floor(whole * cumulative / total), whole)
    upto[last] = whole[last]
    share = upto - np.r_[0.0, upto[:-1]]
    share[first] = upto[first]
    return _sum_by(blocks, keys, share, num_keys)
