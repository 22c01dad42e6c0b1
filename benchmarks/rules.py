"""What the routing rules cost in time: a realistic profile set (calendars, daily store
limits, split cap, promise bands, kits) against the same scenario without it, in the
batch optimizer and in the single-order route (issue 9, "Targets").

    .venv/bin/python -m benchmarks.rules [--orders 20000] [--stores 1000] [--warehouses 12]
        [--skus 3000] [--seed 1] [--time-limit 60] [--regimes plentiful,scarce]
        [--requests 600] [--cache DIR] [--skip-batch] [--skip-route] [--out FILE]

Protocol (benchmarks/README.md, "Rules' cost"):

1. ``omniroute generate`` builds the scenario of each regime; :func:`build_rules_scenario`
   copies it and adds the rules (``profiles.json``, ``kits.csv``, the ``channel``,
   ``promised_date`` columns of ``orders.csv``, a ``group`` column of ``nodes.csv``);
   orders and stock are otherwise the same. :func:`binding` says how many orders the
   rules touch (late flags, capped orders, kit lines, store daily limits).
2. Batch: ``router.run.solve_scenario`` (optimize, ``OptimizeParams(time_limit)``) on
   each folder, each run in a fresh subprocess (peak memory is that run's own); cost,
   own gap, status, seconds. Target (plentiful): gap <= 1% and the same time with rules.
   The scarce regime is reported with no target.
3. Route: two pools (fresh SQLite files) loaded from the folders as ``omniroute load``
   does (the stock in slices of one feed's 200,000 rows), their clock fixed at the profiles' ``as_of``; the same orders (taken from the
   scenario) quoted by ``Pool.route(quote_only=True)`` on both, interleaved (the order
   of the two pools alternates). Without rules a kit line is sent as its component
   lines. Target: median and p95 with rules <= 2x without.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.route_latency import cpu_model, loaded_pool, percentile
from router.generate import generate_scenario
from router.pool.routing import Order, OrderLine

REPO = Path(__file__).resolve().parent.parent

AS_OF = "2026-12-02T02:30:00Z"
"""Wednesday 10:30 in Shanghai: the street stores are open, the mall stores not yet."""
TIMEZONE = "Asia/Shanghai"
WEB_SHARE, MARKETPLACE_SHARE = 0.55, 0.15
"""Shares of the delivery orders per channel; the rest (and every pickup) is ``default``."""
PROMISED_SHARE = 0.4
"""Share of the web orders with a promised date (60% next day, 40% in two days)."""
KIT_ORDER_SHARE = 0.03
MALL_SHARE = 0.25
LIMIT_QUANTILE = 0.9
"""Daily store limits: this quantile of the store loads of the greedy answer without
rules, so the busiest tenth of the stores meet them."""


# --- the profile set -------------------------------------------------------------------


def profiles_document(store_units: int, store_orders: int, renovated_store: str) -> dict:
    """The profiles: ``default`` with store daily limits, ``web`` with store calendars,
    promise bands and a split cap of 2, ``marketplace`` warehouse-only, never split."""
    local_day = _local_date()
    return {
        "format": "omniroute-profiles/1",
        "as_of": AS_OF,
        "profiles": {
            "default": {
                "preset": "lowest_cost",
                "daily_limits": {"store": {"units": store_units, "orders": store_orders}},
            },
            "web": {
                "calendars": {
                    "store": {
                        "timezone": TIMEZONE,
                        "hours": {
                            **{
                                day: ["09:00", "21:00"]
                                for day in ("mon", "tue", "wed", "thu", "fri", "sat")
                            },
                            "sun": ["10:00", "20:00"],
                        },
                        "closed_dates": [f"{local_day.year + 1}-01-01"],
                        "cutoff": "20:00",
                    },
                    "group:mall": {
                        "timezone": TIMEZONE,
                        "hours": {
                            day: ["11:00", "22:00"]
                            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                        },
                        "closed_dates": [f"{local_day.year + 1}-01-01"],
                        "cutoff": "21:00",
                    },
                    # one store closed today (inventory count)
                    f"node:{renovated_store}": {
                        "timezone": TIMEZONE,
                        "closed_dates": [_local_date().isoformat()],
                    },
                },
                "promise": {
                    "bands": [
                        {"max_km": 50, "store": 1, "warehouse": 1},
                        {"max_km": 500, "store": 2, "warehouse": 2},
                        {"max_km": None, "store": 4, "warehouse": 3},
                    ]
                },
                "max_shipments": 2,
            },
            "marketplace": {"node_kinds": ["warehouse"], "max_shipments": 1},
        },
    }


def _as_of() -> datetime:
    return datetime.fromisoformat(AS_OF)


def service_now() -> datetime:
    """The profiles' ``as_of`` as the pool's clock gives time (naive UTC)."""
    return _as_of().astimezone(UTC).replace(tzinfo=None)


def _local_date() -> date:
    from zoneinfo import ZoneInfo

    return _as_of().astimezone(ZoneInfo(TIMEZONE)).date()


def build_rules_scenario(source: Path, dest: Path, *, seed: int = 7) -> dict:
    """Copy the scenario ``source`` to ``dest`` and add a realistic rule set to it.

    Writes ``profiles.json``, ``kits.csv``, ``orders.csv`` with ``channel`` and
    ``promised_date`` (and some lines replaced by kit SKUs) and ``nodes.csv`` with a
    ``group`` column (``mall`` / ``street`` stores). Returns what was written (limits,
    kits, counts of orders per channel, promised orders, kit lines).
    """
    from router.run import solve_scenario
    from router.scenario import load_scenario

    rng = random.Random(seed)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    for produced in ("assignments.csv", "summary.json", "explanations.jsonl"):
        (dest / produced).unlink(missing_ok=True)

    nodes = pd.read_csv(dest / "nodes.csv", dtype={"node_id": str}, keep_default_na=False)
    stores = nodes.loc[nodes["kind"] == "store", "node_id"].tolist()
    mall = {s for s in stores if rng.random() < MALL_SHARE}
    nodes["group"] = [
        ("mall" if n in mall else "street") if k == "store" else ""
        for n, k in zip(nodes["node_id"], nodes["kind"], strict=True)
    ]
    nodes.to_csv(dest / "nodes.csv", index=False)
    street = sorted(set(stores) - mall)
    renovated = street[rng.randrange(len(street))] if street else stores[0]

    # Daily store limits from the store loads of a greedy answer without rules.
    greedy = solve_scenario(load_scenario(source), strategy="greedy")
    served = greedy.assignments[greedy.assignments["node_id"].isin(set(stores))]
    units = served.groupby("node_id")["qty"].sum() if not served.empty else pd.Series([1])
    orders_per_store = (
        served.groupby("node_id")["order_id"].nunique() if not served.empty else pd.Series([1])
    )
    store_units = max(1, int(np.quantile(units.to_numpy(), LIMIT_QUANTILE)))
    store_orders = max(1, int(np.quantile(orders_per_store.to_numpy(), LIMIT_QUANTILE)))

    # Kits: pairs and triples of the best-stocked SKUs.
    inventory = pd.read_csv(dest / "inventory.csv", dtype={"node_id": str, "sku": str})
    popular = inventory.groupby("sku")["available"].sum().sort_values(ascending=False)
    top = [str(s) for s in popular.index[:24]]
    kits: dict[str, list[tuple[str, int]]] = {}
    for k in range(min(6, len(top) // 4)):
        size = 3 if k % 3 == 2 else 2
        parts = rng.sample(top, size)
        kits[f"KIT-{k + 1:03d}"] = [
            (sku, 2 if (k == 1 and i == 0) else 1) for i, sku in enumerate(parts)
        ]
    pd.DataFrame(
        [(kit, sku, qty) for kit, parts in kits.items() for sku, qty in parts],
        columns=["kit_sku", "component_sku", "quantity"],
    ).to_csv(dest / "kits.csv", index=False)

    orders = pd.read_csv(
        dest / "orders.csv",
        dtype={"order_id": str, "line_id": str, "sku": str, "pickup_node": str},
        keep_default_na=False,
    )
    channel, promised = [""] * len(orders), [""] * len(orders)
    kit_lines = 0
    counts = {"web": 0, "marketplace": 0, "default": 0, "promised": 0}
    today = _as_of().date()
    for _, rows in orders.groupby("order_id", sort=False).indices.items():
        pickup = orders["pickup_node"].iat[rows[0]] != ""
        draw = rng.random()
        name = (
            "default"
            if pickup
            else "web"
            if draw < WEB_SHARE
            else "marketplace"
            if draw < WEB_SHARE + MARKETPLACE_SHARE
            else "default"
        )
        counts[name] += 1
        promise = ""
        if name == "web" and rng.random() < PROMISED_SHARE:
            promise = (today + timedelta(days=1 if rng.random() < 0.6 else 2)).isoformat()
            counts["promised"] += 1
        for r in rows:
            channel[r] = "" if name == "default" else name
            promised[r] = promise
        if not pickup and rng.random() < KIT_ORDER_SHARE:
            line = rows[rng.randrange(len(rows))]
            others = {orders["sku"].iat[r] for r in rows if r != line}
            fitting = [kit for kit, parts in kits.items() if not others & {s for s, _ in parts}]
            if fitting:
                orders.iat[line, orders.columns.get_loc("sku")] = rng.choice(fitting)
                kit_lines += 1
    orders["channel"] = channel
    orders["promised_date"] = promised
    orders.to_csv(dest / "orders.csv", index=False)
    (dest / "profiles.json").write_text(
        json.dumps(profiles_document(store_units, store_orders, renovated), indent=2) + "\n"
    )
    return {
        "as_of": AS_OF,
        "store_units_limit": store_units,
        "store_orders_limit": store_orders,
        "mall_stores": len(mall),
        "renovated_store": renovated,
        "kits": len(kits),
        "kit_lines": kit_lines,
        "orders_by_channel": {k: counts[k] for k in ("web", "marketplace", "default")},
        "promised_orders": counts["promised"],
    }


def binding(source: Path, rules: Path) -> dict:
    """How much the rules bind before any solve: candidate (order, node) pairs with and
    without them, orders flagged late (no allowed node meets the promise), kit lines."""
    from router.problem import build_problem
    from router.scenario import load_scenario

    base = build_problem(load_scenario(source))
    ruled = build_problem(load_scenario(rules))
    kit = ruled.line_kit
    return {
        "pairs_without": int(base.pair_order.size),
        "pairs_with": int(ruled.pair_order.size),
        "late_orders": int(ruled.order_late.sum()) if ruled.order_late is not None else 0,
        "kit_component_lines": int(sum(1 for k in kit if k)) if kit is not None else 0,
    }


# --- batch: one run per fresh process ----------------------------------------------------


def run_batch(folder: Path, time_limit: float) -> dict:
    """Solve ``folder`` in a fresh interpreter (``--worker``) and return its row."""
    with tempfile.TemporaryDirectory(prefix="omniroute-rules-") as tmp:
        result = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "benchmarks.rules",
            "--worker", str(folder), str(time_limit), str(result),
        ]  # fmt: skip
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=10 * time_limit + 600
        )
        if result.is_file():
            return json.loads(result.read_text())
        tail = done.stderr.strip().splitlines()[-1:]
        return {"status": "crashed", "error": "; ".join([f"exit {done.returncode}", *tail])}


def worker(folder: Path, time_limit: float, result_path: Path) -> int:
    """Body of a batch run: load, solve (timed), and measure what the rules did."""
    from router.run import solve_scenario
    from router.scenario import load_scenario
    from solver.batch import OptimizeParams

    try:
        scenario = load_scenario(folder)
        started = time.perf_counter()
        output = solve_scenario(scenario, params=OptimizeParams(time_limit=time_limit))
        seconds = time.perf_counter() - started
        problem, result, summary = output.problem, output.result, output.summary
        used = (
            np.bincount(problem.cand_pair, weights=result.units, minlength=problem.pair_order.size)
            > 0
        )
        shipments = np.bincount(problem.pair_order[used], minlength=problem.num_orders)
        store_pair = used & problem.node_is_store[problem.pair_node]
        store_served = np.bincount(problem.pair_order[store_pair], minlength=problem.num_orders)
        row = {
            "folder": str(folder),
            "status": summary["status"],
            "total_cost": summary["total_cost"],
            "lower_bound": summary["lower_bound"],
            "gap": summary["gap"],
            "fill_rate": summary["fill_rate"],
            "seconds": round(seconds, 2),
            # build + optimize (the time limit's scope); the rest of ``seconds`` is the
            # assignments, the independent check and the summary
            "solve_seconds": summary["solve_seconds"],
            "late_orders": summary.get("late_orders"),
            "multi_shipment_orders": {
                str(o): int(n) for o, n in zip(problem.order_ids, shipments, strict=True) if n > 1
            },
            "store_served_orders": [str(o) for o in problem.order_ids[store_served > 0]],
        }
        if problem.node_order_limit is not None:
            node_units = np.bincount(
                problem.cand_node, weights=result.units, minlength=problem.node_ids.size
            )
            node_orders = np.bincount(problem.pair_node[used], minlength=problem.node_ids.size)
            stores = problem.node_is_store
            row["stores_at_units_limit"] = int(
                (
                    stores & np.isfinite(problem.capacity) & (node_units >= problem.capacity - 1e-9)
                ).sum()
            )
            row["stores_at_orders_limit"] = int(
                (stores & (node_orders >= problem.node_order_limit)).sum()
            )
    except Exception as exc:  # a failure is a row to report, not a crash
        traceback.print_exc()
        row = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    row["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result_path.write_text(json.dumps(row))
    return 0


def capped_orders(rules: Path, without: dict) -> dict:
    """Orders whose answer without rules breaks their channel's split cap or, for the
    warehouse-only marketplace, uses a store: the orders the cap and kinds move."""
    orders = pd.read_csv(rules / "orders.csv", dtype=str, keep_default_na=False)
    channel = orders.drop_duplicates("order_id").set_index("order_id")["channel"]
    multi = without.get("multi_shipment_orders", {})
    over_cap = sum(
        1
        for o, n in multi.items()
        if (channel.get(o) == "web" and n > 2) or (channel.get(o) == "marketplace" and n > 1)
    )
    from_store = sum(
        1 for o in without.get("store_served_orders", []) if channel.get(o) == "marketplace"
    )
    return {"over_split_cap": over_cap, "marketplace_from_store": from_store}


# --- route: the same quotes on two pools, interleaved ----------------------------------------


def route_requests(
    rules: Path, kits_file: Path, count: int, seed: int
) -> list[tuple[Order, Order]]:
    """``count`` delivery orders of the rules scenario, each as (with rules, without):
    the second drops channel and promise and sends each kit line as its components."""
    orders = pd.read_csv(rules / "orders.csv", dtype=str, keep_default_na=False)
    kits = pd.read_csv(kits_file, dtype={"kit_sku": str, "component_sku": str})
    parts = {
        k: list(zip(g["component_sku"], g["quantity"].astype(int), strict=True))
        for k, g in kits.groupby("kit_sku")
    }
    grouped = [
        g for _, g in orders.groupby("order_id", sort=False) if g["pickup_node"].iat[0] == ""
    ]
    # every kit order first (they are few), then a random draw of the others
    rng = random.Random(seed)
    with_kit = [g for g in grouped if g["sku"].isin(set(parts)).any()]
    rest = [g for g in grouped if not g["sku"].isin(set(parts)).any()]
    chosen = with_kit[: count // 10] + rng.sample(
        rest, min(len(rest), count - min(len(with_kit), count // 10))
    )
    rng.shuffle(chosen)
    pairs = []
    for g in chosen:
        first = g.iloc[0]
        lat, lon = float(first["lat"]), float(first["lon"])
        ruled = tuple(OrderLine(r.line_id, r.sku, int(r.qty)) for r in g.itertuples())
        plain: list[OrderLine] = []
        for line in ruled:
            if line.sku in parts:
                plain.extend(
                    OrderLine(f"{line.line_id}/{sku}", sku, line.qty * q)
                    for sku, q in parts[line.sku]
                )
            else:
                plain.append(line)
        pairs.append(
            (
                Order(
                    str(first["order_id"]), ruled, lat=lat, lon=lon,
                    channel=first["channel"] or "default",
                    promised_date=first["promised_date"] or None,
                ),
                Order(str(first["order_id"]), tuple(plain), lat=lat, lon=lon),
            )
        )  # fmt: skip
    return pairs


def run_route(source: Path, rules: Path, requests: int, warmup: int = 50) -> dict:
    """Median and p95 quote latency of the same orders on a pool without and with rules."""
    as_of = service_now()
    tmp = Path(tempfile.mkdtemp(prefix="omniroute-rules-route-"))
    try:
        base, base_load = loaded_pool(f"sqlite:///{tmp}/without.db", source, clock=lambda: as_of)
        ruled, ruled_load = loaded_pool(f"sqlite:///{tmp}/with.db", rules, clock=lambda: as_of)
        pairs = route_requests(rules, rules / "kits.csv", requests + warmup, seed=42)
        times: dict[str, list[float]] = {"without": [], "with": []}
        late = filled = 0
        for i, (with_rules, without_rules) in enumerate(pairs):
            runs = [("with", ruled, with_rules), ("without", base, without_rules)]
            for name, pool, order in runs if i % 2 == 0 else runs[::-1]:
                started = time.perf_counter()
                answer = pool.route(order, quote_only=True)
                elapsed = (time.perf_counter() - started) * 1000
                if i >= warmup:
                    times[name].append(elapsed)
                    if name == "with":
                        late += bool(getattr(answer, "promise_late", False))
                        filled += answer.status == "filled"
        base.close()
        ruled.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row: dict = {"requests": len(times["with"]), "load_seconds": [base_load, ruled_load]}
    for name, values in times.items():
        row[f"{name}_p50_ms"] = round(statistics.median(values), 3)
        row[f"{name}_p95_ms"] = round(percentile(values, 0.95), 3)
    row["ratio_p50"] = round(row["with_p50_ms"] / row["without_p50_ms"], 2)
    row["ratio_p95"] = round(row["with_p95_ms"] / row["without_p95_ms"], 2)
    row["with_late"] = late
    row["with_filled_share"] = round(filled / max(1, len(times["with"])), 3)
    return row


# --- main ---------------------------------------------------------------------------------


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return os.getloadavg()[0]


def _scenario(args, regime: str) -> tuple[Path, Path]:
    name = f"{args.orders}o-{args.stores}s-{args.warehouses}w-{args.skus}k-{regime}-seed{args.seed}"
    source, rules = args.cache / name, args.cache / f"{name}-rules"
    if not (source / "scenario.json").exists():
        generate_scenario(
            source,
            orders=args.orders,
            stores=args.stores,
            warehouses=args.warehouses,
            skus=args.skus,
            seed=args.seed,
            regime=regime,
            overwrite=True,
        )
    return source, rules


def _fmt_gap(gap) -> str:
    return "" if gap is None or (isinstance(gap, float) and math.isnan(gap)) else f"{gap:.3%}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(Path(argv[1]), float(argv[2]), Path(argv[3]))
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rules", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--warehouses", type=int, default=12)
    parser.add_argument("--skus", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--regimes", default="plentiful,scarce")
    parser.add_argument("--requests", type=int, default=600, help="Measured quotes per pool.")
    parser.add_argument("--cache", type=Path, default=Path("bench-cache"))
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-route", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="Write every row as JSON here.")
    args = parser.parse_args(argv)

    report: dict = {
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "regimes": {},
    }
    loads = [load_average()]
    regimes = args.regimes.split(",")
    folders = {}
    for regime in regimes:
        source, rules = folders[regime] = _scenario(args, regime)
        built = build_rules_scenario(source, rules)
        built.update(binding(source, rules))
        print(f"{regime}: rules {json.dumps(built)}", flush=True)
        report["regimes"][regime] = {"rules": built}
    for regime in [] if args.skip_batch else regimes:
        entry, (source, rules) = report["regimes"][regime], folders[regime]
        for name, folder in (("without", source), ("with", rules)):
            loads.append(load_average())
            row = run_batch(folder, args.time_limit)
            loads.append(load_average())
            entry[name] = row
            shown = {
                k: v for k, v in row.items() if not k.endswith("_orders") or k == "late_orders"
            }
            print(f"{regime} batch {name} rules: {json.dumps(shown)}", flush=True)
        entry["capped"] = capped_orders(rules, entry["without"])
        print(f"{regime}: capped {json.dumps(entry['capped'])}", flush=True)
        for name in ("without", "with"):
            entry[name].pop("multi_shipment_orders", None)
            entry[name].pop("store_served_orders", None)
        _write(args.out, report)
    if not args.skip_route:
        # the single-order route on the first regime's pool (the service's usual stock)
        regime = regimes[0]
        loads.append(load_average())
        route = report["regimes"][regime]["route"] = run_route(*folders[regime], args.requests)
        loads.append(load_average())
        print(f"{regime} route: {json.dumps(route)}", flush=True)
    report["load_average_1min"] = [min(loads), max(loads)]
    print()
    print(
        f"machine: {report['machine']}; load average (1 min) {min(loads):.1f}-{max(loads):.1f}; {report['date']}"
    )
    print("| regime | rules | cost | fill | own gap | status | solve s | total s | peak MB |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for regime, entry in report["regimes"].items():
        for name in ("without", "with"):
            r = entry.get(name)
            if r is None or "total_cost" not in r:
                continue
            print(
                f"| {regime} | {name} | {r['total_cost']:,.2f} | {r['fill_rate']:.2%} "
                f"| {_fmt_gap(r['gap'])} | {r['status']} | {r['solve_seconds']:.1f} "
                f"| {r['seconds']:.1f} | {r['peak_memory_mb']:,.0f} |"
            )
    for regime, entry in report["regimes"].items():
        route = entry.get("route")
        if route:
            print(
                f"route ({regime}, {route['requests']} quotes): p50 {route['without_p50_ms']:.2f} -> "
                f"{route['with_p50_ms']:.2f} ms (x{route['ratio_p50']}), p95 {route['without_p95_ms']:.2f} "
                f"-> {route['with_p95_ms']:.2f} ms (x{route['ratio_p95']})"
            )
    _write(args.out, report)
    return 0


def _write(out: Path | None, report: dict) -> None:
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
