"""What explaining a batch costs next to solving it: ``explanations.jsonl`` for every
order of a generated scenario, against the solve of the same batch in the same process.

    .venv/bin/python -m benchmarks.explain [--orders 20000] [--time-limit 60] [--repeat 1]

Protocol: the scenario of the README's 20,000-order row (``omniroute generate --orders
20000 --stores 1000 --warehouses 12 --skus 3000 --seed 11``), solved by
``router.run.solve_scenario`` (optimize, the given time limit, seed 0), then explained
by ``router.explain.explain_batch`` (no counterfactuals above 500 orders, as
``omniroute solve`` does) and the JSON lines serialised as ``write_answer`` does. Both
timed with perf_counter (wall) and process_time (CPU of the process, every thread);
the target is explain <= 20% of solve. On a shared machine the wall times of the
explanation grow with the load while a solve that runs to its time limit does not:
compare the CPU times there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from router.explain import explain_batch
from router.generate import generate_scenario
from router.run import solve_scenario
from router.scenario import load_scenario
from solver.batch import OptimizeParams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__)
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1, help="Explanation runs to time.")
    parser.add_argument("--scenario", type=Path, help="An existing scenario folder instead.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.scenario
        if folder is None:
            folder = Path(tmp) / "scenario"
            stores = 1000 if args.orders >= 5000 else 300
            generate_scenario(
                folder,
                orders=args.orders,
                stores=stores,
                warehouses=12 if args.orders >= 5000 else 10,
                skus=3000 if args.orders >= 5000 else 800,
                seed=11,
            )
        scenario = load_scenario(folder)
        started, cpu = time.perf_counter(), time.process_time()
        output = solve_scenario(scenario, params=OptimizeParams(time_limit=args.time_limit))
        solve, solve_cpu = time.perf_counter() - started, time.process_time() - cpu
        times, cpus = [], []
        for _ in range(args.repeat):
            started, cpu = time.perf_counter(), time.process_time()
            explanations = explain_batch(output.problem, output.result)
            lines = [json.dumps(e, allow_nan=False) for e in explanations]
            times.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
    explain, explain_cpu = statistics.median(times), statistics.median(cpus)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, python {platform.python_version()}: "
        f"{output.problem.num_orders:,} orders ({output.result.status})\n"
        f"  solve   wall {solve:6.1f} s  cpu {solve_cpu:6.1f} s\n"
        f"  explain wall {explain:6.1f} s  cpu {explain_cpu:6.1f} s (median of {len(times)}): "
        f"{explain / solve:.1%} of the solve's wall time, {explain_cpu / solve_cpu:.1%} of its "
        f"cpu; {sum(len(line) for line in lines) / len(lines):.0f} bytes per order"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
