"""Tests for router.scenario: loading, typing and every validation rule.

The base scenario (``_base`` below) is valid; each bad-input test changes one
cell or one file and expects a :class:`ScenarioError` naming the file, the row
(header = row 1, first data row = row 2) and the column. Each numeric rule also
gets its boundary pair: the last accepted value and the first rejected one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from router.scenario import ScenarioError, load_scenario
from tests.conftest import SCENARIO_HEADERS, line_row, node_row

NODES = [
    node_row("W", ship_fixed=5, ship_per_km=0.01, handling=0.5),  # row 2
    node_row(
        "S", "store", lon=1, ship_fixed=2, ship_per_km=0.1, handling=1, capacity=3, max_km=120
    ),
]
INVENTORY = ["W,A,10", "W,B,10", "S,A,3"]  # rows 2, 3, 4
ORDERS = [
    line_row("O1", "L1", "A", 2),  # row 2
    line_row("O1", "L2", "B", 1),  # row 3
    line_row("O2", "L1", "A", 1, lon=3, pickup="S"),  # row 4
]


def _base(make, **changes):
    tables = {"nodes": NODES, "inventory": INVENTORY, "orders": ORDERS, **changes}
    return make(**tables)


def _replace(rows: list[str], index: int, row: str) -> list[str]:
    return [row if i == index else r for i, r in enumerate(rows)]


def _expect_error(folder, file: str, row: int | None, column: str | None) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(folder)
    error = info.value
    assert (error.file, error.row, error.column) == (file, row, column), str(error)
    message = str(error)
    assert message.startswith(file)
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert f"column {column}" in message
    return error


# --- a valid scenario ---------------------------------------------------------


def test_valid_scenario_loads_typed_in_file_order(tiny_scenario_dir):
    scenario = load_scenario(_base(tiny_scenario_dir))
    assert scenario.split_penalty == 6.0 and scenario.unfilled_penalty == 150.0
    assert list(scenario.nodes["node_id"]) == ["W", "S"]
    assert math.isnan(scenario.nodes["capacity_units"].iloc[0])  # empty = no limit
    assert scenario.nodes["capacity_units"].iloc[1] == 3
    assert math.isnan(scenario.nodes["max_km"].iloc[0])
    assert scenario.inventory["available"].dtype == np.int64
    assert scenario.orders["qty"].dtype == np.int64
    assert list(scenario.orders["pickup_node"]) == ["", "", "S"]
    assert list(scenario.orders["order_id"]) == ["O1", "O1", "O2"]


def test_extra_columns_and_column_order_are_free(tiny_scenario_dir):
    orders = (
        "note,pickup_node,lon,lat,qty,sku,line_id,order_id\n"
        "gift,,0,0,2,A,L1,O1\n"
        "x,S,3,0,1,A,L1,O2\n"
    )
    scenario = load_scenario(_base(tiny_scenario_dir, orders=orders))
    assert list(scenario.orders.columns) == [
        "order_id",
        "line_id",
        "sku",
        "qty",
        "lat",
        "lon",
        "pickup_node",
    ]
    assert list(scenario.orders["qty"]) == [2, 1]


def test_same_sku_on_two_lines_of_one_order_is_allowed(tiny_scenario_dir):
    orders = [line_row("O1", "L1", "A", 1), line_row("O1", "L2", "A", 2)]
    scenario = load_scenario(_base(tiny_scenario_dir, orders=orders))
    assert list(scenario.orders["sku"]) == ["A", "A"]


# --- bad input: each kind names file, row and column ----------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nowhere")


@pytest.mark.parametrize("file", ["scenario.json", "nodes.csv", "inventory.csv", "orders.csv"])
def test_missing_file(tiny_scenario_dir, file):
    folder = _base(tiny_scenario_dir)
    (folder / file).unlink()
    error = _expect_error(folder, file, None, None)
    assert "not found" in str(error)


def test_missing_column(tiny_scenario_dir):
    orders = "order_id,line_id,sku,qty,lat,lon\nO1,L1,A,1,0,0\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario(_base(tiny_scenario_dir, orders=orders))
    message = str(info.value)
    assert message.startswith("orders.csv") and "pickup_node" in message


def test_missing_column_sets_header_row_and_column(tiny_scenario_dir):
    orders = "order_id,line_id,sku,qty,lat,lon\nO1,L1,A,1,0,0\n"
    _expect_error(_base(tiny_scenario_dir, orders=orders), "orders.csv", 1, "pickup_node")


# fmt: off
BAD_CELLS = {
    # id: (table, row index in the list, replacement row, file, file row, column)
    "ship_fixed not a number": (
        "nodes", 1, "S,store,0,1,abc,0.1,1,3,120", "nodes.csv", 3, "ship_fixed"),
    "lat not a number": ("nodes", 0, "W,warehouse,north,0,5,0.01,0.5,,", "nodes.csv", 2, "lat"),
    "qty not a number": ("orders", 1, line_row("O1", "L2", "B", "two"), "orders.csv", 3, "qty"),
    "available not a number": ("inventory", 0, "W,A,many", "inventory.csv", 2, "available"),
    "negative qty": ("orders", 1, line_row("O1", "L2", "B", -1), "orders.csv", 3, "qty"),
    "zero qty": ("orders", 2, line_row("O2", "L1", "A", 0, lon=3, pickup="S"), "orders.csv", 4, "qty"),
    "fractional qty": ("orders", 0, line_row("O1", "L1", "A", 1.5), "orders.csv", 2, "qty"),
    "negative capacity": (
        "nodes", 1, node_row("S", "store", lon=1, capacity=-1), "nodes.csv", 3, "capacity_units"),
    "fractional capacity": (
        "nodes", 1, node_row("S", "store", lon=1, capacity=1.5), "nodes.csv", 3, "capacity_units"),
    "negative available": ("inventory", 2, "S,A,-1", "inventory.csv", 4, "available"),
    "negative ship_per_km": (
        "nodes", 0, node_row("W", ship_per_km=-0.1), "nodes.csv", 2, "ship_per_km"),
    "negative max_km": ("nodes", 1, node_row("S", "store", lon=1, max_km=-5), "nodes.csv", 3, "max_km"),
    "node latitude out of range": ("nodes", 0, node_row("W", lat=90.5), "nodes.csv", 2, "lat"),
    "node longitude out of range": ("nodes", 1, node_row("S", "store", lon=181), "nodes.csv", 3, "lon"),
    "customer latitude out of range": (
        "orders", 2, line_row("O2", "L1", "A", 1, lat=-91, pickup="S"), "orders.csv", 4, "lat"),
    "unknown node in inventory": ("inventory", 1, "X,B,10", "inventory.csv", 3, "node_id"),
    "duplicate node id": ("nodes", 1, node_row("W", "store", lon=1), "nodes.csv", 3, "node_id"),
    "duplicate (node, sku)": ("inventory", 2, "W,A,3", "inventory.csv", 4, "sku"),
    "unknown node kind": ("nodes", 0, node_row("W", "depot"), "nodes.csv", 2, "kind"),
    "lines of one order at different latitudes": (
        "orders", 1, line_row("O1", "L2", "B", 1, lat=1), "orders.csv", 3, "lat"),
    "lines of one order at different longitudes": (
        "orders", 1, line_row("O1", "L2", "B", 1, lon=2), "orders.csv", 3, "lon"),
    "lines of one order with different pickup nodes": (
        "orders", 1, line_row("O1", "L2", "B", 1, pickup="S"), "orders.csv", 3, "pickup_node"),
    "unknown pickup node": (
        "orders", 2, line_row("O2", "L1", "A", 1, lon=3, pickup="S9"), "orders.csv", 4, "pickup_node"),
    "duplicate line id in an order": ("orders", 1, line_row("O1", "L1", "B", 1), "orders.csv", 3, "line_id"),
    "empty sku": ("orders", 0, line_row("O1", "L1", "", 2), "orders.csv", 2, "sku"),
    "empty node id": ("nodes", 1, node_row("", "store", lon=1), "nodes.csv", 3, "node_id"),
}
# fmt: on


@pytest.mark.parametrize(
    ("table", "index", "row", "file", "file_row", "column"),
    list(BAD_CELLS.values()),
    ids=list(BAD_CELLS),
)
def test_bad_cell_names_file_row_and_column(
    tiny_scenario_dir, table, index, row, file, file_row, column
):
    base = {"nodes": NODES, "inventory": INVENTORY, "orders": ORDERS}
    folder = _base(tiny_scenario_dir, **{table: _replace(base[table], index, row)})
    _expect_error(folder, file, file_row, column)


# fmt: off
BAD_META = {
    "wrong format": {"format": "omniroute-scenario/2", "split_penalty": 6, "unfilled_penalty": 150},
    "format missing": {"split_penalty": 6, "unfilled_penalty": 150},
    "bad JSON": '{"format": "omniroute-scenario/1", "split_penalty": 6,',
    "not an object": '["omniroute-scenario/1"]',
    "negative split_penalty": {
        "format": "omniroute-scenario/1", "split_penalty": -1, "unfilled_penalty": 150},
    "unfilled_penalty a string": {
        "format": "omniroute-scenario/1", "split_penalty": 6, "unfilled_penalty": "150"},
    "split_penalty missing": {"format": "omniroute-scenario/1", "unfilled_penalty": 150},
}
# fmt: on


@pytest.mark.parametrize("meta", list(BAD_META.values()), ids=list(BAD_META))
def test_bad_scenario_json(tiny_scenario_dir, meta):
    _expect_error(_base(tiny_scenario_dir, meta=meta), "scenario.json", None, None)


def test_wrong_format_message_names_the_key(tiny_scenario_dir):
    error = _expect_error(
        _base(tiny_scenario_dir, meta=BAD_META["wrong format"]), "scenario.json", None, None
    )
    assert "format" in str(error) and "omniroute-scenario/1" in str(error)


def test_file_not_utf8(tiny_scenario_dir):
    folder = _base(tiny_scenario_dir)
    (folder / "nodes.csv").write_bytes(
        (folder / "nodes.csv").read_bytes().replace(b"W,", b"W\xe9,")
    )
    error = _expect_error(folder, "nodes.csv", None, None)
    assert "UTF-8" in str(error)


def test_malformed_csv(tiny_scenario_dir):
    inventory = "node_id,sku,available\nW,A,10\nW,B,10,extra\n"  # a ragged row
    _expect_error(_base(tiny_scenario_dir, inventory=inventory), "inventory.csv", None, None)


def test_trailing_comma_on_every_row_does_not_shift_columns(tiny_scenario_dir):
    orders = SCENARIO_HEADERS["orders.csv"] + "\n" + "".join(row + ",\n" for row in ORDERS)
    folder = _base(tiny_scenario_dir, orders=orders)
    try:
        scenario = load_scenario(folder)
    except ScenarioError as error:  # acceptable: a row-shape error on row 2, no column blamed
        assert (error.row, error.column) == (2, None), str(error)
        return
    assert list(scenario.orders["qty"]) == [2, 1, 1]
    assert list(scenario.orders["pickup_node"]) == ["", "", "S"]


def test_empty_file(tiny_scenario_dir):
    _expect_error(_base(tiny_scenario_dir, orders=""), "orders.csv", None, None)


def test_first_bad_row_is_reported(tiny_scenario_dir):
    inventory = ["W,A,10", "W,B,-2", "S,A,-3"]
    _expect_error(_base(tiny_scenario_dir, inventory=inventory), "inventory.csv", 3, "available")


# --- boundary pairs: the last accepted value, the first rejected one --------------

# fmt: off
BOUNDARIES = {
    # id: (table, index, accepted row, rejected row, column)
    "latitude 90 / 90.5": ("nodes", 0, node_row("W", lat=90), node_row("W", lat=90.5), "lat"),
    "latitude -90 / -90.01": (
        "nodes", 0, node_row("W", lat=-90), node_row("W", lat=-90.01), "lat"),
    "capacity 0 / -1": (
        "nodes", 1, node_row("S", "store", lon=1, capacity=0),
        node_row("S", "store", lon=1, capacity=-1), "capacity_units"),
    "max_km 0 / -0.5": (
        "nodes", 1, node_row("S", "store", lon=1, max_km=0),
        node_row("S", "store", lon=1, max_km=-0.5), "max_km"),
    "available 0 / -1": ("inventory", 2, "S,A,0", "S,A,-1", "available"),
    "qty 1 / 0": ("orders", 0, line_row("O1", "L1", "A", 1), line_row("O1", "L1", "A", 0), "qty"),
}
# fmt: on


@pytest.mark.parametrize(
    ("table", "index", "accepted", "rejected", "column"),
    list(BOUNDARIES.values()),
    ids=list(BOUNDARIES),
)
def test_boundary_pair(tiny_scenario_dir, table, index, accepted, rejected, column):
    base = {"nodes": NODES, "inventory": INVENTORY, "orders": ORDERS}
    load_scenario(_base(tiny_scenario_dir, **{table: _replace(base[table], index, accepted)}))
    folder = _base(tiny_scenario_dir, **{table: _replace(base[table], index, rejected)})
    file = {"nodes": "nodes.csv", "inventory": "inventory.csv", "orders": "orders.csv"}[table]
    _expect_error(folder, file, index + 2, column)


@pytest.mark.parametrize(
    ("table", "rows", "column"),
    [
        ("inventory", ["W,A,99999999999999999999", "W,B,10", "S,A,3"], "available"),
        (
            "orders",
            [line_row("O1", "L1", "A", 99999999999999999999), *ORDERS[1:]],
            "qty",
        ),
    ],
    ids=["available", "qty"],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_integer_too_large_is_rejected_or_kept(tiny_scenario_dir, table, rows, column):
    folder = _base(tiny_scenario_dir, **{table: rows})
    try:
        scenario = load_scenario(folder)
    except ScenarioError as error:
        assert (error.row, error.column) == (2, column)
        return
    frame = scenario.inventory if table == "inventory" else scenario.orders
    assert frame[column].iloc[0] > 0


# --- every broken row is listed, up to a limit ----------------------------------------


def test_every_broken_row_of_a_file_is_listed_in_row_order(tiny_scenario_dir):
    orders = [
        line_row("O1", "L1", "A", 0),  # row 2: qty
        line_row("O1", "L2", "B", 1),  # row 3: fine
        line_row("O2", "L1", "A", 1, lon=3, pickup="S9"),  # row 4: pickup_node
        line_row("O3", "L1", "", 1, lat=95),  # row 5: sku and lat
    ]
    error = _expect_error(_base(tiny_scenario_dir, orders=orders), "orders.csv", 2, "qty")
    assert [(c.row, c.column) for c in error.cells] == [
        (2, "qty"), (4, "pickup_node"), (5, "sku"), (5, "lat"),
    ]  # fmt: skip
    assert error.unlisted == 0
    assert str(error) == (
        "orders.csv row 2, column qty: must be an integer >= 1 (got '0'); "
        "row 4, column pickup_node: unknown node (not in nodes.csv) (got 'S9'); "
        "row 5, column sku: must not be empty (got ''); "
        "row 5, column lat: must be a number >= -90 and <= 90 (got '95')"
    )


def test_a_single_broken_row_reads_as_before(tiny_scenario_dir):
    inventory = _replace(INVENTORY, 1, "W,B,-1")
    error = _expect_error(_base(tiny_scenario_dir, inventory=inventory), "inventory.csv", 3, "available")
    assert str(error) == "inventory.csv row 3, column available: must be an integer >= 0 (got '-1')"


def test_past_twenty_broken_cells_the_rest_are_counted(tiny_scenario_dir):
    inventory = [*INVENTORY, *(f"W,X{i},-{i + 1}" for i in range(25))]  # rows 5-29
    error = _expect_error(_base(tiny_scenario_dir, inventory=inventory), "inventory.csv", 5, "available")
    assert len(error.cells) == 20
    assert error.cells[-1].row == 24
    assert error.unlisted == 5
    assert str(error).endswith("; and 5 more")
    assert "\n" not in str(error)
