"""In-process latency of routing one order (1 to 5 lines) over a pool of 1,000 stores
and 12 warehouses: ``Pool.route`` with its reservation written to the database, and
quote-only (same read and solve, no write).

    .venv/bin/python -m benchmarks.route_latency [--per-size 400] [--database-url URL]

Protocol (see benchmarks/SERVICE.md): fixed scenario seed, 50 warm-up orders, then
``--per-size`` orders per line count, measured one at a time with perf_counter.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from router.generate import generate_scenario
from router.pool import Pool
from router.pool.routing import Order, OrderLine
from router.pool.scenario_load import load_into_pool
from router.scenario import Scenario, load_scenario

# --- the pool the service benchmarks run on (shared with load.py) -------------------------
# A generated scenario with 1,000 stores and 12 warehouses (fixed seed), loaded into a
# fresh database, and a workload of 1-5 line orders drawn from it.

STORES, WAREHOUSES, SKUS, SEED = 1000, 12, 2000, 1


@dataclass(frozen=True)
class Workload:
    scenario: Scenario
    customers: list[tuple[float, float]]
    skus: list[str]
    weights: list[float]
    line_quantities: list[int]  # the scenario's own qty per line, to draw from

    def order(self, rng: random.Random, order_id: str, lines: int) -> Order:
        """A delivery order of ``lines`` distinct SKUs drawn by stock popularity, each line's
        quantity drawn from the scenario's lines (mostly 1, sometimes 2-4)."""
        chosen: list[str] = []
        while len(chosen) < lines:
            sku = rng.choices(self.skus, self.weights)[0]
            if sku not in chosen:
                chosen.append(sku)
        lat, lon = rng.choice(self.customers)
        return Order(
            order_id,
            tuple(
                OrderLine(f"L{i + 1}", s, rng.choice(self.line_quantities))
                for i, s in enumerate(chosen)
            ),
            lat=lat,
            lon=lon,
        )


def build_scenario(folder: Path | None = None) -> Path:
    folder = folder or Path(tempfile.mkdtemp(prefix="omniroute-bench-")) / "scenario"
    if not (folder / "scenario.json").exists():
        generate_scenario(
            folder,
            orders=3000,
            stores=STORES,
            warehouses=WAREHOUSES,
            skus=SKUS,
            seed=SEED,
            overwrite=True,
        )
    return folder


def workload(folder: Path) -> Workload:
    scenario = load_scenario(folder)
    totals = scenario.inventory.groupby("sku")["available"].sum()
    totals = totals[totals > 0]
    customers = list(
        scenario.orders.drop_duplicates("order_id")[["lat", "lon"]].itertuples(
            index=False, name=None
        )
    )
    return Workload(
        scenario,
        customers,
        [str(s) for s in totals.index],
        [float(v) for v in totals.to_numpy()],
        [int(q) for q in scenario.orders["qty"]],
    )


def loaded_pool(database_url: str, folder: Path, **pool_options) -> tuple[Pool, float]:
    """Open (and migrate) the database, load the scenario; returns the pool and load seconds.
    ``pool_options`` go to :meth:`Pool.open` (``clock``: benchmarks/rules.py fixes it)."""
    # as `omniroute serve` does
    pool = Pool.open(database_url, background_checkpoint=True, **pool_options)
    started = time.perf_counter()
    scenario = load_scenario(folder)
    load_into_pool(pool, scenario)
    return pool, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-size", type=int, default=400)
    parser.add_argument(
        "--database-url", default=None, help="default: a fresh SQLite file in a temporary folder"
    )
    parser.add_argument("--scenario", type=Path, default=None)
    args = parser.parse_args()

    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    folder = build_scenario(args.scenario)
    work = workload(folder)
    pool, load_seconds = loaded_pool(url, folder)
    rng = random.Random(42)
    for i in range(50):
        pool.route(work.order(rng, f"warm{i}", 1 + i % 5), quote_only=i % 2 == 0)

    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; database: {url.split(':', 1)[0]}")
    print(
        f"pool: {pool.read_model().index.size} nodes, "
        f"{len(work.scenario.inventory)} stock rows (loaded in {load_seconds:.1f} s)"
    )
    print(
        f"{'lines':>5} {'mode':>8} {'orders':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
        f"{'filled':>6}"
    )
    for lines in range(1, 6):
        for mode in ("reserve", "quote"):
            times, filled = [], 0
            for i in range(args.per_size):
                order = work.order(rng, f"{mode}{lines}-{i}", lines)
                started = time.perf_counter()
                result = pool.route(order, quote_only=mode == "quote")
                times.append((time.perf_counter() - started) * 1000)
                filled += result.status == "filled"
            print(
                f"{lines:>5} {mode:>8} {len(times):>6} {percentile(times, 0.5):>8.3f} "
                f"{percentile(times, 0.99):>8.3f} {statistics.fmean(times):>8.3f} "
                f"{filled / len(times):>6.0%}"
            )
    pool.close()


if __name__ == "__main__":
    main()
