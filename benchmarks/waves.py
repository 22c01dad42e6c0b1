"""Waves against one-by-one routing, and the oversell race during a wave (loopback HTTP).

    .venv/bin/python -m benchmarks.waves [--orders 2000] [--stores 1000] [--warehouses 12]
        [--skus 2000] [--seed 1] [--time-limit 10] [--race-clients 64] [--race-orders 1000]
        [--postgres-url URL] [--skip-race] [--skip-compare]

Phases, each on a fresh database loaded with the same generated scenario
(``omniroute generate``: real geography, ``--stores`` stores, ``--warehouses``
warehouses):

1. **wave**: every order of the scenario is queued with ``POST /v1/orders``, the
   wave is closed on demand, and the time from the close to ``state = done``
   (joint solve + reservation of every order) is measured, with the wave's KPIs;
2. **one by one**: the same orders, in the same (file) order, each routed and
   reserved at arrival with ``POST /v1/route``; cost and splits are summed from the
   answers;
3. **race**: the wave again, while ``--race-clients`` clients route
   ``--race-orders`` other orders for the same SKUs through ``/v1/route``; then the
   database is audited (oversold units, reserved vs held, the layer identity). On
   SQLite with one API process; with ``--postgres-url`` also on PostgreSQL with two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.load import audit, pg_schema, server
from benchmarks.route_latency import cpu_model, loaded_pool
from router.generate import generate_scenario
from router.scenario import load_scenario


def order_bodies(folder: Path) -> list[dict]:
    """The scenario's orders as API bodies, in file order."""
    orders = load_scenario(folder).orders
    bodies = []
    for order_id, rows in orders.groupby("order_id", sort=False):
        first = rows.iloc[0]
        body = {
            "order_id": str(order_id),
            "lines": [
                {"line_id": str(r.line_id), "sku": str(r.sku), "qty": int(r.qty)}
                for r in rows.itertuples(index=False)
            ],
            "customer": {"lat": float(first.lat), "lon": float(first.lon)},
        }
        if first.pickup_node:
            body["pickup_node"] = str(first.pickup_node)
        bodies.append(body)
    return bodies


def fresh_database(folder: Path, url: str | None, workdir: Path, name: str) -> tuple[str, str]:
    """Load the scenario into a new database; returns (url, oms key)."""
    url = url or f"sqlite:///{workdir / name}.db"
    pool, _seconds = loaded_pool(url, folder)
    key = pool.create_key("oms")
    pool.close()
    return url, key


async def _post_all(base: str, key: str, path: str, bodies: list[dict], clients: int) -> list:
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    answers: list = []

    async def worker() -> None:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            while not queue.empty():
                r = await client.post(path, json=queue.get_nowait())
                answers.append((r.status_code, r.json()))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return answers


async def _run_wave(
    base: str, key: str, bodies: list[dict], race: tuple[list[str], list[dict], int] | None
) -> tuple[dict, float, Counter]:
    queued = await _post_all(base, key, "/v1/orders", bodies, clients=8)
    assert all(status == 202 for status, _ in queued), Counter(s for s, _ in queued)
    wave_ids = {answer["wave_id"] for _, answer in queued}
    assert len(wave_ids) == 1, f"expected one wave, got {len(wave_ids)}"
    wave_id = wave_ids.pop()
    statuses: Counter = Counter()
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        racers = []
        if race is not None:
            bases, race_bodies, clients = race
            rqueue: asyncio.Queue = asyncio.Queue()
            for body in race_bodies:
                rqueue.put_nowait(body)

            async def racer(w: int) -> None:
                async with httpx.AsyncClient(
                    base_url=bases[w % len(bases)],
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=120,
                ) as rc:
                    while not rqueue.empty():
                        r = await rc.post("/v1/route", json=rqueue.get_nowait())
                        statuses[r.status_code] += 1

            racers = [asyncio.create_task(racer(w)) for w in range(clients)]
        started = time.perf_counter()
        closed = await client.post(f"/v1/waves/{wave_id}/close")
        assert closed.status_code == 202, closed.text
        while True:
            wave = (await client.get(f"/v1/waves/{wave_id}")).json()
            if wave["state"] == "done":
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*racers)
    return wave, elapsed, statuses


def _wave_env(orders: int, time_limit: float) -> dict[str, str]:
    return {
        "OMNIROUTE_WAVE_WINDOW_SECONDS": "86400",
        "OMNIROUTE_WAVE_MAX_ORDERS": str(orders + 1),
        "OMNIROUTE_WAVE_TIME_LIMIT": str(time_limit),
    }


@contextlib.contextmanager
def _env(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wave_phase(folder, workdir, bodies, time_limit) -> dict:
    url, key = fresh_database(folder, None, workdir, "wave")
    with _env(_wave_env(len(bodies), time_limit)), server(url) as (base, _pid):
        wave, elapsed, _ = asyncio.run(_run_wave(base, key, bodies, None))
    return {"close_to_done_seconds": round(elapsed, 2), **wave["kpis"]}


def one_by_one_phase(folder, workdir, bodies) -> dict:
    url, key = fresh_database(folder, None, workdir, "one_by_one")
    cost, splits, unfilled, units = 0.0, 0, 0, 0
    started = time.perf_counter()
    with (
        server(url) as (base, _pid),
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client,
    ):
        for body in bodies:
            r = client.post("/v1/route", json=body)
            assert r.status_code == 200, r.text
            answer = r.json()
            cost += answer["cost"]["total"]
            splits += answer["cost"]["splits"]
            unfilled += answer["cost"]["unfilled_units"]
            units += sum(line["qty"] for line in answer["lines"])
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "cost": round(cost, 2),
        "splits": splits,
        "unfilled_units": unfilled,
        "fill_rate": round(1 - unfilled / units, 6),
    }


def race_phase(folder, workdir, bodies, args, pg_url: str | None) -> dict:
    scenario = load_scenario(folder)
    initial = {
        (str(r.node_id), str(r.sku)): int(r.available)
        for r in scenario.inventory.itertuples(index=False)
    }
    rng = random.Random(3)
    race_bodies = [{**rng.choice(bodies), "order_id": f"race-{n}"} for n in range(args.race_orders)]
    url, key = fresh_database(folder, pg_url, workdir, "race")
    processes = 2 if pg_url else 1
    with contextlib.ExitStack() as stack:
        stack.enter_context(_env(_wave_env(len(bodies), args.time_limit)))
        bases = [stack.enter_context(server(url))[0] for _ in range(processes)]
        wave, elapsed, statuses = asyncio.run(
            _run_wave(bases[0], key, bodies, (bases, race_bodies, args.race_clients))
        )
    checked = audit(url, initial)
    return {
        "backend": "PostgreSQL" if pg_url else "SQLite",
        "api_processes": processes,
        "race_statuses": dict(statuses),
        "wave_close_to_done_seconds": round(elapsed, 2),
        "wave_solve_seconds": wave["kpis"]["solve"]["seconds"],
        "wave_reserve_seconds": wave["kpis"]["reserve_seconds"],
        "wave_repaired_orders": wave["kpis"]["orders_repaired"],
        **checked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--race-clients", type=int, default=64)
    parser.add_argument("--race-orders", type=int, default=1000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-race", action="store_true")
    parser.add_argument("--skip-compare", action="store_true", help="only the race phase(s)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="omniroute-waves-"))
    folder = workdir / "scenario"
    generate_scenario(
        folder,
        orders=args.orders,
        stores=args.stores,
        warehouses=args.warehouses,
        skus=args.skus,
        seed=args.seed,
    )
    bodies = order_bodies(folder)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; scenario in {folder}")
    print(
        f"{len(bodies)} orders, {args.stores} stores, {args.warehouses} warehouses, "
        f"{args.skus} SKUs, seed {args.seed}, wave time limit {args.time_limit} s"
    )
    if not args.skip_compare:
        wave = wave_phase(folder, workdir, bodies, args.time_limit)
        print("wave:", wave)
        single = one_by_one_phase(folder, workdir, bodies)
        print("one by one (/v1/route):", single)
        extra = single["splits"] - wave["splits"]
        print(
            f"wave vs one by one: cost {wave['cost']:.2f} vs {single['cost']:.2f} "
            f"({(wave['cost'] / single['cost'] - 1) * 100:+.2f}%), splits {wave['splits']} vs "
            f"{single['splits']} ({extra} fewer)"
        )
    if not args.skip_race:
        print("race:", race_phase(folder, workdir, bodies, args, None))
        if args.postgres_url:
            with pg_schema(args.postgres_url) as pg_url:
                if pg_url:
                    print("race:", race_phase(folder, workdir, bodies, args, pg_url))


if __name__ == "__main__":
    main()
