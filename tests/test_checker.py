"""Tests for router.checker: each feasibility rule and each cost term, by hand.

The base scenario (``_write_scenario`` with its defaults) is small enough to
check on paper. Every point lies on the equator, so the haversine distance
between longitudes 0 and 1 is one degree of arc on the format's sphere:

    DEG_KM = 6371.0088 * pi / 180 = 111.19508023353...

Nodes
    W1  warehouse at (0, 0): ship_fixed 5, ship_per_km 0.01, handling 0.5,
        no capacity, no max_km
    S1  store at (0, 1):     ship_fixed 2, ship_per_km 0.1,  handling 1.0,
        capacity_units 3, max_km 120
Inventory
    W1: A 10, B 10      S1: A 3, B 2
Orders (split_penalty 6, unfilled_penalty 150)
    O1 L1 A qty 2, O1 L2 B qty 1: delivery to (0, 0)  (0 km from W1, DEG_KM from S1)
    O2 L1 A qty 1: pickup at S1, customer at (0, 3)   (2 * DEG_KM beyond S1's max_km:
                                                        reach does not apply to pickups)
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from router.checker import (
    CheckReport,
    Violation,
    check,
    format_report,
    load_assignments,
)
from router.geo import haversine_km
from router.scenario import ScenarioError, load_scenario

DEG_KM = 6371.0088 * math.pi / 180.0

NODES = """\
node_id,kind,lat,lon,ship_fixed,ship_per_km,handling_per_unit,capacity_units,max_km
W1,warehouse,0,0,5,0.01,0.5,,
S1,store,0,1,2,0.1,1.0,3,{s1_max_km}
"""
INVENTORY = """\
node_id,sku,available
W1,A,10
W1,B,10
S1,A,{s1_a}
S1,B,2
"""
ORDERS = """\
order_id,line_id,sku,qty,lat,lon,pickup_node
O1,L1,A,2,0,0,
O1,L2,B,1,0,0,
O2,L1,A,1,0,3,S1
"""
HEADER = "order_id,line_id,node_id,qty\n"

# O1 entirely from W1 (0 km), the pickup order at its store.
FEASIBLE = "O1,L1,W1,2\nO1,L2,W1,1\nO2,L1,S1,1\n"


def _write_scenario(
    folder: Path,
    *,
    s1_max_km: str = "120",
    s1_a: int = 3,
    orders: str = ORDERS,
    split_penalty: float = 6.0,
    unfilled_penalty: float = 150.0,
) -> Path:
    """Write the four files of the base scenario (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "omniroute-scenario/1",
        "name": "hand",
        "split_penalty": split_penalty,
        "unfilled_penalty": unfilled_penalty,
    }
    (folder / "scenario.json").write_text(json.dumps(meta), encoding="utf-8")
    (folder / "nodes.csv").write_text(NODES.format(s1_max_km=s1_max_km), encoding="utf-8")
    (folder / "inventory.csv").write_text(INVENTORY.format(s1_a=s1_a), encoding="utf-8")
    (folder / "orders.csv").write_text(orders, encoding="utf-8")
    return folder


def _run(tmp_path: Path, rows: str, **scenario) -> CheckReport:
    """Check ``rows`` (CSV body, no header) against the base scenario."""
    folder = _write_scenario(tmp_path / "scenario", **scenario)
    path = tmp_path / "assignments.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    return check(load_scenario(folder), load_assignments(path))


def _rules(report: CheckReport) -> list[str]:
    return [v.rule for v in report.violations]


# --- the feasible baseline ----------------------------------------------------


def test_feasible_baseline_cost_by_hand(tmp_path):
    report = _run(tmp_path, FEASIBLE)
    # shipping: O1@W1 = 5 + 0.01 * 0 = 5; O2@S1 is a pickup: 0.
    # handling: 3 units at W1 * 0.5 + 1 unit at S1 * 1.0 = 2.5.
    assert report.feasible
    assert report.violations == []
    assert report.shipping == pytest.approx(5.0, rel=1e-12)
    assert report.handling == pytest.approx(2.5, rel=1e-12)
    assert (report.splits, report.unfilled_units) == (0, 0)
    assert report.total_cost == pytest.approx(7.5, rel=1e-12)
    assert (report.shipments, report.allocated_units) == (2, 4)
    assert (report.orders, report.lines, report.units) == (2, 3, 4)


def test_every_term_at_once_by_hand(tmp_path):
    # O1 L1 split over W1 and S1, O1 L2 at W1, O2 not allocated.
    report = _run(tmp_path, "O1,L1,W1,1\nO1,L1,S1,1\nO1,L2,W1,1\n")
    # shipping: O1@W1 = 5; O1@S1 = 2 + 0.1 * DEG_KM = 13.1195...
    # handling: 2 units at W1 * 0.5 + 1 unit at S1 * 1.0 = 2
    # splits: O1 has 2 shipments -> 1; unfilled: O2 L1 -> 1
    shipping = 5 + 2 + 0.1 * DEG_KM
    assert report.feasible
    assert report.shipping == pytest.approx(shipping, rel=1e-12)
    assert report.handling == pytest.approx(2.0, rel=1e-12)
    assert (report.splits, report.unfilled_units, report.shipments) == (1, 1, 2)
    assert report.total_cost == pytest.approx(shipping + 2 + 6 * 1 + 150 * 1, rel=1e-12)


# --- rule 1: lines -------------------------------------------------------------


def test_unknown_line_is_a_violation_and_left_out_of_the_cost(tmp_path):
    report = _run(tmp_path, FEASIBLE + "O1,L9,W1,1\n")
    assert _rules(report) == ["line"]
    message = report.violations[0].message
    assert "row 5" in message and "'O1'" in message and "'L9'" in message
    # The stray unit is not allocated anywhere: the baseline cost is unchanged.
    assert report.total_cost == pytest.approx(7.5, rel=1e-12)
    assert report.allocated_units == 4


def test_line_of_another_order_is_unknown(tmp_path):
    # L2 exists in O1 but not in O2: a line is named by (order_id, line_id).
    report = _run(tmp_path, FEASIBLE + "O2,L2,S1,1\n")
    assert _rules(report) == ["line"]
    assert "'O2' line 'L2' is not in orders.csv" in report.violations[0].message


def test_unknown_node_is_a_violation_and_left_out_of_the_cost(tmp_path):
    report = _run(tmp_path, "O1,L1,W1,2\nO1,L2,X9,1\nO2,L1,S1,1\n")
    assert _rules(report) == ["line"]
    message = report.violations[0].message
    assert "row 3" in message and "'X9' is not in nodes.csv" in message
    # O1 L2's unit is unfilled: 5 + 0.5 * 2 + 1.0 * 1 + 150 * 1 = 157
    assert report.unfilled_units == 1
    assert report.total_cost == pytest.approx(157.0, rel=1e-12)


def test_line_allocated_exactly_its_qty_is_feasible(tmp_path):
    report = _run(tmp_path, "O1,L1,W1,1\nO1,L1,S1,1\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert report.feasible


def test_over_allocated_line_is_a_violation_with_no_unfilled(tmp_path):
    # O1 L1 has qty 2; 2 + 1 = 3 units are allocated.
    report = _run(tmp_path, "O1,L1,W1,2\nO1,L1,S1,1\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert _rules(report) == ["line"]
    message = report.violations[0].message
    assert "'O1' line 'L1'" in message and "3 units allocated" in message
    assert "qty is 2" in message
    assert report.unfilled_units == 0
    # Every allocated unit still costs: 5 + (2 + 0.1 DEG_KM) + 0.5 * 3 + 1.0 * 2 + 6 * 1
    assert report.total_cost == pytest.approx(5 + 2 + 0.1 * DEG_KM + 3.5 + 6, rel=1e-12)


def test_duplicate_row_is_a_violation_and_its_units_are_summed(tmp_path):
    report = _run(tmp_path, "O1,L1,W1,1\nO1,L1,W1,1\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert _rules(report) == ["line"]
    message = report.violations[0].message
    assert "row 3" in message and "first at row 2" in message
    # Summed: L1 gets 2 units (no over-allocation, nothing unfilled), cost as the baseline.
    assert report.unfilled_units == 0
    assert report.allocated_units == 4
    assert report.total_cost == pytest.approx(7.5, rel=1e-12)


# --- rule 2: stock -------------------------------------------------------------


def test_stock_used_up_exactly_is_feasible(tmp_path):
    # S1 A: O1 L1 takes 2, O2 L1 takes 1, available 3.
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert report.feasible


def test_stock_over_used_across_orders_is_a_violation(tmp_path):
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,W1,1\nO2,L1,S1,1\n", s1_a=2)
    assert _rules(report) == ["stock"]
    message = report.violations[0].message
    assert "'S1' sku 'A'" in message and "3 units allocated" in message
    assert "available 2" in message


def test_sku_not_listed_at_a_node_has_no_stock(tmp_path):
    orders = ORDERS + "O3,L1,C,1,0,0,\n"  # SKU C is in no inventory row
    report = _run(tmp_path, FEASIBLE + "O3,L1,W1,1\n", orders=orders)
    assert _rules(report) == ["stock"]
    assert "'W1' sku 'C': 1 units allocated, available 0" in report.violations[0].message


# --- rule 3: capacity -----------------------------------------------------------


def test_capacity_used_up_exactly_with_a_pickup_is_feasible(tmp_path):
    # S1 capacity 3: O1 L1 (2 units, delivery) + O2 L1 (1 unit, pickup).
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert report.feasible


def test_capacity_exceeded_counting_the_pickup_is_a_violation(tmp_path):
    # S1: 2 + 1 delivery units + 1 pickup unit = 4 > 3 (without the pickup it would fit).
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,S1,1\nO2,L1,S1,1\n")
    assert _rules(report) == ["capacity"]
    message = report.violations[0].message
    assert "'S1': 4 units allocated" in message and "capacity_units 3" in message


# --- rule 4: reach --------------------------------------------------------------


def test_node_just_within_max_km_is_feasible(tmp_path):
    # distance(S1, O1) = DEG_KM = 111.195080... <= 111.1951
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,S1,1\n", s1_max_km="111.1951")
    assert report.feasible


def test_node_just_beyond_max_km_is_a_violation(tmp_path):
    # distance(S1, O1) = DEG_KM = 111.195080... > 111.1950; one violation per shipment.
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,S1,1\n", s1_max_km="111.1950")
    assert _rules(report) == ["reach"]
    message = report.violations[0].message
    assert "'O1'" in message and "'S1'" in message
    assert "111.195080 km" in message and "max_km 111.195" in message


def test_reach_does_not_apply_to_pickup_orders(tmp_path):
    # O2's customer is 2 * DEG_KM from S1, beyond max_km 120, but collects at S1.
    report = _run(tmp_path, "O2,L1,S1,1\n")
    assert report.feasible


def test_empty_max_km_means_no_limit(tmp_path):
    # O2 delivered instead (no pickup node) from W1 at 3 * DEG_KM = 333.6 km.
    orders = ORDERS.replace("O2,L1,A,1,0,3,S1", "O2,L1,A,1,0,3,")
    report = _run(tmp_path, FEASIBLE.replace("O2,L1,S1,1", "O2,L1,W1,1"), orders=orders)
    assert report.feasible


# --- rule 5: pickup -------------------------------------------------------------


def test_pickup_order_at_its_pickup_node_is_feasible(tmp_path):
    assert _run(tmp_path, "O2,L1,S1,1\n").feasible


def test_pickup_order_at_another_node_is_a_violation(tmp_path):
    report = _run(tmp_path, "O2,L1,W1,1\n")
    assert _rules(report) == ["pickup"]
    message = report.violations[0].message
    assert "'O2'" in message and "'W1'" in message and "'S1'" in message
    # A pickup order's shipment costs no shipping, wherever it is.
    assert report.shipping == 0.0


# --- cost terms: zero and not zero ---------------------------------------------


def test_pickup_order_pays_no_shipping(tmp_path):
    # Only the pickup order at S1 (ship_fixed 2): no shipping, handling 1.0, O1 unfilled.
    report = _run(tmp_path, "O2,L1,S1,1\n")
    assert report.shipping == 0.0
    assert report.handling == pytest.approx(1.0, rel=1e-12)
    assert report.total_cost == pytest.approx(1.0 + 150 * 3, rel=1e-12)


def test_delivery_order_pays_fixed_plus_per_km(tmp_path):
    # O1 from S1: one shipment, 2 + 0.1 * DEG_KM = 13.119508...
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,S1,1\n")
    assert report.shipping == pytest.approx(2 + 0.1 * DEG_KM, rel=1e-12)
    assert report.shipments == 1


def test_empty_assignment_costs_only_unfilled(tmp_path):
    # Header only: nothing allocated, 4 units unfilled at 150 each.
    report = _run(tmp_path, "")
    assert report.feasible
    assert (report.shipping, report.handling, report.splits) == (0.0, 0.0, 0)
    assert report.unfilled_units == 4
    assert report.total_cost == pytest.approx(600.0, rel=1e-12)
    assert (report.shipments, report.allocated_units) == (0, 0)


def test_handling_is_zero_when_no_node_charges_it(tmp_path):
    folder = _write_scenario(tmp_path / "scenario")
    nodes = (
        NODES.format(s1_max_km="120").replace("0.01,0.5,", "0.01,0,").replace("0.1,1.0,", "0.1,0,")
    )
    (folder / "nodes.csv").write_text(nodes, encoding="utf-8")
    (tmp_path / "assignments.csv").write_text(HEADER + FEASIBLE, encoding="utf-8")
    report = check(load_scenario(folder), load_assignments(tmp_path / "assignments.csv"))
    assert report.handling == 0.0
    assert report.total_cost == pytest.approx(5.0, rel=1e-12)


def test_handling_per_unit_at_each_node(tmp_path):
    # W1: 1 unit * 0.5; S1: 2 + 1 units * 1.0 -> 3.5
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert report.handling == pytest.approx(3.5, rel=1e-12)


def test_lines_of_one_order_at_one_node_are_one_shipment(tmp_path):
    report = _run(tmp_path, "O1,L1,W1,2\nO1,L2,W1,1\n")
    assert (report.shipments, report.splits) == (1, 0)


def test_order_over_two_nodes_is_one_split(tmp_path):
    # O1 L1 at S1, O1 L2 at W1: 2 shipments -> 1 split; O2 alone -> 0.
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,W1,1\nO2,L1,S1,1\n")
    assert (report.shipments, report.splits) == (3, 1)
    # shipping 5 + 2 + 0.1 DEG_KM; handling 3.5; splits 6 * 1
    assert report.total_cost == pytest.approx(7 + 0.1 * DEG_KM + 3.5 + 6, rel=1e-12)


def test_split_penalty_scales_splits(tmp_path):
    report = _run(tmp_path, "O1,L1,S1,2\nO1,L2,W1,1\n", split_penalty=10.0)
    base = _run(tmp_path / "b", "O1,L1,S1,2\nO1,L2,W1,1\n", split_penalty=0.0)
    assert report.total_cost - base.total_cost == pytest.approx(10.0, rel=1e-9)


def test_no_unfilled_units_when_every_line_is_filled(tmp_path):
    assert _run(tmp_path, FEASIBLE).unfilled_units == 0


def test_partly_filled_line_counts_the_missing_units(tmp_path):
    # O1 L1 gets 1 of 2; O1 L2 and O2 L1 nothing: 1 + 1 + 1 = 3 unfilled.
    report = _run(tmp_path, "O1,L1,W1,1\n")
    assert report.unfilled_units == 3
    # 5 + 0.5 + 150 * 3
    assert report.total_cost == pytest.approx(455.5, rel=1e-12)


# --- reading assignments.csv -------------------------------------------------


def _load_text(tmp_path: Path, text: str):
    path = tmp_path / "assignments.csv"
    path.write_text(text, encoding="utf-8")
    return load_assignments(path)


def test_load_ignores_extra_columns_and_column_order(tmp_path):
    frame = _load_text(tmp_path, "qty,note,node_id,line_id,order_id\n2, x ,W1, L1 ,O1\n")
    assert list(frame.columns) == ["order_id", "line_id", "node_id", "qty"]
    assert frame.iloc[0].tolist() == ["O1", "L1", "W1", 2]
    assert frame["qty"].dtype == np.int64


def test_load_header_only_is_empty(tmp_path):
    frame = _load_text(tmp_path, HEADER)
    assert len(frame) == 0 and frame["qty"].dtype == np.int64


def test_load_missing_column_names_file_row_and_column(tmp_path):
    with pytest.raises(ScenarioError) as info:
        _load_text(tmp_path, "order_id,line_id,node_id\nO1,L1,W1\n")
    error = info.value
    assert (error.file, error.row, error.column) == ("assignments.csv", 1, "qty")
    assert "assignments.csv row 1, column qty" in str(error)


@pytest.mark.parametrize("bad", ["0", "abc", "1.5", "-1", ""])
def test_load_bad_qty_names_file_row_and_column(tmp_path, bad):
    with pytest.raises(ScenarioError) as info:
        _load_text(tmp_path, HEADER + "O1,L1,W1,1\nO1,L2,W1," + bad + "\n")
    error = info.value
    assert (error.file, error.row, error.column) == ("assignments.csv", 3, "qty")
    assert str(error).startswith("assignments.csv row 3, column qty: must be an integer >= 1")


def test_load_qty_too_large_to_read_exactly(tmp_path):
    with pytest.raises(ScenarioError) as info:
        _load_text(tmp_path, HEADER + "O1,L1,W1,1e300\n")
    assert (info.value.row, info.value.column) == (2, "qty")


def test_check_rejects_a_frame_with_bad_qty(tmp_path):
    scenario = load_scenario(_write_scenario(tmp_path / "scenario"))
    frame = pd.DataFrame({"order_id": ["O1"], "line_id": ["L1"], "node_id": ["W1"], "qty": [0]})
    with pytest.raises(ValueError, match="qty"):
        check(scenario, frame)


def test_load_missing_file(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_assignments(tmp_path / "assignments.csv")
    assert info.value.file == "assignments.csv"


def test_load_does_not_judge_ids(tmp_path):
    # Unknown ids are rule 1, reported by check, not a load error.
    frame = _load_text(tmp_path, HEADER + "nobody,nothing,nowhere,1\n")
    assert len(frame) == 1


# --- report text --------------------------------------------------------------


def test_format_report_feasible(tmp_path):
    text = format_report(_run(tmp_path, FEASIBLE))
    assert text.splitlines()[0] == "FEASIBLE"
    assert "total_cost  7.5000" in text


def test_format_report_lists_twenty_violations_and_counts_the_rest(tmp_path):
    rows = "".join(f"O1,L{i},W1,1\n" for i in range(100, 125))  # 25 unknown lines
    text = format_report(_run(tmp_path, rows))
    lines = text.splitlines()
    assert lines[0] == "INFEASIBLE (25 violations)"
    assert sum(line.startswith("  [line]") for line in lines) == 20
    assert lines[-1] == "  ... and 5 more"


# --- a realistic scenario against a row-by-row reference -------------------------


def _reference(scenario, rows: pd.DataFrame) -> dict:
    """The spec read literally, one row at a time, with plain Python."""
    lines = {(r.order_id, r.line_id): r for r in scenario.orders.itertuples(index=False)}
    nodes = {r.node_id: r for r in scenario.nodes.itertuples(index=False)}
    stock = {(r.node_id, r.sku): r.available for r in scenario.inventory.itertuples()}
    per_pair: dict = {}
    rules = {"line": 0, "stock": 0, "capacity": 0, "reach": 0, "pickup": 0}
    for r in rows.itertuples(index=False):
        if (r.order_id, r.line_id) not in lines or r.node_id not in nodes:
            rules["line"] += 1
            continue
        key = (r.order_id, r.line_id, r.node_id)
        rules["line"] += key in per_pair
        per_pair[key] = per_pair.get(key, 0) + r.qty
    per_line: dict = {}
    per_stock: dict = {}
    per_node: dict = {}
    shipments: set = set()
    handling = []
    for (order_id, line_id, node_id), qty in per_pair.items():
        line = lines[order_id, line_id]
        per_line[order_id, line_id] = per_line.get((order_id, line_id), 0) + qty
        per_stock[node_id, line.sku] = per_stock.get((node_id, line.sku), 0) + qty
        per_node[node_id] = per_node.get(node_id, 0) + qty
        shipments.add((order_id, node_id))
        handling.append(qty * nodes[node_id].handling_per_unit)
    rules["line"] += sum(per_line.get(k, 0) > line.qty for k, line in lines.items())
    rules["stock"] += sum(used > stock.get(k, 0) for k, used in per_stock.items())
    rules["capacity"] += sum(
        not math.isnan(nodes[n].capacity_units) and used > nodes[n].capacity_units
        for n, used in per_node.items()
    )
    customer = {r.order_id: (r.lat, r.lon, r.pickup_node) for r in scenario.orders.itertuples()}
    shipping = []
    for order_id, node_id in shipments:
        lat, lon, pickup = customer[order_id]
        node = nodes[node_id]
        km = float(haversine_km(node.lat, node.lon, lat, lon))
        if pickup:
            rules["pickup"] += node_id != pickup
            continue
        rules["reach"] += not math.isnan(node.max_km) and km > node.max_km
        shipping.append(node.ship_fixed + node.ship_per_km * km)
    per_order: dict = {}
    for order_id, _ in shipments:
        per_order[order_id] = per_order.get(order_id, 0) + 1
    splits = sum(max(0, n - 1) for n in per_order.values())
    unfilled = sum(max(0, line.qty - per_line.get(k, 0)) for k, line in lines.items())
    return {
        "rules": rules,
        "shipping": math.fsum(shipping),
        "handling": math.fsum(handling),
        "splits": splits,
        "unfilled_units": unfilled,
        "shipments": len(shipments),
        "total_cost": math.fsum(shipping)
        + math.fsum(handling)
        + scenario.split_penalty * splits
        + scenario.unfilled_penalty * unfilled,
    }


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    from router.generate import generate_scenario

    folder = tmp_path_factory.mktemp("realistic") / "cn"
    generate_scenario(folder, orders=300, stores=20, warehouses=4, skus=50, seed=7)
    return load_scenario(folder)


def _random_rows(scenario, seed: int) -> pd.DataFrame:
    """A messy assignment: random nodes and quantities, a few stray and repeated rows."""
    rng = random.Random(seed)
    node_ids = scenario.nodes["node_id"].tolist()
    rows = []
    for line in scenario.orders.itertuples(index=False):
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            node = line.pickup_node if line.pickup_node and rng.random() < 0.8 else None
            rows.append(
                (line.order_id, line.line_id, node or rng.choice(node_ids), rng.randint(1, 3))
            )
    rows += [("O-none", "L1", node_ids[0], 1), (rows[0][0], rows[0][1], "N-none", 1)]
    rows += rng.sample(rows, 5)
    rng.shuffle(rows)
    frame = pd.DataFrame(rows, columns=["order_id", "line_id", "node_id", "qty"])
    frame["qty"] = frame["qty"].astype(np.int64)
    return frame


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_realistic_scenario_agrees_with_row_by_row_reference(realistic, seed):
    rows = _random_rows(realistic, seed)
    report = check(realistic, rows)
    expected = _reference(realistic, rows)
    counts = {rule: 0 for rule in expected["rules"]}
    for violation in report.violations:
        counts[violation.rule] += 1
    assert counts == expected["rules"]
    assert all(isinstance(v, Violation) for v in report.violations)
    for term in ("splits", "unfilled_units", "shipments"):
        assert getattr(report, term) == expected[term], term
    for term in ("shipping", "handling", "total_cost"):
        assert getattr(report, term) == pytest.approx(expected[term], rel=1e-9), term
    assert report.feasible == (not report.violations)


def test_row_order_does_not_change_the_cost(realistic):
    rows = _random_rows(realistic, 4)
    first = check(realistic, rows)
    again = check(realistic, rows.sample(frac=1.0, random_state=0).reset_index(drop=True))
    assert again.total_cost == first.total_cost  # math.fsum: exact, order-free
    assert (again.shipping, again.handling) == (first.shipping, first.handling)
    assert len(again.violations) == len(first.violations)


# --- the optional per-row columns of omniroute solve ------------------------------


def test_extra_cost_columns_are_accepted_and_never_trusted(tmp_path):
    """The file omniroute solve writes (with km, handling_cost, shipping_cost) checks the
    same as the four-column file, and wrong numbers in those columns change nothing."""
    folder = _write_scenario(tmp_path / "scenario")
    plain = tmp_path / "plain.csv"
    plain.write_text(HEADER + FEASIBLE, encoding="utf-8")
    lying = tmp_path / "lying.csv"
    lying.write_text(
        "order_id,line_id,node_id,qty,km,handling_cost,shipping_cost\n"
        "O1,L1,W1,2,999,0,0\nO1,L2,W1,1,-1,0,0\nO2,L1,S1,1,abc,,1e9\n",
        encoding="utf-8",
    )
    scenario = load_scenario(folder)
    base = check(scenario, load_assignments(plain))
    report = check(scenario, load_assignments(lying))
    assert report.feasible and report == base
    assert report.total_cost == pytest.approx(7.5, rel=1e-12)


def test_solve_writes_row_costs_that_sum_to_each_order(tmp_path):
    """km, handling_cost and shipping_cost of omniroute solve's rows, by hand: O1 splits
    over W1 (0 km) and S1 (1 degree), its shipping on the first row of each shipment."""
    from router.run import solve_folder

    folder = _write_scenario(tmp_path / "scenario", s1_a=3)
    orders = "order_id,line_id,sku,qty,lat,lon,pickup_node\nO1,L1,A,1,0,0,\nO1,L2,B,1,0,0,\n"
    orders += "O2,L1,A,1,0,3,S1\n"  # a pickup 2 degrees from its store: km 0, no shipping
    (folder / "orders.csv").write_text(orders, encoding="utf-8")
    output = solve_folder(folder, tmp_path / "out")
    written = pd.read_csv(tmp_path / "out" / "assignments.csv")
    assert list(written.columns) == [
        "order_id", "line_id", "node_id", "qty", "km", "handling_cost", "shipping_cost",
    ]  # fmt: skip
    # Both lines from W1 (5 + 2 * 0.5 = 6 beats S1's 2 + 11.1 + 2): one shipment.
    assert written["node_id"].tolist() == ["W1", "W1", "S1"]
    assert written["km"].tolist() == [0.0, 0.0, 0.0]
    assert written["handling_cost"].tolist() == [0.5, 0.5, 1.0]
    assert written["shipping_cost"].tolist() == [5.0, 0.0, 0.0]
    assert written[["handling_cost", "shipping_cost"]].to_numpy().sum() == pytest.approx(
        output.summary["total_cost"], rel=1e-12
    )
