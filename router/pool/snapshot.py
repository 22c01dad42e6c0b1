"""The live pool as a scenario: what a wave (or a re-optimization) is solved on.

One problem, one model: the joint solve of live orders goes through exactly the
path of ``omniroute solve`` (``router.run.solve_scenario``: build the prepared
arrays, optimize, re-check with the independent checker). This module only
supplies the numbers, read from the pool at one moment:

- every node of the read model, with its static attributes; a node that is not
  active has no stock and no capacity, so nothing can be routed to it;
- stock: ``available = on_hand - unsellable - safety_stock - reserved - locked`` of the
  orders' SKUs at active nodes (only positive rows, as routing reads them);
- capacity: ``capacity_units - backlog_units`` (none = no limit);
- the orders, one row per line; a pickup order sits at its pickup node.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from router.pool.nodes import NodeIndex
from router.pool.profiles import work_left_today
from router.pool.routing import _AVAILABLE, Order, RoutingPolicy
from router.pool.schema import balances, nodes
from router.profiles import ProfileSet
from router.scenario import Scenario

_SKU_CHUNK = 500


def read_node_state(conn: Connection) -> dict[int, tuple[str, int | None, int]]:
    """``{node_pk: (status, capacity_units, backlog_units)}`` of every node."""
    return {
        pk: (status, capacity, backlog)
        for pk, status, capacity, backlog in conn.execute(
            select(nodes.c.pk, nodes.c.status, nodes.c.capacity_units, nodes.c.backlog_units)
        ).all()
    }


def nodes_frame(
    index: NodeIndex, state: dict[int, tuple[str, int | None, int]]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The nodes in the scenario format (capacity = what is left), and which are active."""
    capacity_left = np.full(index.size, np.nan)
    active = np.zeros(index.size, dtype=bool)
    for i, pk in enumerate(index.pk.tolist()):
        status, capacity, backlog = state.get(pk, ("closed", 0, 0))
        active[i] = status == "active"
        if not active[i]:
            capacity_left[i] = 0.0
        elif capacity is not None:
            capacity_left[i] = float(max(0, capacity - backlog))
    node_frame = pd.DataFrame(
        {
            "node_id": index.node_id.astype(str),
            "kind": index.kind.astype(str),
            "lat": index.lat,
            "lon": index.lon,
            "ship_fixed": index.ship_fixed,
            "ship_per_km": index.ship_per_km,
            "handling_per_unit": index.handling_per_unit,
            "capacity_units": capacity_left,
            "max_km": index.max_km,
        }
    )
    return node_frame, active


def read_pool_frames(
    conn: Connection, index: NodeIndex, sku_list: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, inventory) frames in the scenario format, as the pool stands now."""
    node_frame, active = nodes_frame(index, read_node_state(conn))
    active_pks = {int(pk) for pk, is_active in zip(index.pk, active, strict=True) if is_active}
    rows: list[tuple[str, str, int]] = []
    for start in range(0, len(sku_list), _SKU_CHUNK):
        chunk = sku_list[start : start + _SKU_CHUNK]
        for pk, sku, units in conn.execute(
            select(balances.c.node_pk, balances.c.sku, _AVAILABLE).where(
                balances.c.sku.in_(chunk), _AVAILABLE > 0
            )
        ).all():
            if pk in active_pks:
                rows.append((str(index.node_id[index.index_of_pk[pk]]), sku, int(units)))
    inventory = pd.DataFrame(rows, columns=["node_id", "sku", "available"]).astype(
        {"node_id": str, "sku": str, "available": np.int64}
    )
    return node_frame, inventory


def orders_frame(orders: list[Order], index: NodeIndex) -> pd.DataFrame:
    """One row per order line, in queue order, in the scenario format."""
    rows = []
    for order in orders:
        if order.pickup_node is not None:
            position = index.index_of_id[order.pickup_node]
            lat, lon = float(index.lat[position]), float(index.lon[position])
        else:
            lat, lon = float(order.lat), float(order.lon)  # type: ignore[arg-type]
        for line in order.lines:
            rows.append(
                (
                    order.order_id,
                    line.line_id,
                    line.sku,
                    line.qty,
                    lat,
                    lon,
                    order.pickup_node or "",
                )
            )
    frame = pd.DataFrame(
        rows, columns=["order_id", "line_id", "sku", "qty", "lat", "lon", "pickup_node"]
    )
    return frame.astype({"qty": np.int64, "lat": np.float64, "lon": np.float64})


def _weekly_sales(conn: Connection, inventory: pd.DataFrame, index: NodeIndex) -> np.ndarray:
    """The weekly sales of the inventory frame's pairs (NaN: unknown)."""
    rates: dict[tuple[str, str], float] = {}
    skus = sorted(set(inventory["sku"]))
    for start in range(0, len(skus), _SKU_CHUNK):
        for pk, sku, rate in conn.execute(
            select(balances.c.node_pk, balances.c.sku, balances.c.weekly_sales).where(
                balances.c.sku.in_(skus[start : start + _SKU_CHUNK]),
                balances.c.weekly_sales.is_not(None),
            )
        ).all():
            if pk in index.index_of_pk:
                rates[(str(index.node_id[index.index_of_pk[pk]]), sku)] = float(rate)
    return np.array(
        [
            rates.get((n, s), np.nan)
            for n, s in zip(inventory["node_id"], inventory["sku"], strict=True)
        ],
        dtype=float,
    )


def attach_profiles(
    conn: Connection,
    node_frame: pd.DataFrame,
    inventory: pd.DataFrame,
    order_frame: pd.DataFrame,
    orders: list[Order],
    index: NodeIndex,
    policy: RoutingPolicy,
    now: datetime,
    *,
    held_units: np.ndarray | None = None,
    held_orders: np.ndarray | None = None,
) -> ProfileSet | None:
    """Add the routing profiles' data, evaluated at ``now`` (naive UTC), to the frames
    of a pool snapshot (built just for it): each node's group and what its daily
    workload leaves for today (capacity and ``daily_units_left``, ``daily_orders_left``),
    each pair's weekly sales, each line's ship group, channel, origin store and promised
    date. The one place for waves and re-optimizations; ``None`` without profiles.

    ``held_units`` / ``held_orders`` (N,): for a re-optimization, the units the
    re-decided orders hold at each node and how many of them have a shipment there:
    an order that stays adds no work, so they count as left to them.
    """
    if policy.profiles is None:
        return None
    profile_set = ProfileSet(
        {channel: profile for channel, (_v, profile) in policy.profiles.latest.items()},
        now.replace(tzinfo=UTC),
    )
    node_frame["group"] = index.group if index.group is not None else ""
    workload = policy.workload_rules(index, now)
    if workload is not None:
        left, orders_left = work_left_today(
            conn,
            workload,
            np.arange(index.size),
            index,
            now,
            held_units=held_units,
            held_orders=held_orders,
        )
        node_frame["capacity_units"] = np.fmin(
            node_frame["capacity_units"].to_numpy(), np.where(np.isinf(left), np.nan, left)
        )
        node_frame["daily_units_left"] = left
        node_frame["daily_orders_left"] = orders_left
    rows = [order for order in orders for _line in order.lines]
    inventory["weekly_sales"] = _weekly_sales(conn, inventory, index)
    order_frame["ship_group"] = [line.ship_group or "" for order in orders for line in order.lines]
    order_frame["channel"] = [order.channel for order in rows]
    order_frame["origin_store"] = [order.origin_store or "" for order in rows]
    order_frame["promised_date"] = [
        date.fromisoformat(order.promised_date) if order.promised_date else None for order in rows
    ]
    return profile_set


def attach_kit_lines(
    order_frame: pd.DataFrame, orders: list[Order], profile_set: ProfileSet | None
) -> None:
    """Mark the component lines of kits in a pool snapshot's order frame (waves and
    re-optimizations alike)."""
    kit_lines = [line.kit_line or "" for order in orders for line in order.lines]
    if any(kit_lines):
        # A kit's components ship together (router.kits) with or without profiles;
        # other ship groups bind only where profiles do.
        order_frame["ship_group"] = [
            line.ship_group or "" if profile_set is not None or line.kit_line else ""
            for order in orders
            for line in order.lines
        ]
        order_frame["kit_line"] = kit_lines


def snapshot_scenario(
    conn: Connection,
    name: str,
    orders: list[Order],
    index: NodeIndex,
    policy: RoutingPolicy,
    now: datetime | None = None,
) -> Scenario:
    """The scenario of ``orders`` over the pool as it stands in ``conn``'s snapshot.

    With routing profiles and ``now`` (naive UTC), the scenario carries them, evaluated
    at ``now``: each order's channel and promised date, each node's group, and a
    capacity that is also at most what the node's daily limit leaves for today.
    """
    sku_list = sorted({line.sku for order in orders for line in order.lines})
    node_frame, inventory = read_pool_frames(conn, index, sku_list)
    order_frame = orders_frame(orders, index)
    profile_set = None
    if policy.profiles is not None and now is not None:
        profile_set = attach_profiles(
            conn, node_frame, inventory, order_frame, orders, index, policy, now
        )
    attach_kit_lines(order_frame, orders, profile_set)
    return Scenario(
        name=name,
        split_penalty=policy.split_penalty,
        unfilled_penalty=policy.unfilled_penalty,
        nodes=node_frame,
        inventory=inventory,
        orders=order_frame,
        profiles=profile_set,
    )
