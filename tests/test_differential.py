"""Differential tests: ``optimize`` against a plain MIP of the unpruned model.

Many small random batches (seeded, a few orders each, every point within a few
hundred km) cover the cases where the batch method takes shortcuts: large
orders (more than 8 units, the single-order MIP fallback), pickup orders,
tight capacity, small delivery radii and zero split or unfilled penalties. The
seed's low five bits switch these on, so every combination comes up (the
heavier sweep over many seeds is marked ``slow``).

On each batch:

- the plain MIP (``ModelInput.whole`` + ``build_model`` + ``solve_mip`` with
  gap 0) gives the optimum, and its answer passes the independent checker at
  that cost (the model and the checker agree);
- ``optimize`` (through :func:`router.run.solve_scenario`, which re-checks its
  answer with the checker) returns that optimum, with a lower bound never
  above it;
- the Lagrangian bound at random nonnegative prices is never above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from router.checker import check
from router.problem import build_problem
from router.run import assignments_frame, solve_scenario
from router.scenario import load_scenario
from solver.alone import route_each_order_alone
from solver.batch import OptimizeParams
from solver.bound import Prices, lagrangian_bound
from solver.mip import MipParams, ObjectiveCheck, SolveStatus, solve_mip
from solver.model import ModelInput, build_model
from tests.conftest import line_row, node_row, write_scenario

FAST_SEEDS = (2, 8, 16, 31)
"""Pickup, small radii, zero penalties, all five features (a few seconds in all)."""
SLOW_SEEDS = range(32, 192)
"""Every combination of features, five times."""
PARAMS = OptimizeParams(time_limit=10.0, rel_gap=1e-9)
"""Ample for these batches: the exact MIP of the last step proves them, after the
Lagrangian steps (a quarter of the time left) and the polish."""


@dataclass(frozen=True)
class Features:
    large_orders: bool
    pickup: bool
    tight_capacity: bool
    small_radius: bool
    zero_penalties: bool

    @classmethod
    def of_seed(cls, seed: int) -> Features:
        return cls(*(bool(seed >> bit & 1) for bit in range(5)))


def _random_batch(folder, seed: int):
    """Write a random scenario exercising the features of ``seed``; return its folder."""
    rng = np.random.default_rng(seed)
    features = Features.of_seed(seed)
    warehouses = [f"W{i}" for i in range(int(rng.integers(1, 3)))]
    stores = [f"S{i}" for i in range(int(rng.integers(1, 5)))]
    skus = [f"K{i}" for i in range(int(rng.integers(1, 5)))]

    def where():
        return {
            "lat": round(float(rng.uniform(0, 3)), 4),
            "lon": round(float(rng.uniform(0, 3)), 4),
        }

    def capacity():
        if features.tight_capacity and rng.random() < 0.7:
            return int(rng.integers(0, 8))
        return ""

    nodes = [
        node_row(
            w,
            ship_fixed=round(float(rng.uniform(5, 12)), 2),
            ship_per_km=round(float(rng.uniform(0, 0.02)), 4),
            handling=round(float(rng.uniform(0, 1)), 2),
            capacity=capacity(),
            **where(),
        )
        for w in warehouses
    ]
    nodes += [
        node_row(
            s,
            "store",
            ship_fixed=round(float(rng.uniform(1, 6)), 2),
            ship_per_km=round(float(rng.uniform(0, 0.05)), 4),
            handling=round(float(rng.uniform(0, 2)), 2),
            capacity=capacity(),
            max_km=round(float(rng.uniform(20, 150)), 1) if features.small_radius else "",
            **where(),
        )
        for s in stores
    ]
    inventory = [
        f"{node},{sku},{int(rng.integers(0, 7))}"
        for node in warehouses + stores
        for sku in skus
        if rng.random() < 0.8
    ]
    orders = []
    for o in range(int(rng.integers(2, 9))):
        place = where()
        pickup = str(rng.choice(stores)) if features.pickup and rng.random() < 0.4 else ""
        for line in range(int(rng.integers(1, 4))):
            qty = int(rng.integers(1, 4))
            if features.large_orders and rng.random() < 0.4:
                qty = int(rng.integers(9, 15))
            orders.append(
                line_row(f"O{o}", f"L{line}", str(rng.choice(skus)), qty, pickup=pickup, **place)
            )
    split_penalty, unfilled_penalty = 6.0, 150.0
    if features.zero_penalties:
        split_penalty, unfilled_penalty = [(0.0, 150.0), (6.0, 0.0), (0.0, 0.0)][seed % 3]
    return write_scenario(
        folder,
        nodes=nodes,
        inventory=inventory,
        orders=orders,
        split_penalty=split_penalty,
        unfilled_penalty=unfilled_penalty,
    )


def _plain_mip_optimum(scenario, problem) -> float:
    """The unpruned model's optimum, its answer graded by the independent checker."""
    part = ModelInput.whole(problem)
    model, v, _keys, _rows = build_model(problem, part)
    mip = solve_mip(model, MipParams(time_limit=30.0, rel_gap=0.0, abs_gap=0.0))
    assert mip.status == SolveStatus.OPTIMAL
    assert mip.check == ObjectiveCheck.AGREED
    report = check(scenario, assignments_frame(problem, v.extract(mip.x)))
    assert report.feasible
    assert report.total_cost == pytest.approx(mip.objective, abs=1e-6)
    return mip.objective


def _close(cost: float, optimum: float) -> bool:
    # The batch MIPs stop within an absolute gap of 1e-4 (a hundredth of a cent).
    return abs(cost - optimum) <= 1e-4 + 1e-9 * abs(optimum)


def _batch(tmp_path, seed: int):
    scenario = load_scenario(_random_batch(tmp_path / f"batch-{seed}", seed))
    problem = build_problem(scenario)
    return scenario, problem, _plain_mip_optimum(scenario, problem)


def _assert_optimize_finds_the_optimum(tmp_path, seed: int) -> None:
    scenario, _problem, optimum = _batch(tmp_path, seed)
    summary = solve_scenario(scenario, params=PARAMS).summary  # raises if the checker disagrees
    seen = (seed, summary["status"], summary["total_cost"], summary["lower_bound"], optimum)
    # Always: the bound is a proof and the answer a feasible solution.
    assert summary["lower_bound"] <= optimum + 1e-6, seen
    assert summary["total_cost"] >= optimum - 1e-6, seen
    # And these batches are small enough to be proven within the time limit.
    assert summary["status"] == "optimal", (seen, summary["details"])
    assert _close(summary["total_cost"], optimum), seen


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_optimize_equals_the_plain_mip_optimum(tmp_path, seed):
    _assert_optimize_finds_the_optimum(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_optimize_equals_the_plain_mip_optimum_many(tmp_path, seed):
    _assert_optimize_finds_the_optimum(tmp_path, seed)


@pytest.mark.parametrize("seed", range(1, 13))
def test_lagrangian_bound_at_random_prices_never_exceeds_the_optimum(tmp_path, seed):
    _assert_lagrangian_bounds_stay_below_the_optimum(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_lagrangian_bound_at_random_prices_never_exceeds_the_optimum_many(tmp_path, seed):
    _assert_lagrangian_bounds_stay_below_the_optimum(tmp_path, seed)


def _assert_lagrangian_bounds_stay_below_the_optimum(tmp_path, seed: int) -> None:
    _scenario, problem, optimum = _batch(tmp_path, seed)
    alone = route_each_order_alone(problem)
    assert alone.bound <= optimum + 1e-6
    rng = np.random.default_rng(10_000 + seed)
    # Capacity rows exist only where a node has a capacity (see the regression below).
    limited = np.isfinite(problem.capacity)
    for scale in (0.5, 5.0, 50.0, 500.0):
        prices = Prices(problem)
        prices.key = rng.exponential(scale, problem.stock.shape) * (
            rng.random(problem.stock.shape) < 0.6
        )
        prices.node = rng.exponential(scale, problem.num_nodes) * limited
        bound = lagrangian_bound(problem, alone, prices)
        assert bound <= optimum + 1e-6, (seed, scale, bound, optimum)


def test_lagrangian_bound_ignores_a_price_on_a_node_without_capacity_limit(tmp_path):
    """One order of one unit from W (ship 10, no capacity limit): optimum 10. A node
    without a limit has no capacity row to relax, so its price must not count; the
    bound priced it at 10 + 100 = 110."""
    folder = write_scenario(
        tmp_path / "s",
        nodes=[node_row("W", ship_fixed=10)],
        inventory=["W,A,5"],
        orders=[line_row("O1", "L1", "A")],
    )
    problem = build_problem(load_scenario(folder))
    prices = Prices(problem)
    prices.node[:] = 100.0
    assert lagrangian_bound(problem, route_each_order_alone(problem), prices) <= 10.0 + 1e-9


def test_the_slow_seeds_cover_every_combination_of_features():
    assert {Features.of_seed(seed) for seed in SLOW_SEEDS} == {
        Features.of_seed(seed) for seed in range(32)
    }
    assert len({Features.of_seed(seed) for seed in range(32)}) == 32
