"""Re-optimization through a real ``omniroute serve`` on loopback: the job's life over HTTP
(SQLite and PostgreSQL), a queued job that survives a restart, bad input for each endpoint.

The network and orders of ``test_reoptimizations``: ``near`` holds S1, ``far`` holds W1;
jointly they swap, 23.5 -> 22.5.
"""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from router.pool import Pool
from router.pool.inventory import AdjustRow
from router.pool.reoptimizations import ReoptimizationRequest, Reoptimizations, Selection
from tests.service.conftest import CUSTOMER, running_server, seed_network
from tests.service.test_waves import assert_invariant
from tests.service.test_waves_api import wait_for

FAR = (32.3097, 121.4737)
PROBLEM = "application/problem+json"


def body(order_id, where=CUSTOMER):
    return {
        "order_id": order_id,
        "lines": [{"line_id": "l1", "sku": "A", "qty": 1}],
        "customer": {"lat": where[0], "lon": where[1]},
    }


def seeded(url: str) -> str:
    pool = Pool.open(url)
    try:
        seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
        return pool.create_key("oms")
    finally:
        pool.close()


def route_both(client: httpx.Client) -> None:
    for order_id, where in (("near", CUSTOMER), ("far", FAR)):
        r = client.post("/v1/route", json=body(order_id, where))
        assert r.status_code == 200, r.text


def held(client: httpx.Client, order_id: str) -> list[str]:
    listed = client.get(f"/v1/orders/{order_id}/reservations").json()["reservations"]
    return [r["node_id"] for r in listed if r["status"] == "held"]


def assert_problem(response, status, field=None, rule=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    if field is not None:
        assert problem["field"] == field, problem
    if rule is not None:
        assert problem["rule"] == rule, problem
    return problem


def test_reoptimization_lifecycle_over_http(db_url):
    key = seeded(db_url)
    with running_server(db_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        route_both(client)
        created = client.post("/v1/reoptimizations", json={"channel": "web", "max_moves": "100%"})
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["state"] in ("queued", "running", "ready")
        assert created.headers["location"] == f"/v1/reoptimizations/{job['reoptimization_id']}"
        url = f"/v1/reoptimizations/{job['reoptimization_id']}"

        done = wait_for(lambda: (j := client.get(url).json())["state"] in ("ready", "failed") and j)
        assert done["state"] == "ready", done
        assert done["progress"]["phase"] == "done"
        assert done["progress"]["best_cost"] == pytest.approx(22.5, abs=0.01)
        plan = done["plan"]
        assert (plan["orders_moved"], plan["gap"]) == (2, 0.0)
        assert plan["before"]["cost"] - plan["after"]["cost"] == pytest.approx(1.0, abs=0.01)

        moves = client.get(done["moves_url"])
        assert moves.status_code == 200 and moves.headers["content-type"].startswith("text/csv")
        assert "attachment" in moves.headers["content-disposition"]
        rows = {r["order_id"]: r for r in csv.DictReader(io.StringIO(moves.text))}
        assert (rows["near"]["old_nodes"], rows["near"]["new_nodes"]) == ("S1", "W1")
        assert held(client, "near") == ["S1"]  # nothing changes before apply

        applied = client.post(f"{url}/apply")
        assert applied.status_code == 200, applied.text
        assert applied.json()["state"] == "applied"
        assert held(client, "near") == ["W1"] and held(client, "far") == ["S1"]
        again = client.post(f"{url}/apply")
        assert_problem(again, 409, field="reoptimization_id", rule="already_applied")
        assert held(client, "near") == ["W1"]
    pool = Pool.open(db_url)
    try:
        assert_invariant(pool)
    finally:
        pool.close()


def test_apply_refused_over_http_after_a_route_took_touched_stock(sqlite_url):
    key = seeded(sqlite_url)
    pool = Pool.open(sqlite_url)
    pool.adjust_stock([AdjustRow("W1", "A", 1)], actor="t")
    pool.close()
    with running_server(sqlite_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        route_both(client)
        job = client.post(
            "/v1/reoptimizations", json={"order_ids": ["near", "far"], "max_moves": 2}
        )
        url = f"/v1/reoptimizations/{job.json()['reoptimization_id']}"
        wait_for(lambda: client.get(url).json()["state"] == "ready")
        assert client.post("/v1/route", json=body("late")).status_code == 200  # takes W1
        refused = client.post(f"{url}/apply")
        problem = assert_problem(refused, 409, field="balances", rule="unchanged_since_snapshot")
        assert "'W1', 'A'" in problem["detail"]
        assert held(client, "near") == ["S1"] and held(client, "far") == ["W1"]
        assert client.get(url).json()["state"] == "ready"


def test_a_queued_job_survives_a_restart(sqlite_url):
    key = seeded(sqlite_url)
    with running_server(sqlite_url) as base:
        route_both(httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30))
    # Queued while no server runs (as if the server had stopped right after the 202).
    pool = Pool.open(sqlite_url)
    try:
        job = Reoptimizations(pool).create(
            ReoptimizationRequest(Selection(channel="web"), max_moves=2), actor="ops"
        )
    finally:
        pool.close()
    assert job.state == "queued"
    with running_server(sqlite_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        url = f"/v1/reoptimizations/{job.job_id}"
        done = wait_for(lambda: (j := client.get(url).json())["state"] == "ready" and j)
        assert done["plan"]["orders_moved"] == 2 and done["attempts"] == 1


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({"max_moves": 2}, "body", "selector_required"),
        ({"channel": "web"}, "max_moves", "churn_rule_required"),
        ({"channel": "web", "max_moves": "ten"}, "max_moves", "max_moves_format"),
        ({"channel": "web", "max_moves": "150%"}, "max_moves", "share_at_most_100"),
        ({"channel": "web", "max_moves": -1}, "max_moves", "max_moves_format"),
        ({"channel": "web", "max_moves": True}, "max_moves", "max_moves_format"),
        ({"channel": "web", "max_moves": 1.5}, "max_moves", "max_moves_format"),
        ({"channel": "web", "move_cost": -1}, "move_cost", None),
        ({"channel": "web", "move_cost": 1, "time_limit": 0}, "time_limit", None),
        ({"channel": "web", "move_cost": 1, "time_limit": 601}, "time_limit", None),
        ({"node_ids": ["W1", "NOPE"], "move_cost": 1}, "node_ids[1]", "known_node"),
        ({"node_ids": [], "move_cost": 1}, "node_ids", None),
        ({"order_ids": ["a b"], "move_cost": 1}, "order_ids[0]", None),
        ({"created_before": "2026-01-01T00:00:00", "move_cost": 1}, "created_before", None),
        ({"channel": "web", "move_cost": 1, "extra": 1}, "extra", None),
    ],
)
def test_bad_requests_name_the_field_and_create_nothing(sqlite_url, payload, field, rule):
    key = seeded(sqlite_url)
    with running_server(sqlite_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        assert_problem(client.post("/v1/reoptimizations", json=payload), 422, field, rule)
    pool = Pool.open(sqlite_url)
    try:
        assert Reoptimizations(pool).counts() == {}
    finally:
        pool.close()


def test_unknown_jobs_and_plans_not_ready(sqlite_url):
    key = seeded(sqlite_url)
    pool = Pool.open(sqlite_url)
    try:  # a job that no server has run yet
        job = Reoptimizations(pool).create(
            ReoptimizationRequest(Selection(channel="web"), max_moves=2), actor="ops"
        )
    finally:
        pool.close()
    with running_server(sqlite_url, args=()) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        for path in ("", "/moves.csv"):
            assert_problem(client.get(f"/v1/reoptimizations/nope{path}"), 404, "reoptimization_id")
        assert_problem(client.post("/v1/reoptimizations/nope/apply"), 404, "reoptimization_id")
        assert client.get(f"/v1/reoptimizations/{job.job_id}").status_code == 200
        assert (
            client.get("/v1/reoptimizations/nope", headers={"X-API-Key": "bad"}).status_code == 401
        )


def test_a_job_running_when_its_server_is_killed_is_run_again(sqlite_url, tmp_path, monkeypatch):
    """SIGKILL the server while a job solves (2,000 held orders, 6 s limit); the next
    server takes the job over once its claim lapses (1 s) and runs it from the start."""
    from benchmarks.reoptimize_service import scenario_orders
    from benchmarks.route_latency import loaded_pool
    from router.generate import generate_scenario

    monkeypatch.setenv("OMNIROUTE_REOPT_LEASE_SECONDS", "1")
    folder = tmp_path / "scenario"
    generate_scenario(folder, orders=2000, stores=100, warehouses=12, skus=300, seed=1)
    pool, _ = loaded_pool(sqlite_url, folder)
    try:
        for order in scenario_orders(folder):
            pool.route(order)
        key = pool.create_key("oms")
    finally:
        pool.close()
    with running_server(sqlite_url, kill=True) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        job = client.post(
            "/v1/reoptimizations", json={"channel": "web", "max_moves": "10%", "time_limit": 6}
        ).json()
        url = f"/v1/reoptimizations/{job['reoptimization_id']}"
        wait_for(
            lambda: (
                (j := client.get(url).json())["state"] == "running"
                and j["progress"]["phase"] not in ("queued", "snapshot")
            )
        )
    with running_server(sqlite_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        done = wait_for(lambda: (j := client.get(url).json())["state"] == "ready" and j, 120)
        assert done["attempts"] == 2
        assert 0 < done["plan"]["orders_moved"] <= done["plan"]["max_moves"]
        assert done["plan"]["after"]["cost"] < done["plan"]["before"]["cost"]
