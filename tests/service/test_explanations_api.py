"""GET /v1/orders/{id}/explanation over HTTP, on a real uvicorn server, on SQLite and
PostgreSQL: an order routed by /v1/route and an order routed by a wave are explained
from what they saw when they were routed; an unknown order is a 404 problem."""

from __future__ import annotations

import httpx
import pytest

from router.pool import Pool
from tests.service.conftest import running_server, seed_network
from tests.service.test_waves_api import FAR, PROBLEM, body, wait_for, wave_env  # noqa: F401


def _seeded(url: str) -> str:
    # W1: warehouse at the customer (10 + 1 = 11.00 a unit); S1: store 10 km away
    # (4 + 0.05 x 10 + 2 = 6.50 a unit). One unit of A and of B at each.
    pool = Pool.open(url)
    try:
        seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1, ("W1", "B"): 1, ("S1", "B"): 1})
        return pool.create_key("oms")
    finally:
        pool.close()


def test_explanations_of_route_and_wave_orders(db_url, wave_env):  # noqa: F811
    key = _seeded(db_url)
    with running_server(db_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)

        # /v1/route: B goes to S1 for 6.50; the next best is W1 for 11.00, 4.50 more,
        # and a shipping cut of 4.51 at W1 would have moved it.
        routed = client.post("/v1/route", json=body("r1", lines=(("l1", "B", 1),)))
        assert routed.status_code == 200, routed.text
        why = client.get("/v1/orders/r1/explanation")
        assert why.status_code == 200, why.text
        r1 = why.json()
        assert r1["source"] == "route" and r1["status"] == "filled"
        assert [s["node_id"] for s in r1["chosen"]] == ["S1"]
        assert r1["cost"]["total"] == pytest.approx(6.5, abs=1e-3)
        assert r1["alternatives"][0]["nodes"] == ["W1"]
        assert r1["alternatives"][0]["extra_cost"] == pytest.approx(4.5, abs=1e-3)
        (change,) = r1["counterfactuals"]
        assert (change["kind"], change["node_id"], change["verified"]) == ("cost", "W1", True)

        # A wave: "near" (at the customer) would take S1's A for 6.50, but "far"
        # (110 km north) needs it more: near ships from W1 and S1's stock binds.
        queued = client.post("/v1/orders", json=body("near", lines=(("l1", "A", 1),)))
        assert queued.status_code == 202, queued.text
        client.post("/v1/orders", json=body("far", FAR, lines=(("l1", "A", 1),)))
        wave_id = queued.json()["wave_id"]
        wait_for(lambda: client.get(f"/v1/waves/{wave_id}").json()["state"] == "done")
        near = client.get("/v1/orders/near/explanation").json()
        assert near["source"] == "wave"
        assert [s["node_id"] for s in near["chosen"]] == ["W1"]
        (taken,) = near["taken_away"]
        assert taken["nodes"] == ["S1"] and taken["cost"] == pytest.approx(6.5, abs=1e-3)
        (binding,) = taken["binding"]
        assert (binding["rule"], binding["node_id"], binding["sku"]) == ("stock", "S1", "A")
        assert binding["used_by_other_orders"] == 1
        assert near["counterfactuals"][0]["text"] == "1 more unit of A at S1"

        missing = client.get("/v1/orders/nope/explanation")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM
        assert "'nope'" in missing.json()["detail"]
        quoted = client.post("/v1/route", json=body("q1", quote_only=True))
        assert quoted.status_code == 200
        assert client.get("/v1/orders/q1/explanation").status_code == 404
        assert (
            client.get("/v1/orders/r1/explanation", headers={"X-API-Key": "bad"}).status_code == 401
        )
