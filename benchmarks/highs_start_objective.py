"""How often HiGHS, given a start solution, reports an objective that is not ``c.x``.

For each seed, a small scarce batch is generated (8-20 orders, 3-11 stores,
1-3 warehouses, 3-14 SKUs, stock divided by 1-8, a fifth of the orders picked
up, split penalty 0 or 6, unfilled penalty 0, 30 or 150), its unpruned model is
solved with the greedy answer as the start (gap 1e-4, then 0), and every result
whose reported objective or solution failed :func:`solver.mip.check_solution`
is listed with what :func:`solver.mip.solve_mip` did about it.

    python -m benchmarks.highs_start_objective --seeds 300
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from router.generate import generate_scenario
from router.problem import build_problem
from router.scenario import load_scenario
from solver.greedy import greedy_units
from solver.mip import MipParams, ObjectiveCheck, solve_mip
from solver.model import ModelInput, build_model, start_vector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300, help="seeds 0..N-1")
    args = parser.parse_args()
    outcomes: Counter[str] = Counter()
    seeds_hit = set()
    with tempfile.TemporaryDirectory() as root:
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            folder = Path(root) / f"s{seed}"
            generate_scenario(
                folder,
                orders=int(rng.integers(8, 20)),
                stores=int(rng.integers(3, 12)),
                warehouses=int(rng.integers(1, 4)),
                skus=int(rng.integers(3, 15)),
                seed=seed,
                scarcity=float(rng.choice([1, 2, 4, 8])),
                pickup_share=0.2,
                split_penalty=float(rng.choice([0, 6])),
                unfilled_penalty=float(rng.choice([0, 30, 150])),
            )
            problem = build_problem(load_scenario(folder))
            part = ModelInput.whole(problem)
            model, v, _keys, _rows = build_model(problem, part)
            start = start_vector(problem, part, v, greedy_units(problem))
            for gap in (1e-4, 0.0):
                result = solve_mip(model, MipParams(time_limit=10, rel_gap=gap), start=start)
                outcomes[result.check] += 1
                if result.check != ObjectiveCheck.AGREED:
                    seeds_hit.add(seed)
                    print(
                        f"seed {seed} gap {gap:g}: HiGHS reported {result.reported_objective:.6f}; "
                        f"returned {result.objective:.6f} ({result.check})"
                    )
    counts = ", ".join(f"{outcome}: {n}" for outcome, n in outcomes.items())
    print(f"{len(seeds_hit)} of {args.seeds} seeds disagreed; results: {counts}")


if __name__ == "__main__":
    main()
