"""The never-oversell invariant under a real race: uvicorn servers on loopback, many
concurrent HTTP clients, scarce stock (1 to 5 units per pair) spread over several nodes.

SQLite with one API process; PostgreSQL with two API processes on one database.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import select

from router.pool import Pool
from router.pool.inventory import SetRow
from router.pool.nodes import NodeSpec
from router.pool.schema import balances, nodes, reservations
from tests.service.conftest import pg_schema_url, running_server

SKUS = [f"SKU{i}" for i in range(12)]
CLIENTS = 32
ORDERS = 480


def seed_scarce_pool(url: str, seed: int = 7) -> tuple[str, dict[tuple[str, str], int]]:
    rng = random.Random(seed)
    pool = Pool.open(url)
    stock = {}
    for i in range(6):
        pool.create_node(
            NodeSpec(
                f"N{i}",
                "store" if i else "warehouse",
                30 + i * 0.2,
                120.0,
                ship_fixed=2 + i,
                ship_per_km=0.01,
                handling_per_unit=1.0,
            )
        )
        for sku in SKUS:
            if rng.random() < 0.6:
                stock[(f"N{i}", sku)] = rng.randint(1, 5)
    pool.set_stock([SetRow(n, s, q) for (n, s), q in stock.items()], actor="test")
    key = pool.create_key("oms")
    pool.close()
    return key, stock


async def race(bases: list[str], key: str, seed: int = 11) -> dict[str, int]:
    """CLIENTS workers share ORDERS orders; a few release their order right away."""
    rng = random.Random(seed)
    orders = []
    for n in range(ORDERS):
        lines = [
            {"line_id": f"l{j}", "sku": rng.choice(SKUS), "qty": rng.randint(1, 3)}
            for j in range(rng.randint(1, 3))
        ]
        orders.append(
            {"order_id": f"o{n}", "lines": lines, "customer": {"lat": 30.5, "lon": 120.1}}
        )
    queue: asyncio.Queue = asyncio.Queue()
    for n, body in enumerate(orders):
        queue.put_nowait((n, body))
    outcomes: dict[str, int] = defaultdict(int)
    headers = {"Authorization": f"Bearer {key}"}

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(
            base_url=bases[w % len(bases)], headers=headers, timeout=30
        ) as client:
            while not queue.empty():
                n, body = queue.get_nowait()
                r = await client.post("/v1/route", json=body)
                outcomes[str(r.status_code)] += 1
                if r.status_code == 200:
                    outcomes[r.json()["status"]] += 1
                    if n % 10 == 0:
                        rel = await client.post(f"/v1/orders/{body['order_id']}/release")
                        outcomes[f"release {rel.status_code}"] += 1

    await asyncio.gather(*(worker(w) for w in range(CLIENTS)))
    return outcomes


def check_invariants(url: str, initial: dict[tuple[str, str], int]) -> None:
    pool = Pool.open(url, run_migrations=False)
    try:
        with pool.db.read() as conn:
            names = dict(conn.execute(select(nodes.c.pk, nodes.c.node_id)).all())
            held = defaultdict(int)
            for r in conn.execute(select(reservations).where(reservations.c.status == "held")):
                held[(names[r.node_pk], r.sku)] += r.qty
            rows = conn.execute(select(balances)).all()
    finally:
        pool.close()
    assert any(held.values()), "the race reserved nothing: the test proves nothing"
    for r in rows:
        pair = (names[r.node_pk], r.sku)
        available = r.on_hand - r.unsellable - r.safety_stock - r.reserved
        assert available >= 0, f"oversold {pair}: {r}"
        assert r.reserved == held[pair], f"reserved {r.reserved} != held {held[pair]} at {pair}"
        assert r.on_hand == initial[pair]  # no commits in this race
        assert r.on_hand == available + r.reserved + r.safety_stock + r.unsellable


def run_race(url: str, processes: int) -> dict[str, int]:
    key, initial = seed_scarce_pool(url)
    with running_server(url) as first:
        bases = [first]
        if processes == 2:
            with running_server(url) as second:
                bases.append(second)
                outcomes = asyncio.run(race(bases, key))
        else:
            outcomes = asyncio.run(race(bases, key))
    assert outcomes["200"] == ORDERS, outcomes
    assert outcomes["partial"] + outcomes["unfilled"] > 0, "stock was not scarce"
    check_invariants(url, initial)
    return outcomes


@pytest.mark.slow
def test_no_oversell_sqlite_one_process(sqlite_url):
    run_race(sqlite_url, processes=1)


@pytest.mark.slow
@pytest.mark.postgres
def test_no_oversell_postgres_two_processes():
    with pg_schema_url() as url:
        run_race(url, processes=2)


@pytest.mark.slow
def test_a_killed_server_loses_nothing(sqlite_url):
    """SIGKILL the API process right after it answered; a new one sees the hold and ledger."""
    key, _ = seed_scarce_pool(sqlite_url)
    body = {
        "order_id": "k1",
        "lines": [{"line_id": "l1", "sku": "SKU1", "qty": 1}],
        "customer": {"lat": 30.5, "lon": 120.1},
    }
    headers = {"Authorization": f"Bearer {key}"}
    with running_server(sqlite_url, kill=True) as base:
        answer = httpx.post(f"{base}/v1/route", json=body, headers=headers).json()
    rid = answer["lines"][0]["allocations"][0]["reservation_id"]
    with running_server(sqlite_url) as base:
        listed = httpx.get(f"{base}/v1/orders/k1/reservations", headers=headers).json()
        assert [(v["reservation_id"], v["status"]) for v in listed["reservations"]] == [
            (rid, "held")
        ]
        again = httpx.post(f"{base}/v1/route", json=body, headers=headers)
        assert again.status_code == 409  # the order still holds its reservation
