"""Shared helpers: write tiny ``omniroute-scenario/1`` folders into ``tmp_path``.

Tiny scenarios put every point on the equator, so the haversine distance between
longitudes 0 and 1 is one degree of arc on the format's sphere (``DEG_KM``), and
every cost can be checked on paper.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

DEG_KM = 6371.0088 * math.pi / 180.0
"""One degree of arc on the format's sphere: 111.19508023353... km."""

SCENARIO_HEADERS = {
    "nodes.csv": "node_id,kind,lat,lon,ship_fixed,ship_per_km,handling_per_unit,capacity_units,max_km",
    "inventory.csv": "node_id,sku,available",
    "orders.csv": "order_id,line_id,sku,qty,lat,lon,pickup_node",
}


def node_row(
    node_id: str,
    kind: str = "warehouse",
    *,
    lon: float = 0,
    lat: float = 0,
    ship_fixed: float = 0,
    ship_per_km: float = 0,
    handling: float = 0,
    capacity: int | str = "",
    max_km: float | str = "",
) -> str:
    """One ``nodes.csv`` row; an empty capacity or max_km means no limit."""
    return f"{node_id},{kind},{lat},{lon},{ship_fixed},{ship_per_km},{handling},{capacity},{max_km}"


def line_row(
    order_id: str,
    line_id: str,
    sku: str,
    qty: int = 1,
    *,
    lon: float = 0,
    lat: float = 0,
    pickup: str = "",
) -> str:
    """One ``orders.csv`` row (a delivery line unless ``pickup`` names a node)."""
    return f"{order_id},{line_id},{sku},{qty},{lat},{lon},{pickup}"


def write_scenario(
    folder: Path,
    *,
    nodes: list[str] | str,
    inventory: list[str] | str,
    orders: list[str] | str,
    split_penalty: float = 6.0,
    unfilled_penalty: float = 150.0,
    meta: dict | str | None = None,
) -> Path:
    """Write a scenario folder and return it.

    A table given as a list of rows gets its header prepended; given as a string
    it is written verbatim (for malformed files). ``meta`` replaces the whole
    ``scenario.json`` (a dict is dumped as JSON, a string written verbatim).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if meta is None:
        meta = {
            "format": "omniroute-scenario/1",
            "name": folder.name,
            "split_penalty": split_penalty,
            "unfilled_penalty": unfilled_penalty,
        }
    text = meta if isinstance(meta, str) else json.dumps(meta)
    (folder / "scenario.json").write_text(text, encoding="utf-8")
    for name, table in (("nodes.csv", nodes), ("inventory.csv", inventory), ("orders.csv", orders)):
        if not isinstance(table, str):
            table = "\n".join([SCENARIO_HEADERS[name], *table]) + "\n"
        (folder / name).write_text(table, encoding="utf-8")
    return folder


@pytest.fixture
def tiny_scenario_dir(tmp_path):
    """Factory: ``tiny_scenario_dir(nodes=..., inventory=..., orders=...)`` writes a
    fresh folder under ``tmp_path`` (arguments as :func:`write_scenario`)."""
    count = 0

    def make(**tables) -> Path:
        nonlocal count
        count += 1
        return write_scenario(tmp_path / f"scenario-{count}", **tables)

    return make


def fixture_dirs() -> list[Path]:
    """Committed fixture folders that state their optimum (``expected.json``)."""
    root = Path(__file__).resolve().parent.parent / "fixtures"
    return sorted(p.parent for p in root.glob("*/expected.json"))
