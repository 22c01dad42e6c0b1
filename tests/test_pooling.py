"""Tests for router.pooling and ``omniroute compare --pooling``: silos against one pool.

The hand-checked scenario: warehouse W at longitude 0 (a shipment costs 10,
handling 1 per unit, 4 units of A) and store S at longitude 1 (a shipment
costs 3, handling 1, 4 units of A); four delivery orders of one A each at
S's door (0 km from S, 111 km from W) and one pickup of one A at S.

- Silos: the online silo ships the four deliveries from W (4 x 11 = 44), the
  store silo hands the pickup over at S (handling 1): 45, every unit filled.
- One pool: S serves the pickup (1) and three deliveries (3 x 4 = 12), W the
  fourth (11): 24, every unit filled; 4 of 5 orders from a store within 5 km
  (1 of 5 in the silos).
- Stock for the same fill: at factor f the two nodes hold floor(8 f) units
  between them (4 f each, one rounded down, the other up); the pool fills all
  5 units once floor(8 f) >= 5, i.e. f >= 0.625: 5 of 8 stock units, 37.5%
  less. With s units at S it then costs 1 + 4 (s - 1) + 11 (5 - s).
"""

from __future__ import annotations

import pandas as pd
import pytest

from router.compare import parse_variant
from router.pooling import channel_silos, pooling_study, scale_stock, stock_reduction
from router.scenario import load_scenario
from solver.params import OptimizeParams
from tests.conftest import line_row, node_row
from tests.test_cli import omniroute
from tests.test_compare import assert_png

NODES = [
    node_row("W", ship_fixed=10, handling=1),
    node_row("S", "store", lon=1, ship_fixed=3, handling=1),
]
DELIVERIES = [line_row(f"D{i}", "1", "A", 1, lon=1) for i in range(1, 5)]
PICKUP = line_row("P1", "1", "A", 1, lon=1, pickup="S")
OPTIMIZE = parse_variant("optimize")
PARAMS = OptimizeParams(time_limit=30)


@pytest.fixture
def pooled(tiny_scenario_dir):
    return tiny_scenario_dir(
        nodes=NODES, inventory=["W,A,4", "S,A,4"], orders=[*DELIVERIES, PICKUP]
    )


def test_silos_split_orders_and_stock_by_channel(pooled):
    channels = channel_silos(load_scenario(pooled))
    assert channels.online is not None and channels.stores is not None
    assert list(channels.online.inventory["node_id"]) == ["W"]
    assert list(channels.online.orders["order_id"]) == ["D1", "D2", "D3", "D4"]
    assert list(channels.stores.inventory["node_id"]) == ["S"]
    assert list(channels.stores.orders["order_id"]) == ["P1"]
    # Every node stays, so reach and capacity read the same in each silo.
    assert len(channels.online.nodes) == len(channels.stores.nodes) == 2


def test_a_batch_without_pickups_has_no_store_silo(tiny_scenario_dir):
    folder = tiny_scenario_dir(nodes=NODES, inventory=["W,A,4", "S,A,4"], orders=DELIVERIES)
    channels = channel_silos(load_scenario(folder))
    assert channels.stores is None and channels.online is not None


def test_scale_stock_rounds_pairs_so_the_total_is_scaled(pooled):
    scenario = load_scenario(pooled)
    assert list(scale_stock(scenario, 0.75).inventory["available"]) == [3, 3]
    assert list(scale_stock(scenario, 1.0).inventory["available"]) == [4, 4]
    # 2.5 each: one pair is rounded down, the other up, 5 in all.
    assert sorted(scale_stock(scenario, 0.625).inventory["available"]) == [2, 3]
    assert list(scale_stock(scenario, 0.6).inventory["available"]) == [2, 2]


def test_scale_stock_keeps_single_units_somewhere(tiny_scenario_dir):
    # 10 pairs of one unit at half stock: 5 pairs keep theirs (flooring would keep none).
    folder = tiny_scenario_dir(
        nodes=[node_row(f"S{i}", "store") for i in range(10)],
        inventory=[f"S{i},A,1" for i in range(10)],
        orders=DELIVERIES,
    )
    scaled = scale_stock(load_scenario(folder), 0.5).inventory["available"]
    assert sorted(scaled) == [0] * 5 + [1] * 5


def test_one_pool_beats_the_silos_and_needs_less_stock(pooled):
    study = pooling_study(load_scenario(pooled), OPTIMIZE, PARAMS, steps=6)
    silo, pool, lean = study.silo.kpis, study.pool.kpis, study.lean_pool
    assert silo["total_cost"] == pytest.approx(45.0)
    assert pool["total_cost"] == pytest.approx(24.0)
    assert silo["fill_rate"] == pool["fill_rate"] == 1.0
    assert silo["orders_from_store_within_5km_share"] == pytest.approx(1 / 5)
    assert pool["orders_from_store_within_5km_share"] == pytest.approx(4 / 5)
    assert silo["stock_units"] == pool["stock_units"] == 8
    # Bisection: 0.5 (4 units) misses, 0.75 (6) and 0.625 (5) match, 0.5625 ... 0.609 (4) miss.
    assert [step["stock_factor"] for step in study.steps] == [
        0.5, 0.75, 0.625, 0.5625, 0.59375, 0.609375,
    ]  # fmt: skip
    assert [step["stock_units"] for step in study.steps] == [4, 6, 5, 4, 4, 4]
    assert [step["matches"] for step in study.steps] == [False, True, True, False, False, False]
    assert lean is not None and lean.stock_factor == 0.625
    assert lean.kpis["stock_units"] == 5 and lean.kpis["fill_rate"] == 1.0
    at_store = scale_stock(load_scenario(pooled), 0.625).inventory.set_index("node_id")
    s = int(at_store.loc["S", "available"])
    assert lean.kpis["total_cost"] == pytest.approx(1 + 4 * (s - 1) + 11 * (5 - s))
    assert stock_reduction(study) == pytest.approx(0.375)


def test_without_store_stock_to_share_the_pool_is_the_silos(tiny_scenario_dir):
    # The store holds nothing: pooling changes nothing (cost 44, all from W).
    folder = tiny_scenario_dir(nodes=NODES, inventory=["W,A,4", "S,A,0"], orders=DELIVERIES)
    study = pooling_study(load_scenario(folder), OPTIMIZE, PARAMS, steps=2)
    assert study.silo.kpis["total_cost"] == pytest.approx(44.0)
    assert study.pool.kpis["total_cost"] == pytest.approx(44.0)
    # Below full stock W holds floor(4 f) < 4 units: no reduction is found.
    assert study.lean_pool is not None and study.lean_pool.stock_factor == 1.0
    assert stock_reduction(study) == 0.0


def test_compare_pooling_writes_the_study(pooled, tmp_path):
    out = tmp_path / "out"
    result = omniroute(
        "compare", pooled, "--pooling", "--strategies", "optimize", "--steps", "3", "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert "37.5% less stock" in result.stdout
    table = pd.read_csv(out / "pooling.csv")
    assert list(table["setup"]) == [
        "channel silos", "one pool", "one pool, least stock",
    ]  # fmt: skip
    assert list(table["total_cost"])[:2] == pytest.approx([45.0, 24.0])
    assert list(table["stock_units"]) == [8, 8, 5]
    assert list(table["stock_factor"]) == [1.0, 1.0, 0.625]
    steps = pd.read_csv(out / "pooling_steps.csv")
    assert list(steps["stock_factor"]) == [0.5, 0.75, 0.625]
    assert_png(out / "pooling_optimize.png")
    for setup in ("silos", "pool"):
        assert (out / "optimize" / setup / "assignments.csv").is_file()
