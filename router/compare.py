"""What-if comparison: several strategies and parameter sets on the same batch.

A *variant* is a strategy with optional parameter overrides, written
``STRATEGY[:KEY=VALUE]...``, e.g. ``greedy``, ``optimize:time_limit=10`` or
``optimize:split_penalty=20``. Each variant goes through the one way through
(:func:`router.run.solve_scenario`: every answer checked by the independent
checker) and is graded by :func:`router.kpis.answer_kpis` at the scenario's own
penalties, so a variant that routes with another split penalty is still priced
like the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from router.kpis import KPI_COLUMNS, answer_kpis, node_load
from router.run import STRATEGIES, RunOutput, solve_scenario, write_answer
from router.scenario import Scenario
from solver.params import OptimizeParams

MAX_SEED = 2**31 - 1

SOLVER_KEYS = ("time_limit", "gap", "seed")
"""Overrides of the optimize strategy's parameters."""
PENALTY_KEYS = ("split_penalty", "unfilled_penalty")
"""Overrides of the scenario's penalties the variant routes with."""


class VariantError(ValueError):
    """A variant that cannot be run: names the variant and the rule it breaks."""


@dataclass(frozen=True)
class Variant:
    """One strategy and its overrides; ``label`` is how the user wrote it."""

    label: str
    strategy: str
    solver: dict[str, float] = field(default_factory=dict)
    penalties: dict[str, float] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        """A folder name for the variant's answer (``:`` is not portable)."""
        return re.sub(r"[^A-Za-z0-9_.=-]", "_", self.label)

    def params(self, defaults: OptimizeParams) -> OptimizeParams:
        """The optimize parameters: the command's defaults with this variant's overrides."""
        return replace(
            defaults,
            time_limit=self.solver.get("time_limit", defaults.time_limit),
            rel_gap=self.solver.get("gap", defaults.rel_gap),
            seed=int(self.solver.get("seed", defaults.seed)),
        )

    def scenario(self, base: Scenario) -> Scenario:
        """The scenario this variant routes: ``base`` with its penalty overrides."""
        if not self.penalties:
            return base
        return replace(
            base,
            split_penalty=self.penalties.get("split_penalty", base.split_penalty),
            unfilled_penalty=self.penalties.get("unfilled_penalty", base.unfilled_penalty),
        )


def parse_variant(text: str) -> Variant:
    """Parse ``STRATEGY[:KEY=VALUE]...``; raise :class:`VariantError` naming the rule."""
    label = text.strip()
    strategy, *settings = label.split(":")
    if strategy not in STRATEGIES:
        raise VariantError(
            f"unknown strategy {strategy!r} in {label!r}: expected one of {', '.join(STRATEGIES)}"
        )
    solver: dict[str, float] = {}
    penalties: dict[str, float] = {}
    for setting in settings:
        key, sep, raw = setting.partition("=")
        key = key.strip()
        if not sep:
            raise VariantError(f"{label!r}: {setting!r} must be KEY=VALUE")
        if key in solver or key in penalties:
            raise VariantError(f"{label!r}: {key} is given twice")
        if key in SOLVER_KEYS and strategy == "greedy":
            raise VariantError(f"{label!r}: greedy takes no {key} (only {', '.join(PENALTY_KEYS)})")
        if key not in SOLVER_KEYS + PENALTY_KEYS:
            raise VariantError(
                f"{label!r}: unknown setting {key!r}: expected one of "
                f"{', '.join(SOLVER_KEYS + PENALTY_KEYS)}"
            )
        try:
            value = float(raw)
        except ValueError:
            raise VariantError(f"{label!r}: {key} must be a number (got {raw!r})") from None
        _check_setting(label, key, value)
        (solver if key in SOLVER_KEYS else penalties)[key] = value
    return Variant(label, strategy, solver, penalties)


def _check_setting(label: str, key: str, value: float) -> None:
    rules = {
        "time_limit": (math.isfinite(value) and value > 0, "a finite number of seconds > 0"),
        "gap": (0 <= value < 1, "a number in [0, 1)"),
        "seed": (value.is_integer() and 0 <= value <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
        "split_penalty": (math.isfinite(value) and value >= 0, "a number >= 0"),
        "unfilled_penalty": (math.isfinite(value) and value >= 0, "a number >= 0"),
    }
    ok, rule = rules[key]
    if not ok:
        raise VariantError(f"{label!r}: {key} must be {rule} (got {value:g})")


def parse_variants(text: str) -> list[Variant]:
    """A comma-separated list of variants, each label at most once."""
    variants = [parse_variant(part) for part in text.split(",") if part.strip()]
    if not variants:
        raise VariantError("no variant given: e.g. greedy,optimize")
    folders = [variant.folder for variant in variants]
    for variant in variants:
        if folders.count(variant.folder) > 1:
            raise VariantError(f"{variant.label!r} is given twice")
    return variants


@dataclass(frozen=True)
class VariantRun:
    """One variant's checked answer and its KPI row."""

    variant: Variant
    output: RunOutput
    kpis: dict
    load: pd.DataFrame


def run_variant(
    scenario: Scenario,
    variant: Variant,
    defaults: OptimizeParams,
    *,
    label: str | None = None,
) -> VariantRun:
    """Route ``scenario`` with ``variant`` and grade it at the scenario's own penalties."""
    output = solve_scenario(
        variant.scenario(scenario), strategy=variant.strategy, params=variant.params(defaults)
    )
    kpis = answer_kpis(scenario, output.assignments, output.summary, variant=label or variant.label)
    return VariantRun(variant, output, kpis, node_load(scenario, output.assignments))


def compare_variants(
    scenario: Scenario,
    variants: list[Variant],
    defaults: OptimizeParams,
    *,
    on_done: Callable[[VariantRun], None] | None = None,
) -> list[VariantRun]:
    """Run every variant on the same batch, in the order given."""
    runs = []
    for variant in variants:
        run = run_variant(scenario, variant, defaults)
        if on_done is not None:
            on_done(run)
        runs.append(run)
    return runs


def kpi_frame(rows: list[dict]) -> pd.DataFrame:
    """KPI rows as a table with the columns of :data:`KPI_COLUMNS`."""
    return pd.DataFrame(rows, columns=list(KPI_COLUMNS))


def write_runs(out_dir: Path, runs: list[VariantRun], scenario_dir: Path) -> None:
    """Each variant's answer in ``OUT/<variant>/``, and ``kpis.csv`` and ``node_load.csv``."""
    for run in runs:
        summary = {**run.output.summary, "scenario_dir": str(scenario_dir.resolve())}
        write_answer(out_dir / run.variant.folder, run.output.assignments, summary)
    kpi_frame([run.kpis for run in runs]).to_csv(out_dir / "kpis.csv", index=False)
    loads = [run.load.assign(variant=run.kpis["variant"]) for run in runs]
    pd.concat(loads, ignore_index=True).loc[
        :, ["variant", "node_id", "kind", "units", "capacity_units", "capacity_use"]
    ].to_csv(out_dir / "node_load.csv", index=False)


TABLE_ROWS = (
    ("total cost", "total_cost", "{:,.2f}"),
    ("  shipping", "shipping", "{:,.2f}"),
    ("  handling", "handling", "{:,.2f}"),
    ("  splits", "split_cost", "{:,.2f}"),
    ("  unfilled", "unfilled_cost", "{:,.2f}"),
    ("splits/100 orders", "splits_per_100_orders", "{:.2f}"),
    ("fill rate", "fill_rate", "{:.2%}"),
    ("store share", "store_unit_share", "{:.2%}"),
    ("store units <=5 km", "store_units_within_5km_share", "{:.2%}"),
    ("orders, store <=5 km", "orders_from_store_within_5km_share", "{:.2%}"),
    ("status", "status", "{}"),
    ("gap to bound", "gap", "{:.3%}"),
    ("seconds", "solve_seconds", "{:.2f}"),
    ("nodes used", "nodes_used", "{:,}"),
    ("busiest node", "busiest_node_units", "{:,} units"),
    ("max capacity use", "max_capacity_use", "{:.0%}"),
    ("nodes at capacity", "nodes_at_capacity", "{:,}"),
)


def kpi_table(rows: list[dict]) -> str:
    """The KPI rows as aligned text: one column per variant, one line per KPI."""
    header = ["", *(row["variant"] for row in rows)]
    lines = [header]
    for name, key, fmt in TABLE_ROWS:
        cells = [name]
        for row in rows:
            value = row[key]
            cells.append("-" if value is None else fmt.format(value))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for line in lines:
        first = line[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True))
        text.append("  ".join([first, *rest]).rstrip())
    return "\n".join(text)


def run_compare(
    scenario: Scenario,
    scenario_dir: Path,
    variants: list[Variant],
    defaults: OptimizeParams,
    out_dir: Path,
    *,
    log: Callable[[str], None] = lambda _message: None,
) -> str:
    """``omniroute compare``: run, write the answers and ``kpis.csv``, draw; the table as text.

    Writes ``kpis.csv``, ``node_load.csv``, ``cost_vs_splits.png``,
    ``cost_breakdown.png``, ``map.png`` and one answer folder per variant.
    Nothing is written before every variant is solved.
    """
    from router import charts
    from router.kpis import allocations

    def done(run: VariantRun) -> None:
        row = run.kpis
        log(
            f"{row['variant']}: total cost {row['total_cost']:,.2f}, fill {row['fill_rate']:.2%}, "
            f"{row['status']} in {row['solve_seconds']:.2f} s"
        )

    runs = compare_variants(scenario, variants, defaults, on_done=done)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_runs(out_dir, runs, scenario_dir)
    rows = [run.kpis for run in runs]
    charts.cost_vs_splits(rows, out_dir / "cost_vs_splits.png")
    charts.cost_breakdown(rows, out_dir / "cost_breakdown.png")
    answers = {run.kpis["variant"]: allocations(scenario, run.output.assignments) for run in runs}
    charts.routing_map(scenario, answers, out_dir / "map.png")
    files = "kpis.csv, node_load.csv, cost_vs_splits.png, cost_breakdown.png, map.png"
    return f"{kpi_table(rows)}\n\nwrote {out_dir}: {files}, and one answer folder per variant"
