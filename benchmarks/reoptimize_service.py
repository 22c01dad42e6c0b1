"""Re-optimization of held reservations on the live pool, against routing them one by one.

    .venv/bin/python -m benchmarks.reoptimize_service [--orders 50000] [--stores 1000]
        [--warehouses 12] [--skus 2000] [--seed 1] [--time-limit 90] [--max-moves 10%]
        [--unlimited] [--database-url URL]

Protocol (one run, on a fresh SQLite database unless ``--database-url``):

1. a scenario is generated (``omniroute generate``: real geography, ``--stores``
   stores, ``--warehouses`` warehouses) and loaded into the pool, as
   ``benchmarks/waves.py`` does;
2. **one by one**: every order, in file order, is routed and reserved at arrival by
   the service's single-order routing function (``Pool.route``, the function behind
   ``POST /v1/route``), *in process*: 50,000 HTTP round trips would only add
   transport time to a phase that is not measured here;
3. **plan**: a re-optimization job of every held reservation (``channel=web``) with
   ``--max-moves`` is created and run by ``Reoptimizations.run_due`` (the code the
   server's background runner calls), in process; plan-ready time is from the
   job's creation to ``state = ready`` (snapshot, solve, plan stored). With
   ``--unlimited`` a second job without a move limit is planned on the same state;
4. **apply**: the first plan is applied (one transaction); the ledger invariant is
   then audited on every balance.

Reported: plan-ready time, the saving against the one-by-one reservations, orders
moved, the gap to the lower bound, apply time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.route_latency import cpu_model, loaded_pool
from router.generate import generate_scenario
from router.pool import Pool
from router.pool.reoptimizations import (
    ReoptimizationRequest,
    Reoptimizations,
    ReoptimizationSettings,
    Selection,
)
from router.pool.routing import Order, OrderLine
from router.scenario import load_scenario


def scenario_orders(folder: Path) -> list[Order]:
    orders = load_scenario(folder).orders
    out = []
    for order_id, rows in orders.groupby("order_id", sort=False):
        first = rows.iloc[0]
        out.append(
            Order(
                order_id=str(order_id),
                lines=tuple(
                    OrderLine(str(r.line_id), str(r.sku), int(r.qty))
                    for r in rows.itertuples(index=False)
                ),
                lat=float(first.lat),
                lon=float(first.lon),
                pickup_node=str(first.pickup_node) or None,
            )
        )
    return out


def route_one_by_one(pool: Pool, orders: list[Order]) -> dict:
    started = time.perf_counter()
    cost, splits, unfilled = 0.0, 0, 0
    for order in orders:
        result = pool.route(order, hold_seconds=7 * 24 * 3600)
        cost += result.cost.total
        splits += result.cost.splits
        unfilled += result.cost.unfilled_units
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "cost": round(cost, 2),
        "splits": splits,
        "unfilled_units": unfilled,
    }


def plan(jobs: Reoptimizations, max_moves: str | None, time_limit: float) -> dict:
    started = time.perf_counter()
    job = jobs.create(
        ReoptimizationRequest(
            Selection(channel="web"), max_moves=max_moves, move_cost=0.0, time_limit=time_limit
        ),
        actor="bench",
    )
    jobs.run_due()
    seconds = time.perf_counter() - started
    view = jobs.job(job.job_id)
    assert view.state == "ready", view.error
    p = view.plan
    assert p is not None
    return {
        "job_id": job.job_id,
        "max_moves": p["max_moves"],
        "plan_ready_seconds": round(seconds, 1),
        "snapshot_seconds": p["snapshot_seconds"],
        "solve_seconds": p["solve_seconds"],
        "orders": p["orders"],
        "orders_skipped": p["orders_skipped"],
        "orders_moved": p["orders_moved"],
        "before_cost": p["before"]["cost"],
        "after_cost": p["after"]["cost"],
        "saving_share": p["saving_share"],
        "lower_bound": p["lower_bound"],
        "gap": p["gap"],
        "status": p["status"],
        "before": p["before"],
        "after": p["after"],
    }


def audit(pool: Pool) -> dict:
    from sqlalchemy import func, select

    from router.pool.schema import balances, reservations

    with pool.db.read() as conn:
        held = dict(
            ((pk, sku), units)
            for pk, sku, units in conn.execute(
                select(reservations.c.node_pk, reservations.c.sku, func.sum(reservations.c.qty))
                .where(reservations.c.status == "held")
                .group_by(reservations.c.node_pk, reservations.c.sku)
            ).all()
        )
        oversold = mismatched = 0
        for b in conn.execute(select(balances)).all():
            available = b.on_hand - b.unsellable - b.safety_stock - b.reserved - b.locked
            oversold += available < 0
            mismatched += b.reserved != held.get((b.node_pk, b.sku), 0)
    return {"oversold_pairs": oversold, "reserved_vs_held_mismatches": mismatched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=90.0)
    parser.add_argument("--max-moves", default="10%")
    parser.add_argument("--unlimited", action="store_true", help="also plan without a limit")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="omniroute-reopt-"))
    folder = workdir / "scenario"
    generate_scenario(
        folder,
        orders=args.orders,
        stores=args.stores,
        warehouses=args.warehouses,
        skus=args.skus,
        seed=args.seed,
    )
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; scenario in {folder}", flush=True)
    url = args.database_url or f"sqlite:///{workdir / 'pool.db'}"
    pool, load_seconds = loaded_pool(url, folder)
    pool.index_ttl = 3600.0
    orders = scenario_orders(folder)
    print(
        f"{len(orders)} orders, {args.stores} stores, {args.warehouses} warehouses, "
        f"{args.skus} SKUs, seed {args.seed}; loaded in {load_seconds:.1f} s",
        flush=True,
    )
    single = route_one_by_one(pool, orders)
    print("one by one (Pool.route, in process):", json.dumps(single), flush=True)
    jobs = Reoptimizations(pool, ReoptimizationSettings(lease_seconds=3600))
    plans = [plan(jobs, args.max_moves, args.time_limit)]
    print("plan:", json.dumps(plans[0]), flush=True)
    if args.unlimited:
        plans.append(plan(jobs, None, args.time_limit))
        print("plan (no move limit):", json.dumps(plans[1]), flush=True)
    started = time.perf_counter()
    applied = jobs.apply(plans[0]["job_id"], actor="bench")
    assert applied.plan is not None
    apply_seconds = time.perf_counter() - started
    print(
        "apply:",
        json.dumps({"seconds": round(apply_seconds, 2), **applied.plan["applied"], **audit(pool)}),
        flush=True,
    )
    pool.close()


if __name__ == "__main__":
    main()
