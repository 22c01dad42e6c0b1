"""Loading and validating scenario folders (``omniroute-scenario/1``).

A scenario is four files in one folder (see ``shared/spec/scenario-format.md``).
Every rule of the format is checked here, once, and a broken rule raises
:class:`ScenarioError` naming the file, the row (as a spreadsheet would number
it: the header is row 1) and the column. Nothing downstream re-validates.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "omniroute-scenario/1"

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
NODE_KINDS = ("warehouse", "store")
MAX_INTEGER = 2**53
"""Largest integer quantity accepted (exactly representable as a float)."""


class ScenarioError(ValueError):
    """Bad scenario data: names the file, and where known the row and column."""

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None):
        self.file, self.row, self.column, self.reason = file, row, column, message
        where = file
        if row is not None:
            where += f" row {row}"
        if column is not None:
            where += f", column {column}" if row is not None else f" column {column}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Scenario:
    """A validated routing problem, as read from its folder.

    ``nodes``, ``inventory`` and ``orders`` are DataFrames with exactly the
    columns of the format, typed: ids and SKUs are strings, quantities int64,
    coordinates and costs float64; an empty ``capacity_units`` or ``max_km``
    is NaN, an empty ``pickup_node`` is ``""``. Rows keep file order.
    """

    name: str
    split_penalty: float
    unfilled_penalty: float
    nodes: pd.DataFrame
    inventory: pd.DataFrame
    orders: pd.DataFrame


def load_scenario(folder: str | Path) -> Scenario:
    """Read and validate the scenario in ``folder``; raise :class:`ScenarioError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScenarioError(str(folder), "scenario folder not found")
    meta = _read_meta(folder / "scenario.json")
    nodes = _read_nodes(folder / "nodes.csv")
    inventory = _read_inventory(folder / "inventory.csv", set(nodes["node_id"]))
    orders = _read_orders(folder / "orders.csv", set(nodes["node_id"]))
    return Scenario(
        name=meta["name"],
        split_penalty=meta["split_penalty"],
        unfilled_penalty=meta["unfilled_penalty"],
        nodes=nodes,
        inventory=inventory,
        orders=orders,
    )


# --- scenario.json -----------------------------------------------------------


def _read_meta(path: Path) -> dict:
    file = path.name
    if not path.is_file():
        raise ScenarioError(file, "file not found")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ScenarioError(file, "must be a JSON object")
    if meta.get("format") != FORMAT:
        raise ScenarioError(file, f"key format must be {FORMAT!r} (got {meta.get('format')!r})")
    out: dict[str, str | float] = {"name": str(meta.get("name", path.parent.name))}
    for key in ("split_penalty", "unfilled_penalty"):
        value = meta.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ScenarioError(file, f"key {key} must be a number >= 0 (got {value!r})")
        out[key] = float(value)
    return out


# --- CSV helpers -------------------------------------------------------------


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The named columns of a CSV file as stripped strings, in file order."""
    file = path.name
    if not path.is_file():
        raise ScenarioError(file, "file not found")
    try:
        with warnings.catch_warnings():
            # With index_col=False a trailing comma on every row (as spreadsheets
            # export) is dropped instead of shifting every column; pandas warns.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
                skipinitialspace=True,
                index_col=False,
            )
    except UnicodeDecodeError:
        raise ScenarioError(file, "not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise ScenarioError(file, "empty file: a header row is required") from None
    except pd.errors.ParserError as exc:
        raise ScenarioError(file, f"not a valid CSV file ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScenarioError(
            file, f"missing column(s): {', '.join(missing)}", row=1, column=missing[0]
        )
    frame = frame.loc[:, list(columns)].copy()
    for col in columns:
        frame[col] = frame[col].str.strip()
    return frame.reset_index(drop=True)


def fail_at_row(file: str, frame: pd.DataFrame, bad: np.ndarray, column: str, rule: str):
    """Raise for the first row flagged in ``bad`` (file row = index + 2)."""
    i = int(np.flatnonzero(bad)[0])
    value = frame[column].iloc[i]
    raise ScenarioError(file, f"{rule} (got {value!r})", row=i + 2, column=column)


def _require_text(file: str, frame: pd.DataFrame, column: str) -> None:
    empty = (frame[column] == "").to_numpy()
    if empty.any():
        fail_at_row(file, frame, empty, column, "must not be empty")


def parse_number(
    file: str,
    frame: pd.DataFrame,
    column: str,
    *,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    optional: bool = False,
) -> np.ndarray:
    """Parse a numeric column; an empty cell is NaN when ``optional``."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    empty = (raw == "").to_numpy()
    kind = "an integer" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f">= {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    rule = f"must be {kind}" + (f" {' and '.join(bounds)}" if bounds else "")
    if optional:
        rule += ", or empty"
    bad = ~np.isfinite(values) & ~(empty & optional)
    present = np.isfinite(values)
    if integer:
        bad |= present & (values != np.round(values))
    if low is not None:
        bad |= present & (values < low)
    if high is not None:
        bad |= present & (values > high)
    if bad.any():
        fail_at_row(file, frame, bad, column, rule)
    # Beyond 2**53 a float no longer holds every integer exactly.
    too_large = present & (np.abs(values) > MAX_INTEGER) if integer else np.zeros(0, bool)
    if too_large.any():
        fail_at_row(file, frame, too_large, column, f"must be an integer at most {MAX_INTEGER}")
    return values


def _unique(file: str, frame: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = frame.duplicated(subset=keys, keep="first").to_numpy()
    if dup.any():
        fail_at_row(file, frame, dup, keys[-1], f"duplicate {what}")


# --- the three tables --------------------------------------------------------


def _read_nodes(path: Path) -> pd.DataFrame:
    file = path.name
    frame = read_table(path, NODE_COLUMNS)
    _require_text(file, frame, "node_id")
    _unique(file, frame, ["node_id"], "node_id")
    bad_kind = ~frame["kind"].isin(NODE_KINDS).to_numpy()
    if bad_kind.any():
        fail_at_row(file, frame, bad_kind, "kind", "must be 'warehouse' or 'store'")
    out = pd.DataFrame({"node_id": frame["node_id"], "kind": frame["kind"]})
    out["lat"] = parse_number(file, frame, "lat", low=-90, high=90)
    out["lon"] = parse_number(file, frame, "lon", low=-180, high=180)
    for col in ("ship_fixed", "ship_per_km", "handling_per_unit"):
        out[col] = parse_number(file, frame, col, low=0)
    out["capacity_units"] = parse_number(
        file, frame, "capacity_units", low=0, integer=True, optional=True
    )
    out["max_km"] = parse_number(file, frame, "max_km", low=0, optional=True)
    return out


def _read_inventory(path: Path, node_ids: set[str]) -> pd.DataFrame:
    file = path.name
    frame = read_table(path, INVENTORY_COLUMNS)
    _require_text(file, frame, "node_id")
    unknown = ~frame["node_id"].isin(node_ids).to_numpy()
    if unknown.any():
        fail_at_row(file, frame, unknown, "node_id", "unknown node (not in nodes.csv)")
    _require_text(file, frame, "sku")
    _unique(file, frame, ["node_id", "sku"], "(node_id, sku) pair")
    out = pd.DataFrame({"node_id": frame["node_id"], "sku": frame["sku"]})
    out["available"] = parse_number(file, frame, "available", low=0, integer=True).astype(np.int64)
    return out


def _read_orders(path: Path, node_ids: set[str]) -> pd.DataFrame:
    file = path.name
    frame = read_table(path, ORDER_COLUMNS)
    for col in ("order_id", "line_id", "sku"):
        _require_text(file, frame, col)
    _unique(file, frame, ["order_id", "line_id"], "line_id within its order")
    out = pd.DataFrame({c: frame[c] for c in ("order_id", "line_id", "sku")})
    out["qty"] = parse_number(file, frame, "qty", low=1, integer=True).astype(np.int64)
    out["lat"] = parse_number(file, frame, "lat", low=-90, high=90)
    out["lon"] = parse_number(file, frame, "lon", low=-180, high=180)
    pickup = frame["pickup_node"]
    unknown = ((pickup != "") & ~pickup.isin(node_ids)).to_numpy()
    if unknown.any():
        fail_at_row(file, frame, unknown, "pickup_node", "unknown node (not in nodes.csv)")
    out["pickup_node"] = pickup
    # Location and pickup node are properties of the order, not of the line.
    for col in ("lat", "lon", "pickup_node"):
        first = out.groupby("order_id", sort=False)[col].transform("first")
        differs = (out[col] != first).to_numpy()
        if differs.any():
            fail_at_row(file, frame, differs, col, "must be the same on every line of an order")
    return out
