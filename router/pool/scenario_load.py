"""Load a scenario's nodes, stock and penalties into the pool (``omniroute load``).

The scenario's ``available`` becomes ``on_hand`` with no safety stock, no
unsellable units and no reservations, so the pool then offers exactly what
the batch engine would see. Loading twice updates in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from router.pool.inventory import MAX_FEED_ROWS, SetRow
from router.pool.nodes import NodeSpec
from router.pool.routing import RoutingPolicy
from router.pool.service import Pool
from router.scenario import Scenario


@dataclass(frozen=True)
class LoadSummary:
    name: str
    nodes: int
    stock_rows: int


def _optional(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def load_into_pool(
    pool: Pool, scenario: Scenario, *, actor: str = "cli:load", feed_rows: int = MAX_FEED_ROWS
) -> LoadSummary:
    """Load a scenario's nodes, stock, policy, profiles and kits into the pool.

    A stock feed takes at most ``MAX_FEED_ROWS`` rows, so a larger inventory (20,000
    orders over 1,000 stores: about 254,000 rows) goes in as several feeds of at most
    ``feed_rows`` rows each (each one all or nothing)."""
    for row in scenario.nodes.itertuples(index=False):
        capacity = _optional(row.capacity_units)
        pool.upsert_node(
            NodeSpec(
                node_id=str(row.node_id),
                kind=str(row.kind),
                lat=float(row.lat),
                lon=float(row.lon),
                ship_fixed=float(row.ship_fixed),
                ship_per_km=float(row.ship_per_km),
                handling_per_unit=float(row.handling_per_unit),
                capacity_units=None if capacity is None else int(capacity),
                max_km=_optional(float(row.max_km)),
                node_group=(str(getattr(row, "group", "")) or None),
            ),
            actor=actor,
        )
    rows = [
        SetRow(
            node_id=str(r.node_id),
            sku=str(r.sku),
            on_hand=int(r.available),
            unsellable=0,
            safety_stock=0,
            weekly_sales=_optional(float(getattr(r, "weekly_sales", math.nan))),
        )
        for r in scenario.inventory.itertuples(index=False)
    ]
    for start in range(0, len(rows), feed_rows):
        pool.set_stock(
            rows[start : start + feed_rows], actor=actor, reason=f"scenario {scenario.name}"
        )
    pool.set_policy(RoutingPolicy(scenario.split_penalty, scenario.unfilled_penalty))
    if scenario.profiles is not None:
        # Each channel's profile becomes its next version (docs/profiles.md); the
        # service evaluates calendars and promises at its own clock, not ``as_of``.
        for channel, profile in scenario.profiles.profiles.items():
            pool.put_profile(channel, profile.document, actor=actor)
    for kit_sku, kit in (scenario.kits or {}).items():
        # kits.csv (docs/profiles.md, Kits): each kit's components replace any before.
        parts = [{"component_sku": sku, "quantity": qty} for sku, qty in kit]
        pool.put_kit(kit_sku, parts, actor=actor)
    return LoadSummary(scenario.name, len(scenario.nodes), len(rows))
