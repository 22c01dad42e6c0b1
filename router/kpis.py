"""The numbers an operator compares answers by, computed from an answer file.

Every KPI here is recomputed from a scenario and an ``assignments.csv`` (the
cost parts by the independent checker, :func:`router.checker.check`), so the
what-if table, the one-pool study and ``omniroute report`` grade every answer
the same way, whatever produced it; only the status, time and bound come from
the run's ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from router.checker import CheckReport, check
from router.geo import haversine_km
from router.scenario import Scenario

NEAR_STORE_KM = 5.0
"""A store this close to the customer (or closer) counts as *near*: the
one-pool claim is about orders moved to a store within 5 km."""

KPI_COLUMNS = (
    "variant",
    "strategy",
    "status",
    "total_cost",
    "shipping",
    "handling",
    "split_cost",
    "unfilled_cost",
    "objective",
    "splits",
    "splits_per_100_orders",
    "unfilled_units",
    "fill_rate",
    "store_unit_share",
    "store_units_within_5km_share",
    "orders_from_store_within_5km_share",
    "solve_seconds",
    "lower_bound",
    "gap",
    "nodes_used",
    "busiest_node",
    "busiest_node_units",
    "capacity_nodes",
    "max_capacity_use",
    "nodes_at_capacity",
    "orders",
    "units",
    "stock_units",
)
"""The columns of ``kpis.csv``, in order (documented in README.md).

``total_cost`` and its parts are at the scenario's own penalties; ``objective``
is what the run itself minimised (``summary.json``'s ``total_cost``): the two
differ only for a variant that overrides a penalty, and ``lower_bound`` and
``gap`` belong to ``objective``."""


@dataclass(frozen=True)
class Allocations:
    """One row per answer row, with what the pictures and shares need.

    Columns: ``order_id``, ``line_id``, ``node_id``, ``qty``, ``kind``
    (warehouse or store), ``km`` (node to customer), ``pickup`` (bool),
    ``node_lat``, ``node_lon``, ``customer_lat``, ``customer_lon``.
    """

    rows: pd.DataFrame


def allocations(scenario: Scenario, assignments: pd.DataFrame) -> Allocations:
    """Join an answer's rows with their node and customer (rows must be feasible)."""
    orders = scenario.orders.drop_duplicates("order_id").set_index("order_id")
    nodes = scenario.nodes.set_index("node_id")
    rows = assignments.loc[:, ["order_id", "line_id", "node_id", "qty"]].reset_index(drop=True)
    order = orders.loc[rows["order_id"]]
    node = nodes.loc[rows["node_id"]]
    rows["kind"] = node["kind"].to_numpy()
    rows["pickup"] = (order["pickup_node"] != "").to_numpy()
    rows["node_lat"] = node["lat"].to_numpy()
    rows["node_lon"] = node["lon"].to_numpy()
    rows["customer_lat"] = order["lat"].to_numpy()
    rows["customer_lon"] = order["lon"].to_numpy()
    rows["km"] = haversine_km(
        rows["node_lat"], rows["node_lon"], rows["customer_lat"], rows["customer_lon"]
    )
    return Allocations(rows)


def node_load(scenario: Scenario, assignments: pd.DataFrame) -> pd.DataFrame:
    """Units allocated per node, with its capacity and the share of it used.

    Columns ``node_id``, ``kind``, ``units``, ``capacity_units`` (NaN: no
    limit), ``capacity_use`` (units / capacity; NaN without a limit), in
    ``nodes.csv`` order.
    """
    nodes = scenario.nodes
    units = assignments.groupby("node_id")["qty"].sum()
    load = pd.DataFrame(
        {
            "node_id": nodes["node_id"],
            "kind": nodes["kind"],
            "units": units.reindex(nodes["node_id"]).fillna(0).astype(np.int64).to_numpy(),
            "capacity_units": nodes["capacity_units"],
        }
    )
    capacity = load["capacity_units"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        use = np.where(capacity > 0, load["units"] / capacity, np.nan)
    # A node with capacity 0 that ships nothing is fully used, not "no limit".
    use = np.where(capacity == 0, 1.0, use)
    load["capacity_use"] = use
    return load


def stock_units(scenario: Scenario) -> int:
    """Units of stock in the scenario (all nodes, all SKUs)."""
    return int(scenario.inventory["available"].sum())


def answer_kpis(
    scenario: Scenario,
    assignments: pd.DataFrame,
    summary: dict,
    *,
    variant: str,
    report: CheckReport | None = None,
) -> dict:
    """The KPI row of one answer (the columns of :data:`KPI_COLUMNS`).

    Parameters
    ----------
    scenario
        The scenario at its own penalties: cost parts are priced with them.
    assignments
        The answer's rows (``order_id``, ``line_id``, ``node_id``, ``qty``).
    summary
        The run's ``summary.json`` (status, strategy, time, bound, objective).
    variant
        The label of the row.
    report
        The checker's report of ``assignments`` on ``scenario``, when the
        caller has it already.
    """
    report = report or check(scenario, assignments)
    if not report.feasible:
        first = report.violations[0].message
        raise ValueError(f"the answer of {variant} is not feasible: {first}")
    rows = allocations(scenario, assignments).rows
    store = (rows["kind"] == "store").to_numpy()
    near = store & (rows["km"].to_numpy() <= NEAR_STORE_KM)
    qty = rows["qty"].to_numpy()
    store_units = int(qty[store].sum())
    near_orders = rows.loc[near, "order_id"].nunique()
    load = node_load(scenario, assignments)
    limited = load[load["capacity_units"].notna()]
    busiest = load.loc[load["units"].idxmax()] if len(load) else None
    allocated = report.allocated_units
    kpis = {
        "variant": variant,
        "strategy": summary.get("strategy"),
        "status": summary.get("status"),
        "total_cost": report.total_cost,
        "shipping": report.shipping,
        "handling": report.handling,
        "split_cost": report.split_penalty * report.splits,
        "unfilled_cost": report.unfilled_penalty * report.unfilled_units,
        "objective": summary.get("total_cost"),
        "splits": report.splits,
        "splits_per_100_orders": 100.0 * report.splits / report.orders if report.orders else 0.0,
        "unfilled_units": report.unfilled_units,
        "fill_rate": allocated / report.units if report.units else 1.0,
        "store_unit_share": store_units / allocated if allocated else 0.0,
        "store_units_within_5km_share": int(qty[near].sum()) / store_units if store_units else 0.0,
        "orders_from_store_within_5km_share": near_orders / report.orders if report.orders else 0.0,
        "solve_seconds": summary.get("solve_seconds"),
        "lower_bound": summary.get("lower_bound"),
        "gap": summary.get("gap"),
        "nodes_used": int((load["units"] > 0).sum()),
        "busiest_node": None if busiest is None or busiest["units"] == 0 else busiest["node_id"],
        "busiest_node_units": 0 if busiest is None else int(busiest["units"]),
        "capacity_nodes": len(limited),
        "max_capacity_use": float(limited["capacity_use"].max()) if len(limited) else None,
        "nodes_at_capacity": int((limited["units"] >= limited["capacity_units"]).sum()),
        "orders": report.orders,
        "units": report.units,
        "stock_units": stock_units(scenario),
    }
    assert tuple(kpis) == KPI_COLUMNS
    return kpis
