"""Channel shares through both paths (the batch on a scenario folder, the single order
on the same network loaded into the pool), on SQLite and PostgreSQL; the channels'
sellable quantities, low-stock alerts, and the API.

W (warehouse, ship 5) and S (store, ship 8) hold 5 units of ``a`` each: the pool holds 10.
"""

from __future__ import annotations

import pytest

from router.pool.inventory import AdjustRow
from router.pool.routing import Order, OrderLine
from router.pool.scenario_load import load_into_pool
from router.scenario import load_scenario
from tests.service.conftest import CUSTOMER, seed_network, served_clients
from tests.service.test_campaigns_api import assert_problem
from tests.service.test_profiles import WEDNESDAY_10Z, _naive
from tests.test_channels import POOL, filled, web_order
from tests.test_profiles import NODES, write_profiled


def single_filled(pool, clock, folder, order_id="o1", channel="web", qty=5) -> int:
    load_into_pool(pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    order = Order(order_id, (OrderLine("l1", "a", qty),), lat=0.0, lon=0.0, channel=channel)
    result = pool.route(order, quote_only=True)
    return sum(a.qty for line in result.lines for a in line.allocations)


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        ({"web": {"channel_share": 0.3}}, 3),
        ({"web": {"channel_share": 0.5}}, 5),
        ({"market": {"reserved": {"a": 8}}}, 2),
        ({"market": {"reserved": {"a": 4}}}, 5),
        ({"web": {"channel_share": 0.5, "reserved": {"a": 1}}}, 5),
    ],
)
def test_channel_share_gives_the_same_answer_in_both_paths(
    profiles, expected, tmp_path, pool, clock
):
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=POOL, orders=[web_order(5)], profiles=profiles
    )
    assert filled(folder, tmp_path) == {"o1": expected}
    assert single_filled(pool, clock, folder) == expected


def test_the_withheld_units_cost_as_unfilled(tmp_path, sqlite_pool, clock):
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=POOL,
        orders=[web_order(5)],
        profiles={"web": {"channel_share": 0.3}},
    )
    from router.run import solve_folder

    batch = solve_folder(folder, tmp_path / "out").summary["total_cost"]
    load_into_pool(sqlite_pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    result = sqlite_pool.route(
        Order("o1", (OrderLine("l1", "a", 5),), lat=0.0, lon=0.0, channel="web"), quote_only=True
    )
    assert result.status == "partial" and result.cost.unfilled_units == 2
    assert result.cost.total == pytest.approx(batch)  # 5 + 3 x 0 + 2 x 150


def test_routes_use_up_the_share_as_the_pool_empties(tmp_path, pool, clock):
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=POOL,
        orders=[web_order(1)],
        profiles={"web": {"channel_share": 0.5}},
    )
    load_into_pool(pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    got = []
    for i in range(4):
        order = Order(f"r{i}", (OrderLine("l1", "a", 3),), lat=0.0, lon=0.0, channel="web")
        got.append(pool.route(order).cost.unfilled_units)
    # sellable: 5 of 10 -> 3 routed; 3 of 7 -> 3; 2 of 4 -> 2; 1 of 2 -> 1
    assert got == [0, 0, 1, 2]


def test_channel_availability_sums_and_alerts(pool, clock):
    seed_network(pool, {("W1", "A"): 6, ("S1", "A"): 4, ("W1", "B"): 1})
    pool.put_profile("web", {"channel_share": 0.5, "low_stock_threshold": {"*": 3, "B": 0}})
    pool.put_profile("market", {"channel_share": 0.5, "reserved": {"A": 2}})
    web = {s.sku: s for s in pool.channel_availability("web")}
    market = {s.sku: s for s in pool.channel_availability("market", ["A"])}
    assert (web["A"].pooled_available, web["A"].sellable, market["A"].sellable) == (10, 4, 6)
    assert web["A"].sellable + market["A"].sellable == 10  # shares sum to the pool
    assert (market["A"].reserved, web["A"].low, web["B"].low) == (2, False, False)
    assert pool.alerts() == []

    # 6 units sold at the till: pool 4, unreserved 2, web sees 1 < 3: an alert
    pool.adjust_stock([AdjustRow("W1", "A", -6)], actor="test")
    open_ = pool.alerts()
    assert [(a.channel, a.sku, a.sellable, a.threshold) for a in open_] == [("web", "A", 1, 3)]
    assert pool.alert_counts() == {"web": 1}
    pool.adjust_stock([AdjustRow("S1", "A", -1)], actor="test")
    assert len(pool.alerts(channel="web")) == 1  # still one open alert
    # restocked: cleared
    pool.adjust_stock([AdjustRow("W1", "A", 20)], actor="test")
    assert pool.alerts() == []
    assert [a.cleared_at is not None for a in pool.alerts(state="all")] == [True]

    # a route that takes the channel below its threshold raises it too
    order = Order("o1", (OrderLine("l1", "A", 5),), *CUSTOMER, channel="web")
    pool.route(order)  # pool 23 -> 18: web sees floor(16 / 2) = 8
    assert pool.alerts() == []
    for i in range(2):
        pool.route(Order(f"o{i + 2}", (OrderLine("l1", "A", 8),), *CUSTOMER, channel="web"))
    # 18 - 8 = 10 -> web 4, then it may sell 4 only: 10 - 4 = 6 -> web 2 < 3
    assert [(a.channel, a.sellable) for a in pool.alerts()] == [("web", 2)]


# --- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def served(db_url):
    with served_clients(db_url, {("W1", "A"): 6, ("S1", "A"): 4}) as clients:
        yield clients


def test_channel_shares_over_http(served):
    admin, oms = served
    bad = admin.put("/v1/profiles/web", json={"channel_share": 1.2})
    assert_problem(bad, 422, "channel_share", "profile")
    bad = admin.put("/v1/profiles/default", json={"reserved": {"A": 1}})
    assert_problem(bad, 422, "reserved", "profile")
    put = admin.put("/v1/profiles/web", json={"channel_share": 0.3, "low_stock_threshold": 3})
    assert put.status_code == 200, put.text

    found = oms.get("/v1/channels/web/availability", params={"sku": "A"})
    assert found.status_code == 200, found.text
    row = found.json()["skus"][0]
    assert (row["pooled_available"], row["sellable"], row["low"]) == (10, 3, False)
    assert oms.get("/v1/channels/web/availability").json()["skus"][0]["sku"] == "A"
    assert oms.get("/v1/channels/web/availability", params={"sku": "Z"}).status_code == 422

    body = {
        "order_id": "o1",
        "lines": [{"line_id": "l1", "sku": "A", "qty": 5}],
        "customer": {"lat": CUSTOMER[0], "lon": CUSTOMER[1]},
    }
    routed = oms.post("/v1/route", json=body).json()
    assert (routed["status"], routed["cost"]["unfilled_units"]) == ("partial", 2)
    # pool 7: web sees floor(2.1) = 2 < 3: an alert, listed and counted
    alerts = oms.get("/v1/alerts").json()["alerts"]
    assert [(a["channel"], a["sku"], a["sellable"]) for a in alerts] == [("web", "A", 2)]
    assert len(oms.get("/v1/channels/web/alerts").json()["alerts"]) == 1
    assert oms.get("/v1/channels/market/alerts").json()["alerts"] == []
    metrics = oms.get("/metrics").text
    assert 'omniroute_low_stock_alerts_open{channel="web"} 1' in metrics
