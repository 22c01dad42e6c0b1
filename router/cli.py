"""The ``omniroute`` command line.

Bad input never shows a traceback: a :class:`ScenarioError`, a bad option or a
place that cannot be written prints one line on stderr (``error: ...``, naming
the file, row and column or the option) and exits with code 2.
"""

from __future__ import annotations

import json
import math
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

# typer >= 0.29 carries its own copy of click (no click package): its usage errors
# are caught here to print them as one line.
from typer._click import exceptions as click_errors

from router.scenario import ScenarioError

app = typer.Typer(
    name="omniroute",
    help="Order routing over one omnichannel inventory pool. "
    "The scenario format: `omniroute spec` (docs/scenario-format.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, log_path=False)


MAX_SEED = 2**31 - 1
"""HiGHS takes its random seed as a 32-bit signed integer."""


def _fail(message: str) -> None:
    # escape: a message may quote a value with brackets, e.g. 'omniroute[postgres]'.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _unwritable(path: Path, error: OSError) -> str:
    """Why ``path`` cannot be written, naming a parent that is a file when there is one."""
    for parent in (path, *path.parents):
        if parent.exists():
            if parent != path and not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    return error.strerror or str(error)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("omniroute")
        except metadata.PackageNotFoundError:  # run from a checkout that was never installed
            version = "unknown (not installed)"
        print(f"omniroute {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Order routing over one omnichannel inventory pool (`omniroute spec`: the format)."""


class Strategy(StrEnum):
    """The strategies of ``router.run.STRATEGIES`` (a test keeps the two equal)."""

    optimize = "optimize"
    greedy = "greedy"


@app.command()
def solve(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder (omniroute-scenario/1).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for assignments.csv and summary.json.")],
    strategy: Annotated[Strategy, typer.Option(help="optimize: joint optimum with a proven bound; greedy: the usual rule-engine baseline.")] = Strategy.optimize,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for the whole solve (finite, > 0).")] = 60.0,
    gap: Annotated[float, typer.Option(help="Stop once proven within this relative gap, in [0, 1).")] = 1e-3,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed of the MIP solver.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the answer in a non-empty OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole summary.json instead of the table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    counterfactuals: Annotated[
        bool,
        typer.Option(
            "--counterfactuals",
            help="Counterfactuals in explanations.jsonl above 500 orders too.",
        ),
    ] = False,
) -> None:
    """Route every order of a scenario; write OUT/assignments.csv, OUT/summary.json and
    OUT/explanations.jsonl (why each order went where it went)."""
    if not (math.isfinite(time_limit) and time_limit > 0):
        _fail(f"--time-limit must be a finite number of seconds > 0 (got {time_limit})")
    if not (math.isfinite(gap) and 0 <= gap < 1):
        _fail(f"--gap must be a number in [0, 1) (got {gap})")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        _fail(f"--out {out} exists and is not empty (pass --overwrite)")

    from router.run import solve_folder
    from solver.batch import OptimizeParams

    params = OptimizeParams(time_limit=time_limit, rel_gap=gap, seed=seed)
    try:
        if quiet:
            output = solve_folder(
                scenario_dir, out, strategy=strategy.value, params=params,
                counterfactuals=counterfactuals or None,
            )  # fmt: skip
        else:
            with _ProgressDisplay() as display:
                output = solve_folder(
                    scenario_dir, out, strategy=strategy.value, params=params,
                    progress=display.update, counterfactuals=counterfactuals or None,
                )  # fmt: skip
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:  # e.g. --out on a read-only disk
        _fail(f"cannot write the answer to {out}: {_unwritable(out, exc)}")
    if as_json:
        print(json.dumps(output.summary, indent=2, allow_nan=False))
    else:
        print(summary_table(output.summary, output.scenario, out))
    if output.stopped_by is not None:
        # The answer is written (status "interrupted"); the exit code still
        # tells a script the run was cut short: 130 after Ctrl-C, 143 after SIGTERM.
        raise typer.Exit(code=128 + output.stopped_by)


def summary_table(summary: dict, scenario, out: Path) -> str:
    """The few numbers an operator reads after a solve, as aligned text."""
    split_cost = summary["splits"] * scenario.split_penalty
    unfilled_cost = summary["unfilled_units"] * scenario.unfilled_penalty
    if summary["gap"] is None:
        proof = "no lower bound"
    else:
        proof = f"gap {summary['gap']:.3%} to the lower bound {summary['lower_bound']:,.2f}"
    rows = [
        ("status", f"{summary['status']} ({summary['strategy']}, {proof})"),
        ("total cost", f"{summary['total_cost']:,.2f}"),
        ("  shipping", f"{summary['shipping']:,.2f}"),
        ("  handling", f"{summary['handling']:,.2f}"),
        ("  splits", f"{split_cost:,.2f} ({summary['splits']:,} x {scenario.split_penalty:g})"),
        (
            "  unfilled",
            f"{unfilled_cost:,.2f} ({summary['unfilled_units']:,} units x "
            f"{scenario.unfilled_penalty:g})",
        ),
        (
            "fill rate",
            f"{summary['fill_rate']:.2%} of {summary['units']:,} units "
            f"({summary['orders']:,} orders, {summary['lines']:,} lines, "
            f"{summary['shipments']:,} shipments)",
        ),
        ("time", f"{summary['solve_seconds']:.2f} s"),
        ("why", f"{out / 'explanations.jsonl'} (omniroute explain SCENARIO OUT ORDER_ID)"),
        ("answer", str(out / "assignments.csv")),
        ("summary", str(out / "summary.json")),
    ]
    return "\n".join(f"{name:<12} {value}" for name, value in rows)


@app.command()
def check(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder.")],
    assignments_csv: Annotated[Path, typer.Argument(help="An assignments.csv to verify.")],
) -> None:
    """Recompute feasibility and cost of an answer, with no solver. Exit 1 if infeasible."""
    if not assignments_csv.is_file():
        _fail(f"{assignments_csv}: file not found")
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
def explain(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder.")],
    out_dir: Annotated[Path, typer.Argument(help="The answer folder of omniroute solve.")],
    order_id: Annotated[str, typer.Argument(help="The order to explain.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
    counterfactual: Annotated[
        bool,
        typer.Option(
            "--counterfactual",
            help="Also compute the smallest change that routes the order differently.",
        ),
    ] = False,
) -> None:
    """Why an order was routed where it was: chosen nodes and costs, the alternatives,
    the binding constraints, and (with --counterfactual) what would change it."""
    from router.explain import explain_from_answer, format_explanation
    from router.scenario import load_scenario

    try:
        scenario = load_scenario(scenario_dir)
        explanation = explain_from_answer(
            scenario, out_dir, order_id, with_counterfactual=counterfactual
        )
    except ScenarioError as exc:
        _fail(str(exc))
    except KeyError:
        _fail(f"order {order_id!r} is not in the scenario {scenario_dir}")
    if as_json:
        print(json.dumps(explanation, indent=2, allow_nan=False))
    else:
        print(format_explanation(explanation))


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
    regime: Annotated[
        str | None,
        typer.Option(
            help="Stock regime, measured and recorded in scenario.json: plentiful (stock as "
            "drawn) or scarce (each SKU's warehouse stock capped until greedy fills 90% of the units)."
        ),
    ] = None,
    greedy_fill: Annotated[
        float | None,
        typer.Option(help="Calibrate warehouse stock until greedy fills this share of the units."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty OUT_DIR.")] = False,
) -> None:
    """Generate a realistic scenario from real geography (GeoNames cities)."""
    from router.generate import GREEDY_FILL_TOLERANCE, TOP_SKUS, generate_scenario

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
            regime=regime,
            greedy_fill=greedy_fill,
            overwrite=overwrite,
        )
    except FileExistsError as exc:
        if exc.errno is None:  # the generator's own refusal to replace a folder
            _fail(str(exc).replace("(pass overwrite=True)", "(pass --overwrite)"))
        _fail(f"cannot write the scenario to {out_dir}: {_unwritable(out_dir, exc)}")
    except OSError as exc:  # a parent that is a file, a read-only place, a full disk
        _fail(f"cannot write the scenario to {out_dir}: {_unwritable(out_dir, exc)}")
    except ValueError as exc:
        _fail(str(exc).replace("greedy_fill=", "--greedy-fill ").replace("regime=", "--regime "))
    err.print(
        f"wrote {out_dir}: {summary.orders:,} orders, {summary.lines:,} lines, "
        f"{summary.units:,} units, {summary.pickup_orders:,} pickups; {summary.warehouses} "
        f"warehouses, {summary.stores} stores, {summary.inventory_rows:,} inventory rows",
        highlight=False,
    )
    report = summary.regime
    if report is not None:
        err.print(
            f"regime {report.regime}: greedy fills {report.greedy_fill:.2%} of the units "
            f"(warehouse {_cover(report.warehouse_cover)}, {report.greedy_runs} greedy "
            f"runs, {report.calibration_seconds:.1f} s); {report.colliding_share:.1%} of the "
            f"orders collide ({report.contested_skus:,} SKUs, {report.contested_warehouses} "
            f"warehouses, {report.contested_stores} stores contested; top {TOP_SKUS} SKUs hold "
            f"{report.top_sku_excess_share:.0%} of the excess; {report.collision_seconds:.1f} s)",
            highlight=False,
        )
        target = report.target_greedy_fill
        if target is not None and abs(report.greedy_fill - target) > GREEDY_FILL_TOLERANCE:
            err.print(
                f"warning: greedy fill {report.greedy_fill:.2%} misses the target {target:.2%} "
                "(closest reachable by scaling warehouse stock down)",
                highlight=False,
            )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Run the benchmark suites (protocol: benchmarks/README.md); `omniroute bench --help` lists the options."""
    from benchmarks.runner import main as bench_main

    # The runner's own argparse parser owns the options (and their --help).
    raise typer.Exit(code=bench_main(ctx.args))


@app.command()
def spec(
    path: Annotated[bool, typer.Option("--path", help="Print where the file is, not its text.")] = False,
) -> None:
    """Print the scenario format specification (omniroute-scenario/1)."""
    from router.bundled import spec_path

    print(spec_path() if path else spec_path().read_text(encoding="utf-8"), end="\n" if path else "")


@app.command()
def fixtures(
    name: Annotated[str | None, typer.Argument(help="Print only this scenario's folder.")] = None,
) -> None:
    """List the bundled scenarios (the hand-checked ones and cn-2000) and their folders."""
    from router.bundled import fixtures_dir

    folders = {p.parent.name: p.parent for p in fixtures_dir().glob("*/scenario.json")}
    if name is not None:
        if name not in folders:
            _fail(f"no bundled scenario {name!r}: one of {', '.join(sorted(folders))}")
        print(folders[name])
        return
    for found in sorted(folders):
        print(f"{found:<20} {folders[found]}")


def _cover(cover: float | None) -> str:
    if cover is None:
        return "stock as drawn"
    return f"stock capped at {cover:g}x each SKU's expected demand"


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``omniroute`` script: every error is one line and exit 2."""
    from sqlalchemy.exc import OperationalError

    from api.commands import register
    from router.pool.errors import PoolError

    register(app)
    try:
        code = app(args=argv, prog_name="omniroute", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else exc.format_message(), file=sys.stderr)
        code = 2
    except click_errors.ClickException as exc:  # usage errors: unknown option, bad value
        context = getattr(exc, "ctx", None)
        where = f"{context.command_path}: " if context else ""
        print(f"error: {where}{_one_line(exc.format_message())}", file=sys.stderr)
        code = exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        code = 1
    except PoolError as exc:  # e.g. a database URL whose driver is not installed
        print(f"error: {_one_line(exc.message)}", file=sys.stderr)
        code = 2
    except OperationalError as exc:  # the database is down, or the file cannot be opened
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        print(f"error: cannot use the database: {reason}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
