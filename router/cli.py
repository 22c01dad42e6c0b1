"""The ``omniroute`` command line.

Bad input never shows a traceback: a :class:`ScenarioError`, a bad option or a
place that cannot be written prints one line on stderr (``error: ...``, naming
the file, row and column or the option) and exits with code 2.
"""

from __future__ import annotations

import functools
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


def _check_run_options(time_limit: float, gap: float, out: Path, overwrite: bool) -> None:
    """The options ``solve`` and ``reoptimize`` share: one line and exit 2 when bad."""
    if not (math.isfinite(time_limit) and time_limit > 0):
        _fail(f"--time-limit must be a finite number of seconds > 0 (got {time_limit})")
    if not (math.isfinite(gap) and 0 <= gap < 1):
        _fail(f"--gap must be a number in [0, 1) (got {gap})")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        _fail(f"--out {out} exists and is not empty (pass --overwrite)")


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
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Run the optimizer's independent tasks on a local Ray runtime with this many CPUs (needs the ray extra: pip install 'omniroute\\[ray]').")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Run the optimizer's independent tasks on the Ray cluster at this address (needs the ray extra: pip install 'omniroute\\[ray]').")] = None,
) -> None:
    """Route every order of a scenario; write OUT/assignments.csv, OUT/summary.json and
    OUT/explanations.jsonl (why each order went where it went)."""
    _check_run_options(time_limit, gap, out, overwrite)

    from router.run import solve_folder
    from solver.batch import OptimizeParams

    params = OptimizeParams(time_limit=time_limit, rel_gap=gap, seed=seed)
    executor = _ray_executor(workers, ray_address)
    try:
        if quiet:
            output = solve_folder(
                scenario_dir, out, strategy=strategy.value, params=params,
                counterfactuals=counterfactuals or None, executor=executor,
            )  # fmt: skip
        else:
            with _ProgressDisplay() as display:
                output = solve_folder(
                    scenario_dir, out, strategy=strategy.value, params=params,
                    progress=display.update, counterfactuals=counterfactuals or None,
                    executor=executor,
                )  # fmt: skip
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:  # e.g. --out on a read-only disk
        _fail(f"cannot write the answer to {out}: {_unwritable(out, exc)}")
    finally:
        if executor is not None:
            executor.close()
    if as_json:
        print(json.dumps(output.summary, indent=2, allow_nan=False))
    else:
        print(summary_table(output.summary, output.scenario, out))
    if output.stopped_by is not None:
        # The answer is written (status "interrupted"); the exit code still
        # tells a script the run was cut short: 130 after Ctrl-C, 143 after SIGTERM.
        raise typer.Exit(code=128 + output.stopped_by)


def _ray_executor(workers: int | None, ray_address: str | None):
    """The Ray executor that ``--workers`` or ``--ray-address`` ask for; ``None`` without."""
    if workers is None and not ray_address:
        return None
    if workers is not None and ray_address:
        _fail(
            f"--workers {workers} starts a local Ray runtime and --ray-address (or RAY_ADDRESS) "
            f"{ray_address!r} joins a cluster: give one of them"
        )
    from router.ray_executor import RayExecutor

    try:
        return RayExecutor(address=ray_address or None, workers=workers)
    except ImportError as exc:
        _fail(str(exc))
    except (ValueError, ConnectionError, RuntimeError) as exc:
        where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray runtime"
        _fail(f"cannot start {where}: {exc}")


@app.command()
def reoptimize(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder: the orders, and the stock they may use (what they hold now included).")],
    current: Annotated[Path, typer.Option("--current", help="The orders' current routing, as assignments.csv (feasible on the scenario).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for assignments.csv, moves.csv and summary.json.")],
    max_moves: Annotated[str | None, typer.Option("--max-moves", help="At most this many orders may move: a number (250) or a share of the orders (10%).")] = None,
    move_cost: Annotated[float, typer.Option("--move-cost", help="Cost added per moved order (>= 0).")] = 0.0,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for the whole solve (finite, > 0).")] = 60.0,
    gap: Annotated[float, typer.Option(help="Stop once proven within this relative gap, in [0, 1).")] = 1e-3,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed of the MIP solver.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the answer in a non-empty OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole summary.json instead of the table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Re-decide held orders jointly from their current routing, under a churn rule
    (a cost per moved order and/or a limit on the moves); write the new routing,
    the moves per order, and the before/after KPIs."""
    _check_run_options(time_limit, gap, out, overwrite)
    if not (math.isfinite(move_cost) and move_cost >= 0):
        _fail(f"--move-cost must be a finite number >= 0 (got {move_cost})")

    from router.checker import load_assignments
    from router.reoptimize import parse_max_moves, reoptimize_scenario, write_plan
    from router.scenario import load_scenario
    from solver.batch import OptimizeParams

    params = OptimizeParams(time_limit=time_limit, rel_gap=gap, seed=seed)
    try:
        scenario = load_scenario(scenario_dir)
        if not current.is_file():
            _fail(f"--current {current}: file not found")
        held = load_assignments(current)
        orders = int(scenario.orders["order_id"].nunique())
        limit = None if max_moves is None else parse_max_moves(max_moves, orders)
        run = functools.partial(
            reoptimize_scenario, scenario, held, move_cost=move_cost, max_moves=limit,
            params=params, current_file=current.name,
        )  # fmt: skip
        if quiet:
            output = run()
        else:
            with _ProgressDisplay() as display:
                output = run(progress=display.update)
        write_plan(out, output)
    except ScenarioError as exc:
        _fail(str(exc))
    except ValueError as exc:  # --max-moves
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the answer to {out}: {_unwritable(out, exc)}")
    if as_json:
        print(json.dumps(output.summary, indent=2, allow_nan=False))
    else:
        print(plan_table(output.summary, out))


def plan_table(summary: dict, out: Path) -> str:
    """Before/after KPIs of a re-optimization, and where the files are."""
    before, after = summary["before"], summary["after"]
    rows = [
        ("cost", f"{before['cost']:,.2f}", f"{after['cost']:,.2f}"),
        ("splits", str(before["splits"]), str(after["splits"])),
        ("fill rate", f"{before['fill_rate']:.2%}", f"{after['fill_rate']:.2%}"),
        ("store unit share", f"{before['store_unit_share']:.2%}", f"{after['store_unit_share']:.2%}"),
        (
            "store shipments within 5 km",
            f"{before['store_shipments_within_5km']:.2%}",
            f"{after['store_shipments_within_5km']:.2%}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'before':>14}  {'after':>14}"]
    lines += [f"{name:<{width}}  {b:>14}  {a:>14}" for name, b, a in rows]
    limit = summary["max_moves"]
    lines.append(
        f"orders moved: {summary['orders_moved']:,} of {summary['orders']:,}"
        + (f" (limit {limit:,})" if limit is not None else "")
        + f"; saving {summary['saving']:,.2f} ({summary['saving_share']:.2%})"
    )
    gap = summary["gap"]
    lines.append(
        f"status: {summary['status']}; objective {summary['objective']:,.2f}, "
        f"lower bound {summary['lower_bound']:,.2f}"
        + ("" if gap is None else f", gap {gap:.3%}")
        + f"; {summary['solve_seconds']:.1f} s"
    )
    lines.append(f"written: {out / 'assignments.csv'}, {out / 'moves.csv'}, {out / 'summary.json'}")
    return "\n".join(lines)


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
def geocode(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder whose orders.csv has an address column.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the scenario with lat/lon filled in.")],
    cache: Annotated[Path | None, typer.Option("--cache", help="SQLite file of places already found (default: $OMNIROUTE_GEOCODER_CACHE or ~/.cache/omniroute/geocode.sqlite).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the files of a non-empty OUT.")] = False,
) -> None:
    """Place the orders that carry an address and no lat/lon; write the scenario to OUT.

    The geocoder is the Nominatim-compatible server of $OMNIROUTE_GEOCODER_URL (none:
    the centroid of a city named in the address)."""
    import os

    from router.geocode import AddressGeocoder, GeocoderSettings, SqliteGeocodeCache
    from router.scenario_geocode import geocode_scenario

    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        _fail(f"--out {out} exists and is not empty (pass --overwrite)")
    if out.resolve() == scenario_dir.resolve():
        _fail("--out must not be the scenario folder itself")
    try:
        settings = GeocoderSettings.from_env()
    except ValueError as exc:
        _fail(str(exc))
    default = os.environ.get("OMNIROUTE_GEOCODER_CACHE") or "~/.cache/omniroute/geocode.sqlite"
    store = SqliteGeocodeCache((cache or Path(default)).expanduser())
    try:
        report = geocode_scenario(scenario_dir, out, AddressGeocoder(settings, store))
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the scenario to {out}: {_unwritable(out, exc)}")
    finally:
        store.close()
    sources = ", ".join(f"{n} from {s}" for s, n in sorted(report.by_source.items())) or "none"
    print(f"placed {report.orders_placed} order(s) ({sources}); scenario written to {out}")


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


@app.command()
def compare(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder (omniroute-scenario/1).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the KPI table, the charts and each variant's answer.")],
    strategies: Annotated[str, typer.Option(help="Comma-separated variants STRATEGY[:KEY=VALUE]..., e.g. greedy,optimize,optimize:split_penalty=20 (keys: time_limit, gap, seed, split_penalty, unfilled_penalty).")] = "greedy,optimize",
    pooling: Annotated[bool, typer.Option("--pooling", help="The one-pool study: channel silos against one pool, and the pool's stock for the silos' fill rate.")] = False,
    steps: Annotated[int, typer.Option(min=1, max=20, help="Bisection steps on the pool's stock factor (--pooling).")] = 6,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds per optimize solve (finite, > 0).")] = 60.0,
    gap: Annotated[float, typer.Option(help="Stop each optimize solve once proven within this relative gap, in [0, 1).")] = 1e-3,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed of the MIP solver.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty OUT.")] = False,
) -> None:
    """Run several strategies or parameter sets on the same batch; one KPI table and charts."""
    if not (math.isfinite(time_limit) and time_limit > 0):
        _fail(f"--time-limit must be a finite number of seconds > 0 (got {time_limit})")
    if not (math.isfinite(gap) and 0 <= gap < 1):
        _fail(f"--gap must be a number in [0, 1) (got {gap})")
    _check_out(out, overwrite)
    from router.charts import MissingExtra, require_matplotlib
    from router.compare import VariantError, parse_variants

    try:
        require_matplotlib("omniroute compare")
        variants = parse_variants(strategies)
    except MissingExtra as exc:
        _fail(str(exc))
    except VariantError as exc:
        _fail(f"--strategies: {exc}")

    from router.compare import run_compare
    from router.pooling import run_pooling
    from router.scenario import load_scenario
    from solver.params import OptimizeParams

    defaults = OptimizeParams(time_limit=time_limit, rel_gap=gap, seed=seed)
    try:
        scenario = load_scenario(scenario_dir)
        if pooling:
            text = run_pooling(scenario, scenario_dir, variants, defaults, out, steps=steps, log=_log)
        else:
            text = run_compare(scenario, scenario_dir, variants, defaults, out, log=_log)
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write to {out}: {_unwritable(out, exc)}")
    print(text)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="An answer folder (assignments.csv, summary.json).")],
    scenario: Annotated[Path | None, typer.Option("--scenario", help="The scenario it answers (default: the scenario_dir its summary.json names).")] = None,
) -> None:
    """Draw one answer (map, cost breakdown, distances, node load) as PNGs and one HTML page."""
    from router.charts import MissingExtra, require_matplotlib

    try:
        require_matplotlib("omniroute report")
    except MissingExtra as exc:
        _fail(str(exc))
    from router.report import read_answer, write_report

    try:
        answer = read_answer(out_dir, scenario)
        page = write_report(answer)
    except ScenarioError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the report to {out_dir}: {_unwritable(out_dir, exc)}")
    print(page)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        _fail(f"--out {out} exists and is not empty (pass --overwrite)")


def _log(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True)


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
        self._tasks: int | None = None
        self._status = err.status(self._text(), spinner="dots")

    def _text(self) -> str:
        parts = [f"{self._phase}", f"{time.perf_counter() - self._started:6.1f}s"]
        if self._best is not None:
            parts.append(f"best {self._best:,.2f}")
        if self._bound is not None:
            parts.append(f"bound {self._bound:,.2f}")
        if self._tasks is not None:
            parts.append(f"tasks {self._tasks:,}")
        return "  ".join(parts)

    def update(self, phase: str, details: dict) -> None:
        if phase != self._phase:
            err.log(self._text().replace(self._phase, f"{self._phase} done", 1), highlight=False)
        self._phase = phase
        self._best = details.get("best", self._best)
        self._bound = details.get("bound", self._bound)
        self._tasks = details.get("tasks", self._tasks)
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
