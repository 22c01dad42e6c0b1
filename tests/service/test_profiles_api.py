"""Routing profiles over HTTP, through a real uvicorn server on SQLite and PostgreSQL:
versions, a rejected profile leaving the previous one in force, routes using the
order's channel's profile, the promise flag, and bad requests as problem+json.

The network of conftest: the customer C sits on W1 (10 + 1 = 11 for one unit); S1 is
10 km away (4 + 0.5 + 2 = 6.5), so without a profile S1 serves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.service.conftest import served_clients
from tests.service.test_campaigns_api import assert_problem, route_body


@pytest.fixture
def served(db_url):
    with served_clients(db_url, {("W1", "A"): 50, ("S1", "A"): 50}) as clients:
        yield clients


def nodes_of(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["node_id"] for s in response.json()["shipments"]]


def test_put_get_versions_and_routes_use_the_channel_profile(served):
    admin, oms = served
    assert nodes_of(oms.post("/v1/route", json={**route_body("o1", 1), "quote_only": True})) == [
        "S1"
    ]
    first = admin.put("/v1/profiles/web", json={"exclude_nodes": ["S1"]})
    assert first.status_code == 200, first.text
    assert (first.json()["channel"], first.json()["version"]) == ("web", 1)
    assert nodes_of(oms.post("/v1/route", json=route_body("o2", 1))) == ["W1"]
    # Another channel has no profile (and there is no default one): cost alone.
    market = {**route_body("o3", 1), "channel": "market", "quote_only": True}
    assert nodes_of(oms.post("/v1/route", json=market)) == ["S1"]

    second = admin.put("/v1/profiles/web", json={"preset": "store_first"})
    assert second.json()["version"] == 2
    assert second.json()["profile"]["tiers"] == {"store": 0, "warehouse": 1}
    current = oms.get("/v1/profiles/web").json()
    assert (current["version"], current["profile"]["preset"]) == (2, "store_first")
    versions = oms.get("/v1/profiles/web/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["profile"] == {"exclude_nodes": ["S1"]}

    # A rejected profile names the field and leaves version 2 in force.
    bad = admin.put("/v1/profiles/web", json={"preset": "store_first", "tiers": {"store": -1}})
    body = assert_problem(bad, 422, "tiers.store", "profile")
    assert "must be a number >= 0" in body["detail"]
    assert oms.get("/v1/profiles/web").json()["version"] == 2
    assert len(oms.get("/v1/profiles/web/versions").json()["versions"]) == 2
    assert nodes_of(oms.post("/v1/route", json={**route_body("o4", 1), "quote_only": True})) == [
        "S1"
    ]


def test_promise_meets_or_flags_over_http(served):
    admin, oms = served
    bands = [
        {"max_km": 5, "warehouse": 1, "store": 1},
        {"max_km": None, "warehouse": 3, "store": 3},
    ]
    assert admin.put("/v1/profiles/web", json={"promise": {"bands": bands}}).status_code == 200
    today = datetime.now(UTC).date()
    # S1 (10 km) needs 3 days, W1 (0 km) 1 day.
    soon = {
        **route_body("p1", 1),
        "quote_only": True,
        "promised_date": str(today + timedelta(days=1)),
    }
    answer = oms.post("/v1/route", json=soon)
    assert nodes_of(answer) == ["W1"] and answer.json()["promise_late"] is False
    later = {
        **route_body("p2", 1),
        "quote_only": True,
        "promised_date": str(today + timedelta(days=5)),
    }
    answer = oms.post("/v1/route", json=later)
    assert nodes_of(answer) == ["S1"] and answer.json()["promise_late"] is False
    # Due today: no node can make it; routed at least cost anyway, and flagged.
    now = {**route_body("p3", 1), "promised_date": str(today)}
    answer = oms.post("/v1/route", json=now)
    assert nodes_of(answer) == ["S1"] and answer.json()["promise_late"] is True


BAD_PUTS = [
    ("/v1/profiles/web", {"preset": "cheapest"}, 422, "preset", "profile"),
    ("/v1/profiles/web", {"node_kinds": ["depot"]}, 422, "node_kinds[0]", "profile"),
    ("/v1/profiles/web", {"daily_limits": {"store": {"units": 5}}}, 422, "daily_limits", "profile"),
    (
        "/v1/profiles/web",
        {"calendars": {"store": {"timezone": "Nowhere/City"}}},
        422,
        "calendars.store.timezone",
        "profile",
    ),
    ("/v1/profiles/web", [1, 2], 422, "body", "dict_type"),
    ("/v1/profiles/bad$channel", {}, 422, "channel", "pattern"),
]


def test_bad_profile_requests_are_problems_naming_the_field(served):
    admin, oms = served
    for path, body, status, field, rule in BAD_PUTS:
        assert_problem(admin.put(path, json=body), status, field, rule)
    assert_problem(oms.get("/v1/profiles/web"), 404, "channel", "known_profile")
    assert oms.put("/v1/profiles/web", json={}).status_code == 403  # admins only
    assert_problem(oms.get("/v1/profiles/web/versions"), 404, "channel", "known_profile")


def test_node_groups_and_weekly_sales_over_http(served):
    admin, oms = served
    # A third store next to the customer, in group "outlet", cheap to ship from.
    node = {
        "node_id": "S3",
        "kind": "store",
        "lat": 31.2304,
        "lon": 121.4837,
        "ship_fixed": 3.0,
        "handling_per_unit": 2.0,
        "node_group": "outlet",
    }
    created = admin.post("/v1/nodes", json=node)
    assert created.status_code == 201, created.text
    assert created.json()["node_group"] == "outlet"
    feed = {
        "rows": [
            {"node_id": "S3", "sku": "A", "on_hand": 50},
            {"node_id": "W1", "sku": "A", "on_hand": 50, "weekly_sales": 1.0},
        ]
    }
    assert admin.post("/v1/inventory/set", json=feed).status_code == 200
    quote = {**route_body("g1", 1), "quote_only": True}
    assert nodes_of(oms.post("/v1/route", json=quote)) == ["S3"]
    # Outlets may not serve the web channel.
    admin.put("/v1/profiles/web", json={"node_groups": ["main"], "node_kinds": ["warehouse"]})
    assert nodes_of(oms.post("/v1/route", json=quote)) == []
    admin.put("/v1/profiles/web", json={"exclude_nodes": ["S3"]})
    assert nodes_of(oms.post("/v1/route", json=quote)) == ["S1"]
    # W1 holds 50 units, selling 1 a week: above 8 weeks, each unit earns 6:
    # W1 costs 10 + 1 - 6 = 5 < S1's 6.5.
    admin.put(
        "/v1/profiles/web",
        json={"exclude_nodes": ["S3"], "clearance": {"weeks_of_supply": 8, "credit_per_unit": 6}},
    )
    assert nodes_of(oms.post("/v1/route", json=quote)) == ["W1"]
    patched = admin.patch("/v1/nodes/S3", json={"node_group": None})
    assert patched.status_code == 200 and patched.json()["node_group"] is None


def test_ship_group_over_http(served):
    admin, oms = served
    admin.put("/v1/profiles/web", json={})
    body = {
        "order_id": "g1",
        "quote_only": True,
        "lines": [
            {"line_id": "l1", "sku": "A", "qty": 1, "ship_group": "set"},
            {"line_id": "l2", "sku": "A", "qty": 1},
        ],
        "customer": route_body("x", 1)["customer"],
    }
    assert_problem(
        oms.post("/v1/route", json=body), 422, "lines[1].ship_group", "one_ship_group_per_sku"
    )
    body["lines"][1]["ship_group"] = "set"
    assert nodes_of(oms.post("/v1/route", json=body)) == ["S1"]
