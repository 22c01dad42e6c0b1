"""One re-optimization, end to end: a scenario, the orders' current routing and a
churn rule in; the new routing, a plan (before/after KPIs, the moves) out.

The one way through for ``omniroute reoptimize`` and ``POST /v1/reoptimizations``:
the current routing is checked by the independent checker (it must be feasible on
the scenario's stock, which holds what the orders hold now), turned into units per
line candidate of the same :class:`router.problem.Problem` a batch is solved on,
re-decided by :func:`solver.reoptimize.reoptimize`, and the answer checked again.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from router.problem import Problem, build_problem
from router.run import StopRequest, assignments_frame, json_safe
from router.scenario import Scenario, ScenarioError
from solver.batch import OptimizeParams, Progress, RoutingResult
from solver.churn import Churn, moved_orders
from solver.cost import order_costs
from solver.reoptimize import reoptimize

NEAR_KM = 5.0
"""A store shipment within this distance of the customer counts as *near*."""


@dataclass(frozen=True)
class ReoptimizeOutput:
    scenario: Scenario
    problem: Problem
    result: RoutingResult
    assignments: pd.DataFrame
    """The new routing, in the format of ``assignments.csv``."""
    moves: pd.DataFrame
    """One row per order: ``order_id, moved, old_nodes, new_nodes, old_cost, new_cost``."""
    summary: dict


def parse_max_moves(text: str, orders: int) -> int:
    """``"10%"`` of ``orders`` (rounded down) or a whole number of orders."""
    value = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", value)
    if match:
        share = float(match.group(1))
        if share > 100:
            raise ValueError(f"--max-moves {text!r}: a share must be at most 100%")
        return math.floor(share / 100 * orders + 1e-9)
    if re.fullmatch(r"\d+", value):
        return int(value)
    raise ValueError(f"--max-moves {text!r}: expected a number of orders (250) or a share (10%)")


def current_units(problem: Problem, scenario: Scenario, current: pd.DataFrame, file: str):
    """Units per line candidate of ``current`` (rows as ``assignments.csv``).

    The routing must be feasible on the scenario (checked by the independent
    checker); otherwise :class:`ScenarioError` names the file and the first
    broken rule.
    """
    from router.checker import check

    report = check(scenario, current)
    if not report.feasible:
        first = report.violations[0]
        raise ScenarioError(
            file,
            f"the current routing is not feasible on this scenario: {first.message}"
            + (f" ({len(report.violations) - 1} more)" if len(report.violations) > 1 else ""),
        )
    line_index = pd.MultiIndex.from_arrays(
        [problem.order_ids[problem.line_order], problem.line_ids]
    ).get_indexer(pd.MultiIndex.from_arrays([current["order_id"], current["line_id"]]))
    node_index = pd.Index(problem.node_ids).get_indexer(current["node_id"])
    code = problem.cand_line * problem.num_nodes + problem.cand_node
    wanted = line_index.astype(np.int64) * problem.num_nodes + node_index
    position = np.searchsorted(code, wanted)  # candidates are sorted by line, then node
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    np.add.at(units, position, current["qty"].to_numpy(dtype=np.int64))
    return units


def reoptimize_scenario(
    scenario: Scenario,
    current: pd.DataFrame,
    *,
    move_cost: float = 0.0,
    max_moves: int | None = None,
    params: OptimizeParams | None = None,
    progress: Progress | None = None,
    current_file: str = "current assignments",
) -> ReoptimizeOutput:
    """Re-decide the scenario's orders from their ``current`` routing under the churn rule."""
    from router.checker import check

    params = params or OptimizeParams()
    started = time.perf_counter()
    plain = build_problem(scenario)
    held = current_units(plain, scenario, current, current_file)
    problem = plain.replace(churn=Churn(held, move_cost, max_moves))
    stop = StopRequest()
    with stop.on_signals():
        result = reoptimize(problem, params, stop.clock(started), progress)
    seconds = time.perf_counter() - started
    assignments = assignments_frame(problem, result.units)
    report = check(scenario, assignments)
    if (
        not report.feasible
        or not np.isclose(
            report.total_cost + result.cost.move_cost, result.cost.total_cost, rtol=1e-9, atol=1e-6
        )
        or (max_moves is not None and result.cost.moves > max_moves)
    ):
        raise RuntimeError(
            "internal error: the re-optimized routing failed the independent check "
            f"(feasible={report.feasible}, moves={result.cost.moves}, limit={max_moves})"
        )
    moves = moves_frame(problem, result.units)
    before = plan_kpis(plain, held)
    after = plan_kpis(plain, result.units)
    summary = json_safe(
        {
            "scenario": scenario.name,
            "status": "interrupted" if stop.signum is not None else result.status,
            "strategy": "reoptimize",
            "orders": problem.num_orders,
            "move_cost": move_cost,
            "max_moves": max_moves,
            "orders_moved": result.cost.moves,
            "before": before,
            "after": after,
            "saving": round(before["cost"] - after["cost"], 6),
            "saving_share": round((before["cost"] - after["cost"]) / before["cost"], 6)
            if before["cost"] > 0
            else 0.0,
            "objective": round(result.cost.total_cost, 6),
            "lower_bound": None if result.lower_bound is None else round(result.lower_bound, 6),
            "gap": None if result.gap is None else round(result.gap, 8),
            "solve_seconds": round(seconds, 3),
            "time_limit": params.time_limit,
            "details": result.stats,
        }
    )
    return ReoptimizeOutput(scenario, problem, result, assignments, moves, summary)


def plan_kpis(problem: Problem, units: np.ndarray) -> dict:
    """Cost, splits, fill rate, store share and near store shipments of a routing."""
    routed = problem.replace(churn=None)
    cost = order_costs(routed, units).sum()
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    used = pair_units > 0
    shipments = np.bincount(problem.pair_order[used], minlength=problem.num_orders)
    wanted = int(problem.line_qty.sum())
    allocated = int(units.sum())
    store = problem.node_is_store[problem.pair_node[used]]
    store_units = int(units[problem.node_is_store[problem.cand_node]].sum())
    near = store & (problem.pair_km[used] <= NEAR_KM)
    return {
        "cost": round(float(cost), 6),
        "splits": int(np.maximum(shipments - 1, 0).sum()),
        "shipments": int(used.sum()),
        "fill_rate": round(allocated / wanted, 6) if wanted else 1.0,
        "store_unit_share": round(store_units / allocated, 6) if allocated else 0.0,
        "store_shipments_within_5km": round(int(near.sum()) / int(store.sum()), 6)
        if store.any()
        else 0.0,
    }


def moves_frame(problem: Problem, units: np.ndarray) -> pd.DataFrame:
    """Per order: moved or not, its nodes before and after (``;``-joined), its cost before and after."""
    churn = problem.churn
    assert churn is not None
    moved = moved_orders(problem, units)
    plain = problem.replace(churn=None)

    def nodes_of(values: np.ndarray) -> list[str]:
        used = np.flatnonzero(values > 0)
        order = problem.line_order[problem.cand_line[used]]
        names: list[set[str]] = [set() for _ in range(problem.num_orders)]
        for o, n in zip(
            order.tolist(), problem.node_ids[problem.cand_node[used]].tolist(), strict=True
        ):
            names[o].add(str(n))
        return [";".join(sorted(n)) for n in names]

    return pd.DataFrame(
        {
            "order_id": problem.order_ids,
            "moved": moved,
            "old_nodes": nodes_of(churn.current),
            "new_nodes": nodes_of(units),
            "old_cost": np.round(order_costs(plain, churn.current), 6),
            "new_cost": np.round(order_costs(plain, units), 6),
        }
    )


def write_plan(out_dir: Path, output: ReoptimizeOutput) -> None:
    """``assignments.csv``, ``moves.csv`` and ``summary.json``, atomically (see write_answer)."""
    from router.run import write_answer

    write_answer(
        out_dir,
        output.assignments,
        output.summary,
        extra={"moves.csv": output.moves.to_csv(index=False)},
    )
