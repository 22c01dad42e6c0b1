"""An independent checker for ``assignments.csv``: feasibility and cost, no solver.

Tests and benchmarks grade every answer with this module, so the solver never
grades itself. It follows ``docs/scenario-format.md`` to the letter: the
five feasibility rules and the cost formula, with distances from
:func:`router.geo.haversine_km`, compared with ``<=`` and no tolerance.
Everything is vectorised over the assignment rows: 250,000 rows check in about
a third of a second; only the text of each violation is built per violation.

Where the spec is silent, this module decides:

- **Duplicate rows.** The spec allows one row per (order line, node). A repeated
  ``(order_id, line_id, node_id)`` is a rule-1 (``"line"``) violation; its units
  are then summed with the first row's, so every other rule and the cost see all
  the units the file allocates.
- **Rows naming an unknown line or node** are rule-1 violations and are left out
  of everything else (stock, capacity, reach, pickup and cost), since their SKU,
  node or customer is unknown.
- **Over-allocated lines** are rule-1 violations; their units still count for
  stock, capacity, handling and shipments, and the line counts 0 unfilled units.
- **Cost is computed even when infeasible**, over the rows that name an
  existing line and node, so a user sees both the violations and the cost.
- **Reach and pickup** are judged per shipment (order, node), one violation
  each; a pickup order's shipment costs no shipping even at a wrong node.
- Float sums use :func:`math.fsum`, so the cost does not depend on row order.
- **qty** is read as :mod:`router.scenario` reads integers: ``2.0`` is 2;
  ``0``, ``1.5``, ``abc`` or an empty cell is a load error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router.channels import ChannelStock
from router.geo import haversine_km
from router.kits import KIT_GROUP_PREFIX
from router.modes import MODES, PICKUP_TRANSFER, SAME_CITY, shipment_mode
from router.profiles import compile_rules, daily_capacity, daily_orders, promised_days
from router.scenario import (
    Scenario,
    ScenarioError,
    _optional_column,
    parse_number,
    read_table,
)

ASSIGNMENT_COLUMNS = ("order_id", "line_id", "node_id", "qty")
RULES = ("line", "stock", "capacity", "reach", "pickup", "profile", "kit", "channel_share")
MAX_TOTAL_QTY = 2**62
"""Largest sum of qty over a file, so every int64 unit sum is exact."""
REPORT_VIOLATIONS = 20


@dataclass(frozen=True)
class Violation:
    """One broken feasibility rule: ``rule`` is one of :data:`RULES`."""

    rule: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    """Feasibility and cost of one assignment, recomputed from the scenario.

    ``total_cost = shipping + handling + split_penalty * splits
    + unfilled_penalty * unfilled_units``, exactly as the format defines it.
    ``orders``, ``lines`` and ``units`` describe the scenario; ``shipments``
    and ``allocated_units`` the assignment (rows naming a known line and node).
    """

    feasible: bool
    violations: list[Violation]
    total_cost: float
    shipping: float
    handling: float
    splits: int
    unfilled_units: int
    shipments: int
    allocated_units: int
    orders: int
    lines: int
    units: int
    split_penalty: float
    unfilled_penalty: float
    profile_cost: float = 0.0
    """The routing profiles' shipment costs (docs/profiles.md), in ``total_cost``."""
    late_orders: int = 0
    """Orders whose promised date no allowed node holding their goods could meet."""
    clearance_credit: float = 0.0
    """The profiles' clearance credit, subtracted in ``total_cost``."""


# --- reading ------------------------------------------------------------------


def load_assignments(path: str | Path) -> pd.DataFrame:
    """Read an ``assignments.csv``; raise :class:`ScenarioError` on a malformed file.

    Returns a DataFrame with the columns ``order_id``, ``line_id``, ``node_id``
    (strings, stripped) and ``qty`` (int64 >= 1), in file order. Whether the
    ids exist is not checked here: that is rule 1, reported by :func:`check`.
    A file with only the header row is an empty assignment.
    """
    path = Path(path)
    file = path.name
    frame = read_table(path, ASSIGNMENT_COLUMNS)
    qty = parse_number(file, frame, "qty", low=1, integer=True)
    if qty.sum() > MAX_TOTAL_QTY:
        raise ScenarioError(file, "the qty column sums to more than 2**62", column="qty")
    out = frame.loc[:, ["order_id", "line_id", "node_id"]].copy()
    out["qty"] = qty.astype(np.int64)
    mode = _optional_column(path, "mode", len(out))
    if (mode != "").any():  # the answer's fulfilment modes (docs/profiles.md), verified
        out["mode"] = mode.to_numpy()
    return out


# --- checking -----------------------------------------------------------------


@dataclass(frozen=True)
class _Allocation:
    """The valid rows summed per (line, node): one entry per allocation pair."""

    line: np.ndarray  # index into scenario.orders
    node: np.ndarray  # index into scenario.nodes
    qty: np.ndarray  # int64 units


def check(scenario: Scenario, assignments: pd.DataFrame) -> CheckReport:
    """Check ``assignments`` (as :func:`load_assignments` returns) against ``scenario``.

    Parameters
    ----------
    scenario
        The validated problem.
    assignments
        One row per allocation: ``order_id``, ``line_id``, ``node_id``, ``qty``.

    Returns
    -------
    CheckReport
        Every violation of the five rules, and the cost terms of the spec.
    """
    rows = _normalised(assignments)
    orders, nodes = scenario.orders, scenario.nodes
    line_of_row = pd.MultiIndex.from_frame(orders[["order_id", "line_id"]]).get_indexer(
        pd.MultiIndex.from_arrays([rows["order_id"], rows["line_id"]])
    )
    node_of_row = pd.Index(nodes["node_id"]).get_indexer(rows["node_id"])

    violations = _unknown_rows(rows, line_of_row, node_of_row)
    known = (line_of_row >= 0) & (node_of_row >= 0)
    allocation, duplicates = _allocation_pairs(
        rows, line_of_row[known], node_of_row[known], np.flatnonzero(known), len(nodes)
    )
    violations += duplicates

    line_qty = orders["qty"].to_numpy(dtype=np.int64)
    allocated = _sum_by(allocation.line, allocation.qty, len(orders))
    violations += _over_allocated_lines(orders, allocated)
    violations += _stock(scenario, allocation)
    capacity = nodes["capacity_units"].to_numpy()
    if scenario.profiles is not None:
        day = daily_capacity(scenario.profiles, nodes)
        capacity = np.fmin(capacity, np.where(np.isinf(day), np.nan, day))
    label = "capacity_units" if scenario.profiles is None else "capacity (or daily units limit)"
    violations += _capacity(nodes, allocation, capacity, label)

    order_of_line, order_ids = pd.factorize(orders["order_id"], sort=False)
    shipment_order, shipment_node, shipment_line = _shipments(
        order_of_line[allocation.line], allocation.node, allocation.line, len(nodes)
    )
    is_pickup = (orders["pickup_node"] != "").to_numpy()
    pickup_shipment = is_pickup[shipment_line]
    distance_km = haversine_km(
        nodes["lat"].to_numpy()[shipment_node],
        nodes["lon"].to_numpy()[shipment_node],
        orders["lat"].to_numpy()[shipment_line],
        orders["lon"].to_numpy()[shipment_line],
    )
    violations += _reach(
        nodes, order_ids, shipment_order, shipment_node, distance_km, ~pickup_shipment
    )
    profile_cost, late_orders, credit = 0.0, 0, 0.0
    found: list[Violation] = []
    shipment_modes = None
    if scenario.profiles is not None:
        found, profile_cost, late_orders, shipment_modes, mode_cost = _profiles(
            scenario, order_of_line, shipment_order, shipment_node, shipment_line, distance_km
        )
    transferred = None if shipment_modes is None else shipment_modes == PICKUP_TRANSFER
    violations += _pickup(
        orders, nodes, order_ids, shipment_order, shipment_node, shipment_line, transferred
    )
    if scenario.profiles is not None:
        violations += found
        violations += _channel_shares(scenario, allocation)
        credit = _clearance(scenario, allocation)
        if "mode" in assignments.columns:
            violations += _written_modes(
                assignments,
                known,
                order_of_line[line_of_row[known]],
                node_of_row[known],
                shipment_order,
                shipment_node,
                shipment_modes,
                len(nodes),
            )
        # Each shipment's mode sets its shipping (router.modes).
        shipping = math.fsum(mode_cost.tolist())
    else:
        shipping = _shipping(nodes, shipment_node, distance_km, ~pickup_shipment)
    # (a kit's components ship together with or without profiles: router.kits)
    violations += _ship_groups_of(scenario, allocation)
    handling = math.fsum(
        (allocation.qty * nodes["handling_per_unit"].to_numpy()[allocation.node]).tolist()
    )
    shipments_per_order = np.bincount(shipment_order, minlength=len(order_ids))
    splits = int(np.maximum(shipments_per_order - 1, 0).sum())
    unfilled_units = int(np.maximum(line_qty - allocated, 0).sum())
    total_cost = math.fsum(
        [
            shipping,
            handling,
            profile_cost,
            -credit,
            scenario.split_penalty * splits,
            scenario.unfilled_penalty * unfilled_units,
        ]
    )
    return CheckReport(
        feasible=not violations,
        violations=violations,
        total_cost=total_cost,
        shipping=shipping,
        handling=handling,
        splits=splits,
        unfilled_units=unfilled_units,
        shipments=len(shipment_order),
        allocated_units=int(allocation.qty.sum()),
        orders=len(order_ids),
        lines=len(orders),
        units=int(line_qty.sum()),
        split_penalty=scenario.split_penalty,
        unfilled_penalty=scenario.unfilled_penalty,
        profile_cost=profile_cost,
        late_orders=late_orders,
        clearance_credit=credit,
    )


def _normalised(assignments: pd.DataFrame) -> pd.DataFrame:
    """The four columns, ids as strings and qty as int64 >= 1, positional index."""
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in assignments.columns]
    if missing:
        raise ValueError(f"assignments: missing column(s): {', '.join(missing)}")
    rows = pd.DataFrame(
        {c: assignments[c].astype(str).to_numpy() for c in ("order_id", "line_id", "node_id")}
    )
    qty = assignments["qty"].to_numpy()
    if not np.issubdtype(qty.dtype, np.integer) or (qty < 1).any():
        raise ValueError("assignments: qty must be integers >= 1 (use load_assignments)")
    rows["qty"] = qty.astype(np.int64)
    return rows


def _file_row(position: int) -> int:
    """Row number as a spreadsheet shows it: the header is row 1."""
    return position + 2


def _sum_by(group: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact int64 sum of ``values`` per ``group`` index in ``range(size)``."""
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, group, values)
    return out


# --- rule 1: lines ------------------------------------------------------------


def _unknown_rows(
    rows: pd.DataFrame, line_of_row: np.ndarray, node_of_row: np.ndarray
) -> list[Violation]:
    """One violation per row naming a line or node the scenario does not have."""
    unknown_line = line_of_row < 0
    unknown_node = node_of_row < 0
    bad = np.flatnonzero(unknown_line | unknown_node)
    out = []
    for position, order_id, line_id, node_id, no_line, no_node in zip(
        bad.tolist(),
        rows["order_id"].to_numpy()[bad].tolist(),
        rows["line_id"].to_numpy()[bad].tolist(),
        rows["node_id"].to_numpy()[bad].tolist(),
        unknown_line[bad].tolist(),
        unknown_node[bad].tolist(),
        strict=True,
    ):
        problems = []
        if no_line:
            problems.append(f"order {order_id!r} line {line_id!r} is not in orders.csv")
        if no_node:
            problems.append(f"node {node_id!r} is not in nodes.csv")
        out.append(
            Violation(
                "line",
                f"assignments.csv row {_file_row(position)}: {'; '.join(problems)} "
                "(row ignored for the other rules and the cost)",
            )
        )
    return out


def _allocation_pairs(
    rows: pd.DataFrame,
    line: np.ndarray,
    node: np.ndarray,
    position: np.ndarray,
    node_count: int,
) -> tuple[_Allocation, list[Violation]]:
    """Sum the known rows per (line, node); a repeated pair is a rule-1 violation."""
    stride = max(node_count, 1)
    key = line.astype(np.int64) * stride + node
    pair_key, first, pair_of_row = np.unique(key, return_index=True, return_inverse=True)
    qty = rows["qty"].to_numpy()[position]
    allocation = _Allocation(
        line=pair_key // stride,
        node=pair_key % stride,
        qty=_sum_by(pair_of_row, qty, len(pair_key)),
    )
    # np.unique's index is the first occurrence; every other row of a pair repeats it.
    repeated = np.flatnonzero(first[pair_of_row] != np.arange(len(key)))
    violations = [
        Violation(
            "line",
            f"assignments.csv row {_file_row(row)}: order {order_id!r} line {line_id!r} "
            f"node {node_id!r} is listed again (first at row {_file_row(first_row)}); "
            "one row per (line, node) is allowed, the units are summed",
        )
        for row, first_row, order_id, line_id, node_id in zip(
            position[repeated].tolist(),
            position[first[pair_of_row[repeated]]].tolist(),
            rows["order_id"].to_numpy()[position[repeated]].tolist(),
            rows["line_id"].to_numpy()[position[repeated]].tolist(),
            rows["node_id"].to_numpy()[position[repeated]].tolist(),
            strict=True,
        )
    ]
    return allocation, violations


def _over_allocated_lines(orders: pd.DataFrame, allocated: np.ndarray) -> list[Violation]:
    """Rule 1: the units allocated to a line are at most its ``qty``."""
    qty = orders["qty"].to_numpy()
    over = np.flatnonzero(allocated > qty)
    return [
        Violation(
            "line",
            f"order {order_id!r} line {line_id!r}: {units} units allocated, qty is {limit}",
        )
        for order_id, line_id, units, limit in zip(
            orders["order_id"].to_numpy()[over].tolist(),
            orders["line_id"].to_numpy()[over].tolist(),
            allocated[over].tolist(),
            qty[over].tolist(),
            strict=True,
        )
    ]


# --- rules 2 and 3: stock and capacity ----------------------------------------


def _stock(scenario: Scenario, allocation: _Allocation) -> list[Violation]:
    """Rule 2: per (node, sku), units allocated <= ``available`` (0 when not listed)."""
    nodes, inventory = scenario.nodes, scenario.inventory
    sku_of_line, skus = pd.factorize(scenario.orders["sku"], sort=False)
    sku_count = max(len(skus), 1)
    key = allocation.node.astype(np.int64) * sku_count + sku_of_line[allocation.line]
    used_key, pair_of_key = np.unique(key, return_inverse=True)
    used = _sum_by(pair_of_key, allocation.qty, len(used_key))

    inventory_node = pd.Index(nodes["node_id"]).get_indexer(inventory["node_id"])
    inventory_sku = pd.Index(skus).get_indexer(inventory["sku"])
    ordered = inventory_sku >= 0  # stock of a SKU nobody ordered cannot be over-used
    stock_key = inventory_node[ordered].astype(np.int64) * sku_count + inventory_sku[ordered]
    # A (node, sku) pair is listed at most once; an unlisted one (-1) has 0 available.
    listed_at = pd.Index(stock_key).get_indexer(used_key)
    available = np.append(inventory["available"].to_numpy()[ordered], 0)[listed_at]

    over = np.flatnonzero(used > available)
    node_ids = nodes["node_id"].to_numpy()
    sku_names = np.asarray(skus, dtype=object)
    return [
        Violation(
            "stock",
            f"node {node_id!r} sku {sku!r}: {units} units allocated, available {limit}",
        )
        for node_id, sku, units, limit in zip(
            node_ids[used_key[over] // sku_count].tolist(),
            sku_names[used_key[over] % sku_count].tolist(),
            used[over].tolist(),
            available[over].tolist(),
            strict=True,
        )
    ]


def _capacity(
    nodes: pd.DataFrame, allocation: _Allocation, capacity: np.ndarray, label: str
) -> list[Violation]:
    """Rule 3: units allocated at a node (all SKUs, pickups included) <= ``capacity_units``
    (with profiles, also <= the node's daily units limit; NaN = no limit)."""
    used = _sum_by(allocation.node, allocation.qty, len(nodes))
    over = np.flatnonzero(~np.isnan(capacity) & (used > capacity))
    return [
        Violation(
            "capacity",
            f"node {node_id!r}: {units} units allocated (all SKUs, pickups included), "
            f"{label} {int(limit)}",
        )
        for node_id, units, limit in zip(
            nodes["node_id"].to_numpy()[over].tolist(),
            used[over].tolist(),
            capacity[over].tolist(),
            strict=True,
        )
    ]


# --- shipments: rules 4 and 5, shipping and splits ----------------------------


def _shipments(
    pair_order: np.ndarray, pair_node: np.ndarray, pair_line: np.ndarray, node_count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (order, node) pairs with units, and one line of each (for its customer)."""
    stride = max(node_count, 1)
    key = pair_order.astype(np.int64) * stride + pair_node
    shipment_key, first = np.unique(key, return_index=True)
    return shipment_key // stride, shipment_key % stride, pair_line[first]


def _reach(
    nodes: pd.DataFrame,
    order_ids: pd.Index,
    shipment_order: np.ndarray,
    shipment_node: np.ndarray,
    distance_km: np.ndarray,
    delivery: np.ndarray,
) -> list[Violation]:
    """Rule 4: a delivery order uses a node only within its ``max_km`` (when set)."""
    max_km = nodes["max_km"].to_numpy()[shipment_node]
    beyond = np.flatnonzero(delivery & ~np.isnan(max_km) & (distance_km > max_km))
    return [
        Violation(
            "reach",
            f"order {order_id!r} is delivered from node {node_id!r} at {km:.6f} km, "
            f"beyond its max_km {limit:.10g}",
        )
        for order_id, node_id, km, limit in zip(
            np.asarray(order_ids, dtype=object)[shipment_order[beyond]].tolist(),
            nodes["node_id"].to_numpy()[shipment_node[beyond]].tolist(),
            distance_km[beyond].tolist(),
            max_km[beyond].tolist(),
            strict=True,
        )
    ]


def _pickup(
    orders: pd.DataFrame,
    nodes: pd.DataFrame,
    order_ids: pd.Index,
    shipment_order: np.ndarray,
    shipment_node: np.ndarray,
    shipment_line: np.ndarray,
    transferred: np.ndarray | None = None,
) -> list[Violation]:
    """Rule 5: a pickup order uses only its ``pickup_node`` (or, when its profile allows
    pick-up with transfer, a node moving its units there: ``transferred``)."""
    pickup_node = orders["pickup_node"].to_numpy()[shipment_line]
    node_id = nodes["node_id"].to_numpy()[shipment_node]
    wrong_node = (pickup_node != "") & (node_id != pickup_node)
    if transferred is not None:
        wrong_node &= ~transferred
    wrong = np.flatnonzero(wrong_node)
    return [
        Violation(
            "pickup",
            f"pickup order {order_id!r} is allocated at node {used!r}, "
            f"but is collected at pickup_node {pickup!r}",
        )
        for order_id, used, pickup in zip(
            np.asarray(order_ids, dtype=object)[shipment_order[wrong]].tolist(),
            node_id[wrong].tolist(),
            pickup_node[wrong].tolist(),
            strict=True,
        )
    ]


def _shipping(
    nodes: pd.DataFrame, shipment_node: np.ndarray, distance_km: np.ndarray, delivery: np.ndarray
) -> float:
    """Sum of ``ship_fixed + ship_per_km * distance`` over a delivery order's shipments."""
    fixed = nodes["ship_fixed"].to_numpy()[shipment_node]
    per_km = nodes["ship_per_km"].to_numpy()[shipment_node]
    return math.fsum((fixed + per_km * distance_km)[delivery].tolist())


def _ship_groups_of(scenario: Scenario, allocation: _Allocation) -> list[Violation]:
    """A ship group's lines come whole from one node, or not at all; a kit line's
    components (group ``kit:<line>``, router/kits.py) are such a group: rule ``kit``."""
    orders = scenario.orders
    if "ship_group" not in orders or not (orders["ship_group"] != "").any():
        return []
    group = orders["ship_group"].to_numpy(dtype=object)
    order_id = orders["order_id"].to_numpy(dtype=object)
    qty = orders["qty"].to_numpy(dtype=np.int64)
    nodes_of: dict[tuple, set[int]] = {}
    got: dict[tuple, int] = {}
    want: dict[tuple, int] = {}
    for line in np.flatnonzero(group != "").tolist():
        key = (order_id[line], group[line])
        want[key] = want.get(key, 0) + int(qty[line])
    for line, node, units in zip(
        allocation.line.tolist(), allocation.node.tolist(), allocation.qty.tolist(), strict=True
    ):
        if group[line] != "":
            key = (order_id[line], group[line])
            nodes_of.setdefault(key, set()).add(node)
            got[key] = got.get(key, 0) + units
    return [
        Violation(
            "kit" if key[1].startswith(KIT_GROUP_PREFIX) else "profile",
            f"order {key[0]!r}: "
            + (
                f"the components of kit line {key[1][len(KIT_GROUP_PREFIX) :]!r} are"
                if key[1].startswith(KIT_GROUP_PREFIX)
                else f"ship group {key[1]!r} is"
            )
            + f" not served whole by one node ({got[key]} of {want[key]} units "
            f"from {len(nodes_of[key])} nodes)",
        )
        for key in sorted(got)
        if len(nodes_of[key]) > 1 or got[key] != want[key]
    ]


def _channel_shares(scenario: Scenario, allocation: _Allocation) -> list[Violation]:
    """A channel sells at most its sellable quantity of each SKU: its share of the
    pooled available units plus its reservations (router/channels.py)."""
    assert scenario.profiles is not None
    rules = ChannelStock(scenario.profiles.profiles)
    if not rules.binds:
        return []
    orders, inv = scenario.orders, scenario.inventory
    pooled = inv.groupby("sku")["available"].sum()
    sold = (
        pd.DataFrame(
            {
                "channel": orders["channel"].to_numpy(dtype=object)[allocation.line],
                "sku": orders["sku"].to_numpy(dtype=object)[allocation.line],
                "qty": allocation.qty,
            }
        )
        .groupby(["channel", "sku"], sort=True)["qty"]
        .sum()
    )
    found = []
    for (channel, sku), units in sold.items():
        cap = int(rules.sellable(str(channel), [str(sku)], [int(pooled.get(sku, 0))])[0])
        if units > cap:
            found.append(
                Violation(
                    "channel_share",
                    f"channel {channel!r} sells {units} units of SKU {sku!r}, more than its "
                    f"sellable {cap} (its share of the pool plus its reservations)",
                )
            )
    return found


def _clearance(scenario: Scenario, allocation: _Allocation) -> float:
    """The clearance credit of the allocated units: per unit from a (node, SKU) whose
    available stock is above its channel's weeks-of-supply target."""
    profiles = scenario.profiles
    assert profiles is not None
    orders, nodes, inv = scenario.orders, scenario.nodes, scenario.inventory
    node_ids = nodes["node_id"].to_numpy(dtype=object)
    per_pair = {
        (n, s): (a, w)
        for n, s, a, w in zip(
            inv["node_id"], inv["sku"], inv["available"], inv["weekly_sales"], strict=True
        )
    }
    rules: dict[str, Any] = {}
    credits = []
    channels = orders["channel"].to_numpy(dtype=object)
    skus = orders["sku"].to_numpy(dtype=object)
    for line, node, qty in zip(
        allocation.line.tolist(), allocation.node.tolist(), allocation.qty.tolist(), strict=True
    ):
        channel = str(channels[line])
        if channel not in rules:
            rules[channel] = compile_rules(
                profiles.of(channel),
                node_ids,
                nodes["kind"].to_numpy(dtype=object),
                nodes["group"].to_numpy(dtype=object),
                profiles.as_of,
            )
        available, sales = per_pair.get((node_ids[node], skus[line]), (0, math.nan))
        credits.append(qty * float(rules[channel].credit(np.array(available), np.array(sales))))
    return math.fsum(credits)


def _profiles(
    scenario: Scenario,
    order_of_line: np.ndarray,
    shipment_order: np.ndarray,
    shipment_node: np.ndarray,
    shipment_line: np.ndarray,
    distance_km: np.ndarray,
) -> tuple[list[Violation], float, int, np.ndarray, np.ndarray]:
    """The routing profiles, recomputed per order from their definitions: every
    shipment's node is eligible for the order's channel now; an order with a
    promise ships only from nodes meeting it whenever an eligible node holding
    one of its SKUs (in reach) can; the profile's cost of each shipment; each
    shipment's fulfilment mode and its shipping (``router.modes.shipment_mode``;
    -1 and 0 for a pickup order's shipment that no mode allows, a rule-5 violation)."""
    profiles = scenario.profiles
    assert profiles is not None
    orders, nodes = scenario.orders, scenario.nodes
    node_ids = nodes["node_id"].to_numpy(dtype=object)
    is_store = (nodes["kind"] == "store").to_numpy()
    node_lat, node_lon = nodes["lat"].to_numpy(), nodes["lon"].to_numpy()
    ship_fixed, ship_per_km = nodes["ship_fixed"].to_numpy(), nodes["ship_per_km"].to_numpy()
    first_line = pd.Series(np.arange(len(orders))).groupby(order_of_line).first().to_numpy()
    held = scenario.inventory[scenario.inventory["available"] > 0]
    holders: dict[str, set[int]] = {}
    node_pos = {node: i for i, node in enumerate(node_ids)}
    for node, sku in zip(held["node_id"], held["sku"], strict=True):
        holders.setdefault(sku, set()).add(node_pos[node])
    skus_of_order = orders.groupby(order_of_line, sort=True)["sku"].apply(set).to_dict()
    origin_of = orders.get("origin_store")
    max_km = nodes["max_km"].to_numpy()
    violations: list[Violation] = []
    late_orders = 0
    extra_costs: list[float] = []
    modes_of_shipment = np.full(shipment_order.size, -1, dtype=np.int64)
    mode_cost = np.zeros(shipment_order.size)
    compiled: dict[str, Any] = {}
    # Shipments come sorted by order (``_shipments``).
    start = np.searchsorted(shipment_order, np.arange(first_line.size + 1))
    # (one array per column: a pandas lookup per order costs more than the check)
    channel_of, order_id_of = orders["channel"].to_numpy(), orders["order_id"].to_numpy()
    pickup_of, promised_of = orders["pickup_node"].to_numpy(), orders["promised_date"].to_numpy()
    lat_of, lon_of = orders["lat"].to_numpy(dtype=float), orders["lon"].to_numpy(dtype=float)
    origin_at = None if origin_of is None else origin_of.to_numpy()
    for o, line in enumerate(first_line):
        channel = str(channel_of[line])
        order_id = order_id_of[line]
        if channel not in compiled:
            compiled[channel] = compile_rules(
                profiles.of(channel),
                node_ids,
                nodes["kind"].to_numpy(dtype=object),
                nodes["group"].to_numpy(dtype=object),
                profiles.as_of,
            )
        rules = compiled[channel]
        modes = rules.modes
        pickup_id = pickup_of[line]
        pickup = pickup_id != ""
        origin_id = "" if origin_at is None else origin_at[line]
        km = haversine_km(float(lat_of[line]), float(lon_of[line]), node_lat, node_lon)
        transfer_km = (
            haversine_km(
                node_lat[node_pos[pickup_id]], node_lon[node_pos[pickup_id]], node_lat, node_lon
            )
            if pickup
            else np.zeros(node_ids.size)
        )

        mode_of = partial(
            _mode_at,
            modes,
            pickup,
            pickup_id,
            transfer_km,
            node_ids,
            is_store,
            ship_fixed,
            ship_per_km,
        )

        mine = range(int(start[o]), int(start[o + 1]))
        for s in mine:
            n = int(shipment_node[s])
            extra = rules.shipment_cost[n] + (0.0 if pickup else rules.per_km_cost * km[n])
            if origin_id and node_ids[n] != origin_id:
                extra += modes.origin_preference
            extra_costs.append(float(extra))
            found = mode_of(n, float(distance_km[s]))
            if found is not None and pickup and not rules.eligible[node_pos[pickup_id]]:
                found = None if found[0] == PICKUP_TRANSFER else found
            if found is not None:
                modes_of_shipment[s], mode_cost[s] = found
            if not rules.eligible[n]:
                violations.append(
                    Violation(
                        "profile",
                        f"order {order_id!r} (channel {channel!r}) ships "
                        f"from node {node_ids[n]!r}, which its profile does not allow now",
                    )
                )
            if modes.exclude_origin and node_ids[n] == origin_id:
                violations.append(
                    Violation(
                        "profile",
                        f"order {order_id!r} ships from its origin store {origin_id!r}, "
                        "which its profile's endless_aisle.exclude_origin rules out",
                    )
                )
        if len(mine) > rules.max_shipments:
            violations.append(
                Violation(
                    "profile",
                    f"order {order_id!r} ships from {len(mine)} nodes, "
                    f"more than its profile's max_shipments {rules.max_shipments:g}",
                )
            )
        promised = promised_of[line]
        if promised is None:
            continue
        left = promised_days(promised, profiles.as_of)
        goods = set().union(*(holders.get(sku, set()) for sku in skus_of_order[o]))
        if modes.exclude_origin and origin_id:
            goods.discard(node_pos[origin_id])
        if pickup:
            late_orders += _transfer_promise(
                rules,
                order_id,
                promised,
                left,
                goods,
                mine,
                shipment_node,
                modes_of_shipment,
                node_pos[pickup_id],
                transfer_km,
                node_ids,
                violations,
            )
            continue
        if not rules.has_promise:
            continue
        days = rules.delivery_days(km, is_store)
        # a same-city courier delivers in its own days, when it sets them
        for n in goods if not math.isnan(modes.same_city_days) else ():
            found = mode_of(n, float(km[n]))
            if found is not None and found[0] == SAME_CITY:
                days[n] = modes.same_city_days
        for s in mine:
            if modes_of_shipment[s] == SAME_CITY and not math.isnan(modes.same_city_days):
                days[int(shipment_node[s])] = modes.same_city_days
        reach_ok = np.isnan(max_km) | (km <= max_km)
        able = [n for n in goods if rules.eligible[n] and reach_ok[n] and days[n] <= left]
        if not able:
            late_orders += bool(goods and any(rules.eligible[n] and reach_ok[n] for n in goods))
            continue
        for s in mine:
            n = int(shipment_node[s])
            if days[n] > left:
                violations.append(
                    Violation(
                        "profile",
                        f"order {order_id!r} ships from node "
                        f"{node_ids[n]!r} in {days[n]:g} days, after its promised date "
                        f"{promised.isoformat()}, though another node could meet it",
                    )
                )
    limit = daily_orders(profiles, nodes)
    served = np.bincount(shipment_node, minlength=len(nodes))
    for node in np.flatnonzero(served > limit).tolist():
        violations.append(
            Violation(
                "profile",
                f"node {node_ids[node]!r} serves {served[node]} orders, more than its "
                f"daily orders limit {limit[node]:g}",
            )
        )
    return violations, math.fsum(extra_costs), late_orders, modes_of_shipment, mode_cost


def _mode_at(
    modes, pickup, pickup_id, transfer_km, node_ids, is_store, ship_fixed, ship_per_km, n, km_n
) -> tuple[int, float] | None:
    """The mode and shipping of a shipment from node ``n`` at ``km_n`` from the customer."""
    return shipment_mode(
        modes,
        pickup=pickup,
        at_pickup=node_ids[n] == pickup_id,
        is_store=bool(is_store[n]),
        km=km_n,
        transfer_km=float(transfer_km[n]),
        format_cost=float(ship_fixed[n] + ship_per_km[n] * km_n),
    )


def _transfer_promise(
    rules,
    order_id: str,
    promised,
    left: float,
    goods: set[int],
    mine: range,
    shipment_node: np.ndarray,
    modes_of_shipment: np.ndarray,
    pickup: int,
    transfer_km: np.ndarray,
    node_ids: np.ndarray,
    violations: list[Violation],
) -> int:
    """A pickup order's promise with transfers: ready at the pickup store at once, after
    ``delay_days`` from elsewhere. Returns 1 when the order is late (no allowed node
    holding its goods meets the date), else 0; a late transfer while another node
    could meet the date is a violation."""
    modes = rules.modes
    if not modes.transfer or not rules.eligible[pickup]:
        return 0
    allowed = [
        n
        for n in goods
        if n == pickup or (rules.eligible[n] and transfer_km[n] <= modes.transfer_max_km)
    ]
    if not allowed:
        return 0
    meets = [n for n in allowed if n == pickup or modes.transfer_delay_days <= left]
    if not meets:
        return 1
    for s in mine:
        if modes_of_shipment[s] == PICKUP_TRANSFER and modes.transfer_delay_days > left:
            violations.append(
                Violation(
                    "profile",
                    f"pickup order {order_id!r} takes a transfer from node "
                    f"{node_ids[int(shipment_node[s])]!r} ({modes.transfer_delay_days:g} days), "
                    f"after its promised date {promised.isoformat()}, though the pickup store "
                    "could meet it",
                )
            )
    return 0


def _written_modes(
    assignments: pd.DataFrame,
    known: np.ndarray,
    row_order: np.ndarray,
    row_node: np.ndarray,
    shipment_order: np.ndarray,
    shipment_node: np.ndarray,
    shipment_modes: np.ndarray | None,
    node_count: int,
) -> list[Violation]:
    """An answer that names each row's ``mode`` names the one its shipment has."""
    if shipment_modes is None:
        return []
    stride = max(node_count, 1)
    keys = shipment_order.astype(np.int64) * stride + shipment_node
    at = np.searchsorted(keys, row_order.astype(np.int64) * stride + row_node)
    names = np.array([*MODES, ""], dtype=object)[shipment_modes[at]]
    written = assignments["mode"].astype(str).to_numpy()[known]
    rows = np.flatnonzero(known)
    wrong = np.flatnonzero((written != "") & (written != names))
    return [
        Violation(
            "profile",
            f"assignments.csv row {_file_row(int(rows[i]))}: mode {written[i]!r}, "
            f"but the shipment's mode is {names[i] or 'none'!r}",
        )
        for i in wrong.tolist()
    ]


# --- text ---------------------------------------------------------------------


def format_report(report: CheckReport) -> str:
    """A short text: verdict, cost breakdown, and the first violations."""
    count = len(report.violations)
    noun = "violation" if count == 1 else "violations"
    verdict = "FEASIBLE" if report.feasible else f"INFEASIBLE ({count} {noun})"
    split_cost = report.split_penalty * report.splits
    unfilled_cost = report.unfilled_penalty * report.unfilled_units
    lines = [
        verdict,
        f"total_cost  {report.total_cost:.4f}",
        f"  shipping  {report.shipping:.4f}",
        f"  handling  {report.handling:.4f}",
        *([f"  profile   {report.profile_cost:.4f}"] if report.profile_cost else []),
        *([f"  clearance -{report.clearance_credit:.4f}"] if report.clearance_credit else []),
        f"  splits    {split_cost:.4f}  ({report.splits} x {report.split_penalty:g})",
        f"  unfilled  {unfilled_cost:.4f}  ({report.unfilled_units} units x "
        f"{report.unfilled_penalty:g})",
        f"{report.orders} orders, {report.lines} lines, {report.units} units; "
        f"{report.allocated_units} units allocated in {report.shipments} shipments",
    ]
    if count:
        by_rule = {rule: 0 for rule in RULES}
        for violation in report.violations:
            by_rule[violation.rule] += 1
        lines.append("violations: " + ", ".join(f"{rule} {n}" for rule, n in by_rule.items() if n))
        lines += [f"  [{v.rule}] {v.message}" for v in report.violations[:REPORT_VIOLATIONS]]
        if count > REPORT_VIOLATIONS:
            lines.append(f"  ... and {count - REPORT_VIOLATIONS} more")
    return "\n".join(lines)
