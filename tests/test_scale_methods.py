"""The methods behind the optimizer at scale, each checked against an exact reference.

- the vectorised pricing oracle never exceeds the exact priced optimum alone;
- the weak-duality bound from any duals never exceeds the LP optimum, and meets it
  at the LP's own duals; PDLP's answer gives a bound at most the LP optimum;
- the min-cost flow routes one-unit orders exactly (equal to a MIP over them);
- the joint LP's rounding is always feasible;
- the lines' flow is optimal for its linearised cost and feasible; single-order
  moves never raise the cost; the LP solved in a child process gives the same
  answer as in this one, and a child whose answer is not awaited is killed.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from router.checker import check
from router.generate import generate_scenario
from router.problem import build_problem
from router.run import assignments_frame
from router.scenario import load_scenario
from solver.alone import orders_alone, route_each_order_alone
from solver.contention import overused
from solver.cost import evaluate
from solver.first_order_lp import dual_bound, solve_lp_first_order
from solver.greedy import greedy_units
from solver.lp_rounding import keep_whole_units, repair
from solver.mip import MipParams, SolveStatus, solve_mip
from solver.model import ModelInput, build_model, start_vector
from solver.pricing import build_structure, price_orders
from solver.unit_flow import route_single_units_by_flow


@pytest.fixture(scope="module")
def scarce_problems(tmp_path_factory):
    """Small generated batches with scarce stock (most orders collide)."""
    problems = []
    for seed in range(3):
        folder = tmp_path_factory.mktemp(f"scarce-{seed}")
        generate_scenario(
            folder,
            orders=120,
            stores=15,
            warehouses=3,
            skus=30,
            seed=seed,
            scarcity=3.0,
            overwrite=True,
        )
        problems.append((load_scenario(folder), build_problem(load_scenario(folder))))
    return problems


def random_prices(structure, problem, rng):
    """Random nonnegative prices: 40% of the stock keys and 20% of the nodes priced."""
    key = rng.exponential(8.0, structure.key_node.size) * (
        rng.random(structure.key_node.size) < 0.4
    )
    node = rng.exponential(2.0, problem.num_nodes) * (rng.random(problem.num_nodes) < 0.2)
    return key, node


@pytest.mark.parametrize("exact_short", [True, False])
def test_oracle_never_exceeds_the_exact_priced_optimum(scarce_problems, exact_short):
    rng = np.random.default_rng(7)
    for _scenario, problem in scarce_problems:
        structure = build_structure(problem, exact_short=exact_short)
        for _ in range(3):
            key, node = random_prices(structure, problem, rng)
            priced = price_orders(problem, structure, key, node)
            dense = np.zeros(problem.stock.shape)
            dense[structure.key_node, structure.key_sku] = key
            dense += np.where(np.isfinite(problem.capacity), node, 0.0)[:, None]
            _units, exact, _ = orders_alone(problem, np.ones(problem.num_orders, bool), dense)
            assert np.all(priced.order_cost <= exact + 1e-7)
            # and it is not trivially weak: most orders meet the exact value
            assert np.mean(np.isclose(priced.order_cost, exact)) > 0.8


def test_oracle_at_zero_prices_is_at_most_each_order_alone(scarce_problems):
    for _scenario, problem in scarce_problems:
        structure = build_structure(problem)
        priced = price_orders(
            problem, structure, np.zeros(structure.key_node.size), np.zeros(problem.num_nodes)
        )
        alone = route_each_order_alone(problem)
        assert priced.value <= alone.bound + 1e-6


def test_folded_lp_has_the_full_lps_value_and_expands_to_its_solutions(scarce_problems):
    from solver.lp_reduce import fold_single_shipments

    for _scenario, problem in scarce_problems:
        model, v, _keys, rows = build_model(problem, ModelInput.whole(problem))
        folded = fold_single_shipments(model, v, rows)
        assert folded.model.c.size < model.c.size  # one-line orders' shipments fold
        full = solve_mip(model, MipParams(relax=True))
        small = solve_mip(folded.model, MipParams(relax=True))
        assert small.objective == pytest.approx(full.objective, rel=1e-7)
        x = folded.full_x(small.x)
        assert model.c @ x + model.offset == pytest.approx(full.objective, rel=1e-7)
        ax = model.A @ x
        assert np.all(ax <= model.row_hi + 1e-6) and np.all(ax >= model.row_lo - 1e-6)
        assert np.all(x <= model.col_hi + 1e-9) and np.all(x >= model.col_lo - 1e-9)
        # any duals of the folded LP prove a bound of the full one
        rng = np.random.default_rng(3)
        for duals in (small.row_duals, rng.normal(size=folded.model.row_lo.size)):
            assert dual_bound(folded.model, duals) <= full.objective + 1e-6
        assert folded.full_duals(small.row_duals).size == model.row_lo.size


def test_orders_the_oracle_routes_alone_are_at_their_exact_optimum(scarce_problems):
    from solver.alone import _one_by_one, _single_unit_orders, route_by_oracle

    for _scenario, problem in scarce_problems:
        several = ~_single_unit_orders(problem, np.ones(problem.num_orders, dtype=bool))
        units = np.zeros(problem.cand_line.size, dtype=np.int64)
        cost = np.zeros(problem.num_orders)
        routed = route_by_oracle(problem, several, units, cost)
        assert routed.sum() > 0.5 * several.sum()  # most of them
        assert not (routed & ~several).any()
        exact_units = np.zeros_like(units)
        exact_cost = np.zeros_like(cost)
        exact = np.ones(problem.num_orders, dtype=bool)
        _one_by_one(problem, np.flatnonzero(routed), None, exact_units, exact_cost, exact)
        assert np.allclose(cost[routed], exact_cost[routed], rtol=1e-12, atol=1e-9)
        # its plans cost what it says, and fit each node's stock
        assert evaluate(problem, units).total_cost == pytest.approx(
            evaluate(problem, exact_units).total_cost, rel=1e-12
        )
        cand_stock = problem.stock[problem.cand_node, problem.line_sku[problem.cand_line]]
        assert np.all(units <= cand_stock)


def test_each_order_alone_on_two_cores_is_the_same_answer(scarce_problems):
    for _scenario, problem in scarce_problems:
        here = route_each_order_alone(problem)
        shared = route_each_order_alone(problem, background=True, split_orders=0)
        assert np.array_equal(shared.units, here.units)
        assert np.array_equal(shared.cost, here.cost)
        assert np.array_equal(shared.exact, here.exact)
        assert shared.bound == pytest.approx(here.bound, rel=1e-12)


def test_oracle_hand_checked_two_lines_two_nodes(tiny_scenario_dir):
    # Node A holds both SKUs (ship 10), node B only k2 (ship 1); handling 1.
    # Alone: both lines from A = 10 + 2 = 12; k1 from A and k2 from B would be
    # 10 + 1 + 1 + 1 + split 6 = 19. With a price of 20 on (A, k2): A for both
    # costs 32, A + B costs 19, leaving k2 unfilled 150 + 11: so 19.
    folder = tiny_scenario_dir(
        nodes=["A,warehouse,0,0,10,0,1,,", "B,warehouse,0,0,1,0,1,,"],
        inventory=["A,k1,5", "A,k2,5", "B,k2,5"],
        orders=["o1,1,k1,1,0,0,", "o1,2,k2,1,0,0,"],
    )
    problem = build_problem(load_scenario(folder))
    structure = build_structure(problem)
    zero = price_orders(problem, structure, np.zeros(structure.key_node.size), np.zeros(2))
    assert zero.order_cost[0] == pytest.approx(12.0)
    key = np.zeros(structure.key_node.size)
    a_k2 = np.flatnonzero(
        (problem.node_ids[structure.key_node] == "A") & (problem.sku_ids[structure.key_sku] == "k2")
    )
    key[a_k2] = 20.0
    priced = price_orders(problem, structure, key, np.zeros(2))
    assert priced.order_cost[0] == pytest.approx(19.0)
    assert priced.value == pytest.approx(19.0 - 20.0 * 5)


def test_dual_bound_is_weak_duality(scarce_problems):
    rng = np.random.default_rng(3)
    for _scenario, problem in scarce_problems[:2]:
        model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
        lp = solve_mip(model, MipParams(relax=True))
        assert lp.status == SolveStatus.OPTIMAL
        assert dual_bound(model, lp.row_duals) == pytest.approx(lp.objective, rel=1e-6)
        for _ in range(5):
            noisy = lp.row_duals + rng.normal(0, 5, lp.row_duals.size)
            assert dual_bound(model, noisy) <= lp.objective + 1e-6
        first_order = solve_lp_first_order(model, time_limit=20, rel_tol=1e-4)
        assert first_order.bound <= lp.objective + 1e-6
        assert first_order.bound >= lp.objective - 0.01 * abs(lp.objective)


def test_flow_routes_one_unit_orders_exactly(tiny_scenario_dir):
    # Three one-unit orders want k at two stores with 1 unit each: the flow
    # serves the two that save most and leaves the far one unfilled.
    folder = tiny_scenario_dir(
        nodes=["S1,store,0,0,1,10,0,,", "S2,store,0,1,1,10,0,,"],
        inventory=["S1,k,1", "S2,k,1"],
        orders=[
            "o1,1,k,1,0,0,",  # at S1: cost 1
            "o2,1,k,1,0,0.5,",  # halfway: either store costs about 556
            "o3,1,k,1,0,1,",  # at S2: cost 1
        ],
        unfilled_penalty=1000.0,
    )
    problem = build_problem(load_scenario(folder))
    greedy = greedy_units(problem)
    flowed = route_single_units_by_flow(problem, greedy, np.ones(problem.num_orders, bool))
    model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    optimum = solve_mip(model, MipParams(rel_gap=0.0)).objective
    assert evaluate(problem, flowed).total_cost == pytest.approx(optimum)


def test_flow_equals_the_mip_on_one_unit_orders_with_others_fixed(scarce_problems):
    for _scenario, problem in scarce_problems:
        units = greedy_units(problem)
        lines = np.diff(problem.order_line_start)
        single = (lines == 1) & (problem.line_qty[problem.order_line_start[:-1]] == 1)
        flowed = route_single_units_by_flow(problem, units, single)
        over_stock, over_capacity = overused(problem, flowed)
        assert not over_stock.any() and not over_capacity.any()
        # the MIP over the single orders, others fixed, finds nothing cheaper
        from solver.candidates import model_part
        from solver.params import OptimizeParams

        part, start = model_part(
            problem, flowed, single, OptimizeParams(), start=flowed, per_line=10**6
        )
        model, v, _keys, _rows = build_model(problem, part)
        mip = solve_mip(model, MipParams(rel_gap=0.0), start=start_vector(problem, part, v, start))
        best = flowed.copy()
        best[part.cands] = v.extract(mip.x)
        assert evaluate(problem, flowed).total_cost <= evaluate(problem, best).total_cost + 1e-3


def test_rounding_any_lp_point_gives_a_feasible_answer(scarce_problems):
    rng = np.random.default_rng(11)
    for scenario, problem in scarce_problems:
        part = ModelInput.whole(problem)
        model, v, _keys, _rows = build_model(problem, part)
        lp = solve_mip(model, MipParams(relax=True))
        for x in (lp.x, np.clip(lp.x + rng.normal(0, 0.3, lp.x.size), model.col_lo, model.col_hi)):
            kept, undecided = keep_whole_units(problem, greedy_units(problem), part, v, x)
            assert not overused(problem, kept)[0].any()
            everyone = np.ones(problem.num_orders, dtype=bool)
            units = repair(problem, kept, undecided, everyone, None)
            report = check(scenario, assignments_frame(problem, units))
            assert report.feasible, report.violations[:3]


def _linearised_cost(problem, units):
    from solver.unit_flow import shipment_cost_per_unit

    per_unit = (
        shipment_cost_per_unit(problem)[problem.cand_pair] + problem.handling[problem.cand_node]
    )
    unfilled = problem.line_qty.sum() - units.sum()
    return float(per_unit @ units + problem.unfilled_penalty * unfilled)


def test_lines_flow_is_optimal_for_its_linearised_cost(scarce_problems):
    from solver.unit_flow import COST_SCALE, route_lines_by_flow

    everyone = None
    for scenario, problem in scarce_problems:
        everyone = np.ones(problem.num_orders, dtype=bool)
        greedy = greedy_units(problem)
        alone = route_each_order_alone(problem).units
        flowed = route_lines_by_flow(problem, greedy, everyone)
        assert check(scenario, assignments_frame(problem, flowed)).feasible
        slack = problem.line_qty.sum() / COST_SCALE  # integer costs in the flow
        assert _linearised_cost(problem, flowed) <= _linearised_cost(problem, greedy) + slack
        # the orders alone over-use stock, but where they fit they are a flow too
        if not overused(problem, alone)[0].any():
            assert _linearised_cost(problem, flowed) <= _linearised_cost(problem, alone) + slack
        # orders outside the mask keep their plans
        half = np.arange(problem.num_orders) % 2 == 0
        partly = route_lines_by_flow(problem, greedy, half)
        outside = ~half[problem.line_order[problem.cand_line]]
        assert np.array_equal(partly[outside], greedy[outside])
        assert check(scenario, assignments_frame(problem, partly)).feasible


def test_order_moves_never_raise_the_cost(scarce_problems):
    from solver.order_moves import improve_orders

    for scenario, problem in scarce_problems:
        alone = route_each_order_alone(problem)
        everyone = np.ones(problem.num_orders, dtype=bool)
        start = greedy_units(problem)
        moved, details = improve_orders(
            problem, start, everyone, alone.cost, lambda: 0.0, 1.0, passes=20
        )
        assert check(scenario, assignments_frame(problem, moved)).feasible
        assert evaluate(problem, moved).total_cost <= evaluate(problem, start).total_cost
        assert details["moved"][-1] == 0 or len(details["moved"]) == 20
        # a local optimum: no order alone on what the others leave does better
        again, more = improve_orders(problem, moved, everyone, alone.cost, lambda: 0.0, 1.0)
        assert more["moved"] == [0]
        assert np.array_equal(again, moved)


def test_an_order_move_gathers_a_split_order(tiny_scenario_dir):
    # o1 wants k1 and k2; it starts split over S1 (k1) and S2 (k2), but S1
    # holds both: one move ships it whole from S1.
    folder = tiny_scenario_dir(
        nodes=["S1,store,0,0,5,0,1,,", "S2,store,0,0.01,5,0,1,,"],
        inventory=["S1,k1,1", "S1,k2,1", "S2,k2,1"],
        orders=["o1,1,k1,1,0,0,", "o1,2,k2,1,0,0,"],
    )
    from solver.order_moves import improve_orders

    problem = build_problem(load_scenario(folder))
    start = np.zeros(problem.cand_line.size, dtype=np.int64)
    for c in range(problem.cand_line.size):
        line_sku = problem.sku_ids[problem.line_sku[problem.cand_line[c]]]
        node = problem.node_ids[problem.cand_node[c]]
        start[c] = int((line_sku, node) in {("k1", "S1"), ("k2", "S2")})
    assert evaluate(problem, start).splits == 1
    alone = route_each_order_alone(problem)
    moved, details = improve_orders(
        problem, start, np.ones(1, dtype=bool), alone.cost, lambda: 0.0, 1.0
    )
    cost = evaluate(problem, moved)
    assert (cost.splits, cost.shipments, cost.total_cost) == (0, 1, 5 + 2)
    assert details["moved"][0] == 1


def test_slope_costs_price_open_shipments_by_what_they_carry(tiny_scenario_dir):
    # o1 (k1, k2) ships whole from S1: that shipment costs its cost over 2
    # units in the next flow; S2's, unopened, its whole cost and a split penalty
    folder = tiny_scenario_dir(
        nodes=["S1,store,0,0,5,0,1,,", "S2,store,0,0.01,5,0,1,,"],
        inventory=["S1,k1,1", "S1,k2,1", "S2,k2,1"],
        orders=["o1,1,k1,1,0,0,", "o1,2,k2,1,0,0,"],
    )
    from solver.slope_scaling import slope_costs

    problem = build_problem(load_scenario(folder))
    whole = (problem.node_ids[problem.cand_node] == "S1").astype(np.int64)
    costs = slope_costs(problem, whole)
    for pair in range(problem.pair_order.size):
        ship = problem.pair_ship_cost[pair]
        if problem.node_ids[problem.pair_node[pair]] == "S1":
            assert costs[pair] == pytest.approx(ship / 2)
        else:
            assert costs[pair] == pytest.approx(ship + problem.split_penalty)


def test_slope_scaling_only_improves_and_stays_feasible(scarce_problems):
    """Slope-scaled flows from the flow's answer: checked feasible, never dearer,
    the other orders' plans untouched, stopped at the first flow that does not
    improve (or by the deadline, before any flow)."""
    from solver.slope_scaling import slope_scaling
    from solver.unit_flow import route_lines_by_flow

    for scenario, problem in scarce_problems:
        greedy = greedy_units(problem)
        half = np.arange(problem.num_orders) % 2 == 0
        start = route_lines_by_flow(problem, greedy, half)
        before = evaluate(problem, start).total_cost
        scaled, details = slope_scaling(problem, start, half, lambda: 0.0, 1.0, rounds=5)
        assert check(scenario, assignments_frame(problem, scaled)).feasible
        assert evaluate(problem, scaled).total_cost <= before + 1e-9
        outside = ~half[problem.line_order[problem.cand_line]]
        assert np.array_equal(scaled[outside], greedy[outside])
        costs = details["costs"]
        assert 1 <= len(costs) <= 5
        accepted = [before, *costs[:-1]]  # each kept flow was cheaper than the one before
        assert all(b < a for a, b in itertools.pairwise(accepted))
        late, late_details = slope_scaling(problem, start, half, lambda: 2.0, 1.0)
        assert late is start and late_details["costs"] == []


def test_regional_sweeps_only_improve_and_stay_feasible(scarce_problems):
    """Regional sweeps from a greedy answer: checked feasible, never dearer, the
    orders outside the swept ones untouched, the sweep's cost never rising;
    nothing done past the deadline."""
    from solver.alone import route_each_order_alone
    from solver.params import OptimizeParams
    from solver.regions import regional_sweeps

    params = OptimizeParams(region_orders=25, region_min_seconds=0.0)
    savings = []
    for scenario, problem in scarce_problems:
        greedy = greedy_units(problem)
        half = np.arange(problem.num_orders) % 2 == 0
        floor = route_each_order_alone(problem, background=False).cost
        before = evaluate(problem, greedy).total_cost
        swept, details = regional_sweeps(
            problem, greedy, half, floor, params, time.perf_counter, time.perf_counter() + 60
        )
        assert check(scenario, assignments_frame(problem, swept)).feasible
        after = evaluate(problem, swept).total_cost
        assert after <= before + 1e-9 and details["costs"][-1] == pytest.approx(after, abs=0.01)
        assert details["regions"][0] == 3  # 60 orders, regions of at most 25
        assert details["costs"] == sorted(details["costs"], reverse=True)
        outside = ~half[problem.line_order[problem.cand_line]]
        assert np.array_equal(swept[outside], greedy[outside])
        late, late_details = regional_sweeps(problem, greedy, half, floor, params, lambda: 2.0, 1.0)
        assert late is greedy and late_details["regions"] == [0]
        savings.append(before - after)
    assert max(savings) > 0  # greedy is far from the optimum on scarce stock


def test_lp_in_a_child_process_gives_the_same_answer(scarce_problems):
    from solver.lp_process import start_first_order_lp

    _scenario, problem = scarce_problems[0]
    model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
    here = solve_lp_first_order(model, time_limit=20, rel_tol=1e-4)
    child = start_first_order_lp(model, 20, 1e-4, background=True)
    assert child.background
    there = child.result()
    assert there is not None
    assert there.bound == pytest.approx(here.bound, rel=1e-9)
    assert np.allclose(there.x, here.x)
    # in legs: the second goes on from the first's iterates, here and there alike
    here_legs = start_first_order_lp(model, [0.002, 20], 1e-4, background=False)
    there_legs = start_first_order_lp(model, [0.002, 20], 1e-4, background=True)
    for _leg in range(2):
        a, b = here_legs.result(), there_legs.result()
        assert a is not None and b is not None
        assert a.bound == pytest.approx(b.bound, rel=1e-9)
        if a.converged:
            break
    assert a.converged and a.bound == pytest.approx(here.bound, rel=1e-4)
    assert there_legs.result() is None and there_legs.legs_left == 0
    # an answer nobody waits for: the child is killed, nothing is left running
    abandoned = start_first_order_lp(model, 60, 0.0, background=True)  # runs until killed
    process = abandoned._process
    assert abandoned.result(stop=lambda: True) is None
    assert process is not None and not process.is_alive()


@pytest.mark.parametrize(
    "path",
    [
        "relax-and-fix",
        "blocks",
        "joint-lp",
        "joint-lp-first-order",
        "joint-lp-first-order-here",
        "joint-lp-relaxed-pricing",
        "joint-lp-column-generation",
        "within-reach",
    ],
)
def test_decomposition_paths_bound_the_optimum_and_stay_feasible(scarce_problems, path):
    """Every path of the optimizer on batches small enough for a proven optimum:
    the answer is feasible, and bound <= optimum <= cost."""
    import time

    from solver.batch import optimize
    from solver.params import OptimizeParams

    params = OptimizeParams(
        time_limit=20,
        exact_orders=0,
        exact_candidates=0,
        block_orders=10 if path == "blocks" else 10**9,
        joint_lp_colliding_share=0.0 if path.startswith(("joint-lp", "within")) else 1.0,
        exact_mip_columns=10**9 if path == "within-reach" else 0,
        first_order_columns=0 if path.startswith("joint-lp-") else 10**9,
        lp_in_background=path != "joint-lp-first-order-here",
        # the price search on the relaxed oracle, then the exact Lagrangian at
        # the LP's prices and at the best found
        exact_pricing_orders=0 if path == "joint-lp-relaxed-pricing" else 1500,
        # a contested part's LP of each line's cheapest candidate, then again
        # with the candidates its prices say pay
        whole_lp_columns=0 if path == "joint-lp-column-generation" else 1_500_000,
        candidates_per_line=1 if path == "joint-lp-column-generation" else 8,
        column_generation_rounds=3,
    )
    added = 0
    for scenario, problem in scarce_problems:
        model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
        optimum = solve_mip(model, MipParams(rel_gap=0.0, time_limit=60)).objective
        started = time.perf_counter()
        result = optimize(problem, params, lambda s=started: time.perf_counter() - s)
        assert result.lower_bound <= optimum + 1e-6
        assert result.cost.total_cost >= optimum - 1e-6
        assert check(scenario, assignments_frame(problem, result.units)).feasible
        added += sum(result.stats.get("column_generation", {}).get("added", [0]))
    assert (added > 0) == (path == "joint-lp-column-generation")


def test_unpruned_mip_in_a_child_gives_the_same_answer(scarce_problems):
    from solver.polish import start_exact_mip

    _scenario, problem = scarce_problems[0]
    start = greedy_units(problem)
    mip_params = MipParams(time_limit=30, rel_gap=0.0)
    here = start_exact_mip(problem, start, mip_params, lambda: 30, background=False).result()
    child = start_exact_mip(problem, start, mip_params, lambda: 30, background=True)
    assert child.background
    there = child.result()
    assert here is not None and there is not None
    (here_units, here_bound, here_done), (there_units, there_bound, there_done) = here, there
    assert here_done and there_done
    assert evaluate(problem, there_units).total_cost == pytest.approx(
        evaluate(problem, here_units).total_cost
    )
    assert there_bound == pytest.approx(here_bound)
    # abandoned: killed at once, nothing left running
    abandoned = start_exact_mip(problem, start, mip_params, lambda: 60)
    process = abandoned._process
    abandoned.close()
    assert process is not None and not process.is_alive()


def test_support_mip_only_improves_and_stays_feasible(scarce_problems):
    from solver.params import OptimizeParams
    from solver.support_mip import lp_units, solve_on_support

    for scenario, problem in scarce_problems:
        part = ModelInput.whole(problem)
        model, v, _keys, _rows = build_model(problem, part)
        lp = solve_mip(model, MipParams(relax=True))
        optimum = solve_mip(model, MipParams(rel_gap=0.0, time_limit=60)).objective
        start = greedy_units(problem)
        everyone = np.ones(problem.num_orders, dtype=bool)
        units = solve_on_support(
            problem,
            start,
            lp_units(problem, part, v, lp.x),
            everyone,
            OptimizeParams(),
            MipParams(time_limit=30),
            None,
        )
        assert units is not None
        cost = evaluate(problem, units).total_cost
        assert optimum - 1e-6 <= cost <= evaluate(problem, start).total_cost + 1e-6
        assert check(scenario, assignments_frame(problem, units)).feasible
        # only the LP's support and the start's candidates are used
        assert not np.any(units[(lp_units(problem, part, v, lp.x) <= 1e-6) & (start == 0)])


def test_support_blocks_only_improve_and_stay_feasible(scarce_problems):
    from solver.params import OptimizeParams
    from solver.support_mip import improve_on_support, lp_units

    params = OptimizeParams(support_block_orders=15, support_block_seconds=5)
    for scenario, problem in scarce_problems:
        part = ModelInput.whole(problem)
        model, v, _keys, _rows = build_model(problem, part)
        lp = lp_units(problem, part, v, solve_mip(model, MipParams(relax=True)).x)
        start = greedy_units(problem)
        everyone = np.ones(problem.num_orders, dtype=bool)
        units, details = improve_on_support(problem, start, lp, everyone, params, lambda: 0.0, 1e9)
        assert details["blocks"] >= 2  # both sweeps, each of several blocks
        assert evaluate(problem, units).total_cost <= evaluate(problem, start).total_cost + 1e-9
        assert check(scenario, assignments_frame(problem, units)).feasible
        # a block may only use the LP's support or what the start used
        assert not np.any(units[(lp <= 1e-6) & (start == 0)])


def test_guided_flow_keeps_the_lp_shipments_cheap(scarce_problems):
    from solver.lp_rounding import guided_shipment_costs
    from solver.unit_flow import route_lines_by_flow

    for scenario, problem in scarce_problems:
        part = ModelInput.whole(problem)
        model, v, _keys, _rows = build_model(problem, part)
        lp = solve_mip(model, MipParams(relax=True))
        per_unit = guided_shipment_costs(problem, part, v, lp.x, 0.5)
        y = lp.x[v.y0 : v.y0 + v.num_y]
        units_of_order = np.bincount(
            problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
        )
        share = problem.pair_ship_cost / units_of_order[problem.pair_order]
        dear = problem.pair_ship_cost + problem.split_penalty
        assert np.allclose(per_unit[y >= 0.5], share[y >= 0.5])
        strongest = np.zeros(problem.num_orders)
        np.maximum.at(strongest, problem.pair_order, y)
        closed = (y < 0.5) & ((y < strongest[problem.pair_order] - 1e-9) | (y <= 0.05))
        assert np.allclose(per_unit[closed], dear[closed])
        flowed = route_lines_by_flow(
            problem, greedy_units(problem), np.ones(problem.num_orders, bool), per_unit
        )
        assert check(scenario, assignments_frame(problem, flowed)).feasible


def test_exact_lagrangian_bounds_the_optimum_once_per_price_vector(scarce_problems):
    """The bound's last word (the short orders priced exactly, at the LP's prices
    and at the best found): a proven bound, tighter than the relaxed oracle's at
    the same prices, evaluated once per price vector."""
    from solver.batch import _exact_lagrangian, _lagrangian_at, _Search
    from solver.bound import Prices
    from solver.lagrange import start_search
    from solver.params import OptimizeParams

    rng = np.random.default_rng(3)
    params = OptimizeParams(time_limit=60)
    for _scenario, problem in scarce_problems:
        model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
        optimum = solve_mip(model, MipParams(rel_gap=0.0, time_limit=60)).objective
        alone = route_each_order_alone(problem, background=False)
        search = _Search(problem, greedy_units(problem), float("-inf"))
        structure = search.structure(exact_short=False)
        key, node = random_prices(structure, problem, rng)
        prices = Prices(problem)
        prices.key[structure.key_node, structure.key_sku] = key
        prices.node[:] = node
        relaxed = _lagrangian_at(problem, search, alone, prices)
        state = start_search(structure, prices.unit_price(), prices.node)
        details = {"trajectory": []}
        _exact_lagrangian(
            params, lambda: 0.0, search, alone, state.key_price, state.node_price, details
        )
        assert relaxed - 1e-6 <= search.bound <= optimum + 1e-6
        assert len(details["trajectory"]) == 1
        _exact_lagrangian(
            params, lambda: 0.0, search, alone, state.key_price, state.node_price, details
        )
        assert len(details["trajectory"]) == 1  # the same prices: not again


def test_a_part_of_many_components_keeps_its_time_limit(scarce_problems, monkeypatch):
    """Each independent component's model costs its own set-up: once the part's
    time is up, the components left are not solved and keep their start."""
    import time

    import solver.part_mip
    from solver.contention import independent_components
    from solver.params import OptimizeParams
    from solver.part_mip import solve_part

    solved = []
    real_solve = solver.part_mip.solve_mip
    monkeypatch.setattr(
        solver.part_mip, "solve_mip", lambda *a, **k: solved.append(1) or real_solve(*a, **k)
    )
    params = OptimizeParams()
    for scenario, problem in scarce_problems:
        start = greedy_units(problem)
        everyone = np.ones(problem.num_orders, dtype=bool)
        part = ModelInput.whole(problem)
        model, v, _keys, rows = build_model(problem, part)
        assert len(independent_components(problem, part, model, v, rows)) > 1
        started = time.perf_counter()
        clock = lambda s=started: time.perf_counter() - s  # noqa: E731
        units, status = solve_part(problem, start, everyone, params, 0.0, 1e9, clock, start=start)
        assert time.perf_counter() - started < 5.0
        assert not solved and status != "optimal"
        assert np.array_equal(units, start)
        assert check(scenario, assignments_frame(problem, units)).feasible


def test_shared_ids_of_two_sorted_models():
    from solver.column_generation import _shared

    into, outof = _shared(np.array([1, 3, 5]), np.array([0, 1, 2, 5, 7]))
    assert into.tolist() == [1, 3] and outof.tolist() == [0, 2]
    assert _shared(np.array([4]), np.zeros(0, dtype=np.int64))[0].size == 0


def test_column_generation_adds_what_the_prices_say_and_starts_from_the_smaller_lp(
    scarce_problems,
):
    """The plans alone at a one-candidate LP's prices add candidates; the larger
    LP's start keeps every shared column's value and row's dual, and from it
    PDLP reaches the same optimum as from nothing, no worse than the smaller's."""
    from solver.candidates import model_part
    from solver.column_generation import added_candidates, extended_start, priced_candidates
    from solver.joint_lp import start_joint_lp
    from solver.lagrange import start_search
    from solver.lp_reduce import fold_single_shipments
    from solver.params import OptimizeParams

    _scenario, problem = scarce_problems[0]
    params = OptimizeParams(candidates_per_line=1, first_order_columns=0, lp_in_background=False)
    contested = np.ones(problem.num_orders, dtype=bool)
    incumbent = greedy_units(problem)

    def lp(also=None, warm=None):
        answer = start_joint_lp(
            problem, incumbent, contested, params, lambda: 0.0, 30, also=also, warm=warm
        ).result()
        assert answer is not None and answer.converged
        model, _v, _keys, _rows = build_model(problem, answer.part)
        return answer, float(model.c @ answer.x + model.offset)

    small, small_value = lp()
    structure = build_structure(problem, exact_short=False)
    state = start_search(structure, small.prices.unit_price(), small.prices.node)
    plans = price_orders(problem, structure, state.key_price, state.node_price).units
    also = priced_candidates(problem, small, plans)
    assert added_candidates(small, also) > 0
    assert also[(plans > 0)].all()

    part, _start = model_part(
        problem, incumbent, contested, params, start=incumbent, per_line=1, also=also
    )
    model, v, keys, rows = build_model(problem, part)
    reduced = fold_single_shipments(model, v, rows)
    start = extended_start(small, part, v, keys, rows, reduced)
    assert start.raw_primal.size == reduced.model.c.size
    assert start.raw_dual.size == reduced.model.row_lo.size
    at = np.searchsorted(part.cands, small.part.cands)
    assert np.array_equal(start.raw_primal[at], small.x[: small.vars.num_x])
    old_keys = {tuple(k): i for i, k in enumerate(small.keys["stock"].tolist())}
    full_dual = np.zeros(reduced.full_rows)
    full_dual[reduced.kept_rows] = start.raw_dual
    for row, key in enumerate(keys["stock"].tolist()):
        want = (
            small.duals[small.rows["stock"].start + old_keys[tuple(key)]]
            if tuple(key) in old_keys
            else 0.0
        )
        assert full_dual[rows["stock"].start + row] == want

    (_cold, cold_value), (_warm, warm_value) = lp(also), lp(also, warm=small)
    assert warm_value == pytest.approx(cold_value, rel=1e-3)
    assert warm_value <= small_value * (1 + 1e-3)


def test_capped_flow_keeps_cheap_used_and_spare_arcs():
    """Hand-checked: two lines of one SKU at four nodes. Line 0 keeps its cheapest
    (node 0) and the one it uses (node 3); line 1 its cheapest (node 1). Node 1
    has no stock to spare (line 1 keeps an arc there wanting its 1 unit left),
    node 2 has (5 units, nobody keeps an arc there): each line also keeps its
    cheapest arc where stock is to spare, node 2."""
    from types import SimpleNamespace

    from solver.unit_flow import capped_arcs

    problem = SimpleNamespace(
        cand_line=np.array([0, 0, 0, 0, 1, 1, 1]),
        cand_node=np.array([0, 1, 2, 3, 1, 2, 3]),
        line_sku=np.array([0, 0]),
        line_qty=np.array([1, 1]),
        sku_ids=np.array([7]),
    )
    cands = np.arange(7)
    node = problem.cand_node  # one SKU: a node is a stock key
    cost = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0])
    # stock left per candidate's key (node): node 0: 1, node 1: 1, node 2: 5, node 3: 0
    stock_left = np.array([1, 1, 5, 0, 1, 5, 0])
    used = np.array([False, False, False, True, False, False, False])
    keep = capped_arcs(problem, cands, cost, node, stock_left, used, per_line=1, spare_per_line=1)
    # line 0: node 0 (cheapest), node 3 (used), node 2 (spare); line 1: node 1, node 2
    assert keep.tolist() == [True, False, True, True, True, True, False]
    # no spare arcs asked: only the cheapest and the used ones
    keep = capped_arcs(problem, cands, cost, node, stock_left, used, per_line=1, spare_per_line=0)
    assert keep.tolist() == [True, False, False, True, True, False, False]


def test_capped_flow_is_feasible_and_uncapped_below_its_arcs(scarce_problems):
    """Below ``max_arcs`` the flow is the uncapped one; capped, it is still feasible,
    leaves the other orders' plans alone, and is no worse (linearised) than the
    routing it starts from, which it can always give back."""
    from solver.unit_flow import COST_SCALE, route_lines_by_flow

    for scenario, problem in scarce_problems:
        everyone = np.ones(problem.num_orders, dtype=bool)
        greedy = greedy_units(problem)
        full = route_lines_by_flow(problem, greedy, everyone)
        same = route_lines_by_flow(problem, greedy, everyone, max_arcs=problem.cand_line.size)
        assert np.array_equal(full, same)
        slack = problem.line_qty.sum() / COST_SCALE
        half = np.arange(problem.num_orders) % 2 == 0
        for movable in (everyone, half):
            capped = route_lines_by_flow(
                problem, greedy, movable, max_arcs=1, per_line=1, spare_per_line=1
            )
            assert check(scenario, assignments_frame(problem, capped)).feasible
            outside = ~movable[problem.line_order[problem.cand_line]]
            assert np.array_equal(capped[outside], greedy[outside])
            assert _linearised_cost(problem, capped) <= _linearised_cost(problem, greedy) + slack
            assert _linearised_cost(problem, full) <= _linearised_cost(problem, capped) + slack


def test_capped_flow_keeps_the_arcs_of_another_routing(scarce_problems):
    """``also``: a capped flow keeps the arcs of a second routing too (the
    colliding orders re-routed greedily), so it is no worse (linearised) than
    that routing either, though it starts from the orders alone."""
    from solver.contention import orders_using, overused, reroute_greedily
    from solver.unit_flow import COST_SCALE, route_lines_by_flow

    for scenario, problem in scarce_problems:
        alone = route_each_order_alone(problem).units
        colliding = orders_using(problem, alone, *overused(problem, alone))
        rerouted = reroute_greedily(problem, alone, colliding)
        slack = problem.line_qty.sum() / COST_SCALE
        capped = route_lines_by_flow(
            problem, alone, colliding, max_arcs=1, per_line=1, spare_per_line=0, also=rerouted
        )
        assert check(scenario, assignments_frame(problem, capped)).feasible
        assert _linearised_cost(problem, capped) <= _linearised_cost(problem, rerouted) + slack
        outside = ~colliding[problem.line_order[problem.cand_line]]
        assert np.array_equal(capped[outside], alone[outside])


def test_capped_flow_priced_until_nothing_is_left_out_is_the_uncapped_flow(
    scarce_problems, monkeypatch
):
    """``pricing_rounds``: a capped flow whose left-out candidates are priced
    at its prices and added until none is cheaper than its line's value ends
    with the uncapped flow's optimum (linearised) on fewer arcs; one round
    never makes it worse."""
    from solver.unit_flow import COST_SCALE, priced_flow, route_lines_by_flow

    for scenario, problem in scarce_problems:
        everyone = np.ones(problem.num_orders, dtype=bool)
        greedy = greedy_units(problem)
        slack = problem.line_qty.sum() / COST_SCALE
        full, _ = priced_flow(problem, greedy, everyone)
        cap = {"max_arcs": 1, "per_line": 1, "spare_per_line": 0}
        capped, capped_prices = priced_flow(problem, greedy, everyone, **cap)
        once, _ = priced_flow(problem, greedy, everyone, **cap, pricing_rounds=1)
        priced, prices = priced_flow(problem, greedy, everyone, **cap, pricing_rounds=100)
        assert check(scenario, assignments_frame(problem, priced)).feasible
        assert capped_prices.rounds == 0 and 1 <= prices.rounds < 100
        assert prices.arcs < problem.cand_line.size
        assert _linearised_cost(problem, once) <= _linearised_cost(problem, capped) + slack
        assert _linearised_cost(problem, priced) == pytest.approx(
            _linearised_cost(problem, full), abs=slack
        )
        # the stopping rule is asked before every round
        asked = []
        priced_flow(problem, greedy, everyone, **cap, pricing_rounds=5,
                    more=lambda asked=asked: asked.append(1) and False)  # fmt: skip
        assert len(asked) == 1
        # priced a few lines at a time: the same flow
        with monkeypatch.context() as patch:
            patch.setattr("solver.unit_flow.PRICING_CHUNK", 7)
            again, again_prices = priced_flow(problem, greedy, everyone, **cap, pricing_rounds=100)
        assert np.array_equal(again, priced) and again_prices.arcs == prices.arcs
        # its arcs given back (with the ones the start uses): no worse, no capping pass
        assert prices.arc_cands.size == prices.arcs
        same_arcs = route_lines_by_flow(
            problem, greedy, everyone, max_arcs=1, arcs=prices.arc_cands
        )
        assert _linearised_cost(problem, same_arcs) <= _linearised_cost(problem, priced) + slack


def test_guided_flow_prices_orders_outside_the_lp_as_the_unguided_flow(scarce_problems):
    """An LP of a sample of the orders guides their shipments only: every other
    order's shipments cost what they cost in the unguided flow."""
    from solver.candidates import model_part
    from solver.lp_rounding import guided_shipment_costs
    from solver.unit_flow import shipment_cost_per_unit

    _scenario, problem = scarce_problems[0]
    everyone = np.ones(problem.num_orders, dtype=bool)
    sample = np.arange(problem.num_orders) % 3 == 0
    greedy = greedy_units(problem)
    whole, _ = model_part(problem, greedy, everyone, None, start=greedy, per_line=4)
    part, _ = model_part(problem, greedy, sample, None, start=greedy, per_line=4)
    for which in (whole, part):
        model, v, _keys, _rows = build_model(problem, which)
        lp = solve_mip(model, MipParams(relax=True))
        per_unit = guided_shipment_costs(problem, which, v, lp.x, 0.5)
        outside = ~np.isin(problem.pair_order, which.orders)
        assert np.allclose(per_unit[outside], shipment_cost_per_unit(problem)[outside])
        assert outside.any() == (which is part)


def test_rank_in_line_ranks_each_lines_candidates_by_cost():
    from solver.candidates import rank_within
    from solver.unit_flow import _rank_in_line

    line = np.array([0, 0, 0, 2, 2, 5])
    cost = np.array([3.0, 1.0, 2.0, -4.0, 7.0, 0.5])
    assert _rank_in_line(line, cost).tolist() == [2, 0, 1, 0, 1, 0]
    rng = np.random.default_rng(0)
    line = np.sort(rng.integers(0, 300, 5000))
    cost = rng.random(5000) * 100  # distinct: the same ranks as the two-key sort
    assert np.array_equal(_rank_in_line(line, cost), rank_within(line, cost))


def test_flow_solved_in_a_child_gives_the_same_flows_and_potentials():
    """Two units from the source to the sink over two paths of costs 1 and 3, the
    cheap one of capacity 1: one unit each way, in this process and in a child.
    The potentials (residual shortest distances from a root at 0 everywhere):
    the source's is -3 (back along the dear path), the others' 0; so one more
    unit on the cheap path's saturated arc is worth 0 - (-3) - 1 = 2, what it saves."""
    from solver.unit_flow import _solve_flow

    tails = np.array([0, 0, 1, 2], dtype=np.int32)
    heads = np.array([1, 2, 3, 3], dtype=np.int32)
    capacity = np.array([1, 2, 2, 2], dtype=np.int64)
    cost = np.array([1, 3, 0, 0], dtype=np.int64)
    supplies = np.array([2, 0, 0, -2], dtype=np.int64)
    vertices = np.arange(4)
    here = _solve_flow(tails, heads, capacity, cost, supplies, 2, False, vertices)
    there = _solve_flow(tails, heads, capacity, cost, supplies, 2, True, vertices)
    assert here[0].tolist() == there[0].tolist() == [1, 1]
    assert here[1].tolist() == there[1].tolist() == [-3, 0, 0, 0]
    flows, potential = _solve_flow(tails, heads, capacity, cost, supplies, 4, False, None)
    assert flows.tolist() == [1, 1, 1, 1] and potential is None


def test_flow_potentials_are_its_duals_on_random_flows():
    """Strong duality from the potentials alone, on random transport flows
    (source -> 6 lines -> 5 keys -> sink, an unfilled arc per line): the dual
    value -sum(supply * d) - sum(capacity * max(d[head] - d[tail] - cost, 0))
    equals the flow's cost, and no residual arc has a negative reduced cost."""
    from ortools.graph.python import min_cost_flow

    from solver.unit_flow import flow_potentials

    rng = np.random.default_rng(5)
    for _ in range(20):
        lines, keys = 6, 5
        demand = rng.integers(1, 4, lines)
        pairs = [(i, k) for i in range(lines) for k in range(keys) if rng.random() < 0.5]
        source, sink = 0, 1 + lines + keys
        tails = [source] * lines + [1 + i for i, _ in pairs] + [1 + lines + k for k in range(keys)]
        tails += [1 + i for i in range(lines)]
        heads = [1 + i for i in range(lines)] + [1 + lines + k for _, k in pairs]
        heads += [sink] * keys + [sink] * lines
        capacity = list(demand) + [3] * len(pairs) + list(rng.integers(0, 4, keys)) + list(demand)
        cost = [0] * lines + list(rng.integers(1, 50, len(pairs))) + [0] * keys + [100] * lines
        tails, heads = np.array(tails, np.int32), np.array(heads, np.int32)
        capacity, cost = np.array(capacity, np.int64), np.array(cost, np.int64)
        supplies = np.zeros(sink + 1, np.int64)
        supplies[source], supplies[sink] = demand.sum(), -demand.sum()
        flow = min_cost_flow.SimpleMinCostFlow()
        arcs = flow.add_arcs_with_capacity_and_unit_cost(tails, heads, capacity, cost)
        flow.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
        assert flow.solve() == flow.OPTIMAL
        flows = np.asarray(flow.flows(arcs))
        d = flow_potentials(tails, heads, capacity, cost, flows, sink + 1)
        reduced = cost + d[tails] - d[heads]
        assert np.all(reduced[flows < capacity] >= -1e-9)
        assert np.all(reduced[flows > 0] <= 1e-9)
        dual = -(supplies @ d) - capacity @ np.maximum(-reduced, 0.0)
        assert dual == pytest.approx(float(cost @ flows))


def test_flow_prices_bound_the_batch(scarce_problems):
    """The contested lines' flow prices every stock key and node it uses; as
    any nonnegative prices, they give a proven Lagrangian bound: at most the
    plain MIP's optimum (and on these batches above every order alone's)."""
    from solver.contention import orders_using, with_neighbours
    from solver.lagrange import floored_value
    from solver.unit_flow import priced_flow

    for _scenario, problem in scarce_problems:
        alone = route_each_order_alone(problem, background=False)
        colliding = orders_using(problem, alone.units, *overused(problem, alone.units))
        contested = with_neighbours(problem, alone.units, colliding)
        _units, prices = priced_flow(problem, alone.units, contested)
        assert prices is not None and prices.key_price.min() >= 0 and prices.node_price.min() >= 0
        structure = build_structure(problem, exact_short=False)
        codes = structure.key_node.astype(np.int64) * problem.sku_ids.size + structure.key_sku
        key_price = np.zeros(codes.size)
        at = np.searchsorted(prices.key_code, codes).clip(max=prices.key_code.size - 1)
        found = prices.key_code[at] == codes
        key_price[found] = prices.key_price[at[found]]
        value = floored_value(
            price_orders(problem, structure, key_price, prices.node_price), alone.cost
        )
        model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
        optimum = solve_mip(model, MipParams(rel_gap=0.0, time_limit=60)).objective
        assert value <= optimum + 1e-6
        assert value > alone.bound
