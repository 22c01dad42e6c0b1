"""HTTP load driver for the routing service (asyncio + httpx, loopback only).

    .venv/bin/python -m benchmarks.load [--duration 20] [--clients 32] [--rate 200]
                                        [--race-orders 3000] [--postgres-url URL]

Phases (protocol in benchmarks/SERVICE.md):

1. throughput: ``--clients`` closed-loop clients send 1-5 line orders for
   ``--duration`` s to one ``omniroute serve`` process on SQLite (pool of 1,000 stores
   and 12 warehouses); every routed order is reserved in the database;
2. fixed rate: an open-loop schedule of ``--rate`` orders/s for ``--duration`` s;
   latency is measured from each order's scheduled send time, so a server that falls
   behind cannot hide it;
3. oversell race: 64 clients race ``--race-orders`` orders for SKUs with 1 to 5 units
   over 8 nodes; SQLite with one API process, then PostgreSQL with two API processes
   on one database (skipped with the reason if PostgreSQL is not reachable). After each
   race the database is checked: no (node, sku) oversold, ``reserved`` equals the held
   reservations, and ``on_hand = available + reserved + safety_stock + unsellable``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
from sqlalchemy import select

from benchmarks.route_latency import (
    Workload,
    build_scenario,
    cpu_model,
    loaded_pool,
    percentile,
    workload,
)
from router.pool import Pool
from router.pool.inventory import SetRow
from router.pool.nodes import NodeSpec
from router.pool.schema import balances, nodes, reservations

REPO = Path(__file__).resolve().parents[1]
SERVE = (
    "import sys, typer; from api.commands import register; "
    "app = typer.Typer(); register(app); app(sys.argv[1:])"
)
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(base: str, proc: subprocess.Popen, *, timeout: float) -> None:
    """Poll ``/readyz`` until it answers 200; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server at {base} did not become ready")
        time.sleep(0.1)


@contextlib.contextmanager
def server(database_url: str, workers: int = 1) -> Iterator[tuple[str, int]]:
    """``omniroute serve`` on a free loopback port (``workers`` uvicorn worker processes)."""
    port = free_port()
    env = {**os.environ, "OMNIROUTE_DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, proc, timeout=60)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (``--client raw``).

    httpx spends about as much CPU per request as the server does; on a 2-core
    machine the driver then takes the server's core. This client sends the same
    requests for a fraction of the CPU, so the table shows the server's capacity.
    """

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        host_port = base.split("://", 1)[1]
        self.host, port = host_port.split(":")
        self.port = int(port)
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, json: dict) -> tuple[int, bytes]:
        import json as _json

        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = _json.dumps(json).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        assert self.reader is not None
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def body_of(order) -> dict:
    return {
        "order_id": order.order_id,
        "lines": [asdict(line) for line in order.lines],
        "customer": {"lat": order.lat, "lon": order.lon},
    }


def summary(
    name: str,
    kind: str,
    latencies_ms: list[float],
    elapsed: float,
    statuses: Counter,
    server_cpu_ms: float,
    driver_cpu_ms: float,
) -> str:
    ok = statuses.get(200, 0)
    return (
        f"| {name} | {kind} | {sum(statuses.values())} | {ok / elapsed:.0f} | "
        f"{percentile(latencies_ms, 0.5):.1f} | {percentile(latencies_ms, 0.99):.1f} | "
        f"{sum(v for k, v in statuses.items() if k != 200)} | {server_cpu_ms:.2f} | "
        f"{driver_cpu_ms:.2f} |"
    )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children (uvicorn workers)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Sender:
    """Posts JSON over ``connections`` keep-alive connections, with httpx or ``RawClient``."""

    def __init__(self, kind: str, base: str, key: str, connections: int) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        self.kind = kind
        if kind == "httpx":
            limits = httpx.Limits(
                max_connections=connections, max_keepalive_connections=connections
            )
            self.http = httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits)
        else:
            self.idle: asyncio.Queue = asyncio.Queue()
            for _ in range(connections):
                self.idle.put_nowait(RawClient(base, headers))

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.kind == "httpx":
            r = await self.http.post(path, json=body)
            return r.status_code, r.content
        conn = await self.idle.get()
        try:
            return await conn.post(path, body)
        finally:
            self.idle.put_nowait(conn)

    async def close(self) -> None:
        if self.kind == "httpx":
            await self.http.aclose()
        else:
            while not self.idle.empty():
                await self.idle.get_nowait().close()


async def closed_loop(
    base: str, key: str, work: Workload, clients: int, duration: float, kind: str
):
    rng = random.Random(1)
    latencies, statuses = [], Counter()
    stop = time.perf_counter() + duration
    sender = Sender(kind, base, key, clients)

    async def one_client(c: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            order = work.order(rng, f"tp-{c}-{n}-{uuid.uuid4().hex[:6]}", rng.randint(1, 5))
            started = time.perf_counter()
            status, _ = await sender.post("/v1/route", body_of(order))
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one_client(c) for c in range(clients)))
    elapsed = time.perf_counter() - started
    await sender.close()
    return latencies, elapsed, statuses


async def open_loop(base: str, key: str, work: Workload, rate: float, duration: float, kind: str):
    rng = random.Random(2)
    orders = [
        work.order(rng, f"fr-{i}-{uuid.uuid4().hex[:6]}", rng.randint(1, 5))
        for i in range(int(rate * duration))
    ]
    latencies, statuses = [], Counter()
    sender = Sender(kind, base, key, 128)
    start = time.perf_counter() + 0.2

    async def send(i: int, order) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        status, _ = await sender.post("/v1/route", body_of(order))
        latencies.append((time.perf_counter() - due) * 1000)
        statuses[status] += 1

    await asyncio.gather(*(send(i, o) for i, o in enumerate(orders)))
    elapsed = time.perf_counter() - start
    await sender.close()
    return latencies, elapsed, statuses


# --- oversell race ---------------------------------------------------------------------------

RACE_SKUS = [f"R{i:03d}" for i in range(40)]


def seed_race(url: str) -> tuple[str, dict]:
    rng = random.Random(7)
    pool = Pool.open(url)
    stock = {}
    for i in range(8):
        pool.create_node(
            NodeSpec(
                f"RN{i}",
                "warehouse" if i < 2 else "store",
                30 + 0.3 * i,
                120.0 + 0.2 * i,
                ship_fixed=2.0 + i,
                ship_per_km=0.01,
                handling_per_unit=1.0,
            )
        )
    for sku in RACE_SKUS:
        for i in rng.sample(range(8), rng.randint(2, 5)):
            stock[(f"RN{i}", sku)] = rng.randint(1, 5)
    pool.set_stock([SetRow(n, s, q) for (n, s), q in stock.items()], actor="bench")
    key = pool.create_key("oms")
    pool.close()
    return key, stock


async def race(bases: list[str], key: str, orders: int, clients: int = 64):
    rng = random.Random(11)
    queue: asyncio.Queue = asyncio.Queue()
    for n in range(orders):
        lines = [
            {"line_id": f"l{j}", "sku": rng.choice(RACE_SKUS), "qty": rng.randint(1, 2)}
            for j in range(rng.randint(1, 3))
        ]
        queue.put_nowait(
            {"order_id": f"race-{n}", "lines": lines, "customer": {"lat": 31.0, "lon": 120.6}}
        )
    statuses, outcome, retried, units = Counter(), Counter(), Counter(), 0
    latencies = []

    async def worker(w: int) -> None:
        nonlocal units
        async with httpx.AsyncClient(
            base_url=bases[w % len(bases)], timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                r = await client.post("/v1/route", json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    answer = r.json()
                    outcome[answer["status"]] += 1
                    retried[answer["attempts"] > 1] += 1
                    units += sum(a["qty"] for ln in answer["lines"] for a in ln["allocations"])

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    return statuses, outcome, retried, units, latencies, time.perf_counter() - started


def audit(url: str, initial: dict) -> dict:
    """Oversold units, pairs whose reserved != held, pairs whose layers do not add up."""
    pool = Pool.open(url, run_migrations=False)
    with pool.db.read() as conn:
        names = dict(conn.execute(select(nodes.c.pk, nodes.c.node_id)).all())
        held = defaultdict(int)
        for r in conn.execute(select(reservations).where(reservations.c.status == "held")):
            held[(names[r.node_pk], r.sku)] += r.qty
        rows = conn.execute(select(balances)).all()
    pool.close()
    oversold = mismatched = broken = 0
    for r in rows:
        pair = (names[r.node_pk], r.sku)
        available = r.on_hand - r.unsellable - r.safety_stock - r.reserved
        oversold += max(0, -available) + max(0, held[pair] - initial.get(pair, 0))
        mismatched += r.reserved != held[pair]
        broken += r.on_hand != available + r.reserved + r.safety_stock + r.unsellable
    return {
        "pairs": len(rows),
        "units_in_stock": sum(initial.values()),
        "units_held": sum(held.values()),
        "oversold_units": oversold,
        "reserved_mismatch_pairs": mismatched,
        "identity_broken_pairs": broken,
    }


def run_race(url: str, processes: int, orders: int) -> str:
    key, initial = seed_race(url)
    with contextlib.ExitStack() as stack:
        bases = [stack.enter_context(server(url))[0] for _ in range(processes)]
        statuses, outcome, retried, _units, latencies, elapsed = asyncio.run(
            race(bases, key, orders)
        )
    checked = audit(url, initial)
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    return (
        f"| {backend} | {processes} | {orders} | {dict(statuses)} | "
        f"{outcome['filled']}/{outcome['partial']}/{outcome['unfilled']} | "
        f"{retried[True]} | {checked['units_in_stock']} | {checked['units_held']} | "
        f"{checked['oversold_units']} | {checked['reserved_mismatch_pairs']} | "
        f"{checked['identity_broken_pairs']} | {orders / elapsed:.0f} | "
        f"{percentile(latencies, 0.99):.0f} |"
    )


def feed_phase(url: str, rows: int = 100_000) -> str:
    """One stock feed of ``rows`` new (node, sku) rows over HTTP, then the same rows again
    as updates; the seconds each takes, request to answer."""
    pool = Pool.open(url)
    pool.create_node(NodeSpec("FEED-W", "warehouse", 31.0, 121.0))
    key = pool.create_key("admin")
    pool.close()
    body = {
        "rows": [{"node_id": "FEED-W", "sku": f"F{i:07d}", "on_hand": i % 9} for i in range(rows)]
    }
    timings = []
    with server(url) as (base, _pid):
        for _ in range(2):
            started = time.perf_counter()
            r = httpx.post(
                f"{base}/v1/inventory/set",
                json=body,
                timeout=300,
                headers={"Authorization": f"Bearer {key}"},
            )
            timings.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    return f"| {backend} | {rows} | {timings[0]:.1f} | {timings[1]:.1f} |"


@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str | None]:
    """A fresh schema on the PostgreSQL server (None if unreachable); dropped afterwards."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"omr_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as error:  # unreachable: the caller prints why
        print(f"PostgreSQL race skipped: {error.__class__.__name__}: {error}")
        yield None
        return
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--race-orders", type=int, default=3000)
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--scenario", type=Path, default=None)
    parser.add_argument(
        "--client",
        choices=["httpx", "raw", "both"],
        default="both",
        help="driver HTTP client for the throughput and fixed-rate phases",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes for the throughput and fixed-rate phases",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["throughput", "rate", "race-sqlite", "race-postgres", "feed"],
    )
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}; load average at start: "
        f"{os.getloadavg()[0]:.1f}"
    )
    if "throughput" not in args.skip or "rate" not in args.skip:
        folder = build_scenario(args.scenario)
        work = workload(folder)
        loaded = Path(tempfile.mkdtemp()) / "loaded.db"
        pool, _ = loaded_pool(f"sqlite:///{loaded}", folder)
        key = pool.create_key("oms")
        pool.close()
        print(
            "\n| phase | driver | requests | routed/s | p50 ms | p99 ms | non-200 "
            "| server CPU ms/request | driver CPU ms/request |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        procs = f"{args.workers} process" + ("es" if args.workers > 1 else "")
        kinds = ["httpx", "raw"] if args.client == "both" else [args.client]
        for kind in kinds:
            fresh = Path(tempfile.mkdtemp()) / "load.db"
            shutil.copy(loaded, fresh)  # every driver starts from the same stock
            with server(f"sqlite:///{fresh}", args.workers) as (base, pid):
                asyncio.run(open_loop(base, key, work, 50, 2, kind))  # warm-up
                phases = []
                if "throughput" not in args.skip:
                    phases.append(
                        (
                            f"throughput, {args.clients} clients, SQLite, {procs}",
                            closed_loop(base, key, work, args.clients, args.duration, kind),
                        )
                    )
                if "rate" not in args.skip:
                    phases.append(
                        (
                            f"fixed {args.rate:.0f} orders/s, SQLite, {procs}",
                            open_loop(base, key, work, args.rate, args.duration, kind),
                        )
                    )
                for name, phase in phases:
                    server_cpu, driver_cpu = process_cpu(pid), time.process_time()
                    lat, elapsed, statuses = asyncio.run(phase)
                    n = sum(statuses.values())
                    print(
                        summary(
                            name,
                            kind,
                            lat,
                            elapsed,
                            statuses,
                            (process_cpu(pid) - server_cpu) / n * 1000,
                            (time.process_time() - driver_cpu) / n * 1000,
                        )
                    )

    print(
        "\n| backend | API processes | orders | HTTP statuses | filled/partial/unfilled | "
        "re-routed after a lost race | units in stock | units held | oversold units | "
        "reserved != held (pairs) | identity broken (pairs) | orders/s | p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    if "race-sqlite" not in args.skip:
        print(run_race(f"sqlite:///{tempfile.mkdtemp()}/race.db", 1, args.race_orders))
    if "race-postgres" not in args.skip:
        with pg_schema(args.postgres_url) as url:
            if url:
                print(run_race(url, 2, args.race_orders))

    if "feed" not in args.skip:
        print("\n| feed backend | rows | seconds (all new) | seconds (all updates) |")
        print("|---|---|---|---|")
        print(feed_phase(f"sqlite:///{tempfile.mkdtemp()}/feed.db"))
        with pg_schema(args.postgres_url) as url:
            if url:
                print(feed_phase(url))


if __name__ == "__main__":
    main()
