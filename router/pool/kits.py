"""Kits in the pool: their definitions, their availability, and the expansion of orders.

``PUT /v1/kits/{kit_sku}`` validates a kit (``router.kits.parse_kit``) and replaces
its components; every API process reloads the kits with its node read model (the
nodes version is bumped). An order's kit lines are expanded by
``router.kits.expand_lines`` before the order's arrays are built (:func:`expand_order`),
as the scenario loader does for a batch, so the kit rule (components ship whole from
one node, in the group ``kit:<line id>``) binds through the ship-group rule of both
paths. A kit's availability is derived from its components (:func:`kit_availability`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, insert, select

from router.kits import Kit, KitError, expand_lines, kit_availability, parse_kit, split_kits_of
from router.pool.errors import InvalidInput, NotFound
from router.pool.inventory import NodeStock, SkuAvailability
from router.pool.nodes import _bump_version
from router.pool.schema import balances
from router.pool.schema import kits as kits_table

MAX_ID = 64
"""Line ids and SKUs are stored in 64 characters."""


@dataclass(frozen=True)
class KitView:
    kit_sku: str
    components: list[tuple[str, int]]
    actor: str
    updated_at: datetime


def load_kits(conn: Connection) -> dict[str, Kit]:
    """Every kit: kit SKU -> its components (sorted by SKU)."""
    found: dict[str, list[tuple[str, int]]] = {}
    for row in conn.execute(
        select(kits_table.c.kit_sku, kits_table.c.component_sku, kits_table.c.quantity).order_by(
            kits_table.c.kit_sku, kits_table.c.component_sku
        )
    ):
        found.setdefault(row.kit_sku, []).append((row.component_sku, int(row.quantity)))
    return {kit: tuple(parts) for kit, parts in found.items()}


def put_kit(conn: Connection, kit_sku: str, components: Any, actor: str, now: datetime) -> KitView:
    """Validate and store the kit's components (replacing any before)."""
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise InvalidInput(
            "components must be a list of {component_sku, quantity}",
            field="components",
            rule="kit",
        )
    for i, part in enumerate(components):
        unknown = sorted(set(part) - {"component_sku", "quantity"})
        if unknown:
            raise InvalidInput(
                "unknown field (expected component_sku, quantity)",
                field=f"components[{i}].{unknown[0]}",
                rule="kit",
            )
    try:
        kit = parse_kit(kit_sku, [(c.get("component_sku"), c.get("quantity")) for c in components])
    except KitError as exc:
        raise InvalidInput(exc.reason, field=exc.field, rule="kit") from None
    if len(kit_sku) > MAX_ID or any(len(sku) > MAX_ID for sku, _ in kit):
        raise InvalidInput(f"SKUs hold at most {MAX_ID} characters", field="kit_sku", rule="kit")
    known = load_kits(conn)
    for i, (sku, _qty) in enumerate(kit):
        if sku in known:
            raise InvalidInput(
                f"{sku!r} is itself a kit (kits do not nest)",
                field=f"components[{i}].component_sku",
                rule="kit_not_nested",
            )
    inside = sorted(k for k, parts in known.items() if any(s == kit_sku for s, _ in parts))
    if inside:
        raise InvalidInput(
            f"{kit_sku!r} is a component of kit {inside[0]!r} (kits do not nest)",
            field="kit_sku",
            rule="kit_not_nested",
        )
    stocked = conn.execute(
        select(balances.c.sku).where(balances.c.sku == kit_sku, balances.c.on_hand > 0).limit(1)
    ).first()
    if stocked is not None:
        raise InvalidInput(
            f"{kit_sku!r} has stock of its own; a kit's availability comes from its components",
            field="kit_sku",
            rule="kit_has_no_stock",
        )
    conn.execute(delete(kits_table).where(kits_table.c.kit_sku == kit_sku))
    conn.execute(
        insert(kits_table),
        [
            {
                "kit_sku": kit_sku,
                "component_sku": sku,
                "quantity": qty,
                "actor": actor,
                "updated_at": now,
            }
            for sku, qty in kit
        ],
    )
    _bump_version(conn)
    return KitView(kit_sku, list(kit), actor, now)


def get_kit(conn: Connection, kit_sku: str) -> KitView:
    rows = conn.execute(
        select(kits_table)
        .where(kits_table.c.kit_sku == kit_sku)
        .order_by(kits_table.c.component_sku)
    ).all()
    if not rows:
        raise NotFound(f"kit {kit_sku!r} is not defined", field="kit_sku", rule="known_kit")
    return KitView(
        kit_sku,
        [(r.component_sku, int(r.quantity)) for r in rows],
        rows[0].actor,
        rows[0].updated_at,
    )


def expand_order(order, kits: dict[str, Kit] | None, profiles) -> Any:
    """The order with its kit lines replaced by their component lines (``kit_line`` set).

    ``profiles`` (a ``ProfileBook`` or ``None``): the channel's ``split_kits``, and
    whether the order's own ship groups bind (they do where profiles exist, as in a
    batch, where they come with ``profiles.json``).
    """
    if not kits or not any(line.sku in kits for line in order.lines):
        return order
    split = False
    if profiles is not None:
        found = profiles.latest.get(order.channel) or profiles.latest.get("default")
        split = found is not None and split_kits_of(found[1])
    try:
        expanded = expand_lines(
            [
                (ln.line_id, ln.sku, ln.qty, (ln.ship_group or "") if profiles else "")
                for ln in order.lines
            ],
            kits,
            split_kits=split,
        )
    except KitError as exc:
        raise InvalidInput(
            exc.reason, field=f"lines[{exc.line or 0}].{exc.field}", rule="kit"
        ) from None
    lines = []
    for line in expanded:
        if len(line.line_id) > MAX_ID:
            raise InvalidInput(
                f"component line id {line.line_id!r} is longer than {MAX_ID} characters",
                field=f"lines[{line.source}].line_id",
                rule="kit",
            )
        original = order.lines[line.source]
        lines.append(
            replace(
                original,
                line_id=line.line_id,
                sku=line.sku,
                qty=line.qty,
                ship_group=line.ship_group or original.ship_group,
                kit_line=line.kit_line or None,
            )
        )
    return replace(order, lines=tuple(lines))


def availability_of_kit(kit_sku: str, kit: Kit, parts: list[SkuAvailability]) -> SkuAvailability:
    """The kit's availability from its components' (``parts``, one per component):
    per node, the kits its components make there (``on_hand`` and ``available``; the
    other layers are the components'); pooled, the kits the pooled units make."""
    by_sku = {p.sku: p for p in parts}
    node_ids = sorted({n.node_id for p in parts for n in p.nodes})
    status = {n.node_id: n.status for p in parts for n in p.nodes}

    def per_node(layer: str) -> np.ndarray:
        values = {}
        for sku, _qty in kit:
            stock = (
                {n.node_id: getattr(n, layer) for n in by_sku[sku].nodes} if sku in by_sku else {}
            )
            values[sku] = np.array([stock.get(node, 0) for node in node_ids], dtype=np.int64)
        return kit_availability(kit, values)

    available, on_hand = per_node("available"), per_node("on_hand")
    pooled = {sku: by_sku[sku].pooled_available if sku in by_sku else 0 for sku, _ in kit}
    active = {sku: by_sku[sku].active_available if sku in by_sku else 0 for sku, _ in kit}
    nodes = [
        NodeStock(node, status[node], int(on_hand[i]), 0, 0, 0, 0, int(available[i]), 0)
        for i, node in enumerate(node_ids)
        if on_hand[i] > 0 or available[i] > 0
    ]
    return SkuAvailability(
        kit_sku,
        int(kit_availability(kit, pooled)),
        int(kit_availability(kit, active)),
        nodes,
        components=[{"component_sku": sku, "quantity": qty} for sku, qty in kit],
    )
