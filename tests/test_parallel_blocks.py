"""Independent blocks at the global prices (solver/parallel_blocks.py), in process.

- the residual of every shared limit is split into whole shares that sum to it;
- every block's allowance holds its own use, and all of them fit the limits together;
- the independent sweep only improves and stays feasible (the independent checker);
- with little time, only the blocks that fit get a MIP;
- with daily orders limits, channel shares and a move limit, too;
- optimize through an executor: feasible, bound <= optimum <= cost, tasks recorded.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from router.checker import check
from router.problem import build_problem
from router.run import assignments_frame
from router.scenario import load_scenario
from solver.blocks import geographic_blocks
from solver.churn import Churn, moved_orders
from solver.contention import usage
from solver.cost import evaluate, node_orders, share_used
from solver.executor import InProcessExecutor
from solver.greedy import greedy_units
from solver.mip import MipParams, solve_mip
from solver.model import ModelInput, build_model
from solver.parallel_blocks import (
    block_allowances,
    fits,
    improve_in_parallel,
    split_residual,
)
from solver.params import OptimizeParams
from solver.support_mip import SUPPORT, lp_units
from tests.scarce import small_scarce_folder

PARAMS = OptimizeParams(support_block_orders=15, support_block_seconds=5)


@pytest.fixture(scope="module")
def scarce_batches(tmp_path_factory):
    """Small generated batches with scarce stock, each with its LP units and a greedy start."""
    batches = []
    for seed in range(3):
        folder = small_scarce_folder(tmp_path_factory, seed)
        scenario = load_scenario(folder)
        problem = build_problem(scenario)
        part = ModelInput.whole(problem)
        model, v, _keys, _rows = build_model(problem, part)
        lp = lp_units(problem, part, v, solve_mip(model, MipParams(relax=True)).x)
        batches.append((scenario, problem, lp, greedy_units(problem)))
    return batches


def _shares(triples, count, size):
    dense = np.zeros((count, size))
    for block, keys, amounts in triples:
        dense[block, keys] += amounts
    return dense


def test_split_residual_by_hand():
    # key 0: 5 units among three equal demands -> 1, 2, 2 (cumulative 1, 3, 5)
    # key 1: 3 units, block 2 alone wants it -> all 3; key 2: nobody wants it -> nobody
    residual = np.array([5.0, 3.0, 7.0])
    block = np.array([0, 1, 2, 2])
    key = np.array([0, 0, 0, 1])
    demand = np.array([1.0, 1.0, 1.0, 0.5])
    shares = _shares(split_residual(residual, block, key, demand, 3), 3, 3)
    assert shares.tolist() == [[1, 0, 0], [2, 0, 0], [2, 3, 0]]


def test_split_residual_is_whole_and_exact_on_random_demands():
    rng = np.random.default_rng(0)
    for _ in range(20):
        residual = rng.integers(0, 40, 50).astype(float)
        size = 300
        block, key = rng.integers(0, 7, size), rng.integers(0, 50, size)
        demand = rng.exponential(1.0, size) * (rng.random(size) < 0.8)
        shares = _shares(split_residual(residual, block, key, demand, 50), 7, 50)
        assert np.all(shares >= 0) and np.all(shares == np.rint(shares))
        wanted = np.bincount(key[demand > 0], minlength=50) > 0
        assert np.array_equal(shares.sum(axis=0)[wanted], residual[wanted])
        assert np.all(shares.sum(axis=0)[~wanted] == 0)


def test_allowances_hold_each_blocks_use_and_partition_the_residual(scarce_batches):
    for _scenario, problem, lp, start in scarce_batches:
        contested = np.ones(problem.num_orders, dtype=bool)
        contested[::7] = False  # some orders stay outside every block
        blocks = geographic_blocks(problem, contested, 15)
        allowances = block_allowances(problem, start, lp, blocks)
        used_key, _used_node = usage(problem, start)
        stock_total = np.zeros(problem.stock.shape, dtype=np.int64)
        capacity_total = np.zeros(problem.num_nodes)
        for block, allowance in zip(blocks, allowances, strict=True):
            mine = start * block[problem.line_order[problem.cand_line]]
            own_key, own_node = usage(problem, mine)
            stock = allowance.stock(problem)
            assert np.all(stock >= own_key)
            assert np.all(allowance.capacity >= own_node - 1e-9)
            stock_total += stock
            capacity_total += np.where(np.isfinite(allowance.capacity), allowance.capacity, 0)
        outside = start * ~contested[problem.line_order[problem.cand_line]]
        out_key, out_node = usage(problem, outside)
        assert np.all(stock_total + out_key <= problem.stock)
        finite = np.isfinite(problem.capacity)
        assert np.all((capacity_total + out_node)[finite] <= problem.capacity[finite] + 1e-9)
        # the residual is handed out wherever a block's LP routings want it
        in_blocks = contested[problem.line_order[problem.cand_line]]
        wanted_key, _ = usage(problem, ((lp > SUPPORT) & in_blocks).astype(float))
        residual = problem.stock - used_key
        assert np.array_equal(
            (stock_total + out_key - used_key)[wanted_key > 0], residual[wanted_key > 0]
        )


def test_independent_sweep_only_improves_and_stays_feasible(scarce_batches):
    improved = 0
    for scenario, problem, lp, start in scarce_batches:
        everyone = np.ones(problem.num_orders, dtype=bool)
        executor = InProcessExecutor()
        units, details = improve_in_parallel(
            problem, start, lp, everyone, PARAMS, lambda: 0.0, 1e9, executor
        )
        assert details["sweeps"] == 2 and details["blocks"] >= 4
        assert executor.tasks == details["blocks"] and details["rejected"] == 0
        cost = evaluate(problem, units).total_cost
        assert cost <= evaluate(problem, start).total_cost + 1e-9
        improved += cost < evaluate(problem, start).total_cost - 1e-6
        assert fits(problem, units)
        assert check(scenario, assignments_frame(problem, units)).feasible
        # a block may only use the LP's support or what the start used
        assert not np.any(units[(lp <= SUPPORT) & (start == 0)])
    assert improved >= 2


def test_with_little_time_only_the_blocks_that_fit_are_solved(scarce_batches):
    _scenario, problem, lp, start = scarce_batches[0]
    everyone = np.ones(problem.num_orders, dtype=bool)
    assert len(geographic_blocks(problem, everyone, 15)) >= 4
    # 2.5 s for two sweeps, one task at a time, a clock that stands still: the first
    # sweep has 1.25 s (one block of a second), the second all 2.5 s (two blocks)
    units, details = improve_in_parallel(
        problem, start, lp, everyone, PARAMS, lambda: 0.0, 2.5, InProcessExecutor()
    )
    assert details["blocks"] == 3
    assert evaluate(problem, units).total_cost <= evaluate(problem, start).total_cost + 1e-9
    # no time at all: nothing is solved
    _units, details = improve_in_parallel(
        problem, start, lp, everyone, PARAMS, lambda: 0.0, 0.5, InProcessExecutor()
    )
    assert details["blocks"] == 0


def test_a_block_answer_that_costs_more_is_not_taken(scarce_batches):
    from solver.parallel_blocks import BlockAnswer, merge_blocks

    _scenario, problem, _lp, start = scarce_batches[0]
    everyone = np.ones(problem.num_orders, dtype=bool)
    first, second = geographic_blocks(problem, everyone, 15)[:2]
    cands = [np.flatnonzero(b[problem.line_order[problem.cand_line]]) for b in (first, second)]
    # the first block leaves everything unfilled (dearer), the second keeps its units
    answers = [
        BlockAnswer(cands[0], np.zeros(cands[0].size, dtype=np.int64), "optimal", 0.0),
        BlockAnswer(cands[1], start[cands[1]], "optimal", 0.0),
    ]
    merged, taken = merge_blocks(problem, start, [first, second], answers)
    assert taken == 0 and np.array_equal(merged, start)


def test_the_sweep_is_deterministic(scarce_batches):
    _scenario, problem, lp, start = scarce_batches[1]
    everyone = np.ones(problem.num_orders, dtype=bool)
    first, _ = improve_in_parallel(
        problem, start, lp, everyone, PARAMS, lambda: 0.0, 1e9, InProcessExecutor()
    )
    again, _ = improve_in_parallel(
        problem, start, lp, everyone, PARAMS, lambda: 0.0, 1e9, InProcessExecutor()
    )
    assert np.array_equal(first, again)


def test_shared_profile_and_move_limits_hold(scarce_batches):
    """Daily orders limits, channel shares and a move limit bind: each block gets its
    share of each, and the merged answer keeps all of them."""
    for _scenario, problem, lp, start in scarce_batches:
        start_orders = node_orders(problem, start)
        limited = replace(
            problem,
            node_order_limit=start_orders + 1,
            line_share=problem.line_sku.copy(),
            share_cap=np.bincount(
                problem.line_sku[problem.cand_line], weights=start, minlength=problem.sku_ids.size
            ).astype(np.int64)
            + 1,
            churn=Churn(current=start, max_moves=12),
        )
        everyone = np.ones(problem.num_orders, dtype=bool)
        units, _details = improve_in_parallel(
            limited, start, lp, everyone, PARAMS, lambda: 0.0, 1e9, InProcessExecutor()
        )
        assert evaluate(limited, units).total_cost <= evaluate(limited, start).total_cost + 1e-9
        assert fits(limited, units)
        assert np.all(node_orders(limited, units) <= limited.node_order_limit)
        assert np.all(share_used(limited, units) <= limited.share_cap)
        assert moved_orders(limited, units).sum() <= 12


def test_optimize_through_an_executor_bounds_the_optimum_and_records_its_tasks(scarce_batches):
    from solver.batch import optimize

    params = OptimizeParams(
        time_limit=20, rel_gap=1e-6, exact_orders=0, exact_candidates=0,
        joint_lp_colliding_share=0.0, exact_mip_columns=0, first_order_columns=10**9,
        support_block_orders=15, support_block_seconds=2,
    )  # fmt: skip
    ran = 0
    for scenario, problem, _lp, _start in scarce_batches:
        model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
        optimum = solve_mip(model, MipParams(rel_gap=0.0, time_limit=60)).objective
        executor = InProcessExecutor()
        events: list[dict] = []
        started = time.perf_counter()
        result = optimize(
            problem,
            params,
            lambda s=started: time.perf_counter() - s,
            lambda _phase, details, events=events: events.append(details),
            executor,
        )
        # the progress display counts the tasks done
        assert events and all("tasks" in details for details in events)
        assert events[-1]["tasks"] <= executor.tasks
        assert result.lower_bound <= optimum + 1e-6 <= result.cost.total_cost + 2e-6
        assert check(scenario, assignments_frame(problem, result.units)).feasible
        assert result.stats["executor"]["executor"] == "in-process"
        if "support_blocks" in result.stats:
            assert result.stats["support_blocks"]["tasks"] == executor.tasks > 0
            ran += 1
    assert ran >= 1
