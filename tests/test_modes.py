"""Fulfilment modes in the batch path: pick-up with transfer, same-city delivery and the
endless aisle (docs/profiles.md, "Fulfilment modes"), each a binds / does-not-bind pair
checked by hand, the answer's ``mode`` column, and the checker recomputing each mode.

Every point sits on the equator (one degree of longitude is 111.195 km); the customer
is at longitude 0. The same pairs through the single-order route are in
``tests/service/test_modes.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from router.checker import check, load_assignments
from router.problem import build_problem
from router.profiles import ProfileError, parse_profile
from router.run import solve_folder, solve_scenario
from router.scenario import ScenarioError, load_scenario
from solver.batch import solve_greedy
from tests.test_profiles import write_profiled

DEG_KM = 111.19508372419141  # one degree of longitude on the equator (haversine, R 6371.0088)


def with_origin(folder: Path, origins: dict[str, str]) -> Path:
    """Add the ``origin_store`` column (endless aisle) to a written scenario's orders."""
    frame = pd.read_csv(folder / "orders.csv", dtype=str, keep_default_na=False)
    frame["origin_store"] = frame["order_id"].map(origins).fillna("")
    frame.to_csv(folder / "orders.csv", index=False)
    return folder


def solved(folder: Path, tmp_path: Path):
    """Solve the folder, re-check the written answer, and return (output, {order: {node: mode}})."""
    out = solve_folder(folder, tmp_path / "out")
    written = load_assignments(tmp_path / "out" / "assignments.csv")
    report = check(load_scenario(folder), written)
    assert report.feasible, report.violations
    assert math.isclose(report.total_cost, out.summary["total_cost"], abs_tol=1e-6)
    modes: dict[str, dict[str, str]] = {}
    for row in out.assignments.itertuples():
        modes.setdefault(row.order_id, {})[row.node_id] = row.mode
    return out, modes


# --- pick-up with transfer ------------------------------------------------------------------

# P: the pickup store at the customer; W: a warehouse 1 degree (111 km) away.
PICKUP_NODES = [("P", "store", 0.0, 8.0, ""), ("W", "warehouse", 1.0, 5.0, "")]
TRANSFER = {"allowed": True, "per_shipment": 3.0, "per_km": 0.01, "delay_days": 2}


def pickup_folder(tmp_path: Path, transfer: dict | None, stock, orders=None) -> Path:
    profile = {} if transfer is None else {"pickup_transfer": transfer}
    return write_profiled(
        tmp_path / "s",
        nodes=PICKUP_NODES,
        inventory=stock,
        orders=orders or [("o1", "l1", "a", 1, 0.0, "", "", "P")],
        profiles={"default": profile},
    )


def test_without_transfer_a_pickup_store_lacking_stock_leaves_the_order_unfilled(tmp_path):
    folder = pickup_folder(tmp_path, None, [("W", "a", 5)])
    out, modes = solved(folder, tmp_path)
    assert modes == {} and out.summary["unfilled_units"] == 1


def test_transfer_binds_when_the_pickup_store_lacks_stock(tmp_path):
    # W moves the unit to P: 3 + 0.01 * 111.195 km.
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5)])
    out, modes = solved(folder, tmp_path)
    assert modes == {"o1": {"W": "pickup_transfer"}}
    assert out.summary["total_cost"] == pytest.approx(3.0 + 0.01 * DEG_KM)
    assert out.summary["shipping"] == pytest.approx(3.0 + 0.01 * DEG_KM)
    assert out.summary["shipments_by_mode"]["pickup_transfer"] == 1


def test_transfer_does_not_bind_when_the_pickup_store_has_the_stock(tmp_path):
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5), ("P", "a", 5)])
    out, modes = solved(folder, tmp_path)
    assert modes == {"o1": {"P": "pickup"}} and out.summary["total_cost"] == 0.0


def test_transfer_beyond_its_max_km_is_not_allowed(tmp_path):
    folder = pickup_folder(tmp_path, {**TRANSFER, "max_km": 100}, [("W", "a", 5)])
    out, modes = solved(folder, tmp_path)
    assert modes == {} and out.summary["unfilled_units"] == 1


def test_transfer_not_allowed_is_the_formats_pickup(tmp_path):
    folder = pickup_folder(tmp_path, {**TRANSFER, "allowed": False}, [("W", "a", 5)])
    _out, modes = solved(folder, tmp_path)
    assert modes == {}


TWO_LINES = [
    ("o1", "l1", "a", 1, 0.0, "", "{date}", "P"),
    ("o1", "l2", "b", 1, 0.0, "", "{date}", "P"),
]


@pytest.mark.parametrize(
    ("promised", "expected"),
    [("2026-12-03", {"P": "pickup"}), ("2026-12-04", {"P": "pickup", "W": "pickup_transfer"})],
)
def test_transfer_delay_counts_against_the_promise(tmp_path, promised, expected):
    # P holds a, only W holds b; a transfer takes 2 days: promised tomorrow, P meets the
    # date and b is not transferred (unfilled); in two days, b is transferred.
    orders = [tuple(promised if v == "{date}" else v for v in row) for row in TWO_LINES]
    folder = pickup_folder(tmp_path, TRANSFER, [("P", "a", 5), ("W", "b", 5)], orders)
    out, modes = solved(folder, tmp_path)
    assert modes == {"o1": expected} and out.summary["late_orders"] == 0


def test_late_transfer_is_routed_and_flagged_when_nothing_meets_the_promise(tmp_path):
    orders = [("o1", "l1", "a", 1, 0.0, "", "2026-12-03", "P")]
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5)], orders)
    out, modes = solved(folder, tmp_path)
    assert modes == {"o1": {"W": "pickup_transfer"}}
    assert out.summary["late_order_ids"] == ["o1"]


def test_checker_prices_a_transfer_and_flags_one_the_profile_does_not_allow(tmp_path):
    forced = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["W"], "qty": [1]})
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5)])
    report = check(load_scenario(folder), forced)
    assert report.feasible and report.shipping == pytest.approx(3.0 + 0.01 * DEG_KM)
    plain = pickup_folder(tmp_path / "plain", None, [("W", "a", 5)])
    assert [v.rule for v in check(load_scenario(plain), forced).violations] == ["pickup"]


# --- same-city delivery ---------------------------------------------------------------------

# S: a store 0.05 degree (5.56 km) from the customer, ship 8; W: a warehouse, ship 5.
CITY_NODES = [("S", "store", 0.05, 8.0, ""), ("W", "warehouse", 0.5, 5.0, "")]
CITY = {"radius_km": 10, "cost_per_shipment": 2.0, "per_km": 0.1}


def city_folder(tmp_path: Path, same_city: dict | None, stock=None) -> Path:
    profile = {} if same_city is None else {"same_city": same_city}
    return write_profiled(
        tmp_path / "s",
        nodes=CITY_NODES,
        inventory=stock or [("S", "a", 5), ("W", "a", 5)],
        orders=[("o1", "l1", "a", 1, 0.0, "", "")],
        profiles={"default": profile},
    )


def test_same_city_binds_within_its_radius(tmp_path):
    # The courier: 2 + 0.1 * 5.56 = 2.56 < W's 5.
    out, modes = solved(city_folder(tmp_path, CITY), tmp_path)
    assert modes == {"o1": {"S": "same_city"}}
    assert out.summary["total_cost"] == pytest.approx(2.0 + 0.1 * 0.05 * DEG_KM)


def test_same_city_does_not_bind_beyond_its_radius(tmp_path):
    out, modes = solved(city_folder(tmp_path, {**CITY, "radius_km": 5}), tmp_path)
    assert modes == {"o1": {"W": "warehouse_ship"}} and out.summary["total_cost"] == 5.0


def test_same_city_only_for_the_listed_node_kinds(tmp_path):
    _out, modes = solved(city_folder(tmp_path, {**CITY, "node_kinds": ["warehouse"]}), tmp_path)
    assert modes == {"o1": {"W": "warehouse_ship"}}  # W is 55.6 km away: beyond the radius


@pytest.mark.parametrize(
    ("prefer", "mode", "cost"), [("cheaper", "store_ship", 8.0), ("same_city", "same_city", 9.0)]
)
def test_same_city_cheaper_or_preferred(tmp_path, prefer, mode, cost):
    # Only S holds the SKU; the courier costs 9, the format's shipping 8.
    city = {"radius_km": 10, "cost_per_shipment": 9.0, "prefer": prefer}
    out, modes = solved(city_folder(tmp_path, city, [("S", "a", 5)]), tmp_path)
    assert modes == {"o1": {"S": mode}} and out.summary["total_cost"] == cost


def test_same_city_delivery_days_meet_a_promise_the_bands_do_not(tmp_path):
    # Bands: 2 days from anywhere; the courier delivers the same day. Promised today:
    # S by courier meets it; W (cheaper by the format) does not.
    bands = {"bands": [{"max_km": None, "store": 2, "warehouse": 2}]}
    profile = {
        "promise": bands,
        "same_city": {"radius_km": 10, "cost_per_shipment": 6.0, "delivery_days": 0},
    }
    folder = write_profiled(
        tmp_path / "s",
        nodes=CITY_NODES,
        inventory=[("S", "a", 5), ("W", "a", 5)],
        orders=[("o1", "l1", "a", 1, 0.0, "", "2026-12-02")],
        profiles={"default": profile},
    )
    out, modes = solved(folder, tmp_path)
    assert modes == {"o1": {"S": "same_city"}} and out.summary["late_orders"] == 0


# --- endless aisle --------------------------------------------------------------------------

# S: the store the order was taken in (ship 4); W: a warehouse (ship 5); T: a store (ship 8).
AISLE_NODES = [
    ("S", "store", 0.0, 4.0, ""),
    ("W", "warehouse", 0.0, 5.0, ""),
    ("T", "store", 0.0, 8.0, ""),
]
AISLE_STOCK = [("S", "a", 5), ("W", "a", 5), ("T", "a", 5)]


def aisle_folder(tmp_path: Path, aisle: dict | None, origin: str = "S") -> Path:
    folder = write_profiled(
        tmp_path / "s",
        nodes=AISLE_NODES,
        inventory=AISLE_STOCK,
        orders=[("o1", "l1", "a", 1, 0.0, "", "")],
        profiles={"default": {} if aisle is None else {"endless_aisle": aisle}},
    )
    return with_origin(folder, {"o1": origin})


@pytest.mark.parametrize(("exclude", "expected"), [(True, "W"), (False, "S")])
def test_endless_aisle_excludes_the_origin_store_or_not(tmp_path, exclude, expected):
    out, modes = solved(aisle_folder(tmp_path, {"exclude_origin": exclude}), tmp_path)
    assert list(modes["o1"]) == [expected]
    assert out.assignments["origin_store"].tolist() == ["S"]


@pytest.mark.parametrize(("preference", "expected"), [(4.0, "T"), (2.0, "W")])
def test_endless_aisle_prefers_the_origin_store(tmp_path, preference, expected):
    # Taken in T (ship 8): every other node costs `preference` more: W 5 + 4 > 8; 5 + 2 < 8.
    folder = write_profiled(
        tmp_path / "s",
        nodes=AISLE_NODES[1:],
        inventory=AISLE_STOCK[1:],
        orders=[("o1", "l1", "a", 1, 0.0, "", "")],
        profiles={"default": {"endless_aisle": {"origin_preference": preference}}},
    )
    with_origin(folder, {"o1": "T"})
    _out, modes = solved(folder, tmp_path)
    assert list(modes["o1"]) == [expected]


def test_checker_flags_the_excluded_origin_store(tmp_path):
    folder = aisle_folder(tmp_path, {"exclude_origin": True})
    forced = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["S"], "qty": [1]})
    report = check(load_scenario(folder), forced)
    assert [v.rule for v in report.violations] == ["profile"]
    assert "origin store 'S'" in report.violations[0].message


def test_origin_store_must_be_a_store(tmp_path):
    folder = aisle_folder(tmp_path, {"exclude_origin": True}, origin="W")
    with pytest.raises(
        ScenarioError, match=r"orders\.csv row 2, column origin_store: must be a store"
    ):
        load_scenario(folder)


# --- the checker recomputes each mode's cost --------------------------------------------------


def test_checker_catches_a_wrong_mode_cost(tmp_path):
    # A problem whose same-city shipment is priced at the format's 8 instead of the
    # courier's 2.56 (only S holds the SKU): the answer's cost disagrees with the checker's.
    scenario = load_scenario(city_folder(tmp_path, CITY, [("S", "a", 5)]))
    problem = build_problem(scenario)
    assert problem.pair_mode is not None
    wrong = problem.pair_ship_cost.copy()
    wrong[problem.pair_node == 0] = 8.0
    result = solve_greedy(problem.replace(pair_ship_cost=wrong))
    from router.run import assignments_frame

    report = check(scenario, assignments_frame(problem, result.units))
    assert report.feasible
    assert not math.isclose(report.total_cost, result.cost.total_cost, abs_tol=1e-6)
    assert report.total_cost == pytest.approx(2.0 + 0.1 * 0.05 * DEG_KM)


def test_checker_catches_a_wrong_written_mode(tmp_path):
    folder = city_folder(tmp_path, CITY)
    solve_folder(folder, tmp_path / "out")
    path = tmp_path / "out" / "assignments.csv"
    frame = pd.read_csv(path)
    assert frame["mode"].tolist() == ["same_city"]
    frame["mode"] = "store_ship"
    frame.to_csv(path, index=False)
    report = check(load_scenario(folder), load_assignments(path))
    assert [v.rule for v in report.violations] == ["profile"]
    assert (
        "mode 'store_ship', but the shipment's mode is 'same_city'" in report.violations[0].message
    )


def test_without_mode_fields_the_cost_is_the_formats(tmp_path):
    # A profile without mode fields: the answer is the format's, modes named by kind.
    out, modes = solved(city_folder(tmp_path, None), tmp_path)
    assert modes == {"o1": {"W": "warehouse_ship"}} and out.summary["total_cost"] == 5.0


@pytest.mark.parametrize("strategy", ["greedy", "optimize"])
def test_every_method_prices_the_modes_alike(tmp_path, strategy):
    # Several orders mixing all modes: solve_scenario re-checks every answer.
    nodes = [
        ("P", "store", 0.0, 8.0, ""),
        ("S", "store", 0.05, 8.0, ""),
        ("W", "warehouse", 1.0, 5.0, ""),
    ]
    stock = [("P", "a", 2), ("S", "a", 3), ("W", "a", 20), ("W", "b", 20), ("S", "b", 2)]
    orders = [(f"p{i}", "l1", "a", 1 + i % 2, 0.0, "", "", "P") for i in range(4)]
    orders += [(f"d{i}", "l1", "a", 1, 0.01 * i, "", "") for i in range(5)]
    orders += [(f"d{i}", "l2", "b", 1, 0.01 * i, "", "") for i in range(5)]
    profile = {
        "pickup_transfer": TRANSFER,
        "same_city": CITY,
        "endless_aisle": {"exclude_origin": True},
    }
    folder = write_profiled(
        tmp_path / "s", nodes=nodes, inventory=stock, orders=orders, profiles={"default": profile}
    )
    with_origin(folder, {"d0": "S", "d1": "S"})
    out = solve_scenario(load_scenario(folder), strategy=strategy)
    assert set(out.assignments["mode"]) >= {"pickup_transfer", "same_city"}
    assert "S" not in set(
        out.assignments.loc[out.assignments["order_id"].isin(["d0", "d1"]), "node_id"]
    )


# --- bad profile values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"same_city": {"radius_km": -1}}, "same_city.radius_km: must be a number >= 0"),
        ({"same_city": {"per_km": 1}}, "same_city.radius_km: required"),
        ({"same_city": {"radius_km": 5, "prefer": "fast"}}, "same_city.prefer: must be"),
        (
            {"same_city": {"radius_km": 5, "node_kinds": ["depot"]}},
            "same_city.node_kinds[0]: must be one of",
        ),
        ({"pickup_transfer": {"allowed": "yes"}}, "pickup_transfer.allowed: must be true or false"),
        (
            {"pickup_transfer": {"delay_days": 1.5}},
            "pickup_transfer.delay_days: must be an integer >= 0",
        ),
        ({"pickup_transfer": {"cost": 1}}, "pickup_transfer.cost: unknown field"),
        (
            {"endless_aisle": {"exclude_origin": 1}},
            "endless_aisle.exclude_origin: must be true or false",
        ),
        ({"endless_aisle": []}, "endless_aisle: must be a JSON object"),
    ],
)
def test_bad_mode_field_is_named(raw, message):
    with pytest.raises(ProfileError) as raised:
        parse_profile(raw)
    assert str(raised.value).startswith(message), str(raised.value)


def test_bad_mode_field_in_a_scenario_names_the_file_and_field(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=CITY_NODES,
        inventory=[("S", "a", 1)],
        orders=[("o1", "l1", "a", 1, 0.0, "", "")],
        profiles={"web": {"same_city": {"radius_km": "ten"}}},
    )
    with pytest.raises(
        ScenarioError,
        match=r"^profiles\.json: profiles\.web\.same_city\.radius_km: must be a number >= 0",
    ):
        load_scenario(folder)


def test_an_empty_transfer_field_allows_transfers_at_no_cost():
    from router.modes import compile_modes

    modes = compile_modes(parse_profile({"pickup_transfer": {}}).document)
    assert modes.transfer and modes.transfer_per_shipment == 0.0
    assert not compile_modes(parse_profile({}).document).transfer


def test_cli_check_agrees_with_solve_on_the_modes(tmp_path):
    import subprocess
    import sys

    from tests.test_profiles import ROOT

    folder = city_folder(tmp_path, CITY)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "router.cli"]
    solved_ = subprocess.run(
        [*command, "solve", str(folder), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert solved_.returncode == 0, solved_.stderr
    checked = subprocess.run(
        [*command, "check", str(folder), str(out / "assignments.csv")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    total = 2.0 + 0.1 * 0.05 * DEG_KM
    assert "FEASIBLE" in checked.stdout and f"total_cost  {total:.4f}" in checked.stdout
    assert f"shipping  {total:.4f}" in checked.stdout
