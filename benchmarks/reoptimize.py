"""Re-optimization of a held batch under churn limits (files; no service).

    .venv/bin/python -m benchmarks.reoptimize [--orders 50000] [--stores 1000]
        [--warehouses 12] [--skus 3000] [--seed 11] [--regimes scarce,plentiful]
        [--shares 0.05,0.1,0.25,none] [--move-cost 0] [--time-limit 110]
        [--cache DIR] [--out FILE]

For each regime: a generated scenario (``omniroute generate``, real geography),
routed by the greedy rule engine (what one-by-one routing at arrival holds), then
re-optimized from that routing with at most ``share`` of the orders moving
(``none``: no limit) by :func:`router.reoptimize.reoptimize_scenario`, the path of
``omniroute reoptimize``. One row per run: cost before and after, saving, orders
moved, objective, proven bound and gap, seconds, peak memory. Every answer is
checked by the independent checker inside ``reoptimize_scenario``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

from benchmarks.route_latency import cpu_model
from router.generate import generate_scenario
from router.reoptimize import reoptimize_scenario
from router.run import solve_scenario
from router.scenario import load_scenario
from solver.batch import OptimizeParams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reoptimize")
    parser.add_argument("--orders", type=int, default=50000)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--skus", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--regimes", default="scarce,plentiful")
    parser.add_argument("--shares", default="0.05,0.1,0.25,none")
    parser.add_argument("--move-cost", type=float, default=0.0)
    parser.add_argument("--time-limit", type=float, default=110.0)
    parser.add_argument("--cache", type=Path, default=Path("bench-cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    rows = []
    for regime in args.regimes.split(","):
        folder = args.cache / f"reopt-{args.orders}o-{args.stores}s-{args.warehouses}w-{regime}-seed{args.seed}"
        if not (folder / "scenario.json").exists():
            generate_scenario(
                folder,
                orders=args.orders,
                stores=args.stores,
                warehouses=args.warehouses,
                skus=args.skus,
                seed=args.seed,
                regime=regime,
            )
        scenario = load_scenario(folder)
        greedy = solve_scenario(scenario, strategy="greedy")
        for share in args.shares.split(","):
            limit = None if share == "none" else int(float(share) * greedy.problem.num_orders)
            started = time.perf_counter()
            output = reoptimize_scenario(
                scenario,
                greedy.assignments,
                move_cost=args.move_cost,
                max_moves=limit,
                params=OptimizeParams(time_limit=args.time_limit),
            )
            seconds = time.perf_counter() - started
            summary = output.summary
            row = {
                "regime": regime,
                "orders": greedy.problem.num_orders,
                "max_moves": limit,
                "before": summary["before"]["cost"],
                "after": summary["after"]["cost"],
                "saving_share": summary["saving_share"],
                "moved": summary["orders_moved"],
                "objective": summary["objective"],
                "lower_bound": summary["lower_bound"],
                "gap": summary["gap"],
                "status": summary["status"],
                "seconds": round(seconds, 1),
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"machine: {cpu_model()}, Python {platform.python_version()}")
    print("| regime | orders | max moves | before | after | saving | moved | gap | status | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        limit = "none" if r["max_moves"] is None else f"{r['max_moves']:,}"
        print(
            f"| {r['regime']} | {r['orders']:,} | {limit} | {r['before']:,.2f} | {r['after']:,.2f} "
            f"| {r['saving_share']:.2%} | {r['moved']:,} | {r['gap']:.2%} | {r['status']} "
            f"| {r['seconds']:.1f} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
