"""Scaling on Ray: one batch in this process and on 1, 2, ... Ray workers (issue 11, "Targets").

    .venv/bin/python -m benchmarks.ray_scaling [--scenario DIR ...]
        [--shape ORDERS,STORES,WAREHOUSES,SKUS ...] [--seed 3] [--regime scarce]
        [--executors in-process,1,2] [--ray-address ADDRESS] [--time-limit 60]
        [--gap G] [--cache DIR] [--out FILE]

Protocol (benchmarks/README.md, "Scaling on Ray"):

1. Scenarios: the folders given with ``--scenario``, and for each ``--shape`` the
   folder ``omniroute generate`` writes for it (``--seed``, ``--regime``; cached under
   ``--cache``, never regenerated).
2. Each (scenario, executor) runs in its own fresh interpreter (``--worker``):
   ``router.run.solve_scenario`` (optimize, ``OptimizeParams(time_limit, seed=1)``)
   with the executor passed in (with ``--gap G``, ``rel_gap=G`` too: the run stops
   once its answer is proven within G, so *seconds* is its time to that gap): ``in-process`` is ``solver.executor.InProcessExecutor``,
   a number N is ``router.ray_executor.RayExecutor(workers=N)`` (a local Ray runtime
   with N CPUs), ``cluster`` is ``RayExecutor(address=--ray-address)`` (a running
   cluster, e.g. ``ray start --head`` plus a second node). The answer is graded by
   the independent checker inside ``solve_scenario``. Greedy runs once per scenario
   the same way (strategy ``greedy``) for the "vs greedy" column.
3. Recorded per run: seconds (``solve_seconds``: build, optimize; the time limit's
   scope), cost, proven lower bound and own gap, cost over greedy's, tasks the
   executor ran and retried, the solving process's peak RSS (``ru_maxrss``, which
   includes neither Ray's workers nor its object store) and the largest peak RSS
   (``VmHWM``) of the Ray worker processes still alive at the end of the solve.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.route_latency import cpu_model
from benchmarks.rules import load_average
from router.generate import generate_scenario

REPO = Path(__file__).resolve().parent.parent

IN_PROCESS = "in-process"
CLUSTER = "cluster"
GREEDY = "greedy"


# --- one run, in its own process --------------------------------------------------------


def run_one(
    folder: Path, executor: str, time_limit: float, address: str | None, gap: float | None = None
) -> dict:
    """Solve ``folder`` with ``executor`` in a fresh interpreter (``--worker``); its row."""
    with tempfile.TemporaryDirectory(prefix="omniroute-ray-scaling-") as tmp:
        result = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "benchmarks.ray_scaling",
            "--worker", str(folder), executor, str(time_limit), address or "", str(result),
            "" if gap is None else str(gap),
        ]  # fmt: skip
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=10 * time_limit + 900
        )
        if result.is_file():
            return json.loads(result.read_text())
        tail = done.stderr.strip().splitlines()[-1:]
        return {"status": "crashed", "error": "; ".join([f"exit {done.returncode}", *tail])}


def worker(
    folder: Path, executor: str, time_limit: float, address: str, out: Path, gap: float | None
) -> int:
    """Body of one run: load, solve through ``solve_scenario`` with the executor, measure."""
    from router.run import solve_scenario
    from router.scenario import load_scenario
    from solver.batch import OptimizeParams

    row: dict = {"executor": executor}
    try:
        scenario = load_scenario(folder)
        params = OptimizeParams(time_limit=time_limit, seed=1)
        if gap is not None:
            params = replace(params, rel_gap=gap)
        if executor == GREEDY:
            output = solve_scenario(scenario, strategy="greedy")
        else:
            with _executor(executor, address or None) as running:
                output = solve_scenario(scenario, params=params, executor=running)
                if executor != IN_PROCESS:
                    row["ray_worker_peak_rss_mb"] = _ray_worker_peak_mb()
        summary = output.summary
        stats = summary["details"].get("executor", {}) if executor != GREEDY else {}
        row.update(
            status=summary["status"],
            orders=summary["orders"],
            seconds=summary["solve_seconds"],
            cost=summary["total_cost"],
            lower_bound=summary["lower_bound"],
            own_gap=summary["gap"],
            workers=stats.get("workers"),
            nodes=stats.get("nodes"),
            tasks=stats.get("tasks"),
            retries=stats.get("retries"),
        )
    except Exception as exc:  # a failure is a row to report, not a crash
        traceback.print_exc()
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    # Linux reports ru_maxrss in KiB.
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.write_text(json.dumps(row))
    return 0


class _executor:
    """The executor a run asks for, closed afterwards (a local Ray runtime shut down)."""

    def __init__(self, name: str, address: str | None) -> None:
        from solver.executor import InProcessExecutor

        if name == IN_PROCESS:
            self.executor = InProcessExecutor()
            return
        from router.ray_executor import RayExecutor

        if name == CLUSTER:
            self.executor = RayExecutor(address=address)
        else:
            self.executor = RayExecutor(workers=int(name))

    def __enter__(self):
        return self.executor

    def __exit__(self, *exc) -> None:
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()


def _ray_worker_peak_mb() -> float | None:
    """Largest peak RSS (VmHWM) among this machine's Ray worker processes (``ray::...``)."""
    peak = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::"):
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kib = int(line.split()[1])
                    peak = max(peak or 0.0, round(kib / 1024, 1))
        except OSError:
            continue
    return peak


# --- the table ------------------------------------------------------------------------


def scenarios(args) -> list[Path]:
    """The given folders, then one generated folder per ``--shape`` (cached)."""
    folders = [Path(folder) for folder in args.scenario]
    for shape in args.shape:
        orders, stores, warehouses, skus = (int(part) for part in shape.split(","))
        name = f"{orders}o-{stores}s-{warehouses}w-{skus}k-{args.regime}-seed{args.seed}"
        folder = args.cache / name
        if not (folder / "scenario.json").exists():
            generate_scenario(
                folder,
                orders=orders,
                stores=stores,
                warehouses=warehouses,
                skus=skus,
                seed=args.seed,
                regime=args.regime,
                overwrite=True,
            )
        folders.append(folder)
    return folders


def derive(rows: list[dict]) -> None:
    """Each row's cost over greedy's and its speed over the one-worker run, in place."""
    greedy = next((r for r in rows if r["executor"] == GREEDY and "cost" in r), None)
    one = next((r for r in rows if r["executor"] == "1" and r.get("seconds")), None)
    for row in rows:
        if greedy is not None and "cost" in row and greedy["cost"]:
            row["vs_greedy"] = round(row["cost"] / greedy["cost"], 6)
        if one is not None and row.get("seconds") and row["executor"] != GREEDY:
            row["speedup"] = round(one["seconds"] / row["seconds"], 3)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| orders | executor | workers | status | seconds | x 1 worker | cost | own gap "
        "| vs greedy | peak RSS MB | Ray worker peak MB | tasks | retries |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_fmt(r.get('orders'), '{:,}')} | {r['executor']} | {_fmt(r.get('workers'))} "
            f"| {r.get('status', '-')} | {_fmt(r.get('seconds'), '{:.1f}')} "
            f"| {_fmt(r.get('speedup'), '{:.2f}')} | {_fmt(r.get('cost'), '{:,.2f}')} "
            f"| {_fmt(r.get('own_gap'), '{:.3%}')} | {_fmt(r.get('vs_greedy'), '{:.4f}')} "
            f"| {_fmt(r.get('peak_rss_mb'), '{:,.0f}')} "
            f"| {_fmt(r.get('ray_worker_peak_rss_mb'), '{:,.0f}')} "
            f"| {_fmt(r.get('tasks'))} | {_fmt(r.get('retries'))} |"
        )
    return "\n".join(lines)


def _fmt(value, pattern: str = "{}") -> str:
    return "-" if value is None else pattern.format(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        folder, executor, limit, address, out, gap = argv[1:7]
        return worker(
            Path(folder), executor, float(limit), address, Path(out), float(gap) if gap else None
        )
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ray_scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scenario", action="append", default=[], help="A scenario folder.")
    parser.add_argument(
        "--shape", action="append", default=[], help="ORDERS,STORES,WAREHOUSES,SKUS to generate."
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--regime", default="scarce")
    parser.add_argument(
        "--executors",
        default=f"{IN_PROCESS},1,2",
        help=f"Comma-separated: {IN_PROCESS}, a number of local Ray workers, or {CLUSTER}.",
    )
    parser.add_argument("--ray-address", default=None, help=f"The cluster of '{CLUSTER}'.")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument(
        "--gap",
        type=float,
        default=None,
        help="Stop each run once its answer is proven within this relative gap (rel_gap).",
    )
    parser.add_argument("--cache", type=Path, default=Path("bench-cache"))
    parser.add_argument("--out", type=Path, default=None, help="Write the rows as JSON here.")
    args = parser.parse_args(argv)
    executors = args.executors.split(",")
    bad = [e for e in executors if e not in (IN_PROCESS, CLUSTER) and not e.isdigit()]
    bad_gap = args.gap is not None and not 0 < args.gap < 1
    if bad or bad_gap or args.time_limit <= 0 or (CLUSTER in executors and not args.ray_address):
        parser.print_usage(sys.stderr)
        print(
            f"executors must be {IN_PROCESS}, a number or {CLUSTER} (with --ray-address), "
            f"got {bad or args.executors}; time limit {args.time_limit} must be > 0; "
            f"gap {args.gap} must be in (0, 1)",
            file=sys.stderr,
        )
        return 2
    if not args.scenario and not args.shape:
        args.shape = ["5000,500,10,1500"]

    report: dict = {
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "time_limit": args.time_limit,
        "gap": args.gap,
        "rows": [],
    }
    loads = [load_average()]
    for folder in scenarios(args):
        rows = []
        for executor in [GREEDY, *executors]:
            started = time.perf_counter()
            row = run_one(folder, executor, args.time_limit, args.ray_address, args.gap)
            row.update(scenario=folder.name, wall_seconds=round(time.perf_counter() - started, 2))
            loads.append(load_average())
            print(f"{folder.name} {executor}: {json.dumps(row)}", flush=True)
            rows.append(row)
        derive(rows)
        report["rows"].extend(rows)
        _write(args.out, report)
    report["load_average_1min"] = [min(loads), max(loads)]
    print()
    print(
        f"machine: {report['machine']}; load average (1 min) {min(loads):.1f}-{max(loads):.1f}; "
        f"{report['date']}; time limit {args.time_limit:g} s"
        + ("" if args.gap is None else f"; stop at gap {args.gap:g}")
    )
    print(markdown(report["rows"]))
    _write(args.out, report)
    return 0


def _write(out: Path | None, report: dict) -> None:
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
