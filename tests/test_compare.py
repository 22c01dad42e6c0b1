"""Tests for router.compare and ``omniroute compare``: variants, the KPI table, the charts.

The CLI runs as the real process; every solve goes through router.run and its checker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from router.compare import kpi_frame, parse_variant, parse_variants, run_variant
from router.kpis import KPI_COLUMNS, answer_kpis, node_load
from router.scenario import load_scenario
from solver.params import OptimizeParams
from tests.conftest import DEG_KM, line_row, node_row
from tests.test_cli import ROOT, omniroute

FIXTURES = ROOT / "fixtures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib", reason="the report extra (pip install 'omniroute[report]')")


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 2000, f"{path}: {len(data)} bytes"


# --- variants ---------------------------------------------------------------------


def test_a_variant_carries_its_solver_settings_and_penalties():
    variant = parse_variant("optimize:time_limit=10:seed=3:split_penalty=20")
    assert variant.strategy == "optimize"
    params = variant.params(OptimizeParams(time_limit=60, rel_gap=0.01))
    assert (params.time_limit, params.seed, params.rel_gap) == (10, 3, 0.01)
    assert variant.penalties == {"split_penalty": 20}
    assert variant.folder == "optimize_time_limit=10_seed=3_split_penalty=20"


def test_a_plain_strategy_keeps_the_command_defaults():
    variant = parse_variant("optimize")
    defaults = OptimizeParams(time_limit=7, seed=2)
    assert variant.params(defaults) == defaults
    scenario = load_scenario(FIXTURES / "greedy-trap")
    assert variant.scenario(scenario) is scenario


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fastest", "unknown strategy 'fastest'"),
        ("greedy:time_limit=5", "greedy takes no time_limit"),
        ("optimize:time_limit=0", "time_limit must be a finite number of seconds > 0"),
        ("optimize:gap=1", "gap must be a number in [0, 1)"),
        ("optimize:seed=1.5", "seed must be an integer"),
        ("optimize:split_penalty=-1", "split_penalty must be a number >= 0"),
        ("optimize:speed=3", "unknown setting 'speed'"),
        ("optimize:time_limit", "must be KEY=VALUE"),
        ("optimize:time_limit=ten", "time_limit must be a number (got 'ten')"),
        ("optimize:seed=1:seed=2", "seed is given twice"),
    ],
)
def test_a_bad_variant_names_the_rule(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_variant(text)


def test_the_same_variant_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        parse_variants("greedy,optimize,greedy")


# --- KPIs -------------------------------------------------------------------------


def test_near_store_shares_count_only_stores_within_5_km(tiny_scenario_dir):
    # S1 at the customer's door (0 km), S2 0.05 degrees away (5.56 km), W far.
    folder = tiny_scenario_dir(
        nodes=[
            node_row("W", lon=2, ship_fixed=1),
            node_row("S1", "store", ship_fixed=1),
            node_row("S2", "store", lon=0.05, ship_fixed=1),
        ],
        inventory=["W,A,5", "S1,A,1", "S2,A,3"],
        orders=[
            line_row("O1", "1", "A", 1),
            line_row("O2", "1", "A", 2),
            line_row("O3", "1", "A", 1),
        ],
    )
    scenario = load_scenario(folder)
    assignments = pd.DataFrame(
        {
            "order_id": ["O1", "O2", "O3"],
            "line_id": ["1", "1", "1"],
            "node_id": ["S1", "S2", "W"],
            "qty": [1, 2, 1],
        }
    )
    assert 0.05 * DEG_KM > 5
    kpis = answer_kpis(scenario, assignments, {"total_cost": None}, variant="hand")
    assert kpis["store_unit_share"] == pytest.approx(3 / 4)
    assert kpis["store_units_within_5km_share"] == pytest.approx(1 / 3)
    assert kpis["orders_from_store_within_5km_share"] == pytest.approx(1 / 3)
    assert kpis["splits_per_100_orders"] == 0 and kpis["fill_rate"] == 1.0
    load = node_load(scenario, assignments).set_index("node_id")
    assert load["units"].to_dict() == {"W": 1, "S1": 1, "S2": 2}
    assert kpis["busiest_node"] == "S2" and kpis["busiest_node_units"] == 2


def test_capacity_use_is_units_over_capacity(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("W"), node_row("S", "store", capacity=2)],
        inventory=["W,A,5", "S,A,5"],
        orders=[line_row("O1", "1", "A", 3)],
    )
    scenario = load_scenario(folder)
    both = pd.DataFrame(
        {"order_id": ["O1", "O1"], "line_id": ["1", "1"], "node_id": ["W", "S"], "qty": [1, 2]}
    )
    kpis = answer_kpis(scenario, both, {}, variant="full")
    assert (kpis["capacity_nodes"], kpis["max_capacity_use"], kpis["nodes_at_capacity"]) == (
        1,
        1.0,
        1,
    )
    assert kpis["splits"] == 1 and kpis["split_cost"] == 6.0
    one = both.iloc[[1]].assign(qty=1)
    kpis = answer_kpis(scenario, one, {}, variant="half")
    assert (kpis["max_capacity_use"], kpis["nodes_at_capacity"]) == (0.5, 0)
    assert kpis["unfilled_units"] == 2 and kpis["unfilled_cost"] == 300.0


def test_a_penalty_override_routes_differently_but_is_priced_at_the_scenario():
    # split-vs-wait: without the split penalty both orders split over two stores
    # (4 shipments of 6 = 24); at the scenario's penalty 6 that answer costs 36,
    # above the optimum 33.5038 of the scenario's own penalties.
    scenario = load_scenario(FIXTURES / "split-vs-wait")
    optimum = json.loads((FIXTURES / "split-vs-wait" / "expected.json").read_text())
    defaults = OptimizeParams(time_limit=30)
    plain = run_variant(scenario, parse_variant("optimize"), defaults)
    free = run_variant(scenario, parse_variant("optimize:split_penalty=0"), defaults)
    assert plain.kpis["total_cost"] == pytest.approx(optimum["optimal_total_cost"], abs=1e-6)
    assert plain.kpis["objective"] == pytest.approx(plain.kpis["total_cost"], abs=1e-6)
    assert free.kpis["objective"] == pytest.approx(24.0, abs=1e-6)
    assert free.kpis["total_cost"] == pytest.approx(36.0, abs=1e-6)
    assert free.kpis["splits"] == 2 and free.kpis["split_cost"] == 12.0


def test_kpi_frame_has_the_documented_columns():
    assert list(kpi_frame([]).columns) == list(KPI_COLUMNS)


# --- the command ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    result = omniroute(
        "compare", FIXTURES / "greedy-trap", "--out", out,
        "--strategies", "greedy,optimize,optimize:split_penalty=0", "--time-limit", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out, result


def test_compare_prints_one_kpi_table(compared):
    _, result = compared
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["greedy", "optimize", "optimize:split_penalty=0"]
    total = next(line for line in lines if line.startswith("total cost"))
    # greedy-trap: greedy 159.75, optimum 21.7545 (expected.json)
    assert total.split()[2:] == ["159.75", "21.75", "21.75"]
    assert any(line.startswith("fill rate") and "50.00%" in line for line in lines)


def test_the_kpi_csv_matches_each_runs_summary(compared):
    out, _ = compared
    kpis = pd.read_csv(out / "kpis.csv", keep_default_na=False, na_values=[""])
    assert list(kpis.columns) == list(KPI_COLUMNS)
    assert list(kpis["variant"]) == ["greedy", "optimize", "optimize:split_penalty=0"]
    for folder, row in zip(
        ["greedy", "optimize", "optimize_split_penalty=0"], kpis.to_dict("records"), strict=True
    ):
        summary = json.loads((out / folder / "summary.json").read_text())
        assert summary["scenario_dir"] == str((FIXTURES / "greedy-trap").resolve())
        assert row["strategy"] == summary["strategy"] and row["status"] == summary["status"]
        for key in ("total_cost", "shipping", "handling"):
            assert row[key] == pytest.approx(summary[key], abs=1e-6), key
        assert row["objective"] == pytest.approx(summary["total_cost"], abs=1e-6)
        for key in ("splits", "unfilled_units", "orders", "units"):
            assert row[key] == summary[key], key
        for key in ("fill_rate", "store_unit_share", "solve_seconds"):
            assert row[key] == pytest.approx(summary[key], abs=1e-6), key
        if summary["gap"] is None:
            assert pd.isna(row["gap"]) and pd.isna(row["lower_bound"])
        else:
            assert row["gap"] == pytest.approx(summary["gap"], abs=1e-8)
            assert row["lower_bound"] == pytest.approx(summary["lower_bound"], abs=1e-6)
        answer = pd.read_csv(out / folder / "assignments.csv")
        assert row["splits_per_100_orders"] == pytest.approx(100 * summary["splits"] / 2)
        assert row["nodes_used"] == answer["node_id"].nunique()
    load = pd.read_csv(out / "node_load.csv")
    assert list(load.columns) == [
        "variant",
        "node_id",
        "kind",
        "units",
        "capacity_units",
        "capacity_use",
    ]
    assert load.groupby("variant")["units"].sum().to_dict() == {
        "greedy": 1, "optimize": 2, "optimize:split_penalty=0": 2,
    }  # fmt: skip


def test_compare_draws_its_charts(compared):
    out, _ = compared
    for name in ("cost_vs_splits.png", "cost_breakdown.png", "map.png"):
        assert_png(out / name)


# --- bad input: one line, exit 2, nothing written -----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "greedy,fastest"], "--strategies: unknown strategy 'fastest'"),
        (["--strategies", "optimize:time_limit=-1"], "time_limit must be a finite number"),
        (["--time-limit", "0"], "--time-limit must be a finite number of seconds > 0"),
        (["--steps", "0", "--pooling"], "--steps"),
    ],
)
def test_bad_options_give_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = omniroute("compare", FIXTURES / "greedy-trap", "--out", out, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_missing_scenario_folder_is_one_line(tmp_path):
    out = tmp_path / "out"
    result = omniroute("compare", tmp_path / "nowhere", "--out", out)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: scenario folder not found"
    assert not out.exists() or not any(out.iterdir())


def test_a_non_empty_out_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = omniroute("compare", FIXTURES / "greedy-trap", "--out", out, "--strategies", "greedy")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --out {out} exists and is not empty (pass --overwrite)"
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    again = omniroute(
        "compare", FIXTURES / "greedy-trap", "--out", out, "--strategies", "greedy", "--overwrite"
    )
    assert again.returncode == 0, again.stderr
    assert (out / "kpis.csv").is_file() and (out / "notes.txt").is_file()
