"""Kits and bundles in the batch path: ``kits.csv``, the expansion, the checker.

A kit K = 1 a + 1 b. W holds a, T holds b, S holds both: shipping W(5) + T(2) = 7
splits the kit; S (8) ships it whole. The single-order path's pairs are in
``tests/service/test_kits.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from router.checker import check
from router.kits import KitError, expand_lines, kit_availability, parse_kit
from router.profiles import ProfileError, parse_profile
from router.run import solve_folder
from router.scenario import ScenarioError, load_scenario
from tests.test_profiles import GROUP_NODES, GROUP_STOCK, batch_nodes, write_profiled

KIT = "kit_sku,component_sku,quantity\nK,a,1\nK,b,1\n"


def write_kitted(
    folder: Path,
    *,
    orders: list[tuple] | None = None,
    profiles: dict | None = None,
    kits: str = KIT,
    inventory: list[tuple] = GROUP_STOCK,
) -> Path:
    """GROUP_NODES with ``kits`` as kits.csv; one order of one kit line by default."""
    write_profiled(
        folder,
        nodes=GROUP_NODES,
        inventory=inventory,
        orders=orders or [("o1", "l1", "K", 1, 0.0, "", "")],
        profiles=profiles,
        split_penalty=0.0,
    )
    (folder / "kits.csv").write_text(kits)
    return folder


# --- the rule: a kit's components ship together ---------------------------------------------


def test_kit_components_ship_together_without_profiles(tmp_path):
    folder = write_kitted(tmp_path / "s")
    out = solve_folder(folder, tmp_path / "out")
    rows = out.assignments
    assert set(rows["node_id"]) == {"S"}
    assert list(rows["line_id"]) == ["l1/a", "l1/b"]
    assert list(rows["kit_line"]) == ["l1", "l1"]
    assert out.summary["total_cost"] == 8.0


def test_kit_components_ship_together_with_a_profile(tmp_path):
    folder = write_kitted(tmp_path / "s", profiles={"default": {}})
    assert batch_nodes(folder, tmp_path) == {"o1": {"S"}}


def test_split_kits_lets_the_components_ship_apart(tmp_path):
    folder = write_kitted(tmp_path / "s", profiles={"default": {"split_kits": True}})
    assert batch_nodes(folder, tmp_path) == {"o1": {"W", "T"}}


def test_split_kits_is_per_channel(tmp_path):
    orders = [("o1", "l1", "K", 1, 0.0, "web", ""), ("o2", "l1", "K", 1, 0.0, "market", "")]
    folder = write_kitted(
        tmp_path / "s", orders=orders, profiles={"market": {"split_kits": True}, "default": {}}
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"S"}, "o2": {"W", "T"}}


def test_kit_quantity_multiplies_the_component_quantities(tmp_path):
    kits = "kit_sku,component_sku,quantity\nK,a,2\nK,b,1\n"
    folder = write_kitted(tmp_path / "s", orders=[("o1", "l1", "K", 2, 0.0, "", "")], kits=kits)
    scenario = load_scenario(folder)
    assert list(scenario.orders["qty"]) == [4, 2]
    assert list(scenario.orders["ship_group"]) == ["kit:l1", "kit:l1"]
    out = solve_folder(folder, tmp_path / "out")
    # S holds 5 a and 5 b: both kits whole from S
    assert list(out.assignments["qty"]) == [4, 2] and set(out.assignments["node_id"]) == {"S"}


def test_a_kit_that_no_node_can_serve_whole_is_unfilled_not_split(tmp_path):
    stock = [("W", "a", 5), ("T", "b", 5)]
    folder = write_kitted(tmp_path / "s", inventory=stock)
    out = solve_folder(folder, tmp_path / "out")
    assert out.assignments.empty and out.summary["unfilled_units"] == 2


def test_ordinary_lines_beside_a_kit_are_unchanged(tmp_path):
    orders = [("o1", "l1", "K", 1, 0.0, "", ""), ("o1", "l2", "c", 1, 0.0, "", "")]
    stock = [*GROUP_STOCK, ("T", "c", 1)]
    folder = write_kitted(tmp_path / "s", orders=orders, inventory=stock)
    scenario = load_scenario(folder)
    assert list(scenario.orders["line_id"]) == ["l1/a", "l1/b", "l2"]
    assert list(scenario.orders["kit_line"]) == ["l1", "l1", ""]
    assert list(scenario.orders["kit_sku"]) == ["K", "K", ""]


@pytest.mark.parametrize("strategy", ["greedy", "optimize"])
def test_kits_hold_in_a_contested_batch(tmp_path, strategy):
    from router.run import solve_scenario

    nodes = [(f"N{i}", "store", 0.2 * i, 2.0 + i, "") for i in range(4)]
    stock = [(f"N{i}", sku, 4) for i in range(4) for sku in ("a", "b", "c") if (i + ord(sku)) % 4]
    orders = []
    for j in range(14):
        orders += [
            (f"o{j}", "l1", "K", 1 + j % 2, 0.05 * j, "", ""),
            (f"o{j}", "l2", "c", 1, 0.05 * j, "", ""),
        ]
    folder = write_profiled(
        tmp_path / "s", nodes=nodes, inventory=stock, orders=orders, profiles=None
    )
    (folder / "kits.csv").write_text(KIT)
    out = solve_scenario(load_scenario(folder), strategy=strategy)  # checked inside
    kit_rows = out.assignments[out.assignments["kit_line"] == "l1"]
    assert kit_rows.groupby("order_id")["node_id"].nunique().max() == 1
    per_order = kit_rows.groupby("order_id")["qty"].sum()
    want = {f"o{j}": 2 * (1 + j % 2) for j in range(14)}
    assert all(per_order[o] == want[o] for o in per_order.index)  # whole, or nothing


# --- the checker ------------------------------------------------------------------------------


def test_checker_flags_a_kit_split_over_two_nodes(tmp_path):
    folder = write_kitted(tmp_path / "s")
    scenario = load_scenario(folder)
    split = pd.DataFrame(
        {
            "order_id": ["o1", "o1"],
            "line_id": ["l1/a", "l1/b"],
            "node_id": ["W", "T"],
            "qty": [1, 1],
        }
    )
    report = check(scenario, split)
    assert [v.rule for v in report.violations] == ["kit"]
    assert "kit line 'l1'" in report.violations[0].message
    half = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1/a"], "node_id": ["S"], "qty": [1]})
    assert [v.rule for v in check(scenario, half).violations] == ["kit"]
    whole = pd.DataFrame(
        {
            "order_id": ["o1", "o1"],
            "line_id": ["l1/a", "l1/b"],
            "node_id": ["S", "S"],
            "qty": [1, 1],
        }
    )
    assert check(scenario, whole).feasible


def test_cli_check_rechecks_the_written_answer(tmp_path):
    import subprocess
    import sys

    folder = write_kitted(tmp_path / "s")
    solve_folder(folder, tmp_path / "out")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "router.cli",
            "check",
            str(folder),
            str(tmp_path / "out" / "assignments.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FEASIBLE")


# --- availability -------------------------------------------------------------------------------


def test_kit_availability_is_the_minimum_over_components():
    kit = parse_kit("K", [("a", 2), ("b", 1)])
    per_node = kit_availability(kit, {"a": np.array([5, 1, 4]), "b": np.array([1, 9, 0])})
    assert per_node.tolist() == [1, 0, 0]
    assert int(kit_availability(kit, {"a": 10, "b": 10})) == 5  # pooled: floor(10 / 2)
    assert int(kit_availability(kit, {"a": 10})) == 0  # a missing component makes none


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kits", "message"),
    [
        (
            "kit_sku,component_sku,quantity\nK,a,0\n",
            r"^kits\.csv row 2, column quantity: must be an integer >= 1",
        ),
        (
            "kit_sku,component_sku,quantity\nK,a,x\n",
            r"^kits\.csv row 2, column quantity: must be an integer",
        ),
        ("kit_sku,component_sku,quantity\nK,,1\n", r"^kits\.csv row 2, column component_sku"),
        (
            "kit_sku,component_sku,quantity\nK,a,1\nK,a,2\n",
            r"^kits\.csv row 3, column component_sku: duplicate",
        ),
        ("kit_sku,component_sku,quantity\nK,K,1\n", r"column component_sku: a kit cannot contain"),
        (
            "kit_sku,component_sku,quantity\nK,a,1\nJ,K,1\n",
            r"row 3, column component_sku: is itself a kit",
        ),
        ("kit_sku,component\nK,a\n", r"^kits\.csv row 1, column component_sku: missing column"),
    ],
)
def test_bad_kits_csv_names_row_and_column(tmp_path, kits, message):
    folder = write_kitted(tmp_path / "s", kits=kits)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(folder)


def test_a_kit_sku_with_stock_of_its_own_is_refused(tmp_path):
    folder = write_kitted(tmp_path / "s", inventory=[*GROUP_STOCK, ("W", "K", 3)])
    with pytest.raises(ScenarioError, match=r"^inventory\.csv row 6, column sku: is a kit"):
        load_scenario(folder)


def test_a_component_also_ordered_outside_its_kit_is_refused(tmp_path):
    orders = [("o1", "l1", "K", 1, 0.0, "", ""), ("o1", "l2", "a", 1, 0.0, "", "")]
    folder = write_kitted(tmp_path / "s", orders=orders)
    with pytest.raises(ScenarioError, match=r"^orders\.csv row 3, column sku: SKU 'a'"):
        load_scenario(folder)
    # with split kits there is no group, so the same order is fine
    folder = write_kitted(tmp_path / "t", orders=orders, profiles={"default": {"split_kits": True}})
    assert list(load_scenario(folder).orders["line_id"]) == ["l1/a", "l1/b", "l2"]


def test_a_component_line_id_that_collides_is_refused(tmp_path):
    orders = [("o1", "l1", "K", 1, 0.0, "", ""), ("o1", "l1/a", "c", 1, 0.0, "", "")]
    folder = write_kitted(tmp_path / "s", orders=orders)
    with pytest.raises(ScenarioError, match=r"^orders\.csv row 3, column line_id: line id 'l1/a'"):
        load_scenario(folder)


def test_split_kits_must_be_a_boolean():
    with pytest.raises(ProfileError, match=r"^split_kits: must be true or false"):
        parse_profile({"split_kits": "yes"})


def test_parse_kit_names_the_field():
    with pytest.raises(KitError, match=r"^components\[1\]\.quantity: must be an integer >= 1"):
        parse_kit("K", [("a", 1), ("b", 0)])
    with pytest.raises(KitError, match=r"^components: a kit needs at least one component"):
        parse_kit("K", [])
    assert expand_lines([("l1", "x", 3, "")], {"K": parse_kit("K", [("a", 1)])})[0].sku == "x"


def test_a_step_that_splits_a_kit_is_repaired_by_leaving_the_kit_unfilled(tmp_path):
    from router.problem import build_problem
    from solver.cost import drop_broken_ship_groups, within_shipment_caps

    problem = build_problem(load_scenario(write_kitted(tmp_path / "s")))
    node = {str(n): i for i, n in enumerate(problem.node_ids)}

    def units_at(*nodes: str) -> np.ndarray:
        out = np.zeros(problem.cand_line.size, dtype=np.int64)
        for line, name in enumerate(nodes):
            out[(problem.cand_line == line) & (problem.cand_node == node[name])] = 1
        return out

    split = units_at("W", "T")
    assert not within_shipment_caps(problem, split)
    assert not drop_broken_ship_groups(problem, split).any()
    whole = units_at("S", "S")
    assert (drop_broken_ship_groups(problem, whole) == whole).all()
