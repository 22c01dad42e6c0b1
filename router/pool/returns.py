"""Returns: choose where a returned line goes back, and take it into the pool on receipt.

Two steps, each one write transaction:

1. ``create_return``: check the line was shipped (committed) and not all returned yet,
   then ``choose_return_node`` picks the node; the return is *expected* there. Nothing
   moves on the ledger: the units are on their way, not in the pool.
2. ``receive``: the node confirms what arrived, split into sellable and unsellable
   units; ``on_hand`` rises by both and ``unsellable`` by the second (one ``return``
   ledger entry whose ``ref`` is the return), so ``available`` rises by the sellable units.

The choice of node (``prefer``, a per-return setting until routing profiles exist):

- ``nearest_store``: the nearest active store that carries the SKU (has a stock row
  for it), by great-circle distance from where the return starts;
- ``cheapest_warehouse``: the active warehouse with the lowest restocking cost,
  ``ship_fixed + ship_per_km * distance + handling_per_unit * qty`` (the node's own
  cost terms, run backwards), ties by distance.

``prefer="store"`` tries the nearest store and falls back to the cheapest warehouse;
``prefer="warehouse"`` the other way round. Ties go to the smaller node id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, func, insert, select, update

from router.geo import haversine_km
from router.pool import inventory
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.schema import balances, nodes, reservations, returns

PREFERENCES = ("store", "warehouse")


@dataclass(frozen=True)
class ReturnRequest:
    """A returned line: where it starts (lat/lon; default the order's destination), or
    the node it is brought to (``node_id``, no choice made)."""

    order_id: str
    line_id: str
    qty: int
    lat: float | None = None
    lon: float | None = None
    node_id: str | None = None
    prefer: str = "store"


@dataclass(frozen=True)
class ReturnCandidate:
    """An active node that could take the return back."""

    node_id: str
    kind: str
    lat: float
    lon: float
    ship_fixed: float
    ship_per_km: float
    handling_per_unit: float
    carries_sku: bool


@dataclass(frozen=True)
class ReturnChoice:
    node_id: str
    chosen_by: str  # nearest_store | cheapest_warehouse | given
    distance_km: float | None
    restocking_cost: float | None


@dataclass(frozen=True)
class ReturnView:
    return_id: str
    order_id: str
    line_id: str
    sku: str
    qty: int
    node_id: str
    chosen_by: str
    distance_km: float | None
    restocking_cost: float | None
    state: str  # expected | received
    sellable: int | None
    unsellable: int | None
    created_at: datetime
    received_at: datetime | None
    replayed: bool = False  # the stored answer to a retry; nothing moved now


# --- the choice (pure) --------------------------------------------------------------------


def nearest_store(
    candidates: list[ReturnCandidate], lat: float, lon: float, qty: int
) -> ReturnChoice | None:
    """The nearest store that carries the SKU, or None."""
    stores = [c for c in candidates if c.kind == "store" and c.carries_sku]
    if not stores:
        return None
    distance = _distances(stores, lat, lon)
    best = min(range(len(stores)), key=lambda i: (distance[i], stores[i].node_id))
    return ReturnChoice(
        stores[best].node_id,
        "nearest_store",
        round(float(distance[best]), 3),
        _restocking_cost(stores[best], float(distance[best]), qty),
    )


def cheapest_warehouse(
    candidates: list[ReturnCandidate], lat: float, lon: float, qty: int
) -> ReturnChoice | None:
    """The warehouse with the lowest restocking cost of ``qty`` units, or None."""
    warehouses = [c for c in candidates if c.kind == "warehouse"]
    if not warehouses:
        return None
    distance = _distances(warehouses, lat, lon)
    cost = [_restocking_cost(w, float(d), qty) for w, d in zip(warehouses, distance, strict=True)]
    best = min(range(len(warehouses)), key=lambda i: (cost[i], distance[i], warehouses[i].node_id))
    return ReturnChoice(
        warehouses[best].node_id, "cheapest_warehouse", round(float(distance[best]), 3), cost[best]
    )


def choose_return_node(
    candidates: list[ReturnCandidate], lat: float, lon: float, qty: int, prefer: str
) -> ReturnChoice | None:
    """The preferred rule first, the other as the fallback; None if no node qualifies."""
    rules = (
        (nearest_store, cheapest_warehouse)
        if prefer == "store"
        else (cheapest_warehouse, nearest_store)
    )
    for choose in rules:
        choice = choose(candidates, lat, lon, qty)
        if choice is not None:
            return choice
    return None


def _distances(found: list[ReturnCandidate], lat: float, lon: float) -> np.ndarray:
    return haversine_km(
        lat, lon, np.array([c.lat for c in found]), np.array([c.lon for c in found])
    )


def _restocking_cost(node: ReturnCandidate, distance_km: float, qty: int) -> float:
    return round(node.ship_fixed + node.ship_per_km * distance_km + node.handling_per_unit * qty, 6)


# --- create -------------------------------------------------------------------------------


def _candidates(conn: Connection, sku: str) -> list[ReturnCandidate]:
    carrying = set(conn.execute(select(balances.c.node_pk).where(balances.c.sku == sku)).scalars())
    return [
        ReturnCandidate(
            r.node_id,
            r.kind,
            r.lat,
            r.lon,
            r.ship_fixed,
            r.ship_per_km,
            r.handling_per_unit,
            r.pk in carrying,
        )
        for r in conn.execute(select(nodes).where(nodes.c.status == "active")).all()
    ]


def _shipped_line(conn: Connection, request: ReturnRequest) -> tuple[str, int, Any]:
    """(sku, units shipped, a reservation of the line), or raise naming the field."""
    rows = conn.execute(
        select(reservations).where(reservations.c.order_id == request.order_id)
    ).all()
    if not rows:
        raise NotFound(
            f"order {request.order_id!r} has no reservations", field="order_id", rule="known_order"
        )
    of_line = [r for r in rows if r.line_id == request.line_id]
    if not of_line:
        raise InvalidInput(
            f"order {request.order_id!r} has no line {request.line_id!r}",
            field="line_id",
            rule="known_line",
        )
    shipped = sum(r.qty for r in of_line if r.status == "committed")
    return of_line[0].sku, shipped, of_line[0]


def create_return(
    conn: Connection, request: ReturnRequest, *, now: datetime, actor: str
) -> ReturnView:
    """Record an expected return at the chosen (or given) node."""
    if request.qty < 1:
        raise InvalidInput("qty must be >= 1", field="qty", rule="minimum")
    if request.prefer not in PREFERENCES:
        raise InvalidInput(f"prefer must be one of {PREFERENCES}", field="prefer", rule="one_of")
    sku, shipped, line_row = _shipped_line(conn, request)
    already = conn.execute(
        select(func.coalesce(func.sum(returns.c.qty), 0)).where(
            returns.c.order_id == request.order_id, returns.c.line_id == request.line_id
        )
    ).scalar_one()
    if request.qty > shipped - already:
        raise InvalidInput(
            f"qty {request.qty} is more than the {shipped - already} units of line "
            f"{request.line_id!r} shipped and not yet returned",
            field="qty",
            rule="within_shipped",
        )
    if request.node_id is not None:
        node = conn.execute(select(nodes).where(nodes.c.node_id == request.node_id)).first()
        if node is None:
            raise InvalidInput(
                f"node {request.node_id!r} does not exist", field="node_id", rule="known_node"
            )
        choice = ReturnChoice(node.node_id, "given", None, None)
    else:
        lat, lon = _start(conn, request, line_row)
        found = choose_return_node(_candidates(conn, sku), lat, lon, request.qty, request.prefer)
        if found is None:
            raise InvalidInput(
                f"no active store carries {sku!r} and no active warehouse exists",
                field="prefer",
                rule="return_node_exists",
            )
        choice = found
    node_pk = conn.execute(select(nodes.c.pk).where(nodes.c.node_id == choice.node_id)).scalar_one()
    return_id = uuid.uuid4().hex
    conn.execute(
        insert(returns).values(
            return_id=return_id,
            order_id=request.order_id,
            line_id=request.line_id,
            sku=sku,
            qty=request.qty,
            node_pk=node_pk,
            chosen_by=choice.chosen_by,
            distance_km=choice.distance_km,
            restocking_cost=choice.restocking_cost,
            state="expected",
            actor=actor,
            created_at=now,
        )
    )
    return get(conn, return_id)


def _start(conn: Connection, request: ReturnRequest, line_row: Any) -> tuple[float, float]:
    """Where the return starts: the request's lat/lon, else where the order went."""
    if request.lat is not None and request.lon is not None:
        return request.lat, request.lon
    if line_row.dest_lat is not None and line_row.dest_lon is not None:
        return line_row.dest_lat, line_row.dest_lon
    if line_row.pickup_node is not None:
        node = conn.execute(
            select(nodes.c.lat, nodes.c.lon).where(nodes.c.node_id == line_row.pickup_node)
        ).first()
        if node is not None:
            return node.lat, node.lon
    raise InvalidInput(
        "where the return starts is unknown: give the customer's lat and lon",
        field="customer",
        rule="required_for_return",
    )


# --- receive ------------------------------------------------------------------------------


def receive(
    conn: Connection,
    return_id: str,
    sellable: int,
    unsellable: int,
    *,
    now: datetime,
    actor: str,
    request_id: str | None = None,
) -> ReturnView:
    """The node confirms receipt: the units enter its stock. A repeat with the same
    split is a no-op; another split of a received return is a conflict."""
    view = get(conn, return_id)
    if sellable < 0 or unsellable < 0:
        field = "sellable" if sellable < 0 else "unsellable"
        raise InvalidInput(f"{field} must be >= 0", field=field, rule="minimum")
    if sellable + unsellable != view.qty:
        raise InvalidInput(
            f"sellable + unsellable must be the {view.qty} units of the return, "
            f"not {sellable + unsellable}",
            field="sellable",
            rule="receipt_matches_return",
        )
    if view.state == "received":
        if (view.sellable, view.unsellable) == (sellable, unsellable):
            return replace(view, replayed=True)
        raise Conflict(
            f"return {return_id!r} was received already ({view.sellable} sellable, "
            f"{view.unsellable} unsellable)",
            field="return_id",
            rule="return_expected",
        )
    if not conn.execute(
        update(returns)
        .where(and_(returns.c.return_id == return_id, returns.c.state == "expected"))
        .values(state="received", sellable=sellable, unsellable=unsellable, received_at=now)
    ).rowcount:
        # Received by a concurrent request meanwhile: the same receipt again is a no-op.
        return receive(conn, return_id, sellable, unsellable, now=now, actor=actor)
    inventory.apply_adjust(
        conn,
        [inventory.AdjustRow(view.node_id, view.sku, sellable + unsellable, unsellable)],
        now=now,
        actor=actor,
        lock=conn.dialect.name != "sqlite",
        reason=f"return of order {view.order_id} line {view.line_id}"[:200],
        request_id=request_id,
        movement="return",
        ref=return_id,
    )
    return get(conn, return_id)


# --- read ---------------------------------------------------------------------------------

_VIEW = select(
    returns.c.return_id,
    returns.c.order_id,
    returns.c.line_id,
    returns.c.sku,
    returns.c.qty,
    nodes.c.node_id,
    returns.c.chosen_by,
    returns.c.distance_km,
    returns.c.restocking_cost,
    returns.c.state,
    returns.c.sellable,
    returns.c.unsellable,
    returns.c.created_at,
    returns.c.received_at,
).join(nodes, nodes.c.pk == returns.c.node_pk)


def get(conn: Connection, return_id: str) -> ReturnView:
    row = conn.execute(_VIEW.where(returns.c.return_id == return_id)).first()
    if row is None:
        raise NotFound(
            f"return {return_id!r} does not exist", field="return_id", rule="known_return"
        )
    return ReturnView(**row._mapping)
