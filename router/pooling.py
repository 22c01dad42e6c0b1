"""The one-pool study: channel silos against one inventory pool.

The same orders and the same stock, routed two ways:

- **Channel silos** (the set-up before 全渠道一盘货): the online channel (every
  delivery order, and pickups at a warehouse) is served from warehouse stock
  only; the store channel (pickups at a store) from store stock only. Each silo
  is its own scenario, solved on its own; their answers together are one
  answer to the pooled scenario (it is feasible there: a silo only removes
  choices), graded like any other.
- **One pool**: the scenario as it is, every order may use every node in reach.

Then the pool's stock is scaled down by one factor on every (node, SKU)
(:func:`scale_stock`, in whole units) and the smallest factor whose pooled answer
still allocates at least as many units as the silos is found by bisection:
the stock the pool needs for the silos' fill rate. Every solve goes through
:func:`router.run.solve_scenario` (checked by the independent checker).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import accumulate
from pathlib import Path

import numpy as np
import pandas as pd

from router.checker import check
from router.compare import Variant, run_variant
from router.kpis import KPI_COLUMNS, answer_kpis, stock_units
from router.run import solve_scenario
from router.scenario import Scenario
from solver.params import OptimizeParams

SILO = "channel silos"
POOL = "one pool"
LEAN_POOL = "one pool, least stock"
"""The pool at the least stock (found) that fills as many units as the silos."""


@dataclass(frozen=True)
class Channels:
    """The two silos of a scenario; a silo without orders is ``None``."""

    online: Scenario | None
    stores: Scenario | None


def channel_silos(scenario: Scenario) -> Channels:
    """Split ``scenario`` into its online and store channels.

    Both silos keep every node (so reach and capacity read the same) but only
    their own channel's stock: the online silo holds the warehouses' stock and
    the orders that are delivered or picked up at a warehouse; the store silo
    holds the stores' stock and the orders picked up at a store.
    """
    nodes = scenario.nodes
    stores = set(nodes.loc[nodes["kind"] == "store", "node_id"])
    inventory = scenario.inventory
    store_stock = inventory["node_id"].isin(stores).to_numpy()
    orders = scenario.orders
    store_orders = orders["pickup_node"].isin(stores).to_numpy()

    def silo(name: str, stock_rows: np.ndarray, order_rows: np.ndarray) -> Scenario | None:
        if not order_rows.any():
            return None
        return replace(
            scenario,
            name=f"{scenario.name} ({name} channel)",
            inventory=inventory[stock_rows].reset_index(drop=True),
            orders=orders[order_rows].reset_index(drop=True),
        )

    return Channels(
        online=silo("online", ~store_stock, ~store_orders),
        stores=silo("store", store_stock, store_orders),
    )


STOCK_ORDER_SEED = 0
"""Seed of the fixed order in which :func:`scale_stock` rounds the pairs."""


def scale_stock(scenario: Scenario, factor: float) -> Scenario:
    """``scenario`` with its stock scaled by ``factor``, pair by pair, in whole units.

    Each (node, SKU) gets ``available * factor`` rounded down or up, so that the
    total is ``floor(total * factor)``: the pairs, in one fixed shuffled order,
    take the integer steps of the running sum of their scaled stock
    (systematic rounding). Flooring each pair instead would empty every pair
    holding one unit (most store pairs) at any factor below 1.
    """
    available = scenario.inventory["available"].to_numpy(dtype=np.int64)
    order = np.random.default_rng(STOCK_ORDER_SEED).permutation(available.size)
    # In exact integers: a float factor is a fraction p / q.
    p, q = Fraction(factor).as_integer_ratio()
    running = [total * p // q for total in accumulate(available[order].tolist())]
    steps = np.diff(np.array([0, *running], dtype=np.int64))
    kept = np.empty_like(available)
    kept[order] = steps
    inventory = scenario.inventory.copy()
    inventory["available"] = kept
    return replace(scenario, inventory=inventory)


@dataclass(frozen=True)
class Setup:
    """One set-up's checked answer: its assignments, summary and KPI row."""

    name: str
    stock_factor: float
    assignments: pd.DataFrame
    summary: dict
    kpis: dict


@dataclass(frozen=True)
class PoolingStudy:
    """Silos, the pool, and the pool at the least stock that matches the silos' fill."""

    silo: Setup
    pool: Setup
    lean_pool: Setup | None
    """The pool at the smallest stock factor found with the silos' fill rate (None
    when the pool at full stock fills less than the silos)."""
    steps: list[dict]
    """Every bisection solve: ``stock_factor``, ``stock_units``, ``fill_rate``,
    ``allocated_units``, ``total_cost``, ``matches`` (fills as much as the silos)."""

    def rows(self) -> list[dict]:
        """The study's table: one KPI row per set-up, with its stock and factor."""
        found = [self.silo, self.pool] + ([self.lean_pool] if self.lean_pool else [])
        return [
            {"setup": setup.name, "stock_factor": setup.stock_factor, **setup.kpis}
            for setup in found
        ]


def solve_silos(scenario: Scenario, variant: Variant, defaults: OptimizeParams) -> Setup:
    """Solve each channel on its own; grade the two answers together on ``scenario``."""
    channels = channel_silos(scenario)
    parts = [silo for silo in (channels.online, channels.stores) if silo is not None]
    outputs = [
        solve_scenario(
            variant.scenario(silo), strategy=variant.strategy, params=variant.params(defaults)
        )
        for silo in parts
    ]
    assignments = pd.concat([output.assignments for output in outputs], ignore_index=True)
    summary = combined_summary([output.summary for output in outputs], variant.strategy)
    report = check(scenario, assignments)
    if not report.feasible:  # a silo answer only uses its own stock: never happens
        raise RuntimeError(f"internal error: the silo answers break {report.violations[0].message}")
    label = f"{SILO} ({variant.label})"
    kpis = answer_kpis(scenario, assignments, summary, variant=label, report=report)
    return Setup(SILO, 1.0, assignments, summary, kpis)


def combined_summary(summaries: list[dict], strategy: str) -> dict:
    """The silos as one run: costs, bounds and times add up; the weakest status wins."""
    total = sum(s["total_cost"] for s in summaries)
    bounds = [s["lower_bound"] for s in summaries]
    bound = None if any(b is None for b in bounds) else sum(bounds)
    statuses = [s["status"] for s in summaries]
    status = (
        "optimal"
        if all(s == "optimal" for s in statuses)
        else next(s for s in statuses if s != "optimal")
    )
    return {
        "status": status,
        "strategy": strategy,
        "total_cost": total,
        "lower_bound": bound,
        "gap": None if bound is None or total <= 0 else max(0.0, (total - bound) / total),
        "solve_seconds": sum(s["solve_seconds"] for s in summaries),
    }


def pooling_study(
    scenario: Scenario,
    variant: Variant,
    defaults: OptimizeParams,
    *,
    steps: int = 6,
    on_step: Callable[[str, dict], None] | None = None,
) -> PoolingStudy:
    """Silos against one pool, then the pool's stock for the silos' fill rate.

    Parameters
    ----------
    scenario
        The pooled scenario (as loaded).
    variant
        The strategy and overrides every set-up is routed with.
    defaults
        The optimize parameters of the command (time limit per solve).
    steps
        Bisection steps on the stock factor in (0, 1]: the factor found is
        within ``2**-steps`` of the smallest that matches.
    on_step
        Called with (what, KPI row or step) after every solve.
    """
    notify = on_step or (lambda _what, _row: None)
    silo = solve_silos(scenario, variant, defaults)
    notify(SILO, silo.kpis)
    pool_run = run_variant(scenario, variant, defaults, label=f"{POOL} ({variant.label})")
    pool = Setup(POOL, 1.0, pool_run.output.assignments, pool_run.output.summary, pool_run.kpis)
    notify(POOL, pool.kpis)
    # Compare allocated units, not rounded rates: integers, exact.
    target = round(silo.kpis["fill_rate"] * silo.kpis["units"])
    trail: list[dict] = []
    if _allocated(pool) < target:
        return PoolingStudy(silo, pool, None, trail)

    low, high, best = 0.0, 1.0, pool
    for _ in range(steps):
        factor = (low + high) / 2
        lean = scale_stock(scenario, factor)
        run = run_variant(lean, variant, defaults, label=f"{POOL} at {factor:.1%} stock")
        # Graded on the lean scenario (its stock), at the scenario's penalties.
        setup = Setup(
            f"{POOL}, stock x{factor:g}",
            factor,
            run.output.assignments,
            run.output.summary,
            run.kpis,
        )
        matches = _allocated(setup) >= target
        step = {
            "stock_factor": factor,
            "stock_units": stock_units(lean),
            "fill_rate": setup.kpis["fill_rate"],
            "allocated_units": _allocated(setup),
            "total_cost": setup.kpis["total_cost"],
            "matches": matches,
        }
        trail.append(step)
        notify("step", step)
        if matches:
            high, best = factor, setup
        else:
            low = factor
    lean_pool = replace(best, name=LEAN_POOL)
    return PoolingStudy(silo, pool, lean_pool, trail)


def _allocated(setup: Setup) -> int:
    return setup.kpis["units"] - setup.kpis["unfilled_units"]


def stock_reduction(study: PoolingStudy) -> float | None:
    """Share of the silos' stock the pool does without at the same fill rate."""
    if study.lean_pool is None:
        return None
    total = study.silo.kpis["stock_units"]
    return 1.0 - study.lean_pool.kpis["stock_units"] / total if total else 0.0


POOLING_COLUMNS = ("setup", "stock_factor")
"""``pooling.csv``: these columns, then the KPI columns of :data:`router.kpis.KPI_COLUMNS`."""


def run_pooling(
    scenario: Scenario,
    scenario_dir: Path,
    variants: list[Variant],
    defaults: OptimizeParams,
    out_dir: Path,
    *,
    steps: int = 6,
    log: Callable[[str], None] = lambda _message: None,
) -> str:
    """``omniroute compare --pooling``: the study per variant; write, draw, and the table as text.

    Writes ``pooling.csv`` (a row per variant and set-up), ``pooling_steps.csv``
    (every bisection solve), ``pooling_<variant>.png``, and the silos' and the
    pool's answers in ``<variant>/silos/`` and ``<variant>/pool/``.
    """
    from router import charts
    from router.compare import kpi_table
    from router.run import write_answer

    def step(what: str, row: dict) -> None:
        if what == "step":
            log(
                f"  stock x{row['stock_factor']:g} ({row['stock_units']:,} units): fill "
                f"{row['fill_rate']:.2%}{' (matches)' if row['matches'] else ''}"
            )
        else:
            log(f"  {what}: total cost {row['total_cost']:,.2f}, fill {row['fill_rate']:.2%}")

    studies = []
    for variant in variants:
        log(f"{variant.label}:")
        studies.append(
            (variant, pooling_study(scenario, variant, defaults, steps=steps, on_step=step))
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    rows, trail, text = [], [], []
    for variant, study in studies:
        for setup in (study.silo, study.pool):
            summary = {
                **setup.summary,
                "scenario": scenario.name,
                "setup": setup.name,
                "scenario_dir": str(scenario_dir.resolve()),
            }
            folder = out_dir / variant.folder / ("silos" if setup is study.silo else "pool")
            write_answer(folder, setup.assignments, summary)
        mine = study.rows()
        rows += mine
        trail += [{"variant": variant.label, **s} for s in study.steps]
        charts.pooling_chart(mine, study.steps, out_dir / f"pooling_{variant.folder}.png")
        text.append(kpi_table([{**row, "variant": row["setup"]} for row in mine]))
        reduction = stock_reduction(study)
        if reduction is None:
            text.append(
                f"{variant.label}: the pool at full stock fills less than the silos "
                "(no stock reduction to measure)"
            )
        else:
            assert study.lean_pool is not None
            text.append(
                f"{variant.label}: the pool fills as many units as the silos "
                f"({study.silo.kpis['fill_rate']:.2%}) with {study.lean_pool.kpis['stock_units']:,} "
                f"of {study.silo.kpis['stock_units']:,} stock units: {reduction:.1%} less stock "
                f"(stock x{study.lean_pool.stock_factor:g}, {len(study.steps)} bisection steps)"
            )
    columns = [*POOLING_COLUMNS, *KPI_COLUMNS]
    pd.DataFrame(rows, columns=columns).to_csv(out_dir / "pooling.csv", index=False)
    step_columns = ["variant", "stock_factor", "stock_units", "fill_rate", "allocated_units",
                    "total_cost", "matches"]  # fmt: skip
    pd.DataFrame(trail, columns=step_columns).to_csv(out_dir / "pooling_steps.csv", index=False)
    text.append(f"wrote {out_dir}: pooling.csv, pooling_steps.csv, pooling_<variant>.png")
    return "\n\n".join(text)
