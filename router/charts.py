"""PNG charts of answers, drawn with matplotlib (the ``report`` extra).

matplotlib is optional (``pip install 'omniroute[report]'``): this module is
imported only by ``omniroute compare`` and ``omniroute report``, which call
:func:`require_matplotlib` first and stop with one line naming the extra when
it is missing. Figures are built with the object API on the Agg canvas (no
pyplot, no global state, no display), and maps are plain lon/lat scatters:
no map library works offline, and a plain projection is enough to see who is
served from where.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router.kpis import NEAR_STORE_KM, Allocations
from router.scenario import Scenario

EXTRA = "omniroute[report]"

KIND_COLOURS = {
    "warehouse": "#1f77b4",
    "store": "#ff7f0e",
    "both": "#9467bd",
    "unfilled": "#d62728",
}
PART_COLOURS = {
    "shipping": "#1f77b4",
    "handling": "#2ca02c",
    "split_cost": "#ff7f0e",
    "unfilled_cost": "#d62728",
}
DPI = 110


class MissingExtra(RuntimeError):
    """matplotlib is not installed: the message names the extra that brings it."""


def require_matplotlib(command: str) -> None:
    """Raise :class:`MissingExtra` unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra(
            f"{command} draws its charts with matplotlib, which is not installed: "
            f"pip install '{EXTRA}'"
        ) from None


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


def cost_vs_splits(rows: list[dict], path: Path) -> Path:
    """Total cost against splits per 100 orders, one labelled point per variant."""
    figure = _figure(6.4, 4.4)
    axes = figure.add_subplot()
    for row in rows:
        axes.scatter(row["splits_per_100_orders"], row["total_cost"], s=60, zorder=3)
        axes.annotate(
            row["variant"],
            (row["splits_per_100_orders"], row["total_cost"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
    axes.set_xlabel("splits per 100 orders")
    axes.set_ylabel("total cost (scenario penalties)")
    axes.set_title("Cost against splits")
    axes.grid(alpha=0.3)
    axes.margins(0.2)
    return _save(figure, path)


def cost_breakdown(rows: list[dict], path: Path) -> Path:
    """The parts of each variant's total cost as stacked horizontal bars."""
    figure = _figure(7.0, 1.2 + 0.55 * len(rows))
    axes = figure.add_subplot()
    labels = [row["variant"] for row in rows]
    left = np.zeros(len(rows))
    for part, colour in PART_COLOURS.items():
        values = np.array([row[part] for row in rows], dtype=float)
        axes.barh(labels, values, left=left, color=colour, label=part.replace("_cost", ""))
        left += values
    axes.invert_yaxis()
    axes.set_xlabel("cost")
    axes.set_title("Cost breakdown")
    axes.legend(loc="lower right", fontsize=8, ncols=4)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def served_kind(scenario: Scenario, allocations: Allocations) -> pd.Series:
    """Per order: the kind of node that serves it (``warehouse``, ``store``,
    ``both``) or ``unfilled`` when nothing of it ships."""
    rows = allocations.rows
    kinds = rows.groupby("order_id")["kind"].agg(
        lambda k: k.iloc[0] if k.nunique() == 1 else "both"
    )
    orders = scenario.orders["order_id"].drop_duplicates()
    return kinds.reindex(orders).fillna("unfilled")


def _map_axes(axes: Any, scenario: Scenario, allocations: Allocations, title: str) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    rows = allocations.rows
    shipments = rows.drop_duplicates(["order_id", "node_id"])
    # Few customers: big dots and clear lines; thousands: small dots and faint lines.
    dot = float(np.clip(4000 / max(scenario.orders["order_id"].nunique(), 1), 4, 40))
    alpha = float(np.clip(60 / max(len(shipments), 1), 0.15, 0.8))
    for kind in ("warehouse", "store"):
        mine = shipments[shipments["kind"] == kind]
        segments = np.stack(
            [
                mine[["customer_lon", "customer_lat"]].to_numpy(),
                mine[["node_lon", "node_lat"]].to_numpy(),
            ],
            axis=1,
        )
        axes.add_collection(
            LineCollection(list(segments), colors=KIND_COLOURS[kind], linewidths=0.5, alpha=alpha)
        )
    customers = scenario.orders.drop_duplicates("order_id").set_index("order_id")
    kind = served_kind(scenario, allocations)
    for name, colour in KIND_COLOURS.items():
        chosen = customers.loc[kind.index[kind.to_numpy() == name]]
        axes.scatter(chosen["lon"], chosen["lat"], s=dot, color=colour, zorder=3, linewidths=0)
    nodes = scenario.nodes
    stores = nodes[nodes["kind"] == "store"]
    warehouses = nodes[nodes["kind"] == "warehouse"]
    axes.scatter(
        stores["lon"],
        stores["lat"],
        s=14,
        marker="^",
        facecolors="none",
        edgecolors="#555555",
        zorder=2,  # under the customers: a store's own customers stay visible
        linewidths=0.6,
    )
    axes.scatter(
        warehouses["lon"],
        warehouses["lat"],
        s=45,
        marker="s",
        color="black",
        zorder=5,
        linewidths=0,
    )
    latitudes = np.concatenate([nodes["lat"].to_numpy(), customers["lat"].to_numpy()])
    mid = float(np.nanmean(latitudes)) if latitudes.size else 0.0
    # Plain lon/lat, with a degree of longitude drawn as long as it is at mid-latitude.
    axes.set_aspect(1.0 / max(math.cos(math.radians(mid)), 0.2), adjustable="datalim")
    axes.autoscale_view()
    axes.set_xlabel("longitude")
    axes.set_ylabel("latitude")
    axes.set_title(title, fontsize=10)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colour, label=f"served by {name}")
        for name, colour in KIND_COLOURS.items()
        if name != "unfilled"
    ]
    handles += [
        Line2D([], [], marker="o", linestyle="", color=KIND_COLOURS["unfilled"], label="unfilled"),
        Line2D([], [], marker="s", linestyle="", color="black", label="warehouse"),
        Line2D([], [], marker="^", linestyle="", color="#555555", fillstyle="none", label="store"),
    ]
    axes.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)


def routing_map(scenario: Scenario, answers: dict[str, Allocations], path: Path) -> Path:
    """Customers coloured by the kind of node serving them, with lines to those
    nodes; one panel per answer."""
    count = max(len(answers), 1)
    columns = min(count, 2)
    lines = math.ceil(count / columns)
    figure = _figure(6.4 * columns, 5.2 * lines)
    for i, (title, allocations) in enumerate(answers.items()):
        _map_axes(figure.add_subplot(lines, columns, i + 1), scenario, allocations, title)
    return _save(figure, path)


def distance_histogram(allocations: Allocations, path: Path) -> Path:
    """Allocated units by distance from node to customer, per node kind (log km)."""
    rows = allocations.rows
    figure = _figure(6.4, 4.0)
    axes = figure.add_subplot()
    km = rows["km"].to_numpy()
    top = max(float(km.max()) if km.size else 1.0, 10.0)
    # Log bins from 100 m; a shipment at 0 km (a pickup at the customer's store) goes in the first.
    bins = np.geomspace(0.1, top * 1.05, 30)
    for kind in ("warehouse", "store"):
        mine = rows[rows["kind"] == kind]
        axes.hist(
            np.clip(mine["km"].to_numpy(), 0.1, None),
            bins=bins,
            weights=mine["qty"].to_numpy(),
            alpha=0.6,
            color=KIND_COLOURS[kind],
            label=kind,
        )
    axes.axvline(NEAR_STORE_KM, color="black", linestyle="--", linewidth=1, label="5 km")
    axes.set_xscale("log")
    axes.set_xlabel("distance node to customer (km)")
    axes.set_ylabel("units")
    axes.set_title("Distance of allocated units")
    axes.legend(fontsize=8)
    return _save(figure, path)


def node_utilisation(load: pd.DataFrame, path: Path, *, top: int = 20) -> Path:
    """Units of the busiest nodes (with their capacity where they have one), and
    how full the nodes that have a capacity are."""
    from matplotlib.patches import Patch

    figure = _figure(11.0, 4.2)
    grid = figure.add_gridspec(1, 2, width_ratios=(3, 2))
    axes = figure.add_subplot(grid[0, 0])
    busiest = load[load["units"] > 0].sort_values("units", ascending=False).head(top)
    positions = np.arange(len(busiest))
    axes.bar(positions, busiest["units"], color=[KIND_COLOURS[k] for k in busiest["kind"]])
    limited = busiest["capacity_units"].notna().to_numpy()
    axes.scatter(
        positions[limited],
        busiest["capacity_units"].to_numpy()[limited],
        marker="_",
        s=120,
        color="black",
        zorder=3,
    )
    axes.set_xticks(positions, busiest["node_id"], rotation=90, fontsize=7)
    axes.set_ylabel("units allocated")
    used = int((load["units"] > 0).sum())
    axes.set_title(f"The {len(busiest)} busiest of {used} nodes used", fontsize=10)
    handles = [Patch(color=KIND_COLOURS[k], label=k) for k in ("warehouse", "store")]
    handles.append(Patch(color="black", label="capacity"))
    axes.legend(handles=handles, fontsize=8)
    axes.grid(axis="y", alpha=0.3)

    axes = figure.add_subplot(grid[0, 1])
    capacity = load[load["capacity_units"].notna()]
    for kind in ("warehouse", "store"):
        use = capacity.loc[capacity["kind"] == kind, "capacity_use"].to_numpy()
        if use.size:
            axes.hist(
                100 * np.clip(use, 0, 1),
                bins=np.linspace(0, 100, 11),
                alpha=0.6,
                color=KIND_COLOURS[kind],
                label=kind,
            )
    full = int((capacity["units"] >= capacity["capacity_units"]).sum())
    axes.set_xlabel("capacity used (%)")
    axes.set_ylabel("nodes")
    axes.set_title(f"{len(capacity)} nodes with a capacity, {full} full", fontsize=10)
    if len(capacity):
        axes.legend(fontsize=8)
    figure.suptitle("Node load", fontsize=11)
    return _save(figure, path)


def pooling_chart(rows: list[dict], steps: list[dict], path: Path) -> Path:
    """Silos against the pool: cost, fill rate, splits and near-store orders, and
    the pool's fill rate as its stock is scaled down."""
    figure = _figure(12.0, 4.2)
    names = [row["setup"] for row in rows]
    colours = ["#7f7f7f", "#1f77b4", "#2ca02c"][: len(rows)]
    panels = [
        ("total cost", [row["total_cost"] for row in rows], "{:,.0f}"),
        ("fill rate", [100 * row["fill_rate"] for row in rows], "{:.1f}%"),
        ("splits / 100 orders", [row["splits_per_100_orders"] for row in rows], "{:.1f}"),
        (
            "orders from a store <= 5 km (%)",
            [100 * row["orders_from_store_within_5km_share"] for row in rows],
            "{:.1f}%",
        ),
        ("stock units", [row["stock_units"] for row in rows], "{:,.0f}"),
    ]
    grid = figure.add_gridspec(1, len(panels) + 1)
    for i, (title, values, fmt) in enumerate(panels):
        axes = figure.add_subplot(grid[0, i])
        bars = axes.bar(range(len(values)), values, color=colours)
        axes.bar_label(bars, [fmt.format(v) for v in values], fontsize=7)
        axes.set_xticks(range(len(values)), [str(j + 1) for j in range(len(values))])
        axes.set_title(title, fontsize=9)
        axes.margins(y=0.15)
    axes = figure.add_subplot(grid[0, -1])
    if steps:
        # The pool at full stock is the curve's last point.
        full = {"stock_factor": rows[1]["stock_factor"], "fill_rate": rows[1]["fill_rate"]}
        ordered = sorted([*steps, full], key=lambda step: step["stock_factor"])
        axes.plot(
            [100 * s["stock_factor"] for s in ordered],
            [100 * s["fill_rate"] for s in ordered],
            marker="o",
            color=colours[-1],
        )
    axes.axhline(100 * rows[0]["fill_rate"], color=colours[0], linestyle="--", label="silos' fill")
    axes.set_xlabel("pool stock (% of all)")
    axes.set_ylabel("fill rate (%)")
    axes.set_title("pool fill vs stock", fontsize=9)
    axes.legend(fontsize=7)
    legend = "   ".join(f"{j + 1}: {name}" for j, name in enumerate(names))
    figure.suptitle(f"One pool against channel silos    {legend}", fontsize=10)
    return _save(figure, path)
