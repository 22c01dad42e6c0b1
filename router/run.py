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
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from router.modes import MODES
from router.problem import Problem, build_problem
from router.scenario import Scenario, load_scenario
from solver.batch import OptimizeParams, Progress, RoutingResult, optimize, solve_greedy
from solver.executor import Executor

STRATEGIES = ("optimize", "greedy")


@dataclass(frozen=True)
class RunOutput:
    scenario: Scenario
    problem: Problem
    result: RoutingResult
    assignments: pd.DataFrame
    summary: dict
    stopped_by: int | None = None
    """The signal (SIGINT, SIGTERM) that stopped the solve early, if one did."""


def solve_scenario(
    scenario: Scenario,
    *,
    strategy: str = "optimize",
    params: OptimizeParams | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> RunOutput:
    """Solve a loaded scenario and verify the answer with the independent checker.

    ``executor`` runs the optimizer's independent tasks elsewhere (e.g.
    ``router.ray_executor.RayExecutor``); default: none, the usual solve."""
    from router.checker import check

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    params = params or OptimizeParams()
    started = time.perf_counter()
    problem = build_problem(scenario)
    stop = StopRequest()
    if strategy == "greedy":
        result = solve_greedy(problem)
    else:
        with stop.on_signals():
            result = optimize(problem, params, stop.clock(started), progress, executor)
        if stop.signum is not None:
            # Feasible and bounded like any answer, but the search was cut short.
            details = {**result.stats, "stopped_by": signal.Signals(stop.signum).name}
            result = replace(result, status="interrupted", stats=details)
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
    return RunOutput(scenario, problem, result, assignments, summary, stop.signum)


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM during a solve: stop early, keep the best answer.

    While :meth:`on_signals` is active, the first signal only records itself;
    the clock handed to the solver (:meth:`clock`) then returns ``inf``, so
    every step of the solver sees its time up and a running HiGHS solve is
    stopped through its interrupt callbacks. The answer found so far is then
    checked and written as usual, with status ``interrupted``. A second signal
    aborts at once (the default action of the signal: nothing is written).
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def clock(self, started: float):
        return lambda: math.inf if self.signum is not None else time.perf_counter() - started

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        print(
            f"omniroute: {signal.Signals(signum).name} received, stopping: the best answer so far "
            "will be checked and written (send it again to abort)",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM for the duration of the block (main thread only:
        elsewhere, e.g. in a server's worker thread, signals stay as they are)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def solve_folder(
    scenario_dir: str | Path,
    out_dir: str | Path,
    *,
    strategy: str = "optimize",
    params: OptimizeParams | None = None,
    progress: Progress | None = None,
    counterfactuals: bool | None = None,
    executor: Executor | None = None,
) -> RunOutput:
    """Load, solve, explain; write ``assignments.csv``, ``summary.json`` and
    ``explanations.jsonl`` atomically.

    ``counterfactuals``: compute each order's counterfactual (default: for batches
    of up to ``router.explain.COUNTERFACTUAL_MAX_ORDERS`` orders). ``executor``: see
    :func:`solve_scenario`.
    """
    from router.explain import explain_batch

    scenario = load_scenario(scenario_dir)
    output = solve_scenario(
        scenario, strategy=strategy, params=params, progress=progress, executor=executor
    )
    if progress is not None:
        progress("explaining", {})
    started = time.perf_counter()
    explanations = explain_batch(output.problem, output.result, with_counterfactual=counterfactuals)
    summary = {
        **output.summary,
        "explain_seconds": round(time.perf_counter() - started, 3),
        # Where the answer came from, so `omniroute report OUT` finds its scenario.
        "scenario_dir": str(Path(scenario_dir).resolve()),
    }
    write_answer(Path(out_dir), output.assignments, summary, explanations)
    return replace(output, summary=summary)


ASSIGNMENT_EXTRA_COLUMNS = ("km", "handling_cost", "shipping_cost")
"""Per-row columns written after the format's four (docs/scenario-format.md)."""


def assignments_frame(problem: Problem, units: np.ndarray) -> pd.DataFrame:
    """One row per (line, node) with units, lines in scenario order.

    After the format's four columns come the row's distance and cost (see
    :data:`ASSIGNMENT_EXTRA_COLUMNS`): ``km`` from the node to the customer (0 for a
    pickup order), ``handling_cost`` (qty x handling) and ``shipping_cost``, the
    whole cost of the row's shipment on the shipment's first row and 0 on its other
    rows, so each order's rows sum exactly to its shipping.
    """
    used = np.flatnonzero(units > 0)
    lines = problem.cand_line[used]
    nodes = problem.cand_node[used]
    pairs = problem.cand_pair[used]
    qty = units[used].astype(np.int64)
    # ``used`` is sorted by line, and lines by order: the first row of each shipment
    # (order, node) in file order carries its shipping cost.
    _, first_row = np.unique(pairs, return_index=True)
    shipping = np.zeros(used.size)
    shipping[first_row] = problem.pair_ship_cost[pairs[first_row]]
    pickup = problem.order_pickup[problem.line_order[lines]] >= 0
    frame = pd.DataFrame(
        {
            "order_id": problem.order_ids[problem.line_order[lines]],
            "line_id": problem.line_ids[lines],
            "node_id": problem.node_ids[nodes],
            "qty": qty,
            "km": np.where(pickup, 0.0, problem.pair_km[pairs]),
            "handling_cost": qty * problem.handling[nodes],
            "shipping_cost": shipping,
        }
    )
    if problem.line_kit is not None:
        frame["kit_line"] = problem.line_kit[lines]  # the kit line a component row serves
    if problem.pair_profile_cost is not None and problem.order_late is not None:
        # Profiles (docs/profiles.md): the profile's part of the shipment's cost
        # moves to its own column, so shipping_cost stays the format's.
        profile = np.zeros(used.size)
        profile[first_row] = problem.pair_profile_cost[pairs[first_row]]
        frame["shipping_cost"] = shipping - profile
        frame["profile_cost"] = profile
        frame["promise_late"] = problem.order_late[problem.line_order[lines]]
        credit = problem.cand_credit[used] if problem.cand_credit is not None else 0.0
        frame["clearance_credit"] = qty * credit
    if problem.pair_mode is not None:
        # The shipment's fulfilment mode (router.modes), on each of its rows.
        frame["mode"] = np.asarray(MODES, dtype=object)[problem.pair_mode[pairs]]
    if problem.order_origin is not None and (problem.order_origin >= 0).any():
        origin = problem.order_origin[problem.line_order[lines]]
        frame["origin_store"] = np.where(origin >= 0, problem.node_ids[np.maximum(origin, 0)], "")
    return frame


def write_answer(
    out_dir: Path,
    assignments: pd.DataFrame,
    summary: dict,
    explanations: list[dict] | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """Write the answer's files (``extra``: more of them, name to text) so that a
    reader never sees a half-written answer: each is written in a staging folder,
    then moved into place, ``summary.json`` last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".omniroute-", dir=out_dir))
    names = ["assignments.csv"]
    try:
        assignments.to_csv(staging / "assignments.csv", index=False)
        for name, text in (extra or {}).items():
            (staging / name).write_text(text)
            names.append(name)
        if explanations is not None:
            with open(staging / "explanations.jsonl", "w", encoding="utf-8") as file:
                # Every number of an explanation is finite by construction (costs,
                # distances, prices); allow_nan=False would catch a bug.
                for explanation in explanations:
                    file.write(json.dumps(explanation, allow_nan=False) + "\n")
            names.append("explanations.jsonl")
        # allow_nan=False: Infinity and NaN are not JSON; _summary has replaced them.
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        names.append("summary.json")
        for name in names:
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
    profile: dict = {}
    if problem.pair_profile_cost is not None:
        used = (
            np.bincount(problem.cand_pair, weights=result.units, minlength=problem.pair_order.size)
            > 0
        )
        profile_cost = float(problem.pair_profile_cost[used].sum())
        late = problem.order_ids[problem.order_late].tolist()
        credit = 0.0
        if problem.cand_credit is not None:
            credit = float((problem.cand_credit * result.units).sum())
        modes = {}
        if problem.pair_mode is not None:
            counts = np.bincount(problem.pair_mode[used], minlength=len(MODES))
            modes = {"shipments_by_mode": dict(zip(MODES, counts.tolist(), strict=True))}
        profile = {
            **modes,
            "profile_cost": round(profile_cost, 6),
            "clearance_credit": round(credit, 6),
            "late_orders": len(late),
            "late_order_ids": late[:100],
            "as_of": scenario.profiles.as_of.isoformat(),
        }
    summary = {
        "scenario": scenario.name,
        "status": result.status,
        "strategy": strategy,
        "total_cost": round(cost.total_cost, 6),
        "shipping": round(cost.shipping - profile.get("profile_cost", 0.0), 6),
        "handling": round(cost.handling + profile.get("clearance_credit", 0.0), 6),
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
        **profile,
        "details": result.stats,
    }
    return json_safe(summary)
