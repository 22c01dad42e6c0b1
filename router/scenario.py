"""Loading and validating scenario folders (``omniroute-scenario/1``).

A scenario is four files in one folder (see ``docs/scenario-format.md``).
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

from router.kits import (
    KIT_COLUMNS,
    KITS_FILE,
    Kit,
    KitError,
    expand_lines,
    parse_kit,
    split_kits_of,
)
from router.profiles import DEFAULT_CHANNEL, ProfileSet, load_profiles

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


MAX_LISTED = 20
"""A data error lists at most this many broken cells, then says how many more."""


@dataclass(frozen=True)
class BrokenCell:
    """One cell that breaks a rule: ``row`` as a spreadsheet numbers it (header = 1)."""

    row: int | None
    column: str | None
    reason: str

    def where(self) -> str:
        if self.row is None:
            return "" if self.column is None else f"column {self.column}"
        return f"row {self.row}" + ("" if self.column is None else f", column {self.column}")


class ScenarioError(ValueError):
    """Bad scenario data: names the file, and where known the row and column.

    ``cells`` lists the broken cells found in the file (at most
    :data:`MAX_LISTED`, in row order; ``unlisted`` more were found); ``row``,
    ``column`` and ``reason`` are those of the first.
    """

    def __init__(
        self,
        file: str,
        message: str,
        row: int | None = None,
        column: str | None = None,
        *,
        more: tuple[BrokenCell, ...] = (),
        unlisted: int = 0,
    ):
        self.file, self.row, self.column, self.reason = file, row, column, message
        self.cells = (BrokenCell(row, column, message), *more)
        self.unlisted = unlisted
        parts = []
        for cell in self.cells:
            where = cell.where()
            parts.append(f"{where}: {cell.reason}" if where else cell.reason)
        text = f"{file} {parts[0]}" if self.cells[0].where() else f"{file}: {parts[0]}"
        if len(parts) > 1:
            text += "; " + "; ".join(parts[1:])
        if unlisted:
            text += f"; and {unlisted} more"
        super().__init__(text)


class Findings:
    """The broken cells of one file, collected by every check and raised together."""

    def __init__(self, file: str):
        self.file = file
        self._cells: list[tuple[int, int, BrokenCell]] = []
        self._count = 0

    def flag(self, frame: pd.DataFrame, bad: np.ndarray, column: str, rule: str) -> None:
        """Record every row flagged in ``bad`` (file row = index + 2) as breaking ``rule``."""
        rows = np.flatnonzero(bad)
        self._count += len(rows)
        for i in rows[:MAX_LISTED]:
            value = frame[column].iloc[i]
            cell = BrokenCell(int(i) + 2, column, f"{rule} (got {value!r})")
            self._cells.append((int(i), len(self._cells), cell))

    def raise_if_any(self) -> None:
        if not self._cells:
            return
        listed = [cell for _, _, cell in sorted(self._cells)[:MAX_LISTED]]
        first = listed[0]
        raise ScenarioError(
            self.file,
            first.reason,
            row=first.row,
            column=first.column,
            more=tuple(listed[1:]),
            unlisted=self._count - len(listed),
        )


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
    profiles: ProfileSet | None = None
    """Routing profiles (``profiles.json``, docs/profiles.md); ``None``: the base
    format alone. When set, ``nodes`` has a ``group`` column, ``inventory`` a
    ``weekly_sales`` column (NaN: unknown) and ``orders`` the columns ``channel``,
    ``promised_date`` (a ``datetime.date`` or ``None``), ``ship_group`` ("":
    none) and ``origin_store`` (the store an endless-aisle order was taken in; "":
    none)."""
    kits: dict[str, Kit] | None = None
    """Kits (``kits.csv``, docs/profiles.md): kit SKU -> components; ``None``: none.
    When set, ``orders`` holds the expanded lines (a kit line is replaced by its
    component lines) with the columns ``ship_group``, ``kit_line`` (the kit line's id,
    "" for an ordinary line) and ``kit_sku``."""


def load_scenario(folder: str | Path) -> Scenario:
    """Read and validate the scenario in ``folder``; raise :class:`ScenarioError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScenarioError(str(folder), "scenario folder not found")
    meta = _read_meta(folder / "scenario.json")
    nodes = _read_nodes(folder / "nodes.csv")
    inventory = _read_inventory(folder / "inventory.csv", set(nodes["node_id"]))
    orders = _read_orders(folder / "orders.csv", set(nodes["node_id"]))
    profiles = load_profiles(folder)
    if profiles is not None:
        nodes, orders = _profile_columns(folder, nodes, orders)
        inventory = _weekly_sales(folder / "inventory.csv", inventory)
    kits = _read_kits(folder / KITS_FILE) if (folder / KITS_FILE).is_file() else None
    if kits is not None:
        _no_stocked_kits(folder / "inventory.csv", inventory, kits)
        orders = _expand_kits(folder / "orders.csv", orders, kits, profiles)
    return Scenario(
        name=meta["name"],
        split_penalty=meta["split_penalty"],
        unfilled_penalty=meta["unfilled_penalty"],
        nodes=nodes,
        inventory=inventory,
        orders=orders,
        profiles=profiles,
        kits=kits,
    )


def _read_kits(path: Path) -> dict[str, Kit]:
    """``kits.csv``: one row per (kit, component) with the units of the component in
    one kit; a component may not be a kit itself."""
    file = path.name
    frame = read_table(path, KIT_COLUMNS)
    found = Findings(file)
    _require_text(found, frame, "kit_sku")
    _require_text(found, frame, "component_sku")
    _unique(found, frame, ["kit_sku", "component_sku"], "(kit_sku, component_sku) pair")
    itself = (frame["kit_sku"] == frame["component_sku"]).to_numpy() & (frame["kit_sku"] != "")
    found.flag(frame, itself, "component_sku", "a kit cannot contain itself")
    nested = frame["component_sku"].isin(set(frame["kit_sku"])).to_numpy() & ~itself
    found.flag(frame, nested, "component_sku", "is itself a kit (kits do not nest)")
    quantity = parse_number(
        file, frame, "quantity", low=1, high=1_000_000, integer=True, findings=found
    )
    found.raise_if_any()
    kits: dict[str, Kit] = {}
    for kit_sku, rows in frame.assign(quantity=quantity).groupby("kit_sku", sort=True):
        try:
            kits[str(kit_sku)] = parse_kit(
                str(kit_sku), zip(rows["component_sku"], rows["quantity"].astype(int), strict=True)
            )
        except KitError as exc:  # only the component count is left to break here
            raise ScenarioError(
                file, f"kit {kit_sku!r}: {exc.reason}", column="component_sku"
            ) from None
    return kits


def _no_stocked_kits(path: Path, inventory: pd.DataFrame, kits: dict[str, Kit]) -> None:
    """A kit's availability comes from its components: it has no stock of its own."""
    found = Findings(path.name)
    found.flag(
        inventory,
        inventory["sku"].isin(set(kits)).to_numpy(),
        "sku",
        "is a kit of kits.csv: a kit has no stock of its own (its components do)",
    )
    found.raise_if_any()


def _expand_kits(
    path: Path, orders: pd.DataFrame, kits: dict[str, Kit], profiles: ProfileSet | None
) -> pd.DataFrame:
    """The order lines with each kit line replaced by its component lines
    (:func:`router.kits.expand_lines`); every other column is the kit line's."""
    if "ship_group" not in orders:
        orders = orders.assign(ship_group="")
    channel = orders.get("channel")
    line_ids = orders["line_id"].to_numpy(dtype=object)
    skus = orders["sku"].to_numpy(dtype=object)
    qtys = orders["qty"].to_numpy(dtype=np.int64)
    groups = orders["ship_group"].to_numpy(dtype=object)
    source, out_line, out_sku, out_qty, out_group, out_kit_line, out_kit_sku = (
        [] for _ in range(7)
    )
    for rows in orders.groupby("order_id", sort=False).indices.values():
        split = (
            profiles is not None
            and channel is not None
            and split_kits_of(profiles.of(channel.iat[rows[0]]))
        )
        try:
            lines = expand_lines(
                [(line_ids[r], skus[r], int(qtys[r]), groups[r]) for r in rows],
                kits,
                split_kits=split,
            )
        except KitError as exc:
            row = int(rows[exc.line or 0]) + 2
            raise ScenarioError(path.name, exc.reason, row=row, column=exc.field) from None
        for line in lines:
            source.append(rows[line.source])
            out_line.append(line.line_id)
            out_sku.append(line.sku)
            out_qty.append(line.qty)
            out_group.append(line.ship_group)
            out_kit_line.append(line.kit_line)
            out_kit_sku.append(line.kit_sku)
    # Lines keep file order, an order's component lines where its kit line was.
    order = np.argsort(np.asarray(source, dtype=np.int64), kind="stable")
    pick = np.asarray(source, dtype=np.int64)[order]
    expanded = orders.iloc[pick].reset_index(drop=True)
    for name, values in (
        ("line_id", out_line),
        ("sku", out_sku),
        ("qty", out_qty),
        ("ship_group", out_group),
        ("kit_line", out_kit_line),
        ("kit_sku", out_kit_sku),
    ):
        expanded[name] = np.asarray(values, dtype=np.int64 if name == "qty" else object)[order]
    return expanded


def _optional_column(path: Path, column: str, rows: int) -> pd.Series:
    """An extension column of a CSV file as stripped strings ("" where absent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.ParserWarning)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    raw.columns = [str(c).strip() for c in raw.columns]
    if column not in raw.columns:
        return pd.Series([""] * rows, dtype=object)
    return raw[column].str.strip().reset_index(drop=True)


def _weekly_sales(path: Path, inventory: pd.DataFrame) -> pd.DataFrame:
    """The ``weekly_sales`` column of ``inventory.csv`` (units sold a week at the
    node; empty = unknown) that a profile's clearance credit reads."""
    frame = pd.DataFrame({"weekly_sales": _optional_column(path, "weekly_sales", len(inventory))})
    sales = parse_number(path.name, frame, "weekly_sales", low=0, optional=True)
    return inventory.assign(weekly_sales=sales)


def _profile_columns(
    folder: Path, nodes: pd.DataFrame, orders: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The columns profiles read: ``nodes.group``, ``orders.channel`` (empty =
    ``default``) and ``orders.promised_date`` (empty = no promise)."""
    nodes = nodes.assign(group=_optional_column(folder / "nodes.csv", "group", len(nodes)))
    path = folder / "orders.csv"
    found = Findings(path.name)
    frame = pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "channel": _optional_column(path, "channel", len(orders)),
            "promised_date": _optional_column(path, "promised_date", len(orders)),
            "ship_group": _optional_column(path, "ship_group", len(orders)),
            "origin_store": _optional_column(path, "origin_store", len(orders)),
        }
    )
    bad_channel = ~frame["channel"].str.fullmatch(r"[A-Za-z0-9_.-]{0,64}").to_numpy()
    found.flag(frame, bad_channel, "channel", "must be 1-64 of A-Z a-z 0-9 _ . -, or empty")
    promised = pd.to_datetime(frame["promised_date"], format="%Y-%m-%d", errors="coerce")
    bad_date = (promised.isna() & (frame["promised_date"] != "")).to_numpy()
    found.flag(frame, bad_date, "promised_date", "must be a date YYYY-MM-DD, or empty")
    stores = set(nodes.loc[nodes["kind"] == "store", "node_id"])
    bad_origin = ((frame["origin_store"] != "") & ~frame["origin_store"].isin(stores)).to_numpy()
    found.flag(frame, bad_origin, "origin_store", "must be a store of nodes.csv, or empty")
    found.raise_if_any()
    for col in ("channel", "promised_date", "origin_store"):
        first = frame.groupby("order_id", sort=False)[col].transform("first")
        found.flag(
            frame,
            (frame[col] != first).to_numpy(),
            col,
            "must be the same on every line of an order",
        )
    found.raise_if_any()
    # A ship group is served whole by one node: a SKU of a group may not also appear
    # on a line of the order outside that group.
    grouped = frame.assign(sku=orders["sku"])
    per_sku = grouped.groupby(["order_id", "sku"], sort=False)["ship_group"].transform("nunique")
    mixed = ((per_sku > 1) & (frame["ship_group"] != "")).to_numpy()
    found.flag(
        frame,
        mixed,
        "ship_group",
        "the line's SKU also appears on a line of its order outside this ship group",
    )
    found.raise_if_any()
    channel = frame["channel"].where(frame["channel"] != "", DEFAULT_CHANNEL)
    dates = [None if pd.isna(d) else d.date() for d in promised]
    return nodes, orders.assign(
        channel=channel.to_numpy(),
        promised_date=dates,
        ship_group=frame["ship_group"].to_numpy(),
        origin_store=frame["origin_store"].to_numpy(),
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


def _require_text(findings: Findings, frame: pd.DataFrame, column: str) -> None:
    findings.flag(frame, (frame[column] == "").to_numpy(), column, "must not be empty")


def parse_number(
    file: str,
    frame: pd.DataFrame,
    column: str,
    *,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    optional: bool = False,
    findings: Findings | None = None,
) -> np.ndarray:
    """Parse a numeric column; an empty cell is NaN when ``optional``.

    Broken cells go to ``findings`` (raised by its owner later), or are raised
    at once when there is none.
    """
    collect = findings or Findings(file)
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
    collect.flag(frame, bad, column, rule)
    if integer:
        # Beyond 2**53 a float no longer holds every integer exactly.
        too_large = present & ~bad & (np.abs(values) > MAX_INTEGER)
        collect.flag(frame, too_large, column, f"must be an integer at most {MAX_INTEGER}")
    if findings is None:
        collect.raise_if_any()
    return values


def _unique(findings: Findings, frame: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = frame.duplicated(subset=keys, keep="first").to_numpy()
    findings.flag(frame, dup, keys[-1], f"duplicate {what}")


# --- the three tables --------------------------------------------------------


def _read_nodes(path: Path) -> pd.DataFrame:
    file = path.name
    frame = read_table(path, NODE_COLUMNS)
    found = Findings(file)
    _require_text(found, frame, "node_id")
    _unique(found, frame, ["node_id"], "node_id")
    bad_kind = ~frame["kind"].isin(NODE_KINDS).to_numpy()
    found.flag(frame, bad_kind, "kind", "must be 'warehouse' or 'store'")
    out = pd.DataFrame({"node_id": frame["node_id"], "kind": frame["kind"]})
    out["lat"] = parse_number(file, frame, "lat", low=-90, high=90, findings=found)
    out["lon"] = parse_number(file, frame, "lon", low=-180, high=180, findings=found)
    for col in ("ship_fixed", "ship_per_km", "handling_per_unit"):
        out[col] = parse_number(file, frame, col, low=0, findings=found)
    out["capacity_units"] = parse_number(
        file, frame, "capacity_units", low=0, integer=True, optional=True, findings=found
    )
    out["max_km"] = parse_number(file, frame, "max_km", low=0, optional=True, findings=found)
    found.raise_if_any()
    return out


def _read_inventory(path: Path, node_ids: set[str]) -> pd.DataFrame:
    file = path.name
    frame = read_table(path, INVENTORY_COLUMNS)
    found = Findings(file)
    _require_text(found, frame, "node_id")
    unknown = ~frame["node_id"].isin(node_ids).to_numpy() & (frame["node_id"] != "").to_numpy()
    found.flag(frame, unknown, "node_id", "unknown node (not in nodes.csv)")
    _require_text(found, frame, "sku")
    _unique(found, frame, ["node_id", "sku"], "(node_id, sku) pair")
    available = parse_number(file, frame, "available", low=0, integer=True, findings=found)
    found.raise_if_any()
    out = pd.DataFrame({"node_id": frame["node_id"], "sku": frame["sku"]})
    out["available"] = available.astype(np.int64)
    return out


def _read_orders(path: Path, node_ids: set[str]) -> pd.DataFrame:
    file = path.name
    frame = read_table(path, ORDER_COLUMNS)
    found = Findings(file)
    for col in ("order_id", "line_id", "sku"):
        _require_text(found, frame, col)
    _unique(found, frame, ["order_id", "line_id"], "line_id within its order")
    out = pd.DataFrame({c: frame[c] for c in ("order_id", "line_id", "sku")})
    qty = parse_number(file, frame, "qty", low=1, integer=True, findings=found)
    out["lat"] = parse_number(file, frame, "lat", low=-90, high=90, findings=found)
    out["lon"] = parse_number(file, frame, "lon", low=-180, high=180, findings=found)
    pickup = frame["pickup_node"]
    unknown = ((pickup != "") & ~pickup.isin(node_ids)).to_numpy()
    found.flag(frame, unknown, "pickup_node", "unknown node (not in nodes.csv)")
    found.raise_if_any()
    out.insert(3, "qty", qty.astype(np.int64))
    out["pickup_node"] = pickup
    # Location and pickup node are properties of the order, not of the line.
    for col in ("lat", "lon", "pickup_node"):
        first = out.groupby("order_id", sort=False)[col].transform("first")
        differs = (out[col] != first).to_numpy()
        found.flag(frame, differs, col, "must be the same on every line of an order")
    found.raise_if_any()
    return out
