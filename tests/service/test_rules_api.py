"""Rejections and returns through a real uvicorn server on loopback, on SQLite and
PostgreSQL: the part moves and the rest stays, retries with the same key move nothing
again, returns come back on receipt, and bad input is problem+json naming the field
(with nothing changed).

The network of conftest: the customer C sits on W1 (one unit: 10 + 1 = 11); S1 is
10 km away (4 + 0.5 + 2 = 6.5), so S1 serves first.
"""

from __future__ import annotations

import httpx
import pytest

from router.pool import Pool
from tests.service.conftest import running_server, seed_network, served_clients
from tests.service.test_campaigns_api import assert_problem, layers, route_body


@pytest.fixture
def served(db_url):
    with served_clients(db_url, {("W1", "A"): 5, ("S1", "A"): 5}) as clients:
        yield clients


def held(client, order_id):
    found = client.get(f"/v1/orders/{order_id}/reservations").json()["reservations"]
    return sorted((r["node_id"], r["qty"]) for r in found if r["status"] == "held")


def test_rejection_moves_the_part_once_per_key(served):
    admin, oms = served
    assert oms.post("/v1/route", json=route_body("o1", 3)).status_code == 200
    assert held(oms, "o1") == [("S1", 3)]
    body = {"node_id": "S1", "line_id": "l1", "qty": 2, "kind": "short_pick", "reason": "bin empty"}
    key = {"Idempotency-Key": "rej-1"}
    first = oms.post("/v1/orders/o1/rejections", json=body, headers=key)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["status"], answer["rerouted"], answer["unfilled"]) == ("rerouted", 2, 0)
    assert [a["node_id"] for a in answer["reroute"]["lines"][0]["allocations"]] == ["W1"]
    again = oms.post("/v1/orders/o1/rejections", json=body, headers=key).json()
    assert again["replayed"] and again["rejection_id"] == answer["rejection_id"]
    assert held(oms, "o1") == [("S1", 1), ("W1", 2)]
    assert (layers(admin, "S1")["reserved"], layers(admin, "W1")["reserved"]) == (1, 2)
    listed = oms.get("/v1/orders/o1/rejections").json()["rejections"]
    assert [r["rejection_id"] for r in listed] == [answer["rejection_id"]]
    entries = admin.get("/v1/inventory/W1/A/ledger").json()["entries"]
    assert [e["movement"] for e in entries if e["ref"] == answer["rejection_id"]] == ["reserve"]
    metrics = admin.get("/metrics").text  # the replay is not counted again
    assert 'omniroute_rejections_total{kind="short_pick",outcome="rerouted"} 1.0' in metrics


def test_rejection_nobody_else_can_serve_is_unfilled(served):
    admin, oms = served
    oms.post("/v1/route", json=route_body("o1", 5))  # S1's 5 units
    oms.post("/v1/route", json=route_body("o2", 5))  # W1's 5 units
    answer = oms.post(
        "/v1/orders/o1/rejections", json={"node_id": "S1", "line_id": "l1", "qty": 5}
    ).json()
    assert (answer["status"], answer["unfilled"]) == ("unfilled", 5)
    assert layers(admin, "S1")["available"] == 5 and layers(admin, "W1")["available"] == 0


BAD_REJECTIONS = [
    ("/v1/orders/nope/rejections", {}, 404, "order_id", "known_order"),
    ("/v1/orders/o1/rejections", {"line_id": "l9"}, 422, "line_id", "known_line"),
    ("/v1/orders/o1/rejections", {"node_id": "ZZ"}, 422, "node_id", "known_node"),
    ("/v1/orders/o1/rejections", {"node_id": "W1"}, 422, "node_id", "node_holds_line"),
    ("/v1/orders/o1/rejections", {"qty": 3}, 422, "qty", "within_reserved"),
    ("/v1/orders/o1/rejections", {"qty": 0}, 422, "qty", "greater_than_equal"),
    ("/v1/orders/o1/rejections", {"kind": "lost"}, 422, "kind", "literal_error"),
]


def test_bad_rejections_are_problems_naming_the_field(served):
    admin, oms = served
    oms.post("/v1/route", json=route_body("o1", 2))
    for path, body, status, field, rule in BAD_REJECTIONS:
        request = {"node_id": "S1", "line_id": "l1", "qty": 1, **body}
        assert_problem(oms.post(path, json=request), status, field, rule)
    assert held(oms, "o1") == [("S1", 2)]
    assert oms.get("/v1/orders/o1/rejections").json()["rejections"] == []
    assert layers(admin, "S1")["reserved"] == 2


def test_return_is_chosen_then_received_into_the_pool(served):
    admin, oms = served
    oms.post("/v1/route", json=route_body("o1", 2))
    oms.post("/v1/orders/o1/commit")
    created = oms.post("/v1/returns", json={"order_id": "o1", "line_id": "l1", "qty": 2})
    assert created.status_code == 201, created.text
    ret = created.json()
    assert (ret["node_id"], ret["chosen_by"], ret["state"]) == ("S1", "nearest_store", "expected")
    before = layers(admin, "S1")
    receipt = {"sellable": 1, "unsellable": 1}
    received = oms.post(f"/v1/returns/{ret['return_id']}/receipt", json=receipt)
    assert received.status_code == 200 and received.json()["state"] == "received"
    repeat = oms.post(f"/v1/returns/{ret['return_id']}/receipt", json=receipt)
    assert repeat.status_code == 200 and repeat.json()["replayed"]
    metrics = admin.get("/metrics").text
    for step, units in (("expected", 2), ("sellable", 1), ("unsellable", 1)):
        assert f'omniroute_returned_units_total{{step="{step}"}} {units}.0' in metrics
    after = layers(admin, "S1")
    assert after["on_hand"] == before["on_hand"] + 2
    assert after["unsellable"] == before["unsellable"] + 1
    assert after["available"] == before["available"] + 1
    assert oms.get(f"/v1/returns/{ret['return_id']}").json()["sellable"] == 1
    warehouse = oms.post(
        "/v1/returns",
        json={"order_id": "o1", "line_id": "l1", "qty": 1, "prefer": "warehouse"},
    )
    assert_problem(warehouse, 422, "qty", "within_shipped")  # both units came back already


def test_bad_returns_and_receipts_are_problems_naming_the_field(served):
    admin, oms = served
    oms.post("/v1/route", json=route_body("o1", 2))
    oms.post("/v1/orders/o1/commit")
    base = {"order_id": "o1", "line_id": "l1", "qty": 1}
    cases = [
        ({"order_id": "nope"}, 404, "order_id", "known_order"),
        ({"line_id": "l9"}, 422, "line_id", "known_line"),
        ({"qty": 3}, 422, "qty", "within_shipped"),
        ({"node_id": "ZZ"}, 422, "node_id", "known_node"),
        ({"prefer": "moon"}, 422, "prefer", "literal_error"),
        ({"customer": {"lat": 91, "lon": 0}}, 422, "customer.lat", "less_than_equal"),
    ]
    for change, status, field, rule in cases:
        assert_problem(oms.post("/v1/returns", json={**base, **change}), status, field, rule)
    ret = oms.post("/v1/returns", json=base).json()
    path = f"/v1/returns/{ret['return_id']}/receipt"
    assert_problem(
        oms.post(path, json={"sellable": 2, "unsellable": 0}),
        422,
        "sellable",
        "receipt_matches_return",
    )
    assert_problem(
        oms.post(path, json={"sellable": -1, "unsellable": 2}),
        422,
        "sellable",
        "greater_than_equal",
    )
    assert_problem(
        oms.post("/v1/returns/nope/receipt", json={"sellable": 1, "unsellable": 0}),
        404,
        "return_id",
        "known_return",
    )
    assert oms.get(f"/v1/returns/{ret['return_id']}").json()["state"] == "expected"
    assert layers(admin, "S1")["on_hand"] == 3


def test_racing_rejections_and_routes_never_oversell(db_url):
    """20 orders hold S1's units; S1 is paused, then every order is rejected twice at
    once (two keys) while 10 new orders race for W1's 10 units, the only stock left in
    reach. Each rejection moves once, W1 is never oversold, the ledger adds up.
    PostgreSQL runs two API processes on the one database."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from router.pool.schema import balances, ledger, reservations

    pool = Pool.open(db_url)
    seed_network(pool, {("W1", "A"): 10, ("S1", "A"): 20})
    oms_key = pool.create_key("oms")
    admin_key = pool.create_key("admin")
    pool.close()
    workers = 2 if db_url.startswith("postgresql") else 1
    with (
        running_server(db_url, workers=workers) as base,
        httpx.Client(base_url=base, headers={"X-API-Key": oms_key}, timeout=60) as oms,
    ):
        for i in range(20):
            assert oms.post("/v1/route", json=route_body(f"o{i}", 1)).status_code == 200
        admin = {"Authorization": f"Bearer {admin_key}"}
        assert oms.post("/v1/nodes/S1/pause", headers=admin).status_code == 200

        def reject(job):
            i, copy = job
            body = {"node_id": "S1", "line_id": "l1", "qty": 1}
            key = {"Idempotency-Key": f"rej-{i}-{copy}"}
            return oms.post(f"/v1/orders/o{i}/rejections", json=body, headers=key)

        def route(i):
            return oms.post("/v1/route", json=route_body(f"new{i}", 1))

        with ThreadPoolExecutor(16) as executor:
            rejected = list(executor.map(reject, [(i, c) for i in range(20) for c in (0, 1)]))
            routed = list(executor.map(route, range(10)))
    moved = [r.json() for r in rejected if r.status_code == 200]
    refused = [r.json() for r in rejected if r.status_code != 200]
    assert len(moved) == 20 and {m["order_id"] for m in moved} == {f"o{i}" for i in range(20)}
    assert {(p["status"], p["rule"]) for p in refused} == {(422, "node_holds_line")}
    new_units = sum(r.json()["cost"]["unfilled_units"] == 0 for r in routed)
    assert sum(m["rerouted"] for m in moved) + new_units == 10  # W1's units, no more
    pool = Pool.open(db_url)
    try:
        with pool.db.read() as conn:
            for b in conn.execute(select(balances)).all():
                held = conn.execute(
                    select(func.coalesce(func.sum(reservations.c.qty), 0)).where(
                        reservations.c.node_pk == b.node_pk,
                        reservations.c.sku == b.sku,
                        reservations.c.status == "held",
                    )
                ).scalar_one()
                in_ledger = conn.execute(
                    select(func.sum(ledger.c.d_reserved)).where(
                        ledger.c.node_pk == b.node_pk, ledger.c.sku == b.sku
                    )
                ).scalar_one()
                assert b.reserved == held == in_ledger
                assert b.on_hand - b.unsellable - b.safety_stock - b.reserved - b.locked >= 0
    finally:
        pool.close()
