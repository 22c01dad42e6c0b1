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


# --- routing profiles: the explanation knows the rules the order was routed by ------------------


def _route_and_explain(db_url: str, folder, order: dict) -> tuple[dict, dict]:
    """Load the scenario folder into the pool, route ``order`` by ``/v1/route`` and get
    its explanation, over HTTP."""
    from router.pool.scenario_load import load_into_pool
    from router.scenario import load_scenario

    pool = Pool.open(db_url)
    try:
        load_into_pool(pool, load_scenario(folder))
        key = pool.create_key("oms")
    finally:
        pool.close()
    with running_server(db_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        routed = client.post("/v1/route", json=order)
        assert routed.status_code == 200, routed.text
        why = client.get(f"/v1/orders/{order['order_id']}/explanation")
        assert why.status_code == 200, why.text
        return routed.json(), why.json()


def _order(lines, group_of: dict | None = None) -> dict:
    group_of = group_of or {}
    return {
        "order_id": "o1",
        "lines": [
            {
                "line_id": a,
                "sku": b,
                "qty": c,
                **({"ship_group": group_of[a]} if a in group_of else {}),
            }
            for a, b, c in lines
        ],
        "customer": {"lat": 0.0, "lon": 0.0},
    }


def _every_plan(why: dict) -> list[list[str]]:
    plans = [alt["nodes"] for alt in why["alternatives"] + why["taken_away"]]
    return plans + [change["new_nodes"] for change in why["counterfactuals"]]


def test_route_explanation_with_a_clearance_credit(db_url, tmp_path):
    # S ships at 6, less a credit of 1 on each of 2 units: 4; W at 5 is next, 1.00 more.
    from tests.test_profiles import CLEARANCE, write_clearance

    folder = write_clearance(tmp_path / "s", CLEARANCE, ("", "4"))
    routed, why = _route_and_explain(db_url, folder, _order([("l1", "a", 2)]))
    assert routed["cost"]["total"] == pytest.approx(4.0)
    assert why["cost"]["total"] == pytest.approx(routed["cost"]["total"])
    assert why["cost"]["handling"] == pytest.approx(-2.0)
    assert [s["node_id"] for s in why["chosen"]] == ["S"]
    assert why["alternatives"][0]["nodes"] == ["W"]
    assert why["alternatives"][0]["extra_cost"] == pytest.approx(1.0)
    (change,) = why["counterfactuals"]
    assert (change["kind"], change["node_id"], change["shipping_cut"]) == ("cost", "W", 1.01)


def test_route_explanation_with_a_split_cap(db_url, tmp_path):
    # Never split: W ships a (5), b unfilled (150); W + S (19) is never listed, S is
    # ruled out for b by the cap, and one more b at W ships both from W (5).
    from tests.test_explain import _split_cap_folder

    folder = _split_cap_folder(tmp_path, 1)
    routed, why = _route_and_explain(db_url, folder, _order([("l1", "a", 1), ("l2", "b", 1)]))
    assert routed["cost"]["total"] == pytest.approx(155.0)
    assert why["cost"]["total"] == pytest.approx(routed["cost"]["total"])
    assert [(a["nodes"], a["cost"]) for a in why["alternatives"]] == [(["S"], 158.0), ([], 300.0)]
    assert all(len(nodes) <= 1 for nodes in _every_plan(why))
    (line,) = why["unfilled_lines"]
    assert line["ruled_out"] == {"split_cap": [{"node_id": "S", "max_shipments": 1}]}
    (change,) = why["counterfactuals"]
    assert (change["text"], change["new_nodes"], change["new_cost"]) == (
        "1 more unit of b at W",
        ["W"],
        5.0,
    )


def test_route_explanation_with_a_ship_group(db_url, tmp_path):
    # a and b ship together: S (8) whole; W + T (7) would split the group and is not
    # listed; U (9) is next, and a shipping cut of 1.01 at U moves the group there.
    from tests.test_explain import _ship_group_folder

    folder = _ship_group_folder(tmp_path, "g")
    order = _order([("l1", "a", 1), ("l2", "b", 1)], {"l1": "g", "l2": "g"})
    routed, why = _route_and_explain(db_url, folder, order)
    assert routed["cost"]["total"] == pytest.approx(8.0)
    assert why["cost"]["total"] == pytest.approx(routed["cost"]["total"])
    assert [(a["nodes"], a["cost"]) for a in why["alternatives"]] == [(["U"], 9.0), ([], 300.0)]
    assert all(len(nodes) <= 1 for nodes in _every_plan(why))
    (change,) = why["counterfactuals"]
    assert (change["kind"], change["node_id"], change["new_nodes"]) == ("cost", "U", ["U"])


def test_wave_explanation_with_a_split_cap(db_url, wave_env, tmp_path):  # noqa: F811
    # The same order queued for a wave: the joint solve's context knows the cap too.
    from router.pool.scenario_load import load_into_pool
    from router.scenario import load_scenario
    from tests.test_explain import _split_cap_folder

    pool = Pool.open(db_url)
    try:
        load_into_pool(pool, load_scenario(_split_cap_folder(tmp_path, 1)))
        key = pool.create_key("oms")
    finally:
        pool.close()
    with running_server(db_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        queued = client.post("/v1/orders", json=_order([("l1", "a", 1), ("l2", "b", 1)]))
        assert queued.status_code == 202, queued.text
        wave_id = queued.json()["wave_id"]
        wait_for(lambda: client.get(f"/v1/waves/{wave_id}").json()["state"] == "done")
        why = client.get("/v1/orders/o1/explanation").json()
        assert why["source"] == "wave"
        assert [s["node_id"] for s in why["chosen"]] == ["W"]
        assert why["cost"]["total"] == pytest.approx(155.0)
        assert [(a["nodes"], a["cost"]) for a in why["alternatives"]] == [
            (["S"], 158.0),
            ([], 300.0),
        ]
        assert all(len(nodes) <= 1 for nodes in _every_plan(why))
