"""Latency of ``GET /v1/orders/{id}/explanation`` on a real ``omniroute serve`` (uvicorn,
one worker) over the pool of the service benchmarks (1,000 stores, 12 warehouses).

    .venv/bin/python -m benchmarks.explain_latency [--orders 500] [--database-url URL]

Protocol: the pool of ``benchmarks.route_latency`` (fixed seed) loaded into a fresh
database (SQLite by default); ``--orders`` orders of 1-5 lines (drawn as there, seed
42) routed and reserved through ``POST /v1/route``; then each one's explanation
fetched once, one request at a time, timed on the client from send to the last byte
(counterfactuals included: the service computes them on every call). Reports the
median and the 95th percentile.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.load import body_of, server
from benchmarks.route_latency import build_scenario, cpu_model, loaded_pool, percentile, workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument(
        "--database-url", default=None, help="default: a fresh SQLite file in a temporary folder"
    )
    parser.add_argument("--scenario", type=Path, default=None)
    args = parser.parse_args(argv)

    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    folder = build_scenario(args.scenario)
    work = workload(folder)
    pool, _ = loaded_pool(url, folder)
    key = pool.create_key("oms")
    pool.close()
    rng = random.Random(42)
    with server(url) as (base, _pid):
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        ids = []
        for i in range(args.orders):
            order = work.order(rng, f"why{i}", 1 + i % 5)
            answer = client.post("/v1/route", json=body_of(order))
            answer.raise_for_status()
            ids.append(order.order_id)
        for order_id in ids[:20]:  # warm-up
            client.get(f"/v1/orders/{order_id}/explanation").raise_for_status()
        times, sizes = [], []
        for order_id in ids:
            started = time.perf_counter()
            answer = client.get(f"/v1/orders/{order_id}/explanation")
            times.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            sizes.append(len(answer.content))
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; database: {url.split(':', 1)[0]}")
    print(
        f"GET /v1/orders/{{id}}/explanation over {len(times)} orders of 1-5 lines: "
        f"median {statistics.median(times):.2f} ms, p95 {percentile(times, 0.95):.2f} ms, "
        f"max {max(times):.2f} ms; {statistics.fmean(sizes) / 1024:.1f} KiB per answer"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
