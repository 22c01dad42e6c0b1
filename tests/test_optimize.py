"""Tests for solver.batch.optimize: the joint optimizer, rule by rule and end to end.

Every tiny scenario is solved through :func:`router.run.solve_scenario`, which
grades the answer with the independent checker (and raises if it is infeasible
or priced differently), so each test below also proves feasibility. Unless a
test says otherwise: split penalty 6, unfilled penalty 150, every point at
(0, 0) so shipping is ``ship_fixed``, and handling 0.
"""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest

from router.checker import check
from router.generate import generate_scenario
from router.geo import haversine_km
from router.problem import build_problem
from router.run import assignments_frame, solve_scenario
from router.scenario import load_scenario
from solver.batch import OptimizeParams, optimize, solve_greedy
from solver.mip import MipParams, SolveStatus, solve_mip
from solver.model import ModelInput, build_model
from tests.conftest import DEG_KM, fixture_dirs, line_row, node_row, write_scenario

PARAMS = OptimizeParams(time_limit=10.0, rel_gap=1e-9)
ONE_DEGREE_KM = float(haversine_km(0.0, 0.0, 0.0, 1.0))


def _solve(folder, params: OptimizeParams = PARAMS):
    """(summary, allocation {(order, line, node): units}) of the checked answer."""
    output = solve_scenario(load_scenario(folder), params=params)
    allocation = {
        (row.order_id, row.line_id, row.node_id): int(row.qty)
        for row in output.assignments.itertuples()
    }
    return output.summary, allocation


def _assert_optimal(summary, expected_cost):
    assert summary["total_cost"] == pytest.approx(expected_cost, abs=1e-6)
    assert summary["status"] == "optimal"
    assert summary["lower_bound"] <= summary["total_cost"] + 1e-9


def _units_at(allocation, node):
    return sum(units for (_o, _l, n), units in allocation.items() if n == node)


# --- stock: units of a SKU at a node are at most its stock ---------------------------


def _two_orders_one_store(make, store_stock):
    # S (ship 1) and W (ship 10) both hold A; O1 and O2 want one A each.
    return make(
        nodes=[node_row("W", ship_fixed=10), node_row("S", "store", ship_fixed=1)],
        inventory=["W,A,10", f"S,A,{store_stock}"],
        orders=[line_row("O1", "L1", "A"), line_row("O2", "L1", "A")],
    )


def test_stock_binds(tiny_scenario_dir):
    summary, allocation = _solve(_two_orders_one_store(tiny_scenario_dir, 1))
    _assert_optimal(summary, 1 + 10)  # one order from S, the other from W
    assert _units_at(allocation, "S") == 1


def test_stock_does_not_bind(tiny_scenario_dir):
    summary, allocation = _solve(_two_orders_one_store(tiny_scenario_dir, 2))
    _assert_optimal(summary, 1 + 1)
    assert _units_at(allocation, "S") == 2


def _same_sku_twice(make, store_stock):
    # One order, two lines of A: S (ship 1) vs W (ship 10).
    return make(
        nodes=[node_row("W", ship_fixed=10), node_row("S", "store", ship_fixed=1)],
        inventory=["W,A,5", f"S,A,{store_stock}"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "A")],
    )


def test_stock_binds_across_two_lines_of_the_same_sku(tiny_scenario_dir):
    summary, allocation = _solve(_same_sku_twice(tiny_scenario_dir, 1))
    # both from W: 10 < S + W: 1 + 10 + split 6 = 17 < S + unfilled: 1 + 150
    _assert_optimal(summary, 10)
    assert allocation == {("O1", "L1", "W"): 1, ("O1", "L2", "W"): 1}


def test_stock_does_not_bind_across_two_lines_of_the_same_sku(tiny_scenario_dir):
    summary, allocation = _solve(_same_sku_twice(tiny_scenario_dir, 2))
    _assert_optimal(summary, 1)
    assert allocation == {("O1", "L1", "S"): 1, ("O1", "L2", "S"): 1}


# --- capacity: units at a node (all SKUs, pickups included) are at most its capacity ---


def _capacity_scenario(make, capacity, second_order):
    # S (ship 1) holds plenty of A and B but may allocate `capacity` units in all.
    return make(
        nodes=[
            node_row("W", ship_fixed=10),
            node_row("S", "store", ship_fixed=1, capacity=capacity),
        ],
        inventory=["W,A,5", "W,B,5", "S,A,5", "S,B,5"],
        orders=[line_row("O1", "L1", "A"), second_order],
    )


def test_capacity_binds_over_all_skus(tiny_scenario_dir):
    folder = _capacity_scenario(tiny_scenario_dir, 1, line_row("O2", "L1", "B"))
    summary, allocation = _solve(folder)
    _assert_optimal(summary, 1 + 10)
    assert _units_at(allocation, "S") == 1


def test_capacity_does_not_bind(tiny_scenario_dir):
    folder = _capacity_scenario(tiny_scenario_dir, 2, line_row("O2", "L1", "B"))
    summary, allocation = _solve(folder)
    _assert_optimal(summary, 1 + 1)
    assert _units_at(allocation, "S") == 2


def test_capacity_counts_pickup_units(tiny_scenario_dir):
    folder = _capacity_scenario(tiny_scenario_dir, 1, line_row("O2", "L1", "B", pickup="S"))
    summary, allocation = _solve(folder)
    # The pickup must use S (0 shipping) and fills its one unit: O1 ships from W.
    _assert_optimal(summary, 0 + 10)
    assert allocation == {("O2", "L1", "S"): 1, ("O1", "L1", "W"): 1}


# --- reach: a delivery order uses n only within max_km of n --------------------------


def _reach_scenario(make, max_km):
    # S (ship 1) sits one degree (111.195 km) from the customer; W (ship 10) is at the customer.
    return make(
        nodes=[
            node_row("W", ship_fixed=10),
            node_row("S", "store", lon=1, ship_fixed=1, max_km=max_km),
        ],
        inventory=["W,A,5", "S,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )


def test_reach_just_within_max_km(tiny_scenario_dir):
    summary, allocation = _solve(_reach_scenario(tiny_scenario_dir, repr(ONE_DEGREE_KM)))
    _assert_optimal(summary, 1)
    assert allocation == {("O1", "L1", "S"): 1}


def test_reach_just_beyond_max_km(tiny_scenario_dir):
    just_short = repr(float(np.nextafter(ONE_DEGREE_KM, 0.0)))
    summary, allocation = _solve(_reach_scenario(tiny_scenario_dir, just_short))
    _assert_optimal(summary, 10)
    assert allocation == {("O1", "L1", "W"): 1}


# --- pickup: a pickup order uses only its pickup node, at no shipping cost --------------


def _pickup_scenario(make, pickup, store_stock):
    # W: ship 2, handling 0.5; S: ship 4, handling 1.
    return make(
        nodes=[
            node_row("W", ship_fixed=2, handling=0.5),
            node_row("S", "store", ship_fixed=4, handling=1),
        ],
        inventory=["W,A,5", f"S,A,{store_stock}"],
        orders=[line_row("O1", "L1", "A", pickup=pickup)],
    )


def test_pickup_binds_to_its_node(tiny_scenario_dir):
    summary, allocation = _solve(_pickup_scenario(tiny_scenario_dir, "S", 0))
    # S has no A; W has, but may not serve a pickup at S: the unit is unfilled.
    _assert_optimal(summary, 150)
    assert allocation == {}


def test_pickup_pays_handling_but_no_shipping(tiny_scenario_dir):
    summary, allocation = _solve(_pickup_scenario(tiny_scenario_dir, "S", 5))
    _assert_optimal(summary, 1)  # handling 1, shipping 0 (not 4)
    assert summary["shipping"] == 0
    assert allocation == {("O1", "L1", "S"): 1}


def test_delivery_order_is_free_to_choose(tiny_scenario_dir):
    summary, allocation = _solve(_pickup_scenario(tiny_scenario_dir, "", 5))
    _assert_optimal(summary, 2 + 0.5)  # W: 2.5 < S: 4 + 1
    assert allocation == {("O1", "L1", "W"): 1}


# --- split penalty: every shipment of an order beyond its first ---------------------------


def _split_scenario(make, split_penalty):
    # X holds only A (ship 2), Y only B (ship 2), Z both (ship 5).
    return make(
        nodes=[
            node_row("X", ship_fixed=2),
            node_row("Y", ship_fixed=2),
            node_row("Z", ship_fixed=5),
        ],
        inventory=["X,A,5", "Y,B,5", "Z,A,5", "Z,B,5"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "B")],
        split_penalty=split_penalty,
    )


def test_split_penalty_binds(tiny_scenario_dir):
    summary, allocation = _solve(_split_scenario(tiny_scenario_dir, 6))
    _assert_optimal(summary, 5)  # Z alone: 5 < X + Y: 2 + 2 + 6 = 10
    assert summary["splits"] == 0
    assert set(allocation) == {("O1", "L1", "Z"), ("O1", "L2", "Z")}


def test_split_penalty_does_not_bind(tiny_scenario_dir):
    summary, allocation = _solve(_split_scenario(tiny_scenario_dir, 0))
    _assert_optimal(summary, 4)  # X + Y: 2 + 2 + 0 = 4 < Z: 5
    assert summary["splits"] == 1
    assert set(allocation) == {("O1", "L1", "X"), ("O1", "L2", "Y")}


# --- unfilled penalty: every unit not allocated --------------------------------------------


def _unfilled_scenario(make, unfilled_penalty):
    return make(
        nodes=[node_row("W", ship_fixed=200)],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A")],
        unfilled_penalty=unfilled_penalty,
    )


def test_unfilled_penalty_binds(tiny_scenario_dir):
    summary, allocation = _solve(_unfilled_scenario(tiny_scenario_dir, 150))
    _assert_optimal(summary, 150)  # shipping (200) costs more than the penalty
    assert summary["unfilled_units"] == 1 and allocation == {}


def test_unfilled_penalty_does_not_bind(tiny_scenario_dir):
    summary, allocation = _solve(_unfilled_scenario(tiny_scenario_dir, 300))
    _assert_optimal(summary, 200)
    assert summary["unfilled_units"] == 0 and allocation == {("O1", "L1", "W"): 1}


def test_sku_held_nowhere_is_unfilled(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("W", ship_fixed=3)],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A"), line_row("O1", "L2", "NOWHERE", 2)],
    )
    summary, _ = _solve(folder)
    _assert_optimal(summary, 3 + 2 * 150)
    assert summary["unfilled_units"] == 2


# --- shipping: ship_fixed + ship_per_km * distance ----------------------------------------


def _shipping_scenario(make, per_km):
    # W1 one degree away (handling 1), W2 two degrees away (handling 0); both ship 1 fixed.
    return make(
        nodes=[
            node_row("W1", lon=1, ship_fixed=1, ship_per_km=per_km, handling=1),
            node_row("W2", lon=2, ship_fixed=1, ship_per_km=per_km, handling=0),
        ],
        inventory=["W1,A,5", "W2,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )


def test_shipping_distance_binds(tiny_scenario_dir):
    summary, allocation = _solve(_shipping_scenario(tiny_scenario_dir, 0.1))
    # W1: 1 + 0.1 * 111.195 + 1 = 13.12 < W2: 1 + 0.1 * 222.39 + 0 = 23.24
    _assert_optimal(summary, 1 + 0.1 * DEG_KM + 1)
    assert summary["shipping"] == pytest.approx(1 + 0.1 * DEG_KM)
    assert allocation == {("O1", "L1", "W1"): 1}


def test_shipping_distance_does_not_bind(tiny_scenario_dir):
    summary, allocation = _solve(_shipping_scenario(tiny_scenario_dir, 0))
    _assert_optimal(summary, 1)  # W2: 1 + 0 < W1: 1 + 1
    assert allocation == {("O1", "L1", "W2"): 1}


# --- handling: handling_per_unit per allocated unit ------------------------------------------


def _handling_scenario(make, qty):
    # W1: ship 5, handling 1 per unit; W2: ship 7, handling 0.
    return make(
        nodes=[node_row("W1", ship_fixed=5, handling=1), node_row("W2", ship_fixed=7)],
        inventory=["W1,A,5", "W2,A,5"],
        orders=[line_row("O1", "L1", "A", qty)],
    )


def test_handling_binds(tiny_scenario_dir):
    summary, allocation = _solve(_handling_scenario(tiny_scenario_dir, 3))
    _assert_optimal(summary, 7)  # W2: 7 < W1: 5 + 3 * 1 = 8
    assert allocation == {("O1", "L1", "W2"): 3}


def test_handling_does_not_bind(tiny_scenario_dir):
    summary, allocation = _solve(_handling_scenario(tiny_scenario_dir, 1))
    _assert_optimal(summary, 6)  # W1: 5 + 1 = 6 < W2: 7
    assert summary["handling"] == 1
    assert allocation == {("O1", "L1", "W1"): 1}


# --- competing for stock: joint beats first-come ----------------------------------------------


def test_optimizer_beats_greedy_when_orders_compete_for_the_last_unit(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("W", ship_fixed=10), node_row("S", "store", ship_fixed=1)],
        inventory=["W,A,5", "S,A,1"],
        orders=[line_row("O1", "L1", "A"), line_row("O2", "L1", "A", pickup="S")],
    )
    summary, allocation = _solve(folder)
    # Greedy: O1 takes S's last unit (1), the pickup is unfilled (150) = 151.
    # Joint: O1 from W (10), the pickup at S (0) = 10.
    _assert_optimal(summary, 10)
    assert allocation == {("O1", "L1", "W"): 1, ("O2", "L1", "S"): 1}
    greedy = solve_greedy(build_problem(load_scenario(folder)))
    assert greedy.cost.total_cost == pytest.approx(151)


# --- brute force on random tiny scenarios ----------------------------------------------------


def _random_tiny_scenario(folder, seed):
    """2-3 nodes, SKUs A/B (C held nowhere), 1-3 orders of 1-2 lines (<= 4 lines)."""
    rng = np.random.default_rng(seed)
    n_nodes = int(rng.integers(2, 4))
    node_ids = [f"N{i}" for i in range(n_nodes)]
    nodes = [
        node_row(
            node,
            str(rng.choice(["warehouse", "store"])),
            lon=float(rng.choice([0, 0.5, 1, 1.5])),
            ship_fixed=round(float(rng.uniform(0, 8)), 1),
            ship_per_km=round(float(rng.uniform(0, 0.05)), 3),
            handling=round(float(rng.uniform(0, 2)), 1),
            capacity=rng.choice(["", "", "0", "1", "2", "3"]),
            max_km=rng.choice(["", "", "30", "60", "120"]),
        )
        for node in node_ids
    ]
    inventory = [f"{node},{sku},{int(rng.integers(0, 3))}" for node in node_ids for sku in "AB"]
    orders, lines_left = [], 4
    for o in range(int(rng.integers(1, 4))):
        if lines_left == 0:
            break
        lon = float(rng.choice([0, 0.5, 1, 1.5]))
        pickup = str(rng.choice(node_ids)) if rng.random() < 0.25 else ""
        count = min(int(rng.integers(1, 3)), lines_left)
        lines_left -= count
        for li in range(count):
            sku = str(rng.choice(["A", "B", "C"], p=[0.45, 0.45, 0.1]))
            qty = int(rng.integers(1, 3))
            orders.append(line_row(f"O{o}", f"L{li}", sku, qty, lon=lon, pickup=pickup))
    return write_scenario(
        folder,
        nodes=nodes,
        inventory=inventory,
        orders=orders,
        split_penalty=float(rng.choice([0.0, 3.0, 6.0])),
        unfilled_penalty=float(rng.choice([5.0, 20.0, 150.0])),
    )


def _brute_force_optimum(scenario) -> float:
    """Cheapest total cost over every assignment, with the five rules checked directly."""
    nodes = scenario.nodes.to_dict("records")
    stock = {
        (r["node_id"], r["sku"]): int(r["available"]) for r in scenario.inventory.to_dict("records")
    }
    lines = scenario.orders.to_dict("records")
    options = []
    for line in lines:
        allowed = []
        for i, node in enumerate(nodes):
            km = float(haversine_km(line["lat"], line["lon"], node["lat"], node["lon"]))
            if stock.get((node["node_id"], line["sku"]), 0) == 0:
                continue
            if line["pickup_node"]:
                if node["node_id"] != line["pickup_node"]:
                    continue
            elif not (math.isnan(node["max_km"]) or km <= node["max_km"]):
                continue
            allowed.append(i)
        ranges = [range(line["qty"] + 1) for _ in allowed]
        options.append(
            [
                tuple(zip(allowed, units, strict=True))
                for units in itertools.product(*ranges)
                if sum(units) <= line["qty"]
            ]
        )
    best = math.inf
    for choice in itertools.product(*options):
        used_stock: dict = {}
        used_capacity = [0] * len(nodes)
        shipments = set()
        cost = 0.0
        for line, allocation in zip(lines, choice, strict=True):
            allocated = 0
            for i, units in allocation:
                if units == 0:
                    continue
                key = (nodes[i]["node_id"], line["sku"])
                used_stock[key] = used_stock.get(key, 0) + units
                used_capacity[i] += units
                shipments.add((line["order_id"], i))
                cost += nodes[i]["handling_per_unit"] * units
                allocated += units
            cost += scenario.unfilled_penalty * (line["qty"] - allocated)
        if any(used > stock[key] for key, used in used_stock.items()):
            continue
        if any(
            not math.isnan(node["capacity_units"]) and used > node["capacity_units"]
            for node, used in zip(nodes, used_capacity, strict=True)
        ):
            continue
        first_line = {}
        for line in lines:
            first_line.setdefault(line["order_id"], line)
        per_order: dict = {}
        for order, i in shipments:
            per_order[order] = per_order.get(order, 0) + 1
            line = first_line[order]
            if not line["pickup_node"]:
                km = float(haversine_km(line["lat"], line["lon"], nodes[i]["lat"], nodes[i]["lon"]))
                cost += nodes[i]["ship_fixed"] + nodes[i]["ship_per_km"] * km
        cost += scenario.split_penalty * sum(max(0, k - 1) for k in per_order.values())
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_optimizer_matches_brute_force_on_random_tiny_scenarios(tmp_path, seed):
    scenario = load_scenario(_random_tiny_scenario(tmp_path / "s", seed))
    best = _brute_force_optimum(scenario)
    output = solve_scenario(scenario, params=PARAMS)
    summary = output.summary
    assert summary["total_cost"] == pytest.approx(best, abs=1e-6)
    assert summary["lower_bound"] <= best + 1e-6
    # honest status: "optimal" exactly when the bound proves it
    assert (summary["status"] == "optimal") == (summary["gap"] <= PARAMS.rel_gap + 1e-12)


def test_tiny_scenario_with_the_same_sku_on_two_lines_is_proven_optimal(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[node_row("S", "store", ship_fixed=2), node_row("W", ship_fixed=3)],
        inventory=["S,A,1", "W,A,1"],
        orders=[
            line_row("O1", "L1", "A"),
            line_row("O1", "L2", "A"),
            line_row("O2", "L1", "A", pickup="S"),
        ],
        unfilled_penalty=20,
    )
    summary, _ = _solve(folder)
    # The pickup takes S's unit (0); O1 gets W's unit (3) and one unfilled (20) = 23.
    # O1 taking both instead: 2 + 3 + split 6 + pickup unfilled 20 = 31.
    assert summary["total_cost"] == pytest.approx(23)
    assert summary["status"] == "optimal"


# --- committed fixtures: the proven optimum ----------------------------------------------------


def _fixture_params():
    params = []
    for folder in fixture_dirs():
        lines = len((folder / "orders.csv").read_text(encoding="utf-8").splitlines()) - 1
        marks = [pytest.mark.slow] if lines > 500 else []
        params.append(pytest.param(folder, id=folder.name, marks=marks))
    return params or [
        pytest.param(None, id="no-fixtures", marks=pytest.mark.skip("no fixtures yet"))
    ]


@pytest.mark.parametrize("folder", _fixture_params())
def test_fixture_reaches_its_optimum(folder):
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    params = OptimizeParams(time_limit=30.0)
    output = solve_scenario(load_scenario(folder), params=params)  # checked by the checker
    summary = output.summary
    optimum = float(expected["optimal_total_cost"])
    assert summary["total_cost"] == pytest.approx(optimum, rel=params.rel_gap, abs=1e-6)
    assert summary["status"] == "optimal"
    assert summary["lower_bound"] <= optimum + 1e-6
    assert summary["gap"] <= params.rel_gap
    if expected.get("greedy_total_cost") is not None:
        greedy = solve_scenario(load_scenario(folder), strategy="greedy").summary
        assert greedy["total_cost"] == pytest.approx(float(expected["greedy_total_cost"]), abs=1e-6)
        if greedy["total_cost"] > optimum + 1e-6:  # a greedy trap: joint must beat it
            assert summary["total_cost"] < greedy["total_cost"]


# --- generated scenarios: determinism, time limit, valid bound --------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Generated scenarios by (orders, scarcity, seed) -> (folder, problem), made once."""
    root = tmp_path_factory.mktemp("generated")
    cache: dict = {}

    def get(orders: int, scarcity: float, seed: int):
        key = (orders, scarcity, seed)
        if key not in cache:
            folder = root / f"o{orders}-x{scarcity:g}-s{seed}"
            big = orders >= 1000
            generate_scenario(
                folder,
                orders=orders,
                stores=300 if big else 30,
                warehouses=10 if big else 4,
                skus=800 if big else 80,
                seed=seed,
                scarcity=scarcity,
            )
            cache[key] = (folder, build_problem(load_scenario(folder)))
        return cache[key]

    return get


def _run(problem, params):
    started = time.perf_counter()
    return optimize(problem, params, lambda: time.perf_counter() - started)


def test_same_seed_same_answer(generated):
    _folder, problem = generated(300, 2.0, 3)
    params = OptimizeParams(time_limit=20.0, seed=7)
    first, second = _run(problem, params), _run(problem, params)
    assert first.stats.get("contested_orders", 0) > 0  # the joint part really ran
    assert np.array_equal(first.units, second.units)
    assert first.cost == second.cost
    assert first.lower_bound == second.lower_bound


@pytest.mark.parametrize(
    ("orders", "scarcity", "seed"),
    [(100, 1.0, 1), (200, 2.0, 2), (300, 2.0, 3), (300, 1.0, 4)],
)
def test_lower_bound_never_exceeds_the_true_optimum(generated, orders, scarcity, seed):
    _folder, problem = generated(orders, scarcity, seed)
    model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    full = solve_mip(model, MipParams(time_limit=30.0, rel_gap=0.0))
    assert full.status == SolveStatus.OPTIMAL
    params = OptimizeParams(time_limit=20.0)
    result = _run(problem, params)
    # HiGHS stops within 1e-4 absolute of its bound: compare with a hair of slack.
    assert result.lower_bound <= full.objective + 1e-3
    assert result.cost.total_cost >= full.bound - 1e-3
    if result.status == "optimal":
        assert result.cost.total_cost <= full.objective * (1 + params.rel_gap) + 1e-3


@pytest.mark.slow
def test_time_limited_solve_is_feasible_and_honest(generated):
    folder, problem = generated(2000, 1.0, 1)
    params = OptimizeParams(time_limit=0.3)
    started = time.perf_counter()
    result = optimize(problem, params, lambda: time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    assert result.status in ("optimal", "feasible", "time_limit")
    assert result.lower_bound <= result.cost.total_cost
    proven = result.gap <= params.rel_gap + 1e-12
    assert (result.status == "optimal") == proven
    if not proven and elapsed > params.time_limit:
        assert result.status == "time_limit"
    report = check(load_scenario(folder), assignments_frame(problem, result.units))
    assert report.feasible, report.violations[:3]
    assert report.total_cost == pytest.approx(result.cost.total_cost, abs=1e-6)


def test_bound_of_a_large_order_never_exceeds_its_optimum(tmp_path):
    """An order of 9 units goes to the small MIP of solver.order_dp; a plan it calls
    exact feeds the lower bound, so it must be exact to the last decimal, not
    merely within HiGHS's default absolute gap (here: handling costs of 1e-5)."""
    inventory = [
        f"n{n},s{s},{q}"
        for n, row in enumerate(
            [[3, 7, 0, 3], [4, 3, 2, 4], [2, 1, 4, 3], [6, 5, 2, 1], [6, 0, 5, 1]]
        )
        for s, q in enumerate(row)
    ]
    folder = (tmp_path / "s").resolve()
    (folder).mkdir()
    (folder / "scenario.json").write_text(
        json.dumps(
            {
                "format": "omniroute-scenario/1",
                "name": "r",
                "split_penalty": 6.0,
                "unfilled_penalty": 150.0,
            }
        )
    )
    (folder / "nodes.csv").write_text(
        "node_id,kind,lat,lon,ship_fixed,ship_per_km,handling_per_unit,capacity_units,max_km\n"
        "n0,warehouse,30.0,110.0,6.693228,0.0,0.0009265,,\n"
        "n1,warehouse,30.0,110.0,6.333202,0.0,1.35e-05,,\n"
        "n2,warehouse,30.0,110.0,7.59391,0.0,1.49e-05,,\n"
        "n3,warehouse,30.0,110.0,3.698516,0.0,0.0004244,,\n"
        "n4,warehouse,30.0,110.0,1.76384,0.0,0.0005029,,\n"
    )
    (folder / "inventory.csv").write_text("node_id,sku,available\n" + "\n".join(inventory) + "\n")
    (folder / "orders.csv").write_text(
        "order_id,line_id,sku,qty,lat,lon,pickup_node\n"
        "o0,l0,s0,1,30.0,110.0,\no0,l1,s1,5,30.0,110.0,\n"
        "o0,l2,s2,1,30.0,110.0,\no0,l3,s3,2,30.0,110.0,\n"
    )
    out = solve_scenario(load_scenario(folder), params=OptimizeParams(time_limit=10, rel_gap=0))
    model, v, _keys, _rows = build_model(out.problem, ModelInput.whole(out.problem))
    full = solve_mip(model, MipParams(time_limit=30, rel_gap=0, abs_gap=0))
    optimum = check(out.scenario, assignments_frame(out.problem, v.extract(full.x))).total_cost
    assert out.result.lower_bound <= optimum + 1e-9
    assert out.result.cost.total_cost == pytest.approx(optimum, abs=1e-9)


def test_national_batch_moves_from_the_flow_and_bounds_from_its_prices(generated):
    """A batch whose contested part is too big for a joint LP (here by
    parameters: 300 orders, 49 contested, an LP of at most 40): no LP;
    single-order moves improve the capped flow's answer (when it fills more
    units than the colliding orders re-routed greedily, else the better of the
    two), slope-scaled flows improve that, and the best answer stands; the
    price search starts at the flow's prices (the capped flow's left-out
    candidates priced and added first) (in a child while the moves run, then here):
    a proven bound (at most the optimum), above every order alone's."""
    from solver.alone import route_each_order_alone

    folder, problem = generated(300, 2.0, 3)
    params = OptimizeParams(
        time_limit=8.0,
        exact_orders=10,
        exact_candidates=10,
        exact_mip_columns=0,
        whole_lp_columns=0,
        joint_lp_orders=40,
        joint_lp_colliding_share=0.1,
        flow_arcs=100,
        flow_candidates_per_line=1,
        flow_spare_per_line=0,
        region_sweeps=0,
    )
    result = _run(problem, params)
    assert "joint_lp" not in result.stats and "guided_flow" not in result.stats
    assert "regional_sweeps" not in result.stats
    flow, best = result.stats["flow_cost"], result.stats["best_after_greedy_reroute"]
    moves = result.stats["moves"]
    # (rounded to cents in the details)
    assert moves["before"] in (pytest.approx(flow, abs=0.01), pytest.approx(best, abs=0.01))
    assert moves["after"] <= best and sum(moves["moved"]) > 0
    # then slope-scaled flows from the moves' answer (kept only if cheaper)
    slope = result.stats["slope_scaling"]
    assert slope["before"] == pytest.approx(moves["after"], abs=0.01)
    assert slope["after"] <= slope["before"] and len(slope["costs"]) >= 1
    assert result.cost.total_cost == pytest.approx(slope["after"], abs=0.01)
    # the capped flow's left-out candidates were priced (its prices start the search)
    assert result.stats["flow_pricing"]["rounds"] >= 1
    assert result.stats["bound"]["iterations"] > 0
    model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    full = solve_mip(model, MipParams(time_limit=30.0, rel_gap=0.0))
    assert result.lower_bound <= full.objective + 1e-3
    assert result.lower_bound > route_each_order_alone(problem).bound
    report = check(load_scenario(folder), assignments_frame(problem, result.units))
    assert report.feasible, report.violations[:3]


def test_national_batch_sweeps_regions_from_the_flow(generated):
    """With regional sweeps (the default): the national batch's contested
    orders re-decided region by region (each region's LP, its guided flow and
    moves) from the flow's answer instead of moves over the whole part; two
    sweeps, each only improving; then slope scaling; a feasible answer and a
    proven bound."""
    folder, problem = generated(300, 2.0, 3)
    params = OptimizeParams(
        time_limit=20.0,
        exact_orders=10,
        exact_candidates=10,
        exact_mip_columns=0,
        whole_lp_columns=0,
        joint_lp_orders=40,
        joint_lp_colliding_share=0.1,
        flow_arcs=100,
        flow_candidates_per_line=1,
        flow_spare_per_line=0,
        region_orders=20,
        region_min_seconds=0.5,
    )
    result = _run(problem, params)
    assert "moves" not in result.stats and "joint_lp" not in result.stats
    sweeps = result.stats["regional_sweeps"]
    flow, best = result.stats["flow_cost"], result.stats["best_after_greedy_reroute"]
    assert sweeps["before"] in (pytest.approx(flow, abs=0.01), pytest.approx(best, abs=0.01))
    assert sweeps["regions"][0] >= 2 and sum(sweeps["improved"]) >= 1
    assert sweeps["costs"] == sorted(sweeps["costs"], reverse=True)
    assert sweeps["costs"][-1] < sweeps["before"]
    assert result.cost.total_cost <= sweeps["costs"][-1] + 0.01
    model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    full = solve_mip(model, MipParams(time_limit=30.0, rel_gap=0.0))
    assert result.lower_bound <= full.objective + 1e-3 <= result.cost.total_cost + 2e-3
    report = check(load_scenario(folder), assignments_frame(problem, result.units))
    assert report.feasible, report.violations[:3]


def test_price_search_in_a_child_bounds_and_stops_when_told(generated):
    """The national batch's price search in a forked child: its answer is a
    proven bound (at most the optimum), no lower than at its start prices
    (here zero: every order alone), and it ends its step and answers as soon
    as it is told, long before its deadline."""
    from solver.alone import route_each_order_alone
    from solver.batch import _Search, _search_in_child
    from solver.bound import Prices
    from solver.greedy import greedy_units

    _folder, problem = generated(300, 2.0, 3)
    alone = route_each_order_alone(problem, background=False)
    search = _Search(problem, greedy_units(problem), alone.bound)
    clock = time.perf_counter
    child, done = _search_in_child(problem, clock, search, alone, Prices(problem), clock() + 60)
    try:
        time.sleep(1.0)
        told = clock()
        done.set()
        value, key, node, iterations, trajectory, _seconds = child.result()
        assert clock() - told < 10
    finally:
        child.close()
    assert iterations >= 1 and key is not None and node is not None
    assert [v for _t, v in trajectory] == sorted(v for _t, v in trajectory)
    model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    full = solve_mip(model, MipParams(time_limit=30.0, rel_gap=0.0))
    assert alone.bound - 1e-6 <= value <= full.objective + 1e-3
