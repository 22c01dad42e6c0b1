"""The ``omniroute`` command line.

Bad input never shows a traceback: a :class:`ScenarioError` (or a bad knob)
prints one line naming the file, row and column, and exits with code 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from router.scenario import ScenarioError

app = typer.Typer(
    name="omniroute",
    help="Order routing over one omnichannel inventory pool.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, log_path=False)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def solve(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder (omniroute-scenario/1).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for assignments.csv and summary.json.")],
    strategy: Annotated[str, typer.Option(help="optimize (joint, default) or greedy (rule-engine baseline).")] = "optimize",
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for the whole solve.")] = 60.0,
    gap: Annotated[float, typer.Option(help="Stop once proven within this relative gap.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed of the MIP solver.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Route every order of a scenario; write OUT/assignments.csv and OUT/summary.json."""
    from router.run import STRATEGIES, solve_folder
    from solver.batch import OptimizeParams

    if strategy not in STRATEGIES:
        _fail(f"--strategy must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    if not time_limit > 0:
        _fail(f"--time-limit must be > 0 (got {time_limit})")
    if not 0 <= gap < 1:
        _fail(f"--gap must be in [0, 1) (got {gap})")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    params = OptimizeParams(time_limit=time_limit, rel_gap=gap, seed=seed)
    try:
        if quiet:
            output = solve_folder(scenario_dir, out, strategy=strategy, params=params)
        else:
            with _ProgressDisplay() as display:
                output = solve_folder(
                    scenario_dir, out, strategy=strategy, params=params, progress=display.update
                )
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:  # e.g. --out on a read-only disk
        _fail(f"cannot write the answer to {out}: {exc.strerror or exc}")
    print(json.dumps(output.summary, indent=2))
    if output.stopped_by is not None:
        # The answer is written (status "interrupted"); the exit code still
        # tells a script the run was cut short: 130 after Ctrl-C, 143 after SIGTERM.
        raise typer.Exit(code=128 + output.stopped_by)


@app.command()
def check(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder.")],
    assignments_csv: Annotated[Path, typer.Argument(help="An assignments.csv to verify.")],
) -> None:
    """Recompute feasibility and cost of an answer, with no solver. Exit 1 if infeasible."""
    from router.checker import check as check_answer
    from router.checker import format_report, load_assignments
    from router.scenario import load_scenario

    try:
        scenario = load_scenario(scenario_dir)
        assignments = load_assignments(assignments_csv)
    except ScenarioError as exc:
        _fail(str(exc))
    report = check_answer(scenario, assignments)
    print(format_report(report))
    if not report.feasible:
        raise typer.Exit(code=1)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the scenario into.")],
    orders: Annotated[int, typer.Option(help="Number of orders.")] = 2000,
    stores: Annotated[int, typer.Option(help="Number of stores.")] = 300,
    warehouses: Annotated[int, typer.Option(help="Number of warehouses.")] = 10,
    skus: Annotated[int, typer.Option(help="Number of SKUs.")] = 800,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 1,
    country: Annotated[str, typer.Option(help="ISO country code of the geography.")] = "CN",
    scarcity: Annotated[float, typer.Option(help="Stock divisor: 1 normal, 2 half the stock.")] = 1.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty OUT_DIR.")] = False,
) -> None:
    """Generate a realistic scenario from real geography (GeoNames cities)."""
    from router.generate import generate_scenario

    try:
        summary = generate_scenario(
            out_dir,
            orders=orders,
            stores=stores,
            warehouses=warehouses,
            skus=skus,
            seed=seed,
            country=country,
            scarcity=scarcity,
            overwrite=overwrite,
        )
    except FileExistsError as exc:
        _fail(f"{exc.args[0].replace('(pass overwrite=True)', '(pass --overwrite)')}")
    except ValueError as exc:
        _fail(str(exc))
    err.print(f"wrote {out_dir}: {summary}", highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for the benchmark runner.")] = None,
) -> None:
    """Run the benchmark suite (see benchmarks/README.md); same as python -m benchmarks."""
    from benchmarks.runner import main as bench_main

    raise typer.Exit(code=bench_main(args or []))


class _ProgressDisplay:
    """Phases, elapsed time, best cost and bound of a running solve, on stderr."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._phase = "loading"
        self._best: float | None = None
        self._bound: float | None = None
        self._status = err.status(self._text(), spinner="dots")

    def _text(self) -> str:
        parts = [f"{self._phase}", f"{time.perf_counter() - self._started:6.1f}s"]
        if self._best is not None:
            parts.append(f"best {self._best:,.2f}")
        if self._bound is not None:
            parts.append(f"bound {self._bound:,.2f}")
        return "  ".join(parts)

    def update(self, phase: str, details: dict) -> None:
        if phase != self._phase:
            err.log(self._text().replace(self._phase, f"{self._phase} done", 1), highlight=False)
        self._phase = phase
        self._best = details.get("best", self._best)
        self._bound = details.get("bound", self._bound)
        self._status.update(self._text())

    def __enter__(self) -> _ProgressDisplay:
        if err.is_terminal:
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if err.is_terminal:
            self._status.__exit__(*exc)


def main() -> None:
    """Entry point of the ``omniroute`` script."""
    from api.commands import register

    register(app)
    app(prog_name="omniroute")


if __name__ == "__main__":
    main()
