"""Waves through a real ``omniroute serve`` on loopback: lifecycle, the signed and retried
callback to a real HTTP receiver, bad input, and no oversell while ``/v1/route`` clients
race the wave for the same stock (SQLite one process, PostgreSQL two processes)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from router.pool import Pool
from router.pool.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.service.conftest import CUSTOMER, pg_schema_url, running_server, seed_network
from tests.service.test_concurrency import SKUS, check_invariants, seed_scarce_pool

SECRET = "wave-test-secret"
FAR = (32.3097, 121.4737)
PROBLEM = "application/problem+json"


def body(order_id, where=CUSTOMER, lines=(("l1", "A", 1),), **extra):
    return {
        "order_id": order_id,
        "lines": [{"line_id": a, "sku": b, "qty": c} for a, b, c in lines],
        "customer": {"lat": where[0], "lon": where[1]},
        **extra,
    }


@pytest.fixture
def wave_env(monkeypatch):
    """The server reads these: a 1 s window for channel web, callbacks signed and retried fast."""
    monkeypatch.setenv("OMNIROUTE_WAVE_WINDOWS", "web=1")
    monkeypatch.setenv("OMNIROUTE_WAVE_WINDOW_SECONDS", "3600")
    monkeypatch.setenv("OMNIROUTE_CALLBACK_SECRET", SECRET)
    monkeypatch.setenv("OMNIROUTE_CALLBACK_FIRST_DELAY", "0.2")


@contextmanager
def receiver(fail_first: int):
    """An HTTP server on loopback that answers 500 to the first ``fail_first`` posts."""
    received: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            data = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), data))
            self.send_response(500 if len(received) <= fail_first else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/routed", received
    finally:
        server.shutdown()
        server.server_close()


def wait_for(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def seeded(url: str) -> str:
    pool = Pool.open(url)
    try:
        seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
        return pool.create_key("oms")
    finally:
        pool.close()


def test_wave_lifecycle_and_signed_retried_callback(db_url, wave_env):
    key = seeded(db_url)
    with receiver(fail_first=1) as (hook, received), running_server(db_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        first = client.post("/v1/orders", json=body("near", callback_url=hook))
        assert first.status_code == 202, first.text
        queued = first.json()
        assert queued["state"] == "queued" and queued["replayed"] is False
        second = client.post("/v1/orders", json=body("far", FAR)).json()
        assert second["wave_id"] == queued["wave_id"]
        assert client.get("/v1/orders/near").json()["state"] in ("queued", "routed")

        wave = wait_for(
            lambda: (
                (w := client.get(f"/v1/waves/{queued['wave_id']}").json())["state"] == "done" and w
            )
        )
        assert wave["close_reason"] == "window" and wave["kpis"]["cost"] == pytest.approx(
            22.5, abs=0.01
        )
        assert wave["kpis"]["solve"]["status"] == "optimal"
        near = client.get("/v1/orders/near").json()
        assert near["state"] == "routed" and near["repaired"] is False
        (allocation,) = near["result"]["lines"][0]["allocations"]
        assert allocation["node_id"] == "W1"
        held = client.get("/v1/orders/near/reservations").json()["reservations"]
        assert [(r["reservation_id"], r["status"]) for r in held] == [
            (allocation["reservation_id"], "held")
        ]
        assert near["reservations"] == held

        # The receiver failed the first delivery; the retry came with a fresh valid signature.
        done = wait_for(
            lambda: (
                (o := client.get("/v1/orders/near").json())["callback"]["state"] == "delivered"
                and o
            )
        )
        assert done["callback"]["attempts"] == 2 and len(received) == 2
        for headers, data in received:
            assert verify(SECRET, headers[TIMESTAMP_HEADER], data, headers[SIGNATURE_HEADER])
            assert not verify(
                "another secret", headers[TIMESTAMP_HEADER], data, headers[SIGNATURE_HEADER]
            )
        event = json.loads(received[1][1])
        assert event["event"] == "order.routed" and event["order_id"] == "near"
        assert event["result"]["lines"] == near["result"]["lines"]
        assert client.get("/v1/orders/far").json()["callback"] is None


def test_close_on_demand_and_bad_input_over_http(sqlite_url, wave_env):
    key = seeded(sqlite_url)
    with running_server(sqlite_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        queued = client.post("/v1/orders", json=body("s1", channel="store")).json()
        closed = client.post(f"/v1/waves/{queued['wave_id']}/close")
        assert closed.status_code == 202
        assert (closed.json()["state"], closed.json()["close_reason"]) == ("closed", "demand")
        wait_for(lambda: client.get(f"/v1/waves/{queued['wave_id']}").json()["state"] == "done")
        assert client.get("/v1/orders/s1").json()["state"] == "routed"

        def refused(response, status, field=None):
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == PROBLEM
            if field is not None:
                assert response.json()["field"] == field

        refused(
            client.post("/v1/orders", json=body("x", lines=(("l1", "NOPE", 1),))),
            422,
            "lines[0].sku",
        )
        refused(
            client.post("/v1/orders", json=body("x", lines=(("l1", "A", 0),))), 422, "lines[0].qty"
        )
        refused(client.post("/v1/orders", json=body("x", color="red")), 422, "color")
        refused(
            client.post("/v1/orders", json=body("x", callback_url="ftp://h/x")), 422, "callback_url"
        )
        refused(client.post("/v1/orders", json=body("x", hold_seconds=0)), 422, "hold_seconds")
        refused(client.post("/v1/orders", json=body("s1", channel="store")), 409, "order_id")
        headers = {"Idempotency-Key": "k"}
        client.post("/v1/orders", json=body("y"), headers=headers)
        refused(
            client.post("/v1/orders", json=body("y", FAR), headers=headers), 422, "Idempotency-Key"
        )
        replay = client.post("/v1/orders", json=body("y"), headers=headers)
        assert replay.status_code == 202 and replay.json()["replayed"] is True
        refused(client.get("/v1/waves/nope"), 404)
        refused(client.post("/v1/waves/nope/close"), 404)
        refused(client.get("/v1/orders/nope"), 404)
        assert httpx.post(f"{base}/v1/orders", json=body("z")).status_code == 401
        assert client.get("/v1/orders/x").status_code == 404  # nothing was queued by a refusal


# --- no oversell while a wave races /v1/route clients ----------------------------------------

WAVE_ORDERS = 120
ROUTE_ORDERS = 160
ROUTE_CLIENTS = 16


def _random_body(rng, order_id):
    lines = [
        {"line_id": f"l{j}", "sku": rng.choice(SKUS), "qty": rng.randint(1, 3)}
        for j in range(rng.randint(1, 3))
    ]
    return {"order_id": order_id, "lines": lines, "customer": {"lat": 30.5, "lon": 120.1}}


async def _race_a_wave(bases: list[str], key: str) -> tuple[dict, dict]:
    rng = random.Random(5)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=bases[0], headers=headers, timeout=60) as client:
        wave_id = None
        for n in range(WAVE_ORDERS):
            r = await client.post("/v1/orders", json=_random_body(rng, f"w{n}"))
            assert r.status_code == 202, r.text
            wave_id = r.json()["wave_id"]
        routes = asyncio.Queue()
        for n in range(ROUTE_ORDERS):
            routes.put_nowait(_random_body(rng, f"r{n}"))
        statuses: dict[str, int] = {}

        async def route_worker(w: int) -> None:
            async with httpx.AsyncClient(
                base_url=bases[w % len(bases)], headers=headers, timeout=60
            ) as worker:
                while not routes.empty():
                    r = await worker.post("/v1/route", json=routes.get_nowait())
                    statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

        workers = [asyncio.create_task(route_worker(w)) for w in range(ROUTE_CLIENTS)]
        assert (await client.post(f"/v1/waves/{wave_id}/close")).status_code == 202
        await asyncio.gather(*workers)
        for _ in range(600):
            wave = (await client.get(f"/v1/waves/{wave_id}")).json()
            if wave["state"] == "done":
                return statuses, wave
            await asyncio.sleep(0.1)
    raise AssertionError("the wave was not solved")


def _run_wave_race(url: str, processes: int, monkeypatch) -> None:
    monkeypatch.setenv("OMNIROUTE_WAVE_WINDOW_SECONDS", "3600")
    key, initial = seed_scarce_pool(url)
    with running_server(url) as first:
        bases = [first]
        if processes == 2:
            with running_server(url) as second:
                bases.append(second)
                statuses, wave = asyncio.run(_race_a_wave(bases, key))
        else:
            statuses, wave = asyncio.run(_race_a_wave(bases, key))
    assert statuses == {"200": ROUTE_ORDERS}, statuses
    assert wave["kpis"]["orders_routed"] == WAVE_ORDERS and wave["solve_attempts"] == 1
    assert wave["kpis"]["unfilled_units"] > 0, "stock was not scarce: the race proves nothing"
    check_invariants(url, initial)


@pytest.mark.slow
def test_no_oversell_while_a_wave_races_route_clients_sqlite(sqlite_url, monkeypatch):
    _run_wave_race(sqlite_url, 1, monkeypatch)


@pytest.mark.slow
@pytest.mark.postgres
def test_no_oversell_while_a_wave_races_route_clients_postgres_two_processes(monkeypatch):
    with pg_schema_url() as url:
        _run_wave_race(url, 2, monkeypatch)


def test_serve_refuses_bad_wave_settings_naming_the_variable(sqlite_url, monkeypatch):
    import os
    import subprocess
    import sys

    from tests.service.conftest import REPO, SERVE_SCRIPT

    env = {
        **os.environ,
        "OMNIROUTE_DATABASE_URL": sqlite_url,
        "OMNIROUTE_WAVE_MAX_ORDERS": "0",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, "serve", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "OMNIROUTE_WAVE_MAX_ORDERS='0': must be a number >= 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_queued_orders_survive_a_killed_server(sqlite_url, monkeypatch):
    """SIGKILL the server with a wave open; the next server closes and solves it."""
    monkeypatch.setenv("OMNIROUTE_WAVE_WINDOWS", "web=3")
    key = seeded(sqlite_url)
    with running_server(sqlite_url, kill=True) as base:
        queued = httpx.post(
            f"{base}/v1/orders", json=body("near"), headers={"X-API-Key": key}, timeout=30
        ).json()
    with running_server(sqlite_url) as base:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        wait_for(lambda: client.get(f"/v1/waves/{queued['wave_id']}").json()["state"] == "done")
        near = client.get("/v1/orders/near").json()
        assert near["state"] == "routed" and near["reservations"][0]["status"] == "held"
