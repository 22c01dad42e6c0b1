"""The Lagrangian oracle in chunks (solver/parallel_pricing.py): at any prices and
in any number of chunks, the same order costs, plans and bound as in one process,
to the last bit."""

from __future__ import annotations

import numpy as np
import pytest

from router.problem import build_problem
from router.scenario import load_scenario
from solver.executor import InProcessExecutor
from solver.parallel_pricing import PricingData, deal_chunks, price_orders_with
from solver.pricing import build_structure, price_orders
from tests.scarce import small_scarce_folder
from tests.test_scale_methods import random_prices


@pytest.fixture(scope="module")
def scarce_problems(tmp_path_factory):
    problems = []
    for seed in range(3):
        folder = small_scarce_folder(tmp_path_factory, seed, orders=150)
        problems.append(build_problem(load_scenario(folder)))
    return problems


@pytest.mark.parametrize("exact_short", [True, False])
def test_chunks_price_exactly_like_one_process(scarce_problems, exact_short):
    rng = np.random.default_rng(7)
    for problem in scarce_problems:
        structure = build_structure(problem, exact_short)
        data = PricingData(problem, structure)
        for parts in (1, 2, 5):
            chunks = deal_chunks(structure, parts)
            # every group and every one-by-one order in exactly one chunk
            dealt = sorted(i for groups, _loop in chunks for i in groups)
            assert dealt == list(range(len(structure.groups)))
            loops = np.concatenate([loop for _groups, loop in chunks])
            assert np.array_equal(np.sort(loops), np.sort(structure.loop_orders))
            for _ in range(3):
                key, node = random_prices(structure, problem, rng)
                one = price_orders(problem, structure, key, node)
                many = price_orders_with(InProcessExecutor(), data, key, node, chunks)
                assert many.value == one.value
                assert np.array_equal(many.order_cost, one.order_cost)
                assert np.array_equal(many.units, one.units)
