"""Why this node (router/explain.py): explanations on hand-checked fixtures name the
right binding constraint and the right next-best cost; each counterfactual, applied to
the scenario's files and the whole batch solved again, really routes the order
differently; unfilled lines name the rule that ruled out each node; the vectorised
one-unit path answers exactly as the order-by-order one; ``omniroute explain``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from router.explain import (
    OrderContext,
    _BatchState,
    _contexts_of,
    _explain_one_unit_orders,
    batch_contexts,
    counterfactuals,
    explain_batch,
    explain_order,
)
from router.run import solve_scenario
from router.scenario import load_scenario
from tests.conftest import line_row, node_row
from tests.test_cli import _one_line_error, omniroute

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def _explained(folder: Path) -> dict[str, dict]:
    output = solve_scenario(load_scenario(folder))
    return {e["order_id"]: e for e in explain_batch(output.problem, output.result)}


def _routed_to(folder: Path, order_id: str) -> set[str]:
    """The nodes of ``order_id`` when the whole batch in ``folder`` is solved again."""
    output = solve_scenario(load_scenario(folder))
    rows = output.assignments[output.assignments["order_id"] == order_id]
    return set(rows["node_id"])


def _copy(fixture: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / fixture, tmp_path / fixture))


def _set_cell(path: Path, key: str, column: str, value: str, key_column: str = "node_id") -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    at, key_at = header.index(column), header.index(key_column)
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if cells[key_at] == key:
            cells[at] = value
            lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


# --- capacity binds (fixtures/capacity-binds) ------------------------------------------


def test_capacity_binds_names_the_store_capacity_and_the_next_best_cost():
    # O1 (2 units) would ship from S1 for 4 + 2 x 2 = 8.00, but S1's capacity of 2 is
    # used by O2 and O3: it ships from W1 for 9 + 2 x 0.75 = 10.50. Without W1 the
    # only plan left is to ship nothing: 2 x 150 = 300.
    explained = _explained(FIXTURES / "capacity-binds")["O1"]
    assert [s["node_id"] for s in explained["chosen"]] == ["W1"]
    assert explained["cost"]["total"] == pytest.approx(10.5)
    assert explained["chosen"][0]["kind"] == "warehouse"
    (taken,) = explained["taken_away"]
    assert taken["nodes"] == ["S1"] and taken["cost"] == pytest.approx(8.0)
    (binding,) = taken["binding"]
    assert binding["rule"] == "capacity" and binding["node_id"] == "S1"
    assert (binding["capacity_left"], binding["used_by_other_orders"]) == (0, 2)
    assert explained["alternatives"][0]["nodes"] == []
    assert explained["alternatives"][0]["extra_cost"] == pytest.approx(300 - 10.5)


def test_capacity_does_not_bind_for_an_order_at_its_best_node():
    # O2 ships from S1 (4 + 2 = 6.00), its best node even alone: nothing took anything
    # away; the next best is W1 at 9 + 0.75 = 9.75, 3.75 more.
    explained = _explained(FIXTURES / "capacity-binds")["O2"]
    assert [s["node_id"] for s in explained["chosen"]] == ["S1"]
    assert explained["taken_away"] == []
    assert explained["alternatives"][0]["nodes"] == ["W1"]
    assert explained["alternatives"][0]["extra_cost"] == pytest.approx(3.75)


def test_capacity_counterfactual_really_moves_the_order(tmp_path):
    (change,) = _explained(FIXTURES / "capacity-binds")["O1"]["counterfactuals"]
    # One more unit would only let O1 split (4 + 2 + 9 + 0.75 + 6 = 21.75 > 10.50).
    assert (change["kind"], change["node_id"], change["units"]) == ("capacity", "S1", 2)
    assert change["new_nodes"] == ["S1"] and change["new_cost"] == pytest.approx(8.0)
    folder = _copy("capacity-binds", tmp_path)
    _set_cell(folder / "nodes.csv", "S1", "capacity_units", str(2 + change["units"]))
    assert _routed_to(folder, "O1") == {"S1"}
    _set_cell(folder / "nodes.csv", "S1", "capacity_units", str(2 + change["units"] - 1))
    assert _routed_to(folder, "O1") == {"W1"}  # one unit less: no change (smallest)


# --- stock binds (fixtures/pickup-competes) -------------------------------------------


def test_pickup_takes_the_stock_the_delivery_wanted():
    # O1 would ship its unit from S1 (4 + 2 = 6.00); the pickup O2 takes S1's only
    # unit, so O1 ships from W1 (9 + 0.75 = 9.75).
    explained = _explained(FIXTURES / "pickup-competes")
    o1 = explained["O1"]
    (taken,) = o1["taken_away"]
    assert taken["cost"] == pytest.approx(6.0) and o1["cost"]["total"] == pytest.approx(9.75)
    (binding,) = taken["binding"]
    assert (binding["rule"], binding["node_id"], binding["sku"]) == ("stock", "S1", "SKU-A")
    assert (binding["units_left"], binding["used_by_other_orders"]) == (0, 1)
    o2 = explained["O2"]
    assert o2["pickup_node"] == "S1" and o2["chosen"][0]["km"] is None
    assert o2["chosen"][0]["shipping"] == 0.0


def test_stock_counterfactual_really_moves_the_order(tmp_path):
    (change,) = _explained(FIXTURES / "pickup-competes")["O1"]["counterfactuals"]
    assert (change["kind"], change["node_id"], change["sku"], change["units"]) == (
        "stock",
        "S1",
        "SKU-A",
        1,
    )
    folder = _copy("pickup-competes", tmp_path)
    before = load_scenario(folder).inventory.set_index(["node_id", "sku"])["available"]
    _set_cell(folder / "inventory.csv", "S1", "available", str(before[("S1", "SKU-A")] + 1))
    assert _routed_to(folder, "O1") == {"S1"}


def test_binding_rows_carry_the_batch_prices():
    """The price of a binding row is the solve's price of that row (``RoutingResult.prices``,
    the LP duals); with no prices (a tiny batch solved as one MIP) it is null."""
    from dataclasses import replace

    from solver.bound import Prices

    output = solve_scenario(load_scenario(FIXTURES / "capacity-binds"))
    assert output.result.prices is None
    plain = {e["order_id"]: e for e in explain_batch(output.problem, output.result)}
    assert plain["O1"]["taken_away"][0]["binding"][0]["price"] is None
    prices = Prices(output.problem)
    s1 = list(output.problem.node_ids).index("S1")
    prices.node[s1] = 1.25
    priced = replace(output.result, prices=prices)
    explained = {e["order_id"]: e for e in explain_batch(output.problem, priced)}
    (binding,) = explained["O1"]["taken_away"][0]["binding"]
    assert (binding["rule"], binding["price"]) == ("capacity", 1.25)


# --- reach binds (fixtures/beyond-max-km) ----------------------------------------------


def test_reach_binds_for_the_customer_just_beyond_max_km():
    explained = _explained(FIXTURES / "beyond-max-km")
    (taken,) = explained["O1"]["taken_away"]
    (binding,) = taken["binding"]
    assert (binding["rule"], binding["node_id"], binding["max_km"]) == ("reach", "S1", 30.0)
    assert binding["km"] == pytest.approx(30.02, abs=0.005)
    assert explained["O2"]["taken_away"] == []  # 28.91 km: within reach, served by S1


def test_reach_counterfactual_really_moves_the_order(tmp_path):
    (change,) = _explained(FIXTURES / "beyond-max-km")["O1"]["counterfactuals"]
    assert (change["kind"], change["node_id"]) == ("reach", "S1")
    assert 30.02 < change["max_km"] <= 30.03
    folder = _copy("beyond-max-km", tmp_path)
    _set_cell(folder / "nodes.csv", "S1", "max_km", f"{change['max_km']}")
    assert _routed_to(folder, "O1") == {"S1"}


def test_cost_counterfactual_when_nothing_binds(tmp_path):
    # split-vs-wait O1: W1 ships both units 1,001 km for 15.50; S1 + S2 at the door
    # would cost 4 + 2 + 4 + 2 + 6 = 18.00: 2.496 more, so a cut of 2.51 moves it.
    explained = _explained(FIXTURES / "split-vs-wait")["O1"]
    assert explained["taken_away"] == []
    assert explained["alternatives"][0]["nodes"] == ["S1", "S2"]
    assert explained["alternatives"][0]["extra_cost"] == pytest.approx(
        18.0 - explained["cost"]["total"], abs=1e-6
    )
    (change,) = explained["counterfactuals"]
    assert change["kind"] == "cost" and change["shipping_cut"] == pytest.approx(2.51)
    folder = _copy("split-vs-wait", tmp_path)
    ship_fixed = load_scenario(folder).nodes.set_index("node_id")["ship_fixed"]
    node = change["node_id"]
    _set_cell(folder / "nodes.csv", node, "ship_fixed", f"{ship_fixed[node] - 2.51:.2f}")
    assert node in _routed_to(folder, "O1")


# --- unfilled lines: the rule that ruled out each node ----------------------------------


def test_unfilled_lines_name_each_rule(tiny_scenario_dir):
    folder = tiny_scenario_dir(
        nodes=[
            node_row("W1", ship_fixed=5),
            node_row("W2", ship_fixed=200),  # in reach and stocked, dearer than leaving it
            node_row("S1", "store", ship_fixed=1, max_km=1),
            node_row("S2", "store", lon=1, ship_fixed=1, max_km=10),  # 111 km away
            node_row("S3", "store", ship_fixed=1, capacity=0),
        ],
        inventory=["W1,A,1", "W2,A,5", "S2,A,5", "S3,A,5"],
        orders=[
            line_row("O1", "L1", "A"),
            line_row("O2", "L1", "A"),
            line_row("O3", "L1", "A", pickup="S1"),
        ],
    )
    explained = _explained(folder)
    served = [o for o in ("O1", "O2") if explained[o]["status"] == "filled"]
    (left,) = [o for o in ("O1", "O2") if o not in served]
    (line,) = explained[left]["unfilled_lines"]
    ruled_out = {rule: [n["node_id"] for n in nodes] for rule, nodes in line["ruled_out"].items()}
    assert ruled_out == {"stock": ["W1"], "cost": ["W2"], "reach": ["S2"], "capacity": ["S3"]}
    assert line["ruled_out"]["stock"][0]["used_by_other_orders"] == 1
    assert line["ruled_out"]["cost"][0]["cost_of_one_more_unit"] == pytest.approx(200)
    (pickup,) = explained["O3"]["unfilled_lines"]
    assert set(pickup["ruled_out"]) == {"pickup"}
    assert sorted(n["node_id"] for n in pickup["ruled_out"]["pickup"]) == ["S2", "S3", "W1", "W2"]


# --- the vectorised one-unit path, storage ---------------------------------------------


def test_one_unit_orders_explained_at_once_as_one_by_one():
    output = solve_scenario(load_scenario(FIXTURES / "cn-2000"))
    state = _BatchState.of(output.problem, output.result.units, output.result.prices)
    fast = _explain_one_unit_orders(state)
    assert len(fast) > 500
    orders = sorted(fast)
    for o, ctx in zip(orders, _contexts_of(state, orders), strict=True):
        assert fast[o] == explain_order(ctx), output.problem.order_ids[o]
    assert any(e["taken_away"] for e in fast.values())
    assert any(len(e["alternatives"]) == 3 for e in fast.values())


def test_context_survives_json():
    output = solve_scenario(load_scenario(FIXTURES / "capacity-binds"))
    for ctx in batch_contexts(output.problem, output.result.units, output.result.prices):
        again = OrderContext.from_json(ctx.to_json())
        assert explain_order(again, with_counterfactual=True) == explain_order(
            ctx, with_counterfactual=True
        )


def test_counterfactual_is_empty_when_nothing_changes_the_order():
    # sku-nowhere O2 wants a SKU no node holds: no stock change at a node holding one of
    # its SKUs exists, nothing binds, no cheaper shipment can be made.
    output = solve_scenario(load_scenario(FIXTURES / "sku-nowhere"))
    contexts = {
        c.order_id: c
        for c in batch_contexts(output.problem, output.result.units, output.result.prices)
    }
    assert counterfactuals(contexts["O2"]) == []


# --- omniroute solve and omniroute explain ----------------------------------------------


def test_solve_writes_explanations_and_explain_prints_one(tmp_path):
    scenario = FIXTURES / "capacity-binds"
    out = tmp_path / "out"
    run = omniroute("solve", scenario, "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    lines = (out / "explanations.jsonl").read_text().splitlines()
    assert [json.loads(line)["order_id"] for line in lines] == ["O1", "O2", "O3"]
    text = omniroute("explain", scenario, out, "O1")
    assert text.returncode == 0, text.stderr
    assert "capacity of S1: needs 2, 0 left, 2 used by other orders" in text.stdout
    assert "2 more units of capacity at S1" in text.stdout
    as_json = omniroute("explain", scenario, out, "O1", "--json")
    assert json.loads(as_json.stdout) == json.loads(lines[0])


def test_explain_rebuilds_from_assignments_without_the_jsonl(tmp_path):
    scenario = FIXTURES / "pickup-competes"
    out = tmp_path / "out"
    assert omniroute("solve", scenario, "--out", out, "--quiet").returncode == 0
    stored = json.loads((out / "explanations.jsonl").read_text().splitlines()[0])
    (out / "explanations.jsonl").unlink()
    run = omniroute("explain", scenario, out, "O1", "--json", "--counterfactual")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == stored


def test_explain_unknown_order_is_one_line_naming_it(tmp_path):
    scenario = FIXTURES / "capacity-binds"
    out = tmp_path / "out"
    assert omniroute("solve", scenario, "--out", out, "--quiet").returncode == 0
    _one_line_error(omniroute("explain", scenario, out, "NOPE"), "'NOPE'")
    (out / "explanations.jsonl").unlink()
    (out / "assignments.csv").unlink()
    _one_line_error(omniroute("explain", scenario, out, "O1"), "assignments.csv")


# --- routing profiles: split cap, ship groups, clearance credit ---------------------------------
# The explanation prices and routes the order under the rules its routing obeyed; each
# case is a tiny scenario of tests/test_profiles.py, through `omniroute solve`'s answer
# folder (explanations.jsonl, counterfactuals included).


def _solved_and_explained(folder: Path, tmp_path: Path) -> tuple[float, dict]:
    """The routing's cost of o1 (summary.json) and its explanation (explanations.jsonl)."""
    from router.run import solve_folder

    out = solve_folder(folder, tmp_path / "out", counterfactuals=True)
    (line,) = (tmp_path / "out" / "explanations.jsonl").read_text().splitlines()
    return out.summary["total_cost"], json.loads(line)


def _nodes_of_every_plan(expl: dict) -> list[list[str]]:
    plans = [alt["nodes"] for alt in expl["alternatives"] + expl["taken_away"]]
    return plans + [change["new_nodes"] for change in expl["counterfactuals"]]


def test_clearance_credit_prices_the_choice_as_the_routing_did(tmp_path):
    # S ships at 6 and each of the 2 units earns a credit of 1 (6 - 2 = 4); W ships at
    # 5 without credit: W is the next best, 1.00 more; a cut of 1.01 at W moves it.
    from tests.test_profiles import CLEARANCE, write_clearance

    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", "4"))
    cost, expl = _solved_and_explained(folder, tmp_path)
    assert cost == 4.0 and expl["cost"]["total"] == 4.0
    assert expl["cost"]["shipping"] == 6.0 and expl["cost"]["handling"] == -2.0
    assert expl["chosen"][0]["node_id"] == "S" and expl["chosen"][0]["handling"] == -2.0
    assert (expl["alternatives"][0]["nodes"], expl["alternatives"][0]["extra_cost"]) == (["W"], 1.0)
    (change,) = expl["counterfactuals"]
    assert (change["kind"], change["node_id"], change["shipping_cut"]) == ("cost", "W", 1.01)
    assert change["new_cost"] == 3.99


def test_without_clearance_credit_the_cost_is_the_handling(tmp_path):
    # 5 a week at S: no credit, W at 5 wins; S is the next best at 6.
    from tests.test_profiles import CLEARANCE, write_clearance

    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", "5"))
    cost, expl = _solved_and_explained(folder, tmp_path)
    assert cost == 5.0 and expl["cost"]["total"] == 5.0 and expl["cost"]["handling"] == 0.0
    assert (expl["alternatives"][0]["nodes"], expl["alternatives"][0]["extra_cost"]) == (["S"], 1.0)


def _split_cap_folder(tmp_path: Path, cap: int) -> Path:
    # a only at W (ship 5), b only at S (ship 8), split penalty 6, unfilled 150.
    from tests.test_profiles import NODES, write_profiled

    return write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=[("W", "a", 5), ("S", "b", 5)],
        orders=[("o1", "l1", "a", 1, 0.0, "", ""), ("o1", "l2", "b", 1, 0.0, "", "")],
        profiles={"default": {"max_shipments": cap}},
    )


def test_split_cap_binds_no_alternative_or_counterfactual_breaks_it(tmp_path):
    # "Never split": W ships a (5) and b is unfilled (150): 155. W + S (5 + 8 + 6 = 19)
    # is forbidden: the alternatives are S alone (8 + 150 = 158) and nothing (300); S
    # is ruled out for b by the split cap; one more b at W would ship both from W (5).
    cost, expl = _solved_and_explained(_split_cap_folder(tmp_path, 1), tmp_path)
    assert cost == 155.0 and expl["cost"]["total"] == 155.0
    assert [(a["nodes"], a["cost"]) for a in expl["alternatives"]] == [(["S"], 158.0), ([], 300.0)]
    assert all(len(nodes) <= 1 for nodes in _nodes_of_every_plan(expl))
    (line,) = expl["unfilled_lines"]
    assert line["ruled_out"] == {"split_cap": [{"node_id": "S", "max_shipments": 1}]}
    (change,) = expl["counterfactuals"]
    assert (change["kind"], change["text"], change["new_nodes"]) == (
        "stock",
        "1 more unit of b at W",
        ["W"],
    )
    assert change["new_cost"] == 5.0


def test_split_cap_of_two_does_not_bind(tmp_path):
    # Two shipments allowed: W + S at 19; the next best plans are one-node ones.
    cost, expl = _solved_and_explained(_split_cap_folder(tmp_path, 2), tmp_path)
    assert cost == 19.0 and expl["cost"]["total"] == 19.0 and expl["cost"]["splits"] == 1
    assert expl["alternatives"][0]["nodes"] == ["W"] and expl["alternatives"][0]["cost"] == 155.0


def _ship_group_folder(tmp_path: Path, group_b: str) -> Path:
    # a and b in group g (or b outside it): W(a) 5 + T(b) 2 = 7, S(a, b) 8, U(a, b) 9;
    # no split penalty.
    from tests.test_profiles import GROUP_NODES, GROUP_STOCK, group_orders, write_profiled

    return write_profiled(
        tmp_path / "s",
        nodes=[*GROUP_NODES, ("U", "store", 0.0, 9.0, "")],
        inventory=[*GROUP_STOCK, ("U", "a", 5), ("U", "b", 5)],
        orders=group_orders(group_b),
        profiles={"default": {}},
        split_penalty=0.0,
    )


def test_ship_group_binds_no_alternative_or_counterfactual_splits_it(tmp_path):
    # The group ships whole from S (8). W + T (7) would split it and W alone or T
    # alone would serve half of it: none is listed. U (9) is next, and a shipping
    # cut of 1.01 at U moves the whole group there.
    cost, expl = _solved_and_explained(_ship_group_folder(tmp_path, "g"), tmp_path)
    assert cost == 8.0 and expl["cost"]["total"] == 8.0
    assert [(a["nodes"], a["units"], a["cost"]) for a in expl["alternatives"]] == [
        (["U"], [2], 9.0),
        ([], [], 300.0),
    ]
    assert all(len(nodes) <= 1 for nodes in _nodes_of_every_plan(expl))
    (change,) = expl["counterfactuals"]
    assert (change["kind"], change["node_id"], change["new_nodes"]) == ("cost", "U", ["U"])
    assert change["new_cost"] == 7.99


def test_ship_group_of_one_line_lists_the_split_plans(tmp_path):
    # b outside the group: W(a) + T(b) at 7 is the choice; S alone (8) is next.
    cost, expl = _solved_and_explained(_ship_group_folder(tmp_path, ""), tmp_path)
    assert cost == 7.0 and expl["cost"]["total"] == 7.0
    assert (expl["alternatives"][0]["nodes"], expl["alternatives"][0]["cost"]) == (["S"], 8.0)


def test_ship_group_unfilled_names_the_rule_for_the_whole_group(tmp_path):
    # Only W holds a (1 unit, the group needs 2) and only T holds b: the group cannot
    # ship whole anywhere, so it is unfilled: for line a, W is ruled out by its stock
    # of a (2 needed, for the group); for line b, T is ruled out by its stock of a.
    from tests.test_profiles import GROUP_NODES, write_profiled

    folder = write_profiled(
        tmp_path / "s",
        nodes=GROUP_NODES,
        inventory=[("W", "a", 1), ("T", "b", 5)],
        orders=[
            ("o1", "l1", "a", 2, 0.0, "", "", "", "g"),
            ("o1", "l2", "b", 1, 0.0, "", "", "", "g"),
        ],
        profiles={"default": {}},
        split_penalty=0.0,
    )
    cost, expl = _solved_and_explained(folder, tmp_path)
    assert cost == 450.0 and expl["cost"]["total"] == 450.0 and expl["chosen"] == []
    assert all(alt["nodes"] == [] for alt in expl["alternatives"])
    a_line = expl["unfilled_lines"][0]
    assert a_line["ruled_out"] == {
        "stock": [
            {
                "node_id": "W",
                "sku": "a",
                "units_needed": 2,
                "units_left": 1,
                "used_by_other_orders": 0,
                "price": None,
            }
        ]
    }
    b_line = expl["unfilled_lines"][1]
    assert [(n["node_id"], n["sku"]) for n in b_line["ruled_out"]["stock"]] == [("T", "a")]


def test_profile_contexts_survive_json_and_old_contexts_still_load(tmp_path):
    from tests.test_profiles import CLEARANCE, write_clearance

    for folder in (
        write_clearance(tmp_path / "c", CLEARANCE, ("", "4")),
        _split_cap_folder(tmp_path / "cap", 1),
        _ship_group_folder(tmp_path / "g", "g"),
    ):
        output = solve_scenario(load_scenario(folder))
        for ctx in batch_contexts(output.problem, output.result.units, output.result.prices):
            again = OrderContext.from_json(ctx.to_json())
            assert explain_order(again, with_counterfactual=True) == explain_order(
                ctx, with_counterfactual=True
            )
    # A context stored before the rules reached explanations has none of their keys.
    output = solve_scenario(load_scenario(FIXTURES / "capacity-binds"))
    for ctx in batch_contexts(output.problem, output.result.units, output.result.prices):
        stored = json.loads(ctx.to_json())
        for key in ("max_shipments", "sku_group", "unit_cost"):
            del stored[key]
        old = OrderContext.from_json(json.dumps(stored))
        assert explain_order(old, with_counterfactual=True) == explain_order(
            ctx, with_counterfactual=True
        )


def test_per_sku_unit_costs_explain_as_the_handling_when_they_equal_it():
    # The general path (unit costs per SKU and node, ship groups) answers exactly as
    # the handling-per-node path when the unit costs are the handling and no group
    # binds: the same plans, costs and counterfactuals on cn-2000's scarce stock.
    output = solve_scenario(load_scenario(FIXTURES / "cn-2000"))
    for ctx in list(batch_contexts(output.problem, output.result.units, output.result.prices))[
        :300
    ]:
        general = ctx.replace(
            unit_cost=np.broadcast_to(ctx.handling, ctx.stock_total.shape).astype(float),
            sku_group=np.full(len(ctx.skus), -1),
        )
        expected = explain_order(ctx, with_counterfactual=True)
        got = explain_order(general, with_counterfactual=True)
        assert got == expected, ctx.order_id
