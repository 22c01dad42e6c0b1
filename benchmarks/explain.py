"""What explaining a batch costs next to solving it: ``explanations.jsonl`` for every
order of a generated scenario, against the solve of the same batch in the same process.

    .venv/bin/python -m benchmarks.explain [--orders 20000] [--time-limit 60] [--repeat 1]

Protocol: the scenario of the README's 20,000-order row (``omniroute generate --orders
20000 --stores 1000 --warehouses 12 --skus 3000 --seed 11``), solved by
``router.run.solve_scenario`` (optimize, the given time limit, seed 0), then explained
by ``router.explain.explain_batch`` (no counterfactuals above 500 orders, as
``omniroute solve`` does) and the JSON lines serialised as ``write_answer`` does. Both
timed with perf_counter; the target is explain <= 20% of solve.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from router.explain import explain_batch
from router.generate import generate_scenario
from router.run import json_safe, solve_scenario
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
        started = time.perf_counter()
        output = solve_scenario(scenario, params=OptimizeParams(time_limit=args.time_limit))
        solve = time.perf_counter() - started
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            explanations = explain_batch(output.problem, output.result)
            lines = [json.dumps(json_safe(e), allow_nan=False) for e in explanations]
            times.append(time.perf_counter() - started)
    explain = statistics.median(times)
    print(
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}: "
        f"{output.problem.num_orders:,} orders, solve {solve:.1f} s ({output.result.status}), "
        f"explain {explain:.2f} s (median of {len(times)}) = {explain / solve:.1%} of the solve; "
        f"{sum(len(line) for line in lines) / len(lines):.0f} bytes per order"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
