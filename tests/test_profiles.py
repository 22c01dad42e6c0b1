"""Routing profiles in the batch path: the file, its validation, and the checker.

Every point sits on the equator (see ``tests/conftest.py``): one degree of
longitude is ``DEG_KM`` (111.195 km), so costs and promise bands check by hand.
The rule-by-rule pairs through both paths are in ``tests/service/test_profiles.py``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from router.checker import check, load_assignments
from router.problem import build_problem
from router.profiles import (
    PRESETS,
    Profile,
    ProfileError,
    compile_rules,
    parse_profile,
    parse_profile_set,
)
from router.run import solve_folder
from router.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-12-02T10:00:00Z"  # a Wednesday


def write_profiled(
    folder: Path,
    *,
    nodes: list[tuple],
    inventory: list[tuple],
    orders: list[tuple],
    profiles: dict | str | None,
    as_of: str = AS_OF,
    split_penalty: float = 6.0,
) -> Path:
    """A scenario with the profile columns: nodes ``(id, kind, lon, ship_fixed, group[,
    handling])``, orders may end with a pickup node and a ship group,
    inventory ``(node, sku, available)``, orders ``(order, line, sku, qty, lon, channel,
    promised_date)``; ``profiles``: the ``profiles`` object of profiles.json (a string
    is written verbatim; ``None`` writes no file)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.json").write_text(
        json.dumps(
            {
                "format": "omniroute-scenario/1",
                "name": folder.name,
                "split_penalty": split_penalty,
                "unfilled_penalty": 150.0,
            }
        )
    )
    node_lines = [
        "node_id,kind,lat,lon,ship_fixed,ship_per_km,handling_per_unit,capacity_units,max_km,group"
    ]
    node_lines += [
        f"{n},{k},0,{lon},{fixed},0,{handling[0] if handling else 0},,,{g}"
        for n, k, lon, fixed, g, *handling in nodes
    ]
    (folder / "nodes.csv").write_text("\n".join(node_lines) + "\n")
    inv = ["node_id,sku,available"] + [f"{n},{s},{a}" for n, s, a in inventory]
    (folder / "inventory.csv").write_text("\n".join(inv) + "\n")
    rows = ["order_id,line_id,sku,qty,lat,lon,pickup_node,channel,promised_date,ship_group"]
    rows += [
        f"{o},{ln},{s},{q},0,{lon},{rest[0] if rest else ''},{c},{d},"
        f"{rest[1] if len(rest) > 1 else ''}"
        for o, ln, s, q, lon, c, d, *rest in orders
    ]
    (folder / "orders.csv").write_text("\n".join(rows) + "\n")
    if isinstance(profiles, str):
        (folder / "profiles.json").write_text(profiles)
    elif profiles is not None:
        doc = {"format": "omniroute-profiles/1", "as_of": as_of, "profiles": profiles}
        (folder / "profiles.json").write_text(json.dumps(doc))
    return folder


NODES = [("W", "warehouse", 1.0, 5.0, "north"), ("S", "store", 0.5, 8.0, "south")]
STOCK = [("W", "a", 5), ("S", "a", 5)]
ONE_ORDER = [("o1", "l1", "a", 1, 0.0, "", "")]


def batch_nodes(folder: Path, tmp_path: Path) -> dict[str, set[str]]:
    out = solve_folder(folder, tmp_path / "out")
    chosen: dict[str, set[str]] = {}
    for row in out.assignments.itertuples():
        chosen.setdefault(row.order_id, set()).add(row.node_id)
    return chosen


# --- without the file nothing changes -------------------------------------------------------


def test_without_profiles_json_the_cost_is_the_formats(tmp_path):
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=None
    )
    scenario = load_scenario(folder)
    assert scenario.profiles is None and "channel" not in scenario.orders
    problem = build_problem(scenario)
    assert problem.pair_profile_cost is None and problem.order_late is None
    out = solve_folder(folder, tmp_path / "out")
    assert out.summary["total_cost"] == 5.0  # W: ship_fixed 5
    assert list(out.assignments.columns) == [
        "order_id",
        "line_id",
        "node_id",
        "qty",
        "km",
        "handling_cost",
        "shipping_cost",
    ]
    assert "profile_cost" not in out.summary


def test_lowest_cost_profile_changes_nothing(tmp_path):
    profiles = {"default": {"preset": "lowest_cost"}}
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=profiles
    )
    out = solve_folder(folder, tmp_path / "out")
    assert out.summary["total_cost"] == 5.0 and out.summary["profile_cost"] == 0.0
    assert out.assignments["node_id"].tolist() == ["W"]


# --- tiers: the cost is in the answer and the checker agrees --------------------------------


def test_tier_cost_is_priced_by_solver_and_checker_alike(tmp_path):
    # store_first: warehouses are tier 1 at 10 a tier: W costs 5 + 10 = 15 > S's 8.
    profiles = {"default": {"preset": "store_first"}}
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=profiles
    )
    out = solve_folder(folder, tmp_path / "out")
    assert out.assignments["node_id"].tolist() == ["S"]
    assert out.summary["total_cost"] == 8.0
    # Forcing W: the checker prices the tier (15) without any solver.
    forced = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["W"], "qty": [1]})
    report = check(load_scenario(folder), forced)
    assert report.feasible and report.profile_cost == 10.0 and report.total_cost == 15.0
    assert report.shipping == 5.0


def test_written_assignments_recheck_with_profile_cost(tmp_path):
    profiles = {"default": {"tiers": {"store": 2, "warehouse": 0}, "tier_cost": 1.5}}
    orders = [("o1", "l1", "a", 1, 0.0, "", ""), ("o2", "l1", "a", 1, 0.9, "", "")]
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=orders, profiles=profiles
    )
    out = solve_folder(folder, tmp_path / "out")
    written = load_assignments(tmp_path / "out" / "assignments.csv")
    report = check(load_scenario(folder), written)
    assert report.feasible
    assert math.isclose(report.total_cost, out.summary["total_cost"], abs_tol=1e-6)
    frame = pd.read_csv(tmp_path / "out" / "assignments.csv")
    assert {"profile_cost", "promise_late"} <= set(frame.columns)


def test_checker_flags_a_node_the_profile_does_not_allow(tmp_path):
    profiles = {"default": {"exclude_nodes": ["W"]}}
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=profiles
    )
    forced = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["W"], "qty": [1]})
    report = check(load_scenario(folder), forced)
    assert not report.feasible
    assert [v.rule for v in report.violations] == ["profile"]
    assert "'W'" in report.violations[0].message


def test_checker_flags_a_late_node_when_another_meets_the_promise(tmp_path):
    bands = {
        "bands": [
            {"max_km": 100, "warehouse": 1, "store": 1},
            {"max_km": None, "warehouse": 3, "store": 3},
        ]
    }
    profiles = {"default": {"promise": bands}}
    orders = [("o1", "l1", "a", 1, 0.0, "", "2026-12-03")]
    nodes = [("W", "warehouse", 2.0, 5.0, ""), ("S", "store", 0.5, 8.0, "")]
    folder = write_profiled(
        tmp_path / "s", nodes=nodes, inventory=STOCK, orders=orders, profiles=profiles
    )
    forced = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["W"], "qty": [1]})
    report = check(load_scenario(folder), forced)
    assert [v.rule for v in report.violations] == ["profile"]
    assert "promised date 2026-12-03" in report.violations[0].message


def test_daily_units_limit_tightens_capacity_in_batch_and_checker(tmp_path):
    profiles = {"default": {"daily_limits": {"node:W": {"units": 2}}}}
    orders = [("o1", "l1", "a", 3, 0.0, "", "")]
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=orders, profiles=profiles
    )
    problem = build_problem(load_scenario(folder))
    assert problem.capacity.tolist() == [2.0, math.inf]
    forced = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["W"], "qty": [3]})
    report = check(load_scenario(folder), forced)
    assert [v.rule for v in report.violations] == ["capacity"]


# --- presets --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_parses_and_can_be_overridden(preset):
    profile = parse_profile({"preset": preset, "per_shipment_cost": 1.0})
    assert profile.get("preset") == preset and profile.get("per_shipment_cost") == 1.0


def test_nearest_preset_prefers_the_near_node(tmp_path):
    # W at 1 degree (111 km) costs 5 + 111; S at 0.5 degree (56 km) costs 8 + 56.
    profiles = {"default": {"preset": "nearest"}}
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=profiles
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"S"}}


def test_fewest_splits_preset_avoids_a_split(tmp_path):
    # W holds a and b at 4 a unit: alone 5 + 8 = 13; b from S instead: 5 + 4 + 2 = 11,
    # a split worth 2 without the preset, and worth -23 with it (a second shipment +25).
    nodes = [("W", "warehouse", 0.0, 5.0, "", 4.0), ("S", "store", 0.0, 2.0, "")]
    stock = [("W", "a", 1), ("W", "b", 1), ("S", "b", 1)]
    orders = [("o1", "l1", "a", 1, 0.0, "", ""), ("o1", "l2", "b", 1, 0.0, "", "")]
    plain = write_profiled(
        tmp_path / "p",
        nodes=nodes,
        inventory=stock,
        orders=orders,
        profiles={"default": {}},
        split_penalty=0.0,
    )
    assert batch_nodes(plain, tmp_path / "p") == {"o1": {"W", "S"}}
    folder = write_profiled(
        tmp_path / "s",
        nodes=nodes,
        inventory=stock,
        orders=orders,
        profiles={"default": {"preset": "fewest_splits"}},
        split_penalty=0.0,
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"W"}}


# --- validation: one line naming the file and the field -------------------------------------


BAD = [
    (
        {"web": {"tiers": {"store": -1}}},
        "profiles.json: profiles.web.tiers.store: must be a number >= 0",
    ),
    ({"web": {"preset": "cheapest"}}, "profiles.json: profiles.web.preset: must be one of"),
    (
        {"web": {"node_kinds": ["shop"]}},
        "profiles.json: profiles.web.node_kinds[0]: must be one of",
    ),
    ({"web": {"tiers": {"depot": 1}}}, "profiles.json: profiles.web.tiers.depot: key must be"),
    ({"web": {"colour": "red"}}, "profiles.json: profiles.web.colour: unknown field"),
    (
        {"web": {"calendars": {"store": {"timezone": "Mars/Olympus"}}}},
        "profiles.json: profiles.web.calendars.store.timezone: unknown time zone",
    ),
    (
        {"web": {"calendars": {"store": {"hours": {"mon": ["18:00", "09:00"]}}}}},
        "profiles.json: profiles.web.calendars.store.hours.mon: must close after it opens",
    ),
    (
        {"web": {"calendars": {"*": {"cutoff": "25:00"}}}},
        "profiles.json: profiles.web.calendars.*.cutoff: must be a time HH:MM",
    ),
    (
        {"web": {"promise": {"bands": [{"max_km": 50, "store": 1.5}]}}},
        "profiles.json: profiles.web.promise.bands[0].store: must be an integer >= 0",
    ),
    (
        {"web": {"promise": {"bands": [{"max_km": 50}, {"max_km": 10}]}}},
        "profiles.json: profiles.web.promise.bands[1].max_km: bands must be listed by increasing",
    ),
    (
        {"web": {"daily_limits": {"store": {"units": 10}}}},
        "profiles.json: profiles.web.daily_limits: only the default profile",
    ),
    (
        {"default": {"daily_limits": {"store": {"trucks": 10}}}},
        "profiles.json: profiles.default.daily_limits.store.trucks: unknown field",
    ),
    (
        {"default": {"daily_limits": {"store": {"orders": -1}}}},
        "profiles.json: profiles.default.daily_limits.store.orders: must be an integer >= 0",
    ),
    (
        {"default": {"max_shipments": 0}},
        "profiles.json: profiles.default.max_shipments: must be an integer >= 1",
    ),
]


@pytest.mark.parametrize(("profiles", "message"), BAD)
def test_bad_profile_is_one_line_naming_the_field(tmp_path, profiles, message):
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=profiles
    )
    with pytest.raises(ScenarioError) as raised:
        load_scenario(folder)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "profiles.json: not valid JSON"),
        ('{"format": "x", "as_of": "2026-12-02T10:00:00Z"}', "profiles.json: format: must be"),
        ('{"format": "omniroute-profiles/1"}', "profiles.json: as_of: required"),
        (
            '{"format": "omniroute-profiles/1", "as_of": "2026-12-02T10:00:00"}',
            "profiles.json: as_of: must carry a time zone",
        ),
    ],
)
def test_bad_profiles_file(tmp_path, text, message):
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=ONE_ORDER, profiles=text
    )
    with pytest.raises(ScenarioError, match="^" + message.replace("(", r"\(")):
        load_scenario(folder)


def test_bad_promised_date_names_row_and_column(tmp_path):
    orders = [("o1", "l1", "a", 1, 0.0, "", "2026-13-01")]
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=orders, profiles={}
    )
    with pytest.raises(
        ScenarioError, match=r"orders\.csv row 2, column promised_date: must be a date"
    ):
        load_scenario(folder)


def test_channel_must_be_the_same_on_every_line(tmp_path):
    orders = [("o1", "l1", "a", 1, 0.0, "web", ""), ("o1", "l2", "a", 1, 0.0, "shop", "")]
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=STOCK, orders=orders, profiles={}
    )
    with pytest.raises(ScenarioError, match="row 3, column channel: must be the same"):
        load_scenario(folder)


def test_cli_solve_with_a_bad_profile_exits_2_and_writes_nothing(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=STOCK,
        orders=ONE_ORDER,
        profiles={"web": {"tiers": {"store": -1}}},
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "solve", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "profiles.json: profiles.web.tiers.store: must be a number >= 0" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


# --- compiled rules -------------------------------------------------------------------------


def test_most_specific_selector_wins():
    profile = parse_profile(
        {"tiers": {"*": 5, "store": 1, "group:outlet": 2, "node:S2": 0}, "tier_cost": 1.0}
    )
    rules = compile_rules(
        profile,
        np.array(["W", "S1", "S2", "S3"], dtype=object),
        np.array(["warehouse", "store", "store", "store"], dtype=object),
        np.array(["", "", "outlet", "outlet"], dtype=object),
        datetime(2026, 12, 2, 10, tzinfo=UTC),
    )
    assert rules.shipment_cost.tolist() == [5.0, 1.0, 0.0, 2.0]


def test_parse_profile_set_rejects_bad_channel_name():
    with pytest.raises(ProfileError, match=r"profiles\.bad channel: channel must be"):
        parse_profile_set(
            {"format": "omniroute-profiles/1", "as_of": AS_OF, "profiles": {"bad channel": {}}}
        )


def test_profile_document_round_trips():
    profile = parse_profile({"preset": "store_first", "exclude_nodes": ["S9"]})
    assert parse_profile(profile.document) == Profile(profile.document)


# --- clearance ------------------------------------------------------------------------------


def write_clearance(folder: Path, profiles: dict, sales: tuple[str, str]) -> Path:
    """W (warehouse, ship 5) and S (store, ship 6) both hold 40 of a; the weekly sales
    of a at W and S are ``sales`` (empty = unknown)."""
    nodes = [("W", "warehouse", 0.0, 5.0, ""), ("S", "store", 0.0, 6.0, "")]
    write_profiled(
        folder,
        nodes=nodes,
        inventory=STOCK,
        orders=[("o1", "l1", "a", 2, 0.0, "", "")],
        profiles=profiles,
    )
    rows = ["node_id,sku,available,weekly_sales", f"W,a,40,{sales[0]}", f"S,a,40,{sales[1]}"]
    (folder / "inventory.csv").write_text("\n".join(rows) + "\n")
    return folder


CLEARANCE = {"default": {"clearance": {"weeks_of_supply": 8, "credit_per_unit": 1.0}}}


def test_clearance_credit_binds_for_stock_above_its_weeks_of_supply(tmp_path):
    # S sells 4 a week: 40 > 8 * 4 = 32, each of the 2 units earns 1: 6 - 2 = 4 < 5.
    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", "4"))
    out = solve_folder(folder, tmp_path / "out")
    assert out.assignments["node_id"].tolist() == ["S"]
    assert out.summary["total_cost"] == 4.0 and out.summary["clearance_credit"] == 2.0
    assert out.summary["handling"] == 0.0
    assert out.assignments["clearance_credit"].tolist() == [2.0]
    written = load_assignments(tmp_path / "out" / "assignments.csv")
    report = check(load_scenario(folder), written)
    assert report.feasible and report.total_cost == 4.0 and report.clearance_credit == 2.0


def test_clearance_credit_does_not_bind_within_the_target(tmp_path):
    # S sells 5 a week: 40 = 8 * 5 is not above the target: no credit, W at 5 wins.
    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", "5"))
    out = solve_folder(folder, tmp_path / "out")
    assert out.assignments["node_id"].tolist() == ["W"]
    assert out.summary["total_cost"] == 5.0 and out.summary["clearance_credit"] == 0.0


def test_clearance_without_a_sales_rate_earns_nothing(tmp_path):
    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", ""))
    assert batch_nodes(folder, tmp_path) == {"o1": {"W"}}


def test_clearance_preset_and_bad_clearance_fields(tmp_path):
    assert parse_profile({"preset": "clearance"}).get("clearance") == {
        "weeks_of_supply": 8.0,
        "credit_per_unit": 2.0,
    }
    with pytest.raises(ProfileError, match=r"^clearance\.credit_per_unit: required"):
        parse_profile({"clearance": {"weeks_of_supply": 4}})
    with pytest.raises(ProfileError, match=r"^clearance\.weeks_of_supply: must be a number >= 0"):
        parse_profile({"clearance": {"weeks_of_supply": -4, "credit_per_unit": 1}})
    folder = write_clearance(tmp_path / "s", CLEARANCE, ("x", ""))
    with pytest.raises(ScenarioError, match=r"^inventory\.csv row 2, column weekly_sales"):
        load_scenario(folder)


def test_clearance_through_the_optimizer_matches_greedy_and_checker(tmp_path):
    # Several orders and both SKUs: every method prices the credit the same way.
    from router.run import solve_scenario

    nodes = [("W", "warehouse", 0.0, 5.0, "", 1.0), ("S", "store", 0.3, 6.0, "", 1.0)]
    stock = [("W", "a", 30), ("S", "a", 30), ("W", "b", 30), ("S", "b", 2)]
    orders = [(f"o{i}", "l1", "a", 1 + i % 3, 0.1 * i, "", "") for i in range(6)]
    orders += [(f"o{i}", "l2", "b", 1, 0.1 * i, "", "") for i in range(6)]
    folder = write_profiled(
        tmp_path / "s",
        nodes=nodes,
        inventory=stock,
        orders=orders,
        profiles={"default": {"preset": "clearance"}},
    )
    rows = ["node_id,sku,available,weekly_sales", "W,a,30,1", "S,a,30,1", "W,b,30,10", "S,b,2,0"]
    (folder / "inventory.csv").write_text("\n".join(rows) + "\n")
    scenario = load_scenario(folder)
    for strategy in ("greedy", "optimize"):
        out = solve_scenario(scenario, strategy=strategy)  # re-checked inside
        assert out.summary["clearance_credit"] > 0
        bound = out.summary["lower_bound"]
        assert bound is None or bound <= out.summary["total_cost"] + 1e-6


# --- split cap ------------------------------------------------------------------------------


def test_capped_subset_dp_matches_the_mip():
    from solver.order_dp import OrderProblem, _solve_order_mip, solve_order

    rng = np.random.default_rng(7)
    for trial in range(60):
        k, n = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        problem = OrderProblem(
            qty=rng.integers(1, 3, size=k),
            stock=rng.integers(0, 3, size=(k, n)),
            ship_cost=rng.uniform(1, 10, size=n),
            unit_cost=rng.uniform(0, 3, size=(k, n)),
            capacity=np.full(n, np.inf),
            split_penalty=float(rng.uniform(0, 5)),
            unfilled_penalty=20.0,
            max_shipments=int(rng.integers(1, 3)),
        )
        plan, mip = solve_order(problem), _solve_order_mip(problem)
        assert (plan.alloc.sum(axis=0) > 0).sum() <= problem.max_shipments, trial
        assert plan.total_cost == pytest.approx(mip.total_cost, abs=1e-6), trial


def test_checker_flags_more_shipments_than_the_cap(tmp_path):
    stock = [("W", "a", 5), ("S", "b", 5)]
    orders = [("o1", "l1", "a", 1, 0.0, "", ""), ("o1", "l2", "b", 1, 0.0, "", "")]
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=stock,
        orders=orders,
        profiles={"default": {"max_shipments": 1}},
    )
    forced = pd.DataFrame(
        {"order_id": ["o1", "o1"], "line_id": ["l1", "l2"], "node_id": ["W", "S"], "qty": [1, 1]}
    )
    report = check(load_scenario(folder), forced)
    assert [v.rule for v in report.violations] == ["profile"]
    assert "max_shipments 1" in report.violations[0].message


@pytest.mark.parametrize("strategy", ["greedy", "optimize"])
def test_split_cap_holds_in_a_contested_batch(tmp_path, strategy):
    # 12 two-line orders over 4 nodes with scarce stock: every method keeps each
    # order within one shipment (the checker inside solve_scenario verifies it).
    from router.run import solve_scenario

    nodes = [(f"N{i}", "store" if i % 2 else "warehouse", 0.2 * i, 3.0 + i, "") for i in range(4)]
    stock = [(f"N{i}", sku, 3) for i in range(4) for sku in ("a", "b") if (i + ord(sku)) % 3]
    orders = [(f"o{j}", "l1", "a", 1, 0.05 * j, "", "") for j in range(12)]
    orders += [(f"o{j}", "l2", "b", 1 + j % 2, 0.05 * j, "", "") for j in range(12)]
    folder = write_profiled(
        tmp_path / "s",
        nodes=nodes,
        inventory=stock,
        orders=orders,
        profiles={"default": {"max_shipments": 1}},
    )
    out = solve_scenario(load_scenario(folder), strategy=strategy)
    shipments = out.assignments.groupby("order_id")["node_id"].nunique()
    assert shipments.max() == 1
    bound = out.summary["lower_bound"]
    assert bound is None or bound <= out.summary["total_cost"] + 1e-6


# --- daily orders limit ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["greedy", "optimize"])
def test_daily_orders_limit_holds_in_a_contested_batch(tmp_path, strategy):
    # 30 one-line orders all nearest to N0, which takes 4 orders a day: every method
    # keeps N0 within 4 shipments (the checker inside solve_scenario verifies it too).
    from router.run import solve_scenario

    nodes = [(f"N{i}", "store", 0.3 * i, 2.0 + 2 * i, "") for i in range(4)]
    stock = [(f"N{i}", "a", 100) for i in range(4)] + [(f"N{i}", "b", 100) for i in range(4)]
    orders = [(f"o{j}", "l1", "a", 1 + j % 2, 0.01 * j, "", "") for j in range(30)]
    orders += [(f"o{j}", "l2", "b", 1, 0.01 * j, "", "") for j in range(0, 30, 3)]
    profiles = {"default": {"daily_limits": {"node:N0": {"orders": 4}, "node:N1": {"orders": 5}}}}
    folder = write_profiled(
        tmp_path / "s", nodes=nodes, inventory=stock, orders=orders, profiles=profiles
    )
    out = solve_scenario(load_scenario(folder), strategy=strategy)
    served = out.assignments.groupby("node_id")["order_id"].nunique()
    assert served["N0"] == 4 and served["N1"] == 5
    bound = out.summary["lower_bound"]
    assert bound is None or bound <= out.summary["total_cost"] + 1e-6


def test_checker_flags_a_node_over_its_daily_orders(tmp_path):
    orders = [("o1", "l1", "a", 1, 0.0, "", ""), ("o2", "l1", "a", 1, 0.0, "", "")]
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=STOCK,
        orders=orders,
        profiles={"default": {"daily_limits": {"node:W": {"orders": 1}}}},
    )
    forced = pd.DataFrame(
        {"order_id": ["o1", "o2"], "line_id": ["l1", "l1"], "node_id": ["W", "W"], "qty": [1, 1]}
    )
    report = check(load_scenario(folder), forced)
    assert [v.rule for v in report.violations] == ["profile"]
    assert "daily orders limit 1" in report.violations[0].message


def test_cli_check_reports_the_profile_cost(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=STOCK,
        orders=ONE_ORDER,
        profiles={"default": {"tiers": {"warehouse": 1}, "tier_cost": 2.5}},
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "router.cli"]
    solved = subprocess.run(
        [*command, "solve", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert solved.returncode == 0, solved.stderr
    checked = subprocess.run(
        [*command, "check", str(folder), str(out / "assignments.csv")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FEASIBLE" in checked.stdout and "total_cost  7.5000" in checked.stdout
    assert "profile   2.5000" in checked.stdout


# --- ship groups ----------------------------------------------------------------------------


GROUP_NODES = [
    ("W", "warehouse", 0.0, 5.0, ""),
    ("S", "store", 0.0, 8.0, ""),
    ("T", "store", 0.0, 2.0, ""),
]
GROUP_STOCK = [("W", "a", 5), ("S", "a", 5), ("S", "b", 5), ("T", "b", 5)]


def group_orders(group_b: str) -> list[tuple]:
    """a and b in group g (or b outside it): W(a) + T(b) costs 7, S(a, b) 8."""
    return [
        ("o1", "l1", "a", 1, 0.0, "", "", "", "g"),
        ("o1", "l2", "b", 1, 0.0, "", "", "", group_b),
    ]


def test_ship_group_binds_and_the_checker_verifies(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=GROUP_NODES,
        inventory=GROUP_STOCK,
        orders=group_orders("g"),
        profiles={"default": {}},
        split_penalty=0.0,
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"S"}}
    split = pd.DataFrame(
        {"order_id": ["o1", "o1"], "line_id": ["l1", "l2"], "node_id": ["W", "T"], "qty": [1, 1]}
    )
    report = check(load_scenario(folder), split)
    assert [v.rule for v in report.violations] == ["profile"]
    assert "ship group 'g'" in report.violations[0].message
    half = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["S"], "qty": [1]})
    assert not check(load_scenario(folder), half).feasible  # whole, or not at all


def test_ship_group_of_one_line_does_not_bind(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=GROUP_NODES,
        inventory=GROUP_STOCK,
        orders=group_orders(""),
        profiles={"default": {}},
        split_penalty=0.0,
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"W", "T"}}


def test_ship_group_column_is_ignored_without_profiles(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=GROUP_NODES,
        inventory=GROUP_STOCK,
        orders=group_orders("g"),
        profiles=None,
        split_penalty=0.0,
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"W", "T"}}


def test_a_sku_inside_and_outside_a_ship_group_is_refused(tmp_path):
    orders = [("o1", "l1", "a", 1, 0.0, "", "", "", "g"), ("o1", "l2", "a", 1, 0.0, "", "", "", "")]
    folder = write_profiled(
        tmp_path / "s",
        nodes=GROUP_NODES,
        inventory=GROUP_STOCK,
        orders=orders,
        profiles={"default": {}},
    )
    with pytest.raises(
        ScenarioError, match=r"^orders\.csv row 2, column ship_group: the line's SKU"
    ):
        load_scenario(folder)


@pytest.mark.parametrize("strategy", ["greedy", "optimize"])
def test_ship_groups_hold_in_a_contested_batch(tmp_path, strategy):
    from router.run import solve_scenario

    nodes = [(f"N{i}", "store", 0.2 * i, 2.0 + i, "") for i in range(4)]
    stock = [(f"N{i}", sku, 4) for i in range(4) for sku in ("a", "b", "c") if (i + ord(sku)) % 4]
    orders = []
    for j in range(14):
        orders += [
            (f"o{j}", "l1", "a", 1, 0.05 * j, "", "", "", "g"),
            (f"o{j}", "l2", "b", 1 + j % 2, 0.05 * j, "", "", "", "g"),
            (f"o{j}", "l3", "c", 1, 0.05 * j, "", "", "", ""),
        ]
    folder = write_profiled(
        tmp_path / "s", nodes=nodes, inventory=stock, orders=orders, profiles={"default": {}}
    )
    out = solve_scenario(load_scenario(folder), strategy=strategy)  # checked inside
    grouped = out.assignments[out.assignments["line_id"].isin(["l1", "l2"])]
    assert grouped.groupby("order_id")["node_id"].nunique().max() == 1
