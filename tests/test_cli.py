"""Tests for router.cli, run as the real ``omniroute`` process.

Bad data must give exit code 2, one message line on stderr naming the file (and
the row and column where there is one), no Python traceback, and nothing in the
output folder. Each process costs about a second of start-up, so the bad-input
cases are run concurrently, once, by a module fixture.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import line_row, node_row, write_scenario

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "omniroute"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "router.cli"]

SUMMARY_KEYS = {
    "status", "strategy", "total_cost", "shipping", "handling", "splits", "unfilled_units",
    "lower_bound", "gap", "solve_seconds", "orders", "lines",
}  # fmt: skip

NODES = [
    node_row("W", ship_fixed=5, ship_per_km=0.01, handling=0.5),  # row 2
    node_row(
        "S", "store", lon=1, ship_fixed=2, ship_per_km=0.1, handling=1, capacity=3, max_km=120
    ),
]
INVENTORY = ["W,A,10", "W,B,10", "S,A,3"]  # rows 2-4
ORDERS = [
    line_row("O1", "L1", "A", 2),  # row 2
    line_row("O1", "L2", "B", 1),  # row 3
    line_row("O2", "L1", "A", 1, lon=3, pickup="S"),  # row 4
]


def omniroute(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def _with(rows: list[str], index: int, row: str) -> list[str]:
    return [row if i == index else r for i, r in enumerate(rows)]


def _missing_file(folder: Path) -> None:
    (folder / "inventory.csv").unlink()


# id: (changes to the base tables, or a function editing the folder; what stderr must name)
# fmt: off
BAD_INPUT = {
    "missing file": (_missing_file, "inventory.csv"),
    "missing column": (
        {"orders": "order_id,line_id,sku,qty,lat,lon\nO1,L1,A,1,0,0\n"}, "orders.csv"),
    "not a number": (
        {"nodes": _with(NODES, 1, "S,store,0,1,abc,0.1,1,3,120")}, "nodes.csv row 3, column ship_fixed"),
    "negative quantity": (
        {"orders": _with(ORDERS, 1, line_row("O1", "L2", "B", -2))}, "orders.csv row 3, column qty"),
    "negative capacity": (
        {"nodes": _with(NODES, 1, node_row("S", "store", lon=1, capacity=-1))},
        "nodes.csv row 3, column capacity_units"),
    "latitude out of range": (
        {"nodes": _with(NODES, 0, node_row("W", lat=95))}, "nodes.csv row 2, column lat"),
    "unknown node in inventory": (
        {"inventory": _with(INVENTORY, 1, "X,B,10")}, "inventory.csv row 3, column node_id"),
    "duplicate node id": (
        {"nodes": _with(NODES, 1, node_row("W", "store", lon=1))}, "nodes.csv row 3, column node_id"),
    "duplicate (node, sku)": (
        {"inventory": _with(INVENTORY, 2, "W,A,1")}, "inventory.csv row 4, column sku"),
    "order lines at different locations": (
        {"orders": _with(ORDERS, 1, line_row("O1", "L2", "B", 1, lat=2))}, "orders.csv row 3, column lat"),
    "unknown pickup node": (
        {"orders": _with(ORDERS, 2, line_row("O2", "L1", "A", 1, lon=3, pickup="S7"))},
        "orders.csv row 4, column pickup_node"),
    "wrong format": (
        {"meta": {"format": "omniroute-scenario/9", "split_penalty": 6, "unfilled_penalty": 150}},
        "scenario.json"),
    "bad JSON": ({"meta": "{'format': 'omniroute-scenario/1'}"}, "scenario.json"),
}
# fmt: on

# id: (extra solve options on the valid base scenario, what stderr must name)
BAD_OPTIONS = {
    "strategy": (("--strategy", "fastest"), "--strategy"),
    "time-limit": (("--time-limit", "0"), "--time-limit"),
    "time-limit inf": (("--time-limit", "inf"), "--time-limit"),
    "time-limit nan": (("--time-limit", "nan"), "--time-limit"),
    "time-limit negative": (("--time-limit", "-1"), "--time-limit"),
    "gap": (("--gap", "1.5"), "--gap"),
    "gap nan": (("--gap", "nan"), "--gap"),
    "seed negative": (("--seed", "-1"), "--seed"),
    "seed too large": (("--seed", str(2**31)), "--seed"),
    "seed not a number": (("--seed", "one"), "--seed"),
    "unknown option": (("--fast",), "--fast"),
}
# A broken cell whose value has brackets (rich markup) is still quoted as it is.
BAD_INPUT["value with brackets"] = (
    {"orders": _with(ORDERS, 1, line_row("O1", "L2", "B", "[red]2[/red]"))},
    "orders.csv row 3, column qty: must be an integer >= 1 (got '[red]2[/red]')",
)


@pytest.fixture(scope="module")
def failing_runs(tmp_path_factory):
    """{case: (completed process, out folder)} for every BAD_INPUT and BAD_OPTIONS case,
    plus a missing scenario folder; the processes run concurrently."""
    root = tmp_path_factory.mktemp("failing")
    base = write_scenario(root / "base", nodes=NODES, inventory=INVENTORY, orders=ORDERS)
    jobs = {}
    for i, (case, (change, _expect)) in enumerate(BAD_INPUT.items()):
        tables = {"nodes": NODES, "inventory": INVENTORY, "orders": ORDERS}
        if isinstance(change, dict):
            tables.update(change)
        folder = write_scenario(root / f"scenario-{i}", **tables)
        if callable(change):
            change(folder)
        out = root / f"out-{i}"
        if i % 2:  # an existing, empty --out folder must stay empty
            out.mkdir()
        jobs[case] = (("solve", folder, "--out", out, "--quiet"), out)
    for case, (options, _expect) in BAD_OPTIONS.items():
        out = root / f"out-{case}"
        jobs[case] = (("solve", base, "--out", out, "--quiet", *options), out)
    out = root / "out-missing-folder"
    jobs["missing folder"] = (("solve", root / "no-such-scenario", "--out", out, "--quiet"), out)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {case: pool.submit(omniroute, *args) for case, (args, _out) in jobs.items()}
        return {case: (futures[case].result(), jobs[case][1]) for case in jobs}


def _assert_exit_2_with_one_message(run, out, expect):
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert expect in message
    assert run.stdout == ""
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow  # failing_runs starts ~17 processes
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_clear_message(failing_runs, case):
    _assert_exit_2_with_one_message(*failing_runs[case], BAD_INPUT[case][1])


@pytest.mark.slow  # failing_runs starts ~17 processes
@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_exits_2(failing_runs, case):
    _assert_exit_2_with_one_message(*failing_runs[case], BAD_OPTIONS[case][1])


@pytest.mark.slow  # failing_runs starts ~17 processes
def test_missing_scenario_folder_exits_2(failing_runs):
    _assert_exit_2_with_one_message(*failing_runs["missing folder"], "no-such-scenario")


def test_out_naming_a_file_exits_2_without_traceback(tmp_path):
    folder = write_scenario(tmp_path / "s", nodes=NODES, inventory=INVENTORY, orders=ORDERS)
    not_a_folder = tmp_path / "out.txt"
    not_a_folder.write_text("keep me\n")
    run = omniroute("solve", folder, "--out", not_a_folder, "--quiet")
    assert not_a_folder.read_text() == "keep me\n"
    assert "Traceback" not in run.stderr
    assert run.returncode == 2


# --- solve, then check ---------------------------------------------------------------


def _strict_json(text: str):
    """json.loads that refuses Infinity and NaN (not JSON, though Python writes them)."""

    def refuse(constant):
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def _solve_and_check(scenario: Path, out: Path, *options, quiet: bool = True) -> dict:
    run = omniroute(
        "solve", scenario, "--out", out, "--json", *(["--quiet"] if quiet else []), *options
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    summary = _strict_json((out / "summary.json").read_text())
    assert json.loads(run.stdout) == summary  # with --json stdout is the summary, nothing else
    assert set(summary) >= SUMMARY_KEYS
    header = (out / "assignments.csv").read_text().splitlines()[0]
    assert header == "order_id,line_id,node_id,qty,km,handling_cost,shipping_cost"
    check = omniroute("check", scenario, out / "assignments.csv")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("FEASIBLE")
    cost_line = next(line for line in check.stdout.splitlines() if line.startswith("total_cost"))
    assert float(cost_line.split()[1]) == pytest.approx(summary["total_cost"], abs=1e-4)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    return summary


@pytest.mark.slow
def test_solve_tiny_scenario_then_check(tmp_path):
    folder = write_scenario(tmp_path / "s", nodes=NODES, inventory=INVENTORY, orders=ORDERS)
    # without --quiet: progress goes to stderr, stdout stays the JSON summary
    summary = _solve_and_check(folder, tmp_path / "out", quiet=False)
    # O1 (2 A + 1 B at the customer) whole from W: 5 + 3 * 0.5 = 6.5;
    # O2 picks up at S: handling 1, no shipping. Total 7.5.
    assert summary["total_cost"] == pytest.approx(7.5)
    assert summary["status"] == "optimal" and summary["strategy"] == "optimize"
    assert (summary["orders"], summary["lines"]) == (2, 3)


def test_check_reports_an_infeasible_answer(tmp_path):
    folder = write_scenario(tmp_path / "s", nodes=NODES, inventory=INVENTORY, orders=ORDERS)
    answer = tmp_path / "assignments.csv"
    # O2 is a pickup at S: serving it from W breaks the pickup rule.
    answer.write_text("order_id,line_id,node_id,qty\nO2,L1,W,1\n")
    run = omniroute("check", folder, answer)
    assert run.returncode == 1
    assert run.stdout.startswith("INFEASIBLE") and "pickup" in run.stdout


def test_check_with_a_malformed_answer_exits_2(tmp_path):
    folder = write_scenario(tmp_path / "s", nodes=NODES, inventory=INVENTORY, orders=ORDERS)
    answer = tmp_path / "assignments.csv"
    answer.write_text("order_id,line_id,node_id,qty\nO1,L1,W,two\n")
    run = omniroute("check", folder, answer)
    assert run.returncode == 2
    assert "assignments.csv row 2, column qty" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_generate_then_solve_greedy(tmp_path):
    scenario = tmp_path / "generated"
    run = omniroute(
        "generate", scenario, "--orders", 40, "--stores", 6, "--warehouses", 2, "--skus", 20,
        "--seed", 3,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = _solve_and_check(scenario, tmp_path / "out", "--strategy", "greedy")
    assert summary["strategy"] == "greedy" and summary["orders"] == 40


@pytest.mark.slow
def test_end_to_end_on_the_realistic_fixture(tmp_path):
    scenario = ROOT / "fixtures" / "cn-2000"
    if not (scenario / "orders.csv").exists():
        pytest.skip("fixtures/cn-2000 is not there yet")
    summary = _solve_and_check(scenario, tmp_path / "out", "--time-limit", "20")
    assert summary["orders"] >= 1000
    assert summary["lower_bound"] <= summary["total_cost"]
    assert summary["status"] in ("optimal", "feasible", "time_limit")


def test_generate_into_a_non_empty_folder_exits_2_and_keeps_it(tmp_path):
    out = tmp_path / "scenario"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    run = omniroute(
        "generate", out, "--orders", "5", "--stores", "2", "--warehouses", "1", "--skus", "5"
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "--overwrite" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def _one_line_error(run, *expect) -> str:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error: ")
    for text in expect:
        assert text in message, message
    return message


# --- solve: the table, --json, --overwrite -----------------------------------------------


def test_solve_prints_a_short_table_and_writes_strict_json(tmp_path):
    scenario = ROOT / "fixtures" / "greedy-trap"
    optimum = json.loads((scenario / "expected.json").read_text())["optimal_total_cost"]
    out = tmp_path / "out"
    run = omniroute("solve", scenario, "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(
        f"status       optimal (optimize, gap 0.000% to the lower bound {optimum:,.2f})"
    )
    assert f"total cost   {optimum:,.2f}" in lines
    assert "  unfilled   0.00 (0 units x 150)" in lines
    assert lines[-2:] == [f"answer       {out / 'assignments.csv'}", f"summary      {out / 'summary.json'}"]
    assert "details" not in run.stdout  # the internals stay in summary.json
    summary = _strict_json((out / "summary.json").read_text())
    assert summary["total_cost"] == pytest.approx(optimum, abs=1e-6)


def test_solve_refuses_a_non_empty_out_unless_overwrite(tmp_path):
    scenario = ROOT / "fixtures" / "greedy-trap"
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep\n")
    _one_line_error(omniroute("solve", scenario, "--out", out, "--quiet"), "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    run = omniroute("solve", scenario, "--out", out, "--quiet", "--overwrite", "--strategy", "greedy")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "assignments.csv", "explanations.jsonl", "mine.txt", "summary.json",
    ]  # fmt: skip


def test_strategy_choices_match_the_runner_and_show_in_help():
    from router.cli import Strategy
    from router.run import STRATEGIES

    assert tuple(s.value for s in Strategy) == STRATEGIES
    run = omniroute("solve", "--help")
    assert run.returncode == 0 and "optimize|greedy" in run.stdout


# --- one-line errors everywhere ------------------------------------------------------------


def test_version():
    run = omniroute("--version")
    assert run.returncode == 0
    assert re.fullmatch(r"omniroute \S+\n", run.stdout)


def test_unknown_command_and_missing_argument_are_one_line():
    _one_line_error(omniroute("route"), "No such command")
    _one_line_error(omniroute("solve"), "scenario_dir")


def test_generate_under_a_file_or_into_an_unwritable_place_exits_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x\n")
    small = ("--orders", 5, "--stores", 2, "--warehouses", 1, "--skus", 5)
    _one_line_error(omniroute("generate", a_file / "scenario", *small), f"{a_file} is a file")
    _one_line_error(omniroute("generate", "/proc/omniroute-test", *small), "/proc/omniroute-test")
    assert a_file.read_text() == "x\n"


def test_solve_under_a_file_exits_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x\n")
    run = omniroute("solve", ROOT / "fixtures" / "greedy-trap", "--out", a_file / "out", "--quiet")
    _one_line_error(run, f"{a_file} is a file")


def test_check_on_missing_files_exits_2(tmp_path):
    scenario = ROOT / "fixtures" / "greedy-trap"
    _one_line_error(omniroute("check", scenario, tmp_path / "nope.csv"), "nope.csv")
    _one_line_error(omniroute("check", tmp_path / "nowhere", tmp_path / "nope.csv"), "nope.csv")
    answer = tmp_path / "assignments.csv"
    answer.write_text("order_id,line_id,node_id,qty\n")
    _one_line_error(omniroute("check", tmp_path / "nowhere", answer), "nowhere")


def test_a_database_url_without_its_driver_names_the_extra(tmp_path):
    # psycopg2 is not installed here (omniroute uses psycopg 3): the same path as a
    # plain install without the postgres extra, which .ci/run exercises for psycopg.
    run = omniroute("keys", "create", "--role", "oms", "--database-url", "postgresql+psycopg2://x/y")
    _one_line_error(run, "psycopg2", "omniroute[postgres]")
    run = omniroute("load", ROOT / "fixtures" / "greedy-trap", "--database-url", "no-such-url")
    _one_line_error(run, "no-such-url", "not understood")


# --- bundled files: spec, fixtures, bench --------------------------------------------------


def test_spec_and_fixtures_commands():
    spec = omniroute("spec")
    assert spec.returncode == 0
    assert spec.stdout == (ROOT / "docs" / "scenario-format.md").read_text(encoding="utf-8")
    assert omniroute("spec", "--path").stdout.strip() == str(ROOT / "docs" / "scenario-format.md")
    listed = omniroute("fixtures").stdout.splitlines()
    assert f"{'greedy-trap':<20} {ROOT / 'fixtures' / 'greedy-trap'}" in listed
    assert len(listed) == len(list((ROOT / "fixtures").glob("*/scenario.json")))
    one = omniroute("fixtures", "cn-2000")
    assert one.returncode == 0 and one.stdout == f"{ROOT / 'fixtures' / 'cn-2000'}\n"
    _one_line_error(omniroute("fixtures", "cn-3000"), "cn-3000", "greedy-trap")


def test_bench_help_shows_the_runner_options():
    run = omniroute("bench", "--help")
    assert run.returncode == 0
    assert run.stdout.startswith("usage: omniroute bench")
    for option in ("--suite", "--scenario", "--strategies", "--time-limit", "--seeds"):
        assert option in run.stdout
    wrong = omniroute("bench", "--suite", "huge")  # argparse: usage line + error line
    assert wrong.returncode == 2 and "--suite" in wrong.stderr and "Traceback" not in wrong.stderr


def test_json_safe_turns_infinities_into_null():
    import numpy as np

    from router.run import json_safe

    value = {"a": float("inf"), "b": [1.5, float("nan"), np.float64("-inf")], "c": "x", "d": 2}
    assert json_safe(value) == {"a": None, "b": [1.5, None, None], "c": "x", "d": 2}
    _strict_json(json.dumps(json_safe(value), allow_nan=False))
