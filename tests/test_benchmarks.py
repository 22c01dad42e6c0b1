"""Smoke test of the benchmark runner (benchmarks are not tests: this only checks
that the runner runs and writes a sane table, not how good the numbers are)."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks.runner import COLUMNS, main
from router.generate import generate_scenario


@pytest.fixture(scope="module")
def tiny_scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "tiny"
    generate_scenario(folder, orders=30, stores=8, warehouses=3, skus=40, seed=3)
    return folder


def test_runner_writes_a_sane_table(tiny_scenario, tmp_path):
    out = tmp_path / "results"
    code = main(
        [
            "--scenario", str(tiny_scenario),
            "--strategies", "optimize,greedy",
            "--time-limit", "5",
            "--reference-mip", "10",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0

    with (out / "custom.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = {row["strategy"]: row for row in reader}
    assert set(rows) == {"greedy", "optimize", "reference-mip"}

    for strategy, row in rows.items():
        assert row["scenario"] == "tiny"
        assert row["orders"] == "30"
        assert row["feasible"] == "True", strategy
        assert row["violations"] == "0"
        assert row["error"] == ""
        # The checker's cost is the cost the solver reported.
        assert float(row["checked_cost"]) == pytest.approx(float(row["total_cost"]), abs=1e-5)
        assert 0.0 <= float(row["fill_rate"]) <= 1.0
        assert 0.0 <= float(row["store_unit_share"]) <= 1.0
        if row["store_shipments_within_5km"]:
            assert 0.0 <= float(row["store_shipments_within_5km"]) <= 1.0
        assert float(row["splits_per_100_orders"]) >= 0.0
        assert float(row["seconds"]) > 0.0
        assert 10.0 < float(row["peak_memory_mb"]) < 4096.0

    greedy, optimize, reference = rows["greedy"], rows["optimize"], rows["reference-mip"]
    assert float(greedy["cost_vs_greedy"]) == pytest.approx(1.0)
    assert float(optimize["cost_vs_greedy"]) <= 1.0 + 1e-9
    # Every answer costs at least the best proven lower bound of the scenario...
    best_bound = float(optimize["best_bound"])
    for row in rows.values():
        assert float(row["checked_cost"]) >= best_bound - 1e-6
    # ...and on 30 orders the reference MIP proves the optimum the optimizer must reach.
    assert reference["status"] == "optimal"
    assert optimize["optimum_source"] == "reference-mip"
    assert abs(float(optimize["excess_over_optimum"])) < 1e-6

    report = json.loads((out / "custom.json").read_text())
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["versions"]["highspy"]
    assert len(report["rows"]) == 3
    assert (out / "custom.md").read_text().startswith("| scenario |")


def test_bad_usage_exits_with_code_2(tmp_path):
    assert main(["--strategies", "magic", "--out", str(tmp_path)]) == 2
    assert main(["--time-limit", "0", "--out", str(tmp_path)]) == 2


def test_small_suite_finds_the_hand_checked_optimum(tmp_path):
    """The small suite picks up fixtures/*/expected.json and compares with it."""
    from benchmarks.runner import FIXTURES

    if not (FIXTURES / "greedy-trap" / "expected.json").is_file():
        pytest.skip("fixtures/greedy-trap not present")
    out = tmp_path / "results"
    code = main(["--suite", "small", "--only", "greedy-trap", "--out", str(out)])
    assert code == 0
    with (out / "small.csv").open(newline="") as handle:
        rows = {row["strategy"]: row for row in csv.DictReader(handle)}
    expected = json.loads((FIXTURES / "greedy-trap" / "expected.json").read_text())
    assert rows["optimize"]["optimum_source"] == "expected.json"
    assert float(rows["optimize"]["optimum"]) == pytest.approx(expected["optimal_total_cost"])
    assert abs(float(rows["optimize"]["excess_over_optimum"])) < 1e-7
    assert float(rows["greedy"]["checked_cost"]) > float(rows["optimize"]["checked_cost"])
