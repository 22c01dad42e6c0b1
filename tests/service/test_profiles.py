"""Routing profiles, rule by rule, through both paths: the batch (``omniroute solve``
on a scenario folder) and the single order (``Pool.route`` on the same network loaded
into the pool, with the service clock at the scenario's ``as_of``). Each rule has a
pair of tiny cases, one where it binds and one where it does not, and both paths
must choose the same nodes.

Nodes sit on the equator: W (warehouse, ship_fixed 5) at longitude 1, S (store,
ship_fixed 8) at 0.5; the customer at longitude 0. Without a profile W wins (5 < 8).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from router.pool.routing import Order, OrderLine
from router.pool.scenario_load import load_into_pool
from router.scenario import load_scenario
from tests.test_profiles import NODES, STOCK, batch_nodes, write_profiled

WEDNESDAY_10Z = "2026-12-02T10:00:00Z"
BANDS = {
    "bands": [
        {"max_km": 100, "warehouse": 1, "store": 1},
        {"max_km": None, "warehouse": 3, "store": 3},
    ]
}
FAR_W = [("W", "warehouse", 2.0, 5.0, "north"), ("S", "store", 0.5, 8.0, "south")]


def _naive(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def single_nodes(pool, clock, folder: Path, as_of: str) -> dict[str, tuple[set[str], bool]]:
    """Each order of the folder routed alone by the pool (quote only), at ``as_of``."""
    scenario = load_scenario(folder)
    load_into_pool(pool, scenario)
    clock.now = _naive(as_of)
    chosen = {}
    for order_id, rows in scenario.orders.groupby("order_id", sort=False):
        first = rows.iloc[0]
        order = Order(
            order_id=str(order_id),
            lines=tuple(OrderLine(r.line_id, r.sku, int(r.qty)) for r in rows.itertuples()),
            lat=float(first["lat"]),
            lon=float(first["lon"]),
            channel=str(first["channel"]),
            promised_date=first["promised_date"].isoformat() if first["promised_date"] else None,
        )
        result = pool.route(order, quote_only=True)
        chosen[str(order_id)] = ({s.node_id for s in result.shipments}, result.promise_late)
    return chosen


# (profiles, nodes, orders, as_of, expected nodes per order, expected late orders)
CASES = {
    # eligibility: node kinds
    "kinds_bind": ({"default": {"node_kinds": ["store"]}}, NODES, None, None, {"o1": {"S"}}),
    "kinds_free": (
        {"default": {"node_kinds": ["store", "warehouse"]}},
        NODES,
        None,
        None,
        {"o1": {"W"}},
    ),
    # eligibility: node groups
    "groups_bind": ({"default": {"node_groups": ["south"]}}, NODES, None, None, {"o1": {"S"}}),
    "groups_free": (
        {"default": {"node_groups": ["north", "south"]}},
        NODES,
        None,
        None,
        {"o1": {"W"}},
    ),
    # eligibility: exclusions
    "exclude_bind": ({"default": {"exclude_nodes": ["W"]}}, NODES, None, None, {"o1": {"S"}}),
    "exclude_free": ({"default": {"exclude_nodes": ["X"]}}, NODES, None, None, {"o1": {"W"}}),
    # which nodes serve which channel: the market channel may use S only, web anything
    "channel_nodes": (
        {"market": {"nodes": ["S"]}},
        NODES,
        [("o1", "l1", "a", 1, 0.0, "market", ""), ("o2", "l1", "a", 1, 0.0, "web", "")],
        None,
        {"o1": {"S"}, "o2": {"W"}},
    ),
    # tiers: W is one tier (10) down: 5 + 10 > 8 -> S; at tier_cost 2: 5 + 2 < 8 -> W
    "tier_bind": ({"default": {"preset": "store_first"}}, NODES, None, None, {"o1": {"S"}}),
    "tier_free": (
        {"default": {"preset": "store_first", "tier_cost": 2.0}},
        NODES,
        None,
        None,
        {"o1": {"W"}},
    ),
    # tier difference is exactly what a lower tier must save: 5 + 3 = 8 vs 8.0 (tie
    # excluded) -> 2.9 keeps W, 3.1 gives S
    "tier_edge_w": (
        {"default": {"tiers": {"warehouse": 1}, "tier_cost": 2.9}},
        NODES,
        None,
        None,
        {"o1": {"W"}},
    ),
    "tier_edge_s": (
        {"default": {"tiers": {"warehouse": 1}, "tier_cost": 3.1}},
        NODES,
        None,
        None,
        {"o1": {"S"}},
    ),
    # calendars: W closed on Wednesdays / open
    "closed_day_bind": (
        {"default": {"calendars": {"node:W": {"hours": {"wed": None}}}}},
        NODES,
        None,
        None,
        {"o1": {"S"}},
    ),
    "closed_day_free": (
        {"default": {"calendars": {"node:W": {"hours": {"thu": None}}}}},
        NODES,
        None,
        None,
        {"o1": {"W"}},
    ),
    # hours in the node's zone: 10:00Z is 11:00 in Paris; W opens at 11:30 / at 10:30
    "hours_bind": (
        {
            "default": {
                "calendars": {
                    "warehouse": {"timezone": "Europe/Paris", "hours": {"wed": ["11:30", "20:00"]}}
                }
            }
        },
        NODES,
        None,
        None,
        {"o1": {"S"}},
    ),
    "hours_free": (
        {
            "default": {
                "calendars": {
                    "warehouse": {"timezone": "Europe/Paris", "hours": {"wed": ["10:30", "20:00"]}}
                }
            }
        },
        NODES,
        None,
        None,
        {"o1": {"W"}},
    ),
    # closed dates and the order cut-off
    "closed_date_bind": (
        {"default": {"calendars": {"node:W": {"closed_dates": ["2026-12-02"]}}}},
        NODES,
        None,
        None,
        {"o1": {"S"}},
    ),
    "cutoff_bind": (
        {"default": {"calendars": {"node:W": {"timezone": "Asia/Shanghai", "cutoff": "17:00"}}}},
        NODES,
        None,
        "2026-12-02T09:30:00Z",
        {"o1": {"S"}},  # 17:30 in Shanghai
    ),
    "cutoff_free": (
        {"default": {"calendars": {"node:W": {"timezone": "Asia/Shanghai", "cutoff": "17:00"}}}},
        NODES,
        None,
        "2026-12-02T08:30:00Z",
        {"o1": {"W"}},  # 16:30 in Shanghai
    ),
    # delivery promise: W is 222 km away (3 days), S 56 km (1 day)
    "promise_bind": (
        {"default": {"promise": BANDS}},
        FAR_W,
        [("o1", "l1", "a", 1, 0.0, "", "2026-12-03")],
        None,
        {"o1": {"S"}},
    ),
    "promise_free": (
        {"default": {"promise": BANDS}},
        FAR_W,
        [("o1", "l1", "a", 1, 0.0, "", "2026-12-05")],
        None,
        {"o1": {"W"}},
    ),
    "no_promise_free": (
        {"default": {"promise": BANDS}},
        FAR_W,
        [("o1", "l1", "a", 1, 0.0, "", "")],
        None,
        {"o1": {"W"}},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_gives_the_same_nodes_in_both_paths(case, tmp_path, sqlite_pool, clock):
    profiles, nodes, orders, as_of, expected = CASES[case]
    as_of = as_of or WEDNESDAY_10Z
    folder = write_profiled(
        tmp_path / "s",
        nodes=nodes,
        inventory=STOCK,
        orders=orders or [("o1", "l1", "a", 1, 0.0, "", "")],
        profiles=profiles,
        as_of=as_of,
    )
    batch = batch_nodes(folder, tmp_path)
    single = single_nodes(sqlite_pool, clock, folder, as_of)
    assert batch == expected
    assert {o: nodes for o, (nodes, _late) in single.items()} == expected


def test_promise_no_node_can_meet_is_routed_and_flagged_in_both_paths(tmp_path, sqlite_pool, clock):
    # Only W (3 days) holds the SKU; promised for tomorrow: routed from W, flagged.
    folder = write_profiled(
        tmp_path / "s",
        nodes=FAR_W,
        inventory=[("W", "a", 5)],
        orders=[("o1", "l1", "a", 1, 0.0, "", "2026-12-03")],
        profiles={"default": {"promise": BANDS}},
    )
    out_dir = tmp_path / "out"
    from router.run import solve_folder

    out = solve_folder(folder, out_dir)
    assert out.assignments["node_id"].tolist() == ["W"]
    assert out.assignments["promise_late"].tolist() == [True]
    assert out.summary["late_orders"] == 1 and out.summary["late_order_ids"] == ["o1"]
    single = single_nodes(sqlite_pool, clock, folder, WEDNESDAY_10Z)
    assert single == {"o1": ({"W"}, True)}


def test_daily_units_limit_binds_in_both_paths_and_resets_at_local_midnight(
    tmp_path, sqlite_pool, clock
):
    # W may take 2 units a day (its day in Shanghai); an order of 3 goes to S whole
    # (W 2 + S 1 would cost 5 + 8 + 6 > 8).
    profiles = {
        "default": {
            "daily_limits": {"node:W": {"units": 2}},
            "calendars": {"node:W": {"timezone": "Asia/Shanghai"}},
        }
    }
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=[("W", "a", 50), ("S", "a", 50)],
        orders=[("o1", "l1", "a", 3, 0.0, "", "")],
        profiles=profiles,
    )
    assert batch_nodes(folder, tmp_path) == {"o1": {"S"}}
    assert single_nodes(sqlite_pool, clock, folder, WEDNESDAY_10Z) == {"o1": ({"S"}, False)}

    # Reserved routes count: two 1-unit orders fill W's day, the third goes to S.
    pool = sqlite_pool

    def route(order_id: str) -> set[str]:
        order = Order(order_id, (OrderLine("l1", "a", 1),), lat=0.0, lon=0.0, channel="web")
        return {s.node_id for s in pool.route(order).shipments}

    assert [route("r1"), route("r2"), route("r3")] == [{"W"}, {"W"}, {"S"}]
    # 15:59:59Z is 23:59:59 in Shanghai: still the same day.
    clock.now = _naive("2026-12-02T15:59:59Z")
    assert route("r4") == {"S"}
    clock.now = _naive("2026-12-02T16:00:00Z")  # local midnight: a new day
    assert route("r5") == {"W"}


def test_a_changed_profile_applies_to_the_next_route(sqlite_pool, clock, tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=STOCK,
        orders=[("o1", "l1", "a", 1, 0.0, "", "")],
        profiles={"default": {}},
    )
    assert single_nodes(sqlite_pool, clock, folder, WEDNESDAY_10Z) == {"o1": ({"W"}, False)}
    version = sqlite_pool.put_profile("default", {"exclude_nodes": ["W"]})
    assert version.version == 2
    order = Order("o2", (OrderLine("l1", "a", 1),), lat=0.0, lon=0.0, channel="web")
    assert {s.node_id for s in sqlite_pool.route(order, quote_only=True).shipments} == {"S"}


# --- waves: the joint solve of queued orders goes through the batch path -----------------------


def test_wave_uses_the_channel_profile_and_counts_daily_units(pool, clock):
    from sqlalchemy import select

    from router.pool.schema import node_days
    from router.pool.waves import Waves, WaveSettings
    from tests.service.conftest import CUSTOMER, seed_network

    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5})
    # S1 is cheaper for C (6.5 vs 11) but the web channel may not use it; W1 takes
    # 2 units a day, counted over single routes and waves alike.
    pool.put_profile("web", {"exclude_nodes": ["S1"]})
    pool.put_profile("default", {"daily_limits": {"node:W1": {"units": 2}}})

    def order(order_id, channel="web"):
        return Order(order_id, (OrderLine("l1", "A", 1),), *CUSTOMER, channel=channel)

    assert {s.node_id for s in pool.route(order("r1")).shipments} == {"W1"}
    waves = Waves(pool, WaveSettings(window_seconds=60, max_orders=5, time_limit=5))
    for order_id in ("w1", "w2"):
        waves.queue(order(order_id), hold_seconds=900)
    clock.advance(60)
    assert len(waves.run_due()) == 1
    results = {o: waves.order(o).result for o in ("w1", "w2")}
    placed = sorted(
        tuple(a.node_id for line in r.lines for a in line.allocations) for r in results.values()
    )
    assert placed == [(), ("W1",)]  # one unit left at W1 today; S1 not allowed
    with pool.db.read() as conn:
        assert conn.execute(select(node_days.c.units)).scalars().all() == [2]
    # Another channel (the default profile: no exclusion) still gets S1.
    assert {s.node_id for s in pool.route(order("m1", "market")).shipments} == {"S1"}


# --- clearance --------------------------------------------------------------------------------


@pytest.mark.parametrize(("sales", "expected"), [("4", {"S"}), ("5", {"W"}), ("", {"W"})])
def test_clearance_credit_gives_the_same_nodes_in_both_paths(
    sales, expected, tmp_path, sqlite_pool, clock
):
    # W ships at 5, S at 6, both hold 40; 2 units earn 1 each at S when it holds
    # more than 8 weeks of sales (40 > 32 at 4 a week; not at 5; unknown: never).
    from tests.test_profiles import CLEARANCE, write_clearance

    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", sales))
    assert batch_nodes(folder, tmp_path) == {"o1": expected}
    assert single_nodes(sqlite_pool, clock, folder, WEDNESDAY_10Z) == {"o1": (expected, False)}


# --- split cap --------------------------------------------------------------------------------


@pytest.mark.parametrize(("cap", "expected"), [(1, {"W"}), (2, {"W", "S"})])
def test_split_cap_gives_the_same_nodes_in_both_paths(cap, expected, tmp_path, sqlite_pool, clock):
    # a only at W (ship 5), b only at S (ship 8): two shipments without a cap; with
    # "never split" the cheaper node ships its line and the other line is unfilled.
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=[("W", "a", 5), ("S", "b", 5)],
        orders=[("o1", "l1", "a", 1, 0.0, "", ""), ("o1", "l2", "b", 1, 0.0, "", "")],
        profiles={"default": {"max_shipments": cap}},
    )
    assert batch_nodes(folder, tmp_path) == {"o1": expected}
    assert single_nodes(sqlite_pool, clock, folder, WEDNESDAY_10Z) == {"o1": (expected, False)}


# --- daily orders limit -------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "expected"), [(1, ["S", "W"]), (2, ["W", "W"])])
def test_daily_orders_limit_gives_the_same_nodes_in_both_paths(
    limit, expected, tmp_path, sqlite_pool, clock
):
    # Two one-unit orders both prefer W (5 < 8); W takes `limit` orders a day. In the
    # service the second order is routed (and reserved) after the first.
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=STOCK,
        orders=[("o1", "l1", "a", 1, 0.0, "", ""), ("o2", "l1", "a", 1, 0.0, "", "")],
        profiles={"default": {"daily_limits": {"node:W": {"orders": limit}}}},
    )
    assert sorted(n for nodes in batch_nodes(folder, tmp_path).values() for n in nodes) == expected
    load_into_pool(sqlite_pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    chosen = []
    for order_id in ("o1", "o2"):
        order = Order(order_id, (OrderLine("l1", "a", 1),), lat=0.0, lon=0.0, channel="web")
        chosen += [s.node_id for s in sqlite_pool.route(order).shipments]
    assert sorted(chosen) == expected


# --- campaign orders and rejected parts use the channel's profile -----------------------------


def test_rejected_part_is_rerouted_under_its_channel_profile(pool):
    from router.pool.rejections import RejectionRequest
    from tests.service.conftest import CUSTOMER, seed_network

    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5})
    first = pool.route(Order("o1", (OrderLine("l1", "A", 2),), *CUSTOMER, channel="web"))
    assert [s.node_id for s in first.shipments] == ["S1"]
    pool.route(Order("o2", (OrderLine("l1", "A", 1),), *CUSTOMER, channel="web"))
    # The web channel may no longer use W1: the rejected part has nowhere to go.
    pool.put_profile("web", {"exclude_nodes": ["W1"]})
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 2))
    assert (answer.status, answer.unfilled) == ("unfilled", 2)
    # Without the exclusion it would move to W1 (o2 shows the same part routes there).
    pool.put_profile("web", {})
    again = pool.reject(RejectionRequest("o2", "l1", "S1", 1))
    assert [a.node_id for a in again.reroute.lines[0].allocations] == ["W1"]


def test_campaign_order_skips_locks_at_nodes_its_profile_excludes(pool, clock):
    from datetime import timedelta

    from router.pool.locks import LockRow
    from tests.service.conftest import CUSTOMER, seed_network

    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5})
    pool.lock_stock(
        "spring",
        [LockRow("S1", "A", 2)],
        starts_at=clock.now,
        ends_at=clock.now + timedelta(days=1),
        actor="t",
    )
    order = Order("c1", (OrderLine("l1", "A", 1),), *CUSTOMER, channel="web", campaign="spring")
    assert [s.node_id for s in pool.route(order, quote_only=True).shipments] == ["S1"]
    pool.put_profile("web", {"exclude_nodes": ["S1"]})
    result = pool.route(order)
    assert [s.node_id for s in result.shipments] == ["W1"] and result.locked_units == 0


# --- pickup orders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [({"node_kinds": ["warehouse"]}, set()), ({"node_kinds": ["store"], "promise": BANDS}, {"S"})],
)
def test_pickup_at_a_store_the_profile_allows_or_not(
    profile, expected, tmp_path, sqlite_pool, clock
):
    # A pickup order is collected at S: a profile without stores leaves it unfilled;
    # a promise does not apply to a pickup (never flagged).
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=STOCK,
        orders=[("o1", "l1", "a", 1, 0.5, "", "2026-12-02", "S")],
        profiles={"default": profile},
    )
    assert batch_nodes(folder, tmp_path).get("o1", set()) == expected
    load_into_pool(sqlite_pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    order = Order(
        "o1",
        (OrderLine("l1", "a", 1),),
        pickup_node="S",
        channel="default",
        promised_date="2026-12-02",
    )
    result = sqlite_pool.route(order, quote_only=True)
    assert {s.node_id for s in result.shipments} == expected and not result.promise_late


# --- ship groups --------------------------------------------------------------------------------


@pytest.mark.parametrize(("group_b", "expected"), [("g", {"S"}), ("", {"W", "T"})])
def test_ship_group_gives_the_same_nodes_in_both_paths(
    group_b, expected, tmp_path, sqlite_pool, clock
):
    from tests.test_profiles import GROUP_NODES, GROUP_STOCK, group_orders

    folder = write_profiled(
        tmp_path / "s",
        nodes=GROUP_NODES,
        inventory=GROUP_STOCK,
        orders=group_orders(group_b),
        profiles={"default": {}},
        split_penalty=0.0,
    )
    assert batch_nodes(folder, tmp_path) == {"o1": expected}
    scenario = load_scenario(folder)
    load_into_pool(sqlite_pool, scenario)
    clock.now = _naive(WEDNESDAY_10Z)
    order = Order(
        "o1",
        (OrderLine("l1", "a", 1, "g"), OrderLine("l2", "b", 1, group_b or None)),
        lat=0.0,
        lon=0.0,
        channel="web",
    )
    assert {s.node_id for s in sqlite_pool.route(order, quote_only=True).shipments} == expected
