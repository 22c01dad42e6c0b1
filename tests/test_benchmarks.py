"""Smoke test of the benchmark runner (benchmarks are not tests: this only checks
that the runner runs and writes a sane table, not how good the numbers are)."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks.runner import COLUMNS, FULL_LP, REFERENCE, main, suite_instances
from router.generate import generate_scenario


@pytest.fixture(scope="module")
def tiny_scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "tiny"
    generate_scenario(folder, orders=30, stores=8, warehouses=3, skus=40, seed=3, regime="scarce")
    return folder


def test_runner_writes_a_sane_table(tiny_scenario, tmp_path):
    out = tmp_path / "results"
    code = main(
        [
            "--scenario", str(tiny_scenario),
            "--strategies", "optimize,greedy",
            "--time-limit", "5",
            "--reference-mip", "10",
            "--reference-lp", "10",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0

    with (out / "custom.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = {row["strategy"]: row for row in reader}
    assert set(rows) == {"greedy", "optimize", REFERENCE, FULL_LP}
    full_lp = rows.pop(FULL_LP)
    meta = json.loads((tiny_scenario / "scenario.json").read_text())["generator"]

    for strategy, row in rows.items():
        assert row["regime"] == "scarce"
        assert float(row["colliding_share"]) == pytest.approx(meta["colliding_share"])
        assert float(row["scenario_greedy_fill"]) == pytest.approx(meta["greedy_fill"])
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
    # The full LP (HiGHS at this size, exact) is below every answer, and each row says so.
    assert full_lp["status"] == "optimal" and full_lp["full_lp_solver"] == "highs"
    lp_value = float(full_lp["full_lp"])
    assert lp_value <= float(reference["checked_cost"]) + 1e-6
    for row in rows.values():
        assert float(row["full_lp"]) == lp_value
        assert float(row["excess_over_full_lp"]) >= -1e-9
    assert float(optimize["bound_over_full_lp"]) == pytest.approx(
        float(optimize["lower_bound"]) / lp_value
    )

    report = json.loads((out / "custom.json").read_text())
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["versions"]["highspy"]
    assert len(report["rows"]) == 4
    assert report["protocol"]["instances"][0]["regime"] == "scarce"
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


def test_pdlp_estimates_the_lp_that_highs_solves_exactly(tiny_scenario):
    """PDLP's primal and dual objectives bracket-or-match HiGHS's LP value to its tolerance."""
    from benchmarks.runner import PDLP_RELATIVE_TOLERANCE, _pdlp
    from router.problem import build_problem
    from router.scenario import load_scenario
    from solver.mip import MipParams, solve_mip
    from solver.model import ModelInput, build_model

    problem = build_problem(load_scenario(tiny_scenario))
    model, *_ = build_model(problem, ModelInput.whole(problem))
    exact = solve_mip(model, MipParams(relax=True)).objective
    estimate = _pdlp(model, time_limit=30.0)
    assert estimate["status"] == "optimal" and estimate["lp_solver"] == "pdlp"
    assert not estimate["lp_exact"]
    for key in ("lp_primal", "lp_dual"):
        assert estimate[key] == pytest.approx(exact, rel=20 * PDLP_RELATIVE_TOLERANCE)


def test_every_generated_suite_instance_comes_in_both_regimes(tmp_path):
    """Each generated shape appears once per regime; cn-2000 is paired with its scarce twin."""
    for suite in ("small", "standard", "large"):
        instances = suite_instances(suite, [1], tmp_path, None)
        generated = [i for i in instances if i.generate is not None]
        shapes: dict[tuple, set] = {}
        for inst in generated:
            shape = tuple(inst.generate[k] for k in ("orders", "stores", "warehouses", "skus"))
            shapes.setdefault(shape, set()).add(inst.regime)
            assert inst.generate["regime"] == inst.regime
        for shape, regimes in shapes.items():
            if shape[0] == 2000:  # plentiful is the committed fixture
                assert "scarce" in regimes
                assert any(i.name == "cn-2000" and i.regime == "plentiful" for i in instances)
            else:
                assert regimes == {"plentiful", "scarce"}, shape
    standard = suite_instances("standard", [1], tmp_path, None)
    orders = sorted({i.generate["orders"] for i in standard if i.generate})
    assert orders == [2000, 20000]
    large = suite_instances("large", [1], tmp_path, None)
    assert {i.generate["orders"] for i in large} == {100_000}


def test_bad_reference_lp_exits_2(tmp_path):
    assert main(["--reference-lp", "0", "--out", str(tmp_path)]) == 2


def test_rules_benchmark_builds_profiles_that_load_and_bind(tmp_path):
    """benchmarks/rules.py's builder writes a profile set, kits and order columns that
    load without error and bind on a tiny scenario: fewer candidate pairs, late flags,
    kit lines, and the single-order path loads the same files."""
    from benchmarks.route_latency import loaded_pool
    from benchmarks.rules import build_rules_scenario, route_requests, service_now
    from router.problem import build_problem
    from router.scenario import load_scenario

    source, rules = tmp_path / "plain", tmp_path / "rules"
    generate_scenario(source, orders=120, stores=16, warehouses=3, skus=60, seed=5)
    built = build_rules_scenario(source, rules)
    for name in ("profiles.json", "kits.csv", "orders.csv", "nodes.csv"):
        assert (rules / name).is_file()

    scenario = load_scenario(rules)  # loads: the files are valid
    assert scenario.profiles is not None and scenario.kits
    assert set(scenario.profiles.profiles) == {"default", "web", "marketplace"}
    assert built["kit_lines"] > 0 and built["promised_orders"] > 0

    plain, ruled = build_problem(load_scenario(source)), build_problem(scenario)
    assert ruled.num_orders == plain.num_orders
    assert ruled.pair_order.size < plain.pair_order.size  # calendars and kinds remove nodes
    assert ruled.order_late is not None and ruled.order_late.any()  # a promise nobody meets
    assert ruled.order_max_shipments is not None and (ruled.order_max_shipments == 1).any()
    assert ruled.node_order_limit is not None
    assert ruled.line_kit is not None and any(ruled.line_kit)

    # The service loads the same files (profiles, kits) and, at the profiles' as_of,
    # flags the same orders late as the batch.
    as_of = service_now()
    late_in_batch = set(ruled.order_ids[ruled.order_late].tolist())
    requests = route_requests(rules, rules / "kits.csv", 1000, seed=1)
    pool, _ = loaded_pool(f"sqlite:///{tmp_path}/with.db", rules, clock=lambda: as_of)
    try:
        assert pool.profile_versions("marketplace")
        assert pool.kit(next(iter(scenario.kits))) is not None
        late_in_service = set()
        for with_rules, _without in requests:
            answer = pool.route(with_rules, quote_only=True)
            if answer.promise_late:
                late_in_service.add(with_rules.order_id)
    finally:
        pool.close()
    asked = {order.order_id for order, _ in requests}
    assert late_in_service and late_in_service == late_in_batch & asked


def test_ray_scaling_writes_a_sane_table(tiny_scenario, tmp_path):
    """benchmarks/ray_scaling.py: greedy and the in-process executor on a tiny batch, each
    in its own process, graded and compared (the Ray rows are the same code path with a
    RayExecutor; tests/test_ray.py covers that executor on a real cluster)."""
    from benchmarks.ray_scaling import main as scaling

    out = tmp_path / "scaling.json"
    code = scaling(
        ["--scenario", str(tiny_scenario), "--executors", "in-process",
         "--time-limit", "5", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    rows = {row["executor"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"greedy", "in-process"}
    greedy, optimize = rows["greedy"], rows["in-process"]
    assert greedy["vs_greedy"] == pytest.approx(1.0)
    assert optimize["orders"] == 30 and optimize["tasks"] is not None
    assert optimize["vs_greedy"] <= 1.0 + 1e-9
    assert optimize["cost"] >= optimize["lower_bound"] - 1e-6
    for row in rows.values():
        assert row["status"] in ("optimal", "feasible", "time_limit"), row
        assert 10.0 < row["peak_rss_mb"] < 4096.0


def test_ray_scaling_bad_usage_exits_2(tmp_path):
    from benchmarks.ray_scaling import main as scaling

    assert scaling(["--executors", "magic", "--out", str(tmp_path / "x.json")]) == 2
    assert scaling(["--executors", "cluster"]) == 2
    assert scaling(["--gap", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert scaling(["--gap", "1.5", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_ray_scaling_stops_at_the_gap(tiny_scenario, tmp_path):
    """``--gap``: each run stops once proven within it, so its seconds are its time there."""
    from benchmarks.ray_scaling import main as scaling

    out = tmp_path / "scaling.json"
    code = scaling(
        ["--scenario", str(tiny_scenario), "--executors", "in-process",
         "--time-limit", "20", "--gap", "0.5", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["gap"] == 0.5
    row = next(r for r in report["rows"] if r["executor"] == "in-process")
    assert row["status"] == "optimal" and row["own_gap"] <= 0.5
    assert row["seconds"] < 20.0
