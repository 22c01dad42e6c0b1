"""One batch run, end to end: scenario folder in, answer folder out.

This is the one way through for the CLI, the benchmarks and the tests:
load and validate (``router.scenario``), prepare arrays (``router.problem``),
solve (``solver``), check the answer with the independent checker, write.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from router.problem import Problem, build_problem
from router.scenario import Scenario, load_scenario
from solver.batch import OptimizeParams, Progress, RoutingResult, optimize, solve_greedy

STRATEGIES = ("optimize", "greedy")


@dataclass(frozen=True)
class RunOutput:
    scenario: Scenario
    problem: Problem
    result: RoutingResult
    assignments: pd.DataFrame
    summary: dict


def solve_scenario(
    scenario: Scenario,
    *,
    strategy: str = "optimize",
    params: OptimizeParams | None = None,
    progress: Progress | None = None,
) -> RunOutput:
    """Solve a loaded scenario and verify the answer with the independent checker."""
    from router.checker import check

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    params = params or OptimizeParams()
    started = time.perf_counter()
    problem = build_problem(scenario)
    if strategy == "greedy":
        result = solve_greedy(problem)
    else:
        result = optimize(problem, params, lambda: time.perf_counter() - started, progress)
    seconds = time.perf_counter() - started
    assignments = assignments_frame(problem, result.units)
    report = check(scenario, assignments)
    if not report.feasible or not np.isclose(
        report.total_cost, result.cost.total_cost, rtol=1e-9, atol=1e-6
    ):
        # A solver bug, never bad input: refuse to write an answer we cannot vouch for.
        raise RuntimeError(
            f"internal error: the {strategy} answer failed the independent check "
            f"(feasible={report.feasible}, checker cost {report.total_cost!r} "
            f"vs solver cost {result.cost.total_cost!r})"
        )
    summary = _summary(scenario, problem, result, strategy, seconds, params)
    return RunOutput(scenario, problem, result, assignments, summary)


def solve_folder(
    scenario_dir: str | Path,
    out_dir: str | Path,
    *,
    strategy: str = "optimize",
    params: OptimizeParams | None = None,
    progress: Progress | None = None,
) -> RunOutput:
    """Load, solve and write ``assignments.csv`` and ``summary.json`` atomically."""
    scenario = load_scenario(scenario_dir)
    output = solve_scenario(scenario, strategy=strategy, params=params, progress=progress)
    write_answer(Path(out_dir), output.assignments, output.summary)
    return output


def assignments_frame(problem: Problem, units: np.ndarray) -> pd.DataFrame:
    """One row per (line, node) with units, lines in scenario order."""
    used = np.flatnonzero(units > 0)
    lines = problem.cand_line[used]
    return pd.DataFrame(
        {
            "order_id": problem.order_ids[problem.line_order[lines]],
            "line_id": problem.line_ids[lines],
            "node_id": problem.node_ids[problem.cand_node[used]],
            "qty": units[used].astype(np.int64),
        }
    )


def write_answer(out_dir: Path, assignments: pd.DataFrame, summary: dict) -> None:
    """Write both files so that a reader never sees a half-written answer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".omniroute-", dir=out_dir))
    try:
        assignments.to_csv(staging / "assignments.csv", index=False)
        # allow_nan=False: Infinity and NaN are not JSON; _summary has replaced them.
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        for name in ("assignments.csv", "summary.json"):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def json_safe(value):
    """``value`` with every non-finite float (inf, nan) replaced by None, recursively."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _summary(scenario, problem, result, strategy, seconds, params) -> dict:
    cost = result.cost
    units = int(problem.line_qty.sum())
    allocated = units - cost.unfilled_units
    store_units = int(result.units[problem.node_is_store[problem.cand_node]].sum())
    summary = {
        "scenario": scenario.name,
        "status": result.status,
        "strategy": strategy,
        "total_cost": round(cost.total_cost, 6),
        "shipping": round(cost.shipping, 6),
        "handling": round(cost.handling, 6),
        "splits": cost.splits,
        "unfilled_units": cost.unfilled_units,
        "lower_bound": None if result.lower_bound is None else round(result.lower_bound, 6),
        "gap": None if result.gap is None else round(result.gap, 8),
        "solve_seconds": round(seconds, 3),
        "orders": problem.num_orders,
        "lines": problem.num_lines,
        "units": units,
        "shipments": cost.shipments,
        "fill_rate": round(allocated / units, 6) if units else 1.0,
        "store_unit_share": round(store_units / allocated, 6) if allocated else 0.0,
        "time_limit": params.time_limit if strategy == "optimize" else None,
        "seed": params.seed if strategy == "optimize" else None,
        "details": result.stats,
    }
    return json_safe(summary)
