"""Re-optimization of held reservations under routing profiles (SQLite and PostgreSQL):
the channel's nodes, the daily workload, the split cap, each binding and not binding.

The network of ``conftest`` (customer C at W1; S1 10 km away; S2 120 km away, reach
50 km). With one unit of A at W1 and at S1, ``near`` (at C) holds S1 (6.5) and ``far``
(at S2's place) holds W1 (17); jointly they swap, 23.5 -> 22.5 (both must move).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from router.pool.errors import Conflict
from router.pool.inventory import SetRow
from router.pool.reoptimizations import (
    SKIP_RULES,
    ReoptimizationRequest,
    Reoptimizations,
    ReoptimizationSettings,
    Selection,
)
from router.pool.routing import Order, OrderLine
from router.pool.schema import node_days
from tests.service.conftest import CUSTOMER, seed_network
from tests.service.test_reoptimizations import FAR, held_nodes, order
from tests.service.test_waves import assert_invariant


def plan_of(jobs: Reoptimizations, *order_ids: str, max_moves="100%"):
    job = jobs.create(
        ReoptimizationRequest(Selection(order_ids=order_ids), max_moves=max_moves), actor="ops"
    )
    assert jobs.run_due() == [job.job_id]
    job = jobs.job(job.job_id)
    assert job.state == "ready", job.error
    return job


@pytest.fixture
def swap(pool):
    """``near`` (web) holds S1, ``far`` (market) holds W1; routed before any profile."""
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    pool.route(order("near"))
    pool.route(order("far", FAR, channel="market"))
    assert held_nodes(pool, "near") == ["S1"] and held_nodes(pool, "far") == ["W1"]
    return Reoptimizations(pool, ReoptimizationSettings(time_limit=10))


# --- the channel's nodes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("excluded", "moved"),
    [
        ("S1", 0),  # binds: far may not move to S1, so near cannot have W1 either
        ("S2", 2),  # does not bind: both move, as without profiles
    ],
)
def test_a_node_the_channel_excludes_is_never_a_move(swap, excluded, moved):
    swap.pool.put_profile("market", {"exclude_nodes": [excluded]})
    job = plan_of(swap, "near", "far")
    assert job.plan["skipped"] == [] and job.plan["orders_moved"] == moved
    assert job.plan["after"]["cost"] == pytest.approx(23.5 if moved == 0 else 22.5, abs=0.01)
    swap.apply(job.job_id, actor="ops")
    expected = {"near": ["S1"], "far": ["W1"]} if moved == 0 else {"near": ["W1"], "far": ["S1"]}
    assert {o: held_nodes(swap.pool, o) for o in expected} == expected
    assert_invariant(swap.pool)


def test_an_order_held_at_a_node_its_channel_now_excludes_is_skipped(swap):
    pool = swap.pool
    pool.put_profile("market", {"exclude_nodes": ["W1"]})
    job = plan_of(swap, "near", "far")
    (skipped,) = job.plan["skipped"]
    assert skipped["order_id"] == "far" and skipped["rule"] == "node_not_allowed"
    assert "'W1'" in skipped["detail"] and "'market'" in skipped["detail"]
    assert "node_not_allowed" in SKIP_RULES
    # far keeps W1 and its unit is not freed: near has nowhere better to go.
    assert (job.plan["orders"], job.plan["orders_moved"]) == (1, 0)
    swap.apply(job.job_id, actor="ops")
    assert held_nodes(pool, "far") == ["W1"] and held_nodes(pool, "near") == ["S1"]


def test_a_closed_calendar_makes_the_held_node_not_allowed(swap):
    # The fake clock is a Monday 09:00 UTC: W1 takes no market order on Mondays.
    swap.pool.put_profile("market", {"calendars": {"node:W1": {"hours": {"mon": None}}}})
    job = plan_of(swap, "near", "far")
    assert [(s["order_id"], s["rule"]) for s in job.plan["skipped"]] == [
        ("far", "node_not_allowed")
    ]


# --- the split cap ------------------------------------------------------------------------


@pytest.mark.parametrize(("cap", "skipped"), [(1, ["far"]), (2, [])])
def test_an_order_split_over_its_channels_cap_is_skipped(pool, cap, skipped):
    seed_network(pool, {("W1", "A"): 1, ("S1", "B"): 1})
    two_lines = (OrderLine("l1", "A", 1), OrderLine("l2", "B", 1))
    pool.route(Order("far", two_lines, FAR[0], FAR[1], channel="market"))
    assert held_nodes(pool, "far") == ["S1", "W1"]
    pool.put_profile("market", {"max_shipments": cap})
    job = plan_of(Reoptimizations(pool, ReoptimizationSettings(time_limit=10)), "far")
    assert [s["order_id"] for s in job.plan["skipped"]] == skipped
    if skipped:
        (rule,) = {s["rule"] for s in job.plan["skipped"]}
        assert rule == "over_split_cap" and "at most 1" in job.plan["skipped"][0]["detail"]
        assert job.plan["orders"] == 0


# --- the daily workload -------------------------------------------------------------------


def held_at_w1_then_s1_restocked(pool, limit: int) -> Reoptimizations:
    """``far`` holds W1 (17; S1 had no A), then S1 gets 3 A and ``other`` (at C) takes one
    of S1's ``limit`` units of today; far would save 5.5 at S1 (11.5)."""
    seed_network(pool, {("W1", "A"): 1})
    pool.put_profile("default", {"daily_limits": {"node:S1": {"units": limit}}})
    pool.route(order("far", FAR))
    pool.set_stock([SetRow("S1", "A", 3)], actor="test")
    pool.route(order("other"))
    assert held_nodes(pool, "far") == ["W1"] and held_nodes(pool, "other") == ["S1"]
    return Reoptimizations(pool, ReoptimizationSettings(time_limit=10))


@pytest.mark.parametrize(("limit", "moved"), [(1, 0), (2, 1)])
def test_a_stores_daily_units_limit_binds_in_a_reoptimization(pool, limit, moved):
    jobs = held_at_w1_then_s1_restocked(pool, limit)
    job = plan_of(jobs, "far")
    assert job.plan["skipped"] == [] and job.plan["orders_moved"] == moved
    assert job.plan["after"]["cost"] == pytest.approx(17.0 if moved == 0 else 11.5, abs=0.01)


def test_apply_counts_the_moves_against_the_day(pool):
    jobs = held_at_w1_then_s1_restocked(pool, 2)
    job = plan_of(jobs, "far")
    jobs.apply(job.job_id, actor="ops")
    assert held_nodes(pool, "far") == ["S1"]
    # S1 still has an A and is cheaper for C (6.5 < 11), but its 2 units of today are
    # taken (other, then far by the re-optimization): the next order goes to W1.
    result = pool.route(order("next"))
    assert [s.node_id for s in result.shipments] == ["W1"]
    assert_invariant(pool)


def test_staying_orders_add_no_work(pool):
    # S1's limit is 1 and ``other`` took it; re-deciding other alone keeps it at S1.
    jobs = held_at_w1_then_s1_restocked(pool, 1)
    job = plan_of(jobs, "other")
    assert job.plan["skipped"] == [] and job.plan["orders"] == 1
    assert job.plan["orders_moved"] == 0


def test_a_swap_through_a_full_node_is_applied(pool):
    # S1 takes 1 unit a day and near took it; near moves away as far moves in: net 0.
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    pool.put_profile("default", {"daily_limits": {"node:S1": {"units": 1}}})
    pool.route(order("near"))
    pool.route(order("far", FAR))
    jobs = Reoptimizations(pool, ReoptimizationSettings(time_limit=10))
    job = plan_of(jobs, "near", "far")
    assert job.plan["orders_moved"] == 2
    jobs.apply(job.job_id, actor="ops")
    assert held_nodes(pool, "near") == ["W1"] and held_nodes(pool, "far") == ["S1"]
    with pool.db.read() as conn:
        assert conn.execute(select(node_days.c.units, node_days.c.orders)).all() == [(1, 1)]


def test_apply_is_refused_when_the_day_has_no_room_left(pool):
    jobs = held_at_w1_then_s1_restocked(pool, 2)
    job = plan_of(jobs, "far")
    pool.put_profile("default", {"daily_limits": {"node:S1": {"units": 1}}})
    with pytest.raises(Conflict) as refused:
        jobs.apply(job.job_id, actor="ops")
    assert refused.value.rule == "unchanged_since_snapshot"
    assert "daily workload" in str(refused.value)
    assert held_nodes(pool, "far") == ["W1"] and jobs.job(job.job_id).state == "ready"
    assert_invariant(pool)


@pytest.mark.parametrize(("orders", "moved"), [(1, 0), (2, 1)])
def test_a_stores_daily_orders_limit_binds_too(pool, orders, moved):
    seed_network(pool, {("W1", "A"): 1})
    pool.put_profile("default", {"daily_limits": {"node:S1": {"orders": orders}}})
    pool.route(order("far", FAR))
    pool.set_stock([SetRow("S1", "A", 3)], actor="test")
    pool.route(order("other"))
    job = plan_of(Reoptimizations(pool, ReoptimizationSettings(time_limit=10)), "far")
    assert job.plan["orders_moved"] == moved


def test_a_lines_ship_group_is_kept_for_the_reoptimization(pool, clock):
    from router.pool.reoptimizations import take_snapshot

    seed_network(pool, {("W1", "A"): 1, ("W1", "B"): 1})
    pool.put_profile("web", {})
    lines = (OrderLine("l1", "A", 1, "set"), OrderLine("l2", "B", 1, "set"))
    pool.route(Order("g", lines, CUSTOMER[0], CUSTOMER[1]))
    model = pool.read_model(force=True)
    with pool.db.read() as conn:
        snapshot = take_snapshot(
            conn, "t", Selection(order_ids=("g",)), model.index, model.policy, now=clock()
        )
    assert snapshot.scenario is not None
    assert list(snapshot.scenario.orders["ship_group"]) == ["set", "set"]


# --- over HTTP ----------------------------------------------------------------------------


def test_the_daily_limit_over_http(db_url):
    import httpx

    from router.pool import Pool
    from tests.service.conftest import running_server
    from tests.service.test_reoptimizations_api import body
    from tests.service.test_waves_api import wait_for

    pool = Pool.open(db_url)
    try:
        seed_network(pool, {("W1", "A"): 1})
        pool.put_profile("default", {"daily_limits": {"node:S1": {"units": 2}}})
        key = pool.create_key("oms")
    finally:
        pool.close()
    with running_server(db_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)

        def route(order_id, where=CUSTOMER) -> list[str]:
            r = client.post("/v1/route", json=body(order_id, where))
            assert r.status_code == 200, r.text
            return [s["node_id"] for s in r.json()["shipments"]]

        assert route("far", FAR) == ["W1"]
        pool = Pool.open(db_url)
        try:
            pool.set_stock([SetRow("S1", "A", 3)], actor="test")
        finally:
            pool.close()
        assert route("other") == ["S1"]
        created = client.post("/v1/reoptimizations", json={"order_ids": ["far"], "max_moves": 1})
        assert created.status_code == 202, created.text
        url = f"/v1/reoptimizations/{created.json()['reoptimization_id']}"
        done = wait_for(lambda: (j := client.get(url).json())["state"] in ("ready", "failed") and j)
        assert done["state"] == "ready", done
        assert done["plan"]["orders_moved"] == 1 and done["plan"]["skipped"] == []
        applied = client.post(f"{url}/apply")
        assert applied.status_code == 200, applied.text
        # S1 has an A left and is cheaper for C, but its 2 units of today are taken.
        assert route("next") == ["W1"]


# --- both paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(("excluded", "new_node"), [("W", "S"), ("X", "W")])
def test_the_service_and_omniroute_reoptimize_decide_alike(
    pool, clock, tmp_path, excluded, new_node
):
    """o1 (market, at longitude 0) holds S (8) because W (5) had no stock when it was
    routed; W has its unit back. The market profile excludes W (binds: o1 stays) or
    a node that is not there (does not bind: o1 moves to W), in both paths."""
    import pandas as pd

    from router.pool.scenario_load import load_into_pool
    from router.reoptimize import reoptimize_scenario
    from router.scenario import load_scenario
    from tests.service.test_profiles import _naive
    from tests.test_profiles import AS_OF, NODES, write_profiled

    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=[("W", "a", 1), ("S", "a", 1)],
        orders=[("o1", "l1", "a", 1, 0.0, "market", "")],
        profiles={"market": {"exclude_nodes": [excluded]}},
        as_of=AS_OF,
    )
    scenario = load_scenario(folder)
    current = pd.DataFrame(
        [("o1", "l1", "S", 1)], columns=["order_id", "line_id", "node_id", "qty"]
    )
    batch = reoptimize_scenario(scenario, current, max_moves=1)
    assert list(batch.moves["new_nodes"]) == [new_node]

    load_into_pool(pool, scenario)
    clock.now = _naive(AS_OF)
    pool.set_stock([SetRow("W", "a", 0)], actor="test")
    pool.route(Order("o1", (OrderLine("l1", "a", 1),), 0.0, 0.0, channel="market"))
    assert held_nodes(pool, "o1") == ["S"]
    pool.set_stock([SetRow("W", "a", 1)], actor="test")
    job = plan_of(Reoptimizations(pool, ReoptimizationSettings(time_limit=10)), "o1")
    assert job.plan["orders_moved"] == batch.summary["orders_moved"]
    assert job.plan["after"]["cost"] == pytest.approx(batch.summary["after"]["cost"], abs=1e-6)
    jobs = Reoptimizations(pool)
    jobs.apply(job.job_id, actor="ops")
    assert held_nodes(pool, "o1") == [new_node]


# --- kits ---------------------------------------------------------------------------------


def test_a_reoptimization_keeps_a_kit_whole(tmp_path, pool):
    """Kit K = a + b (tests/test_kits.py): whole from S costs 8, split W + T 7; the kit
    held at S stays there (the kit rule binds without profiles, as in a wave)."""
    from router.pool.scenario_load import load_into_pool
    from router.scenario import load_scenario
    from tests.service.test_kits import kit_order
    from tests.test_kits import write_kitted

    load_into_pool(pool, load_scenario(write_kitted(tmp_path / "s")))
    pool.route(kit_order())
    assert held_nodes(pool, "o1") == ["S", "S"]
    job = plan_of(Reoptimizations(pool, ReoptimizationSettings(time_limit=10)), "o1")
    assert job.plan["skipped"] == [] and job.plan["orders"] == 1
    assert job.plan["orders_moved"] == 0
