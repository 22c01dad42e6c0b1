"""Nodes of the pool (warehouses and stores) and their in-memory read model.

The read model (``NodeIndex``) holds the static attributes of every node as
numpy arrays, so routing computes distances and shipping costs for all nodes at
once without a query. Dynamic facts (status, capacity left) are read from the
database with the order's availability, so a pause in one API process is seen
by every other at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert, select, update

from router.pool import ledger
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.schema import balances, nodes, pool_meta

NODE_KINDS = ("warehouse", "store")
NODE_STATUSES = ("active", "paused", "closed")
NODES_VERSION_KEY = "nodes_version"


@dataclass(frozen=True)
class NodeSpec:
    """What a client may set on a node. ``None`` capacity / max_km = no limit."""

    node_id: str
    kind: str
    lat: float
    lon: float
    ship_fixed: float = 0.0
    ship_per_km: float = 0.0
    handling_per_unit: float = 0.0
    capacity_units: int | None = None
    max_km: float | None = None
    default_safety_stock: int = 0
    node_group: str | None = None
    """What routing profiles select the node by (``group:NAME``); ``None``: no group."""


UPDATABLE = tuple(f.name for f in fields(NodeSpec) if f.name != "node_id")


@dataclass(frozen=True)
class NodeIndex:
    """Static node attributes as arrays; position ``i`` is one node."""

    version: int
    node_id: np.ndarray  # (N,) object
    pk: np.ndarray  # (N,) int64
    kind: np.ndarray  # (N,) object
    lat: np.ndarray
    lon: np.ndarray
    ship_fixed: np.ndarray
    ship_per_km: np.ndarray
    handling_per_unit: np.ndarray
    max_km: np.ndarray  # NaN = no limit
    index_of_pk: dict[int, int]
    index_of_id: dict[str, int]
    group: np.ndarray | None = None  # (N,) object, "" = no group

    @property
    def size(self) -> int:
        return len(self.pk)


def _check_spec(spec: NodeSpec) -> None:
    """Rules the API's schema also checks; repeated here for the CLI and scenario loads."""
    if spec.kind not in NODE_KINDS:
        raise InvalidInput(f"kind must be one of {NODE_KINDS}", field="kind", rule="enum")
    if not (-90.0 <= spec.lat <= 90.0):
        raise InvalidInput("lat must be within [-90, 90]", field="lat", rule="range")
    if not (-180.0 <= spec.lon <= 180.0):
        raise InvalidInput("lon must be within [-180, 180]", field="lon", rule="range")
    for name in (
        "ship_fixed",
        "ship_per_km",
        "handling_per_unit",
        "max_km",
        "capacity_units",
        "default_safety_stock",
    ):
        value = getattr(spec, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InvalidInput(f"{name} must be a finite number >= 0", field=name, rule="minimum")


def nodes_version(conn: Connection) -> int:
    value = conn.execute(
        select(pool_meta.c.value).where(pool_meta.c.key == NODES_VERSION_KEY)
    ).scalar_one_or_none()
    return int(value) if value is not None else 0


def _bump_version(conn: Connection) -> None:
    """Tell every API process that its node read model is stale."""
    current = nodes_version(conn)
    if (
        current == 0
        and not conn.execute(
            select(pool_meta.c.key).where(pool_meta.c.key == NODES_VERSION_KEY)
        ).first()
    ):
        conn.execute(insert(pool_meta).values(key=NODES_VERSION_KEY, value="1"))
    else:
        conn.execute(
            update(pool_meta)
            .where(pool_meta.c.key == NODES_VERSION_KEY)
            .values(value=str(current + 1))
        )


def load_index(conn: Connection) -> NodeIndex:
    """Read every node into a ``NodeIndex``."""
    version = nodes_version(conn)
    rows = conn.execute(select(nodes).order_by(nodes.c.pk)).all()
    node_id = np.array([r.node_id for r in rows], dtype=object)
    pk = np.array([r.pk for r in rows], dtype=np.int64)
    return NodeIndex(
        version=version,
        node_id=node_id,
        pk=pk,
        kind=np.array([r.kind for r in rows], dtype=object),
        lat=np.array([r.lat for r in rows], dtype=np.float64),
        lon=np.array([r.lon for r in rows], dtype=np.float64),
        ship_fixed=np.array([r.ship_fixed for r in rows], dtype=np.float64),
        ship_per_km=np.array([r.ship_per_km for r in rows], dtype=np.float64),
        handling_per_unit=np.array([r.handling_per_unit for r in rows], dtype=np.float64),
        max_km=np.array([np.nan if r.max_km is None else r.max_km for r in rows], dtype=np.float64),
        index_of_pk={int(p): i for i, p in enumerate(pk)},
        index_of_id={str(n): i for i, n in enumerate(node_id)},
        group=np.array([r.node_group or "" for r in rows], dtype=object),
    )


def node_row(conn: Connection, node_id: str, *, field: str = "node_id") -> Any:
    row = conn.execute(select(nodes).where(nodes.c.node_id == node_id)).first()
    if row is None:
        raise NotFound(f"node {node_id!r} does not exist", field=field, rule="known_node")
    return row


def node_pks(conn: Connection, node_ids: set[str]) -> dict[str, int]:
    """node_id -> pk for the given ids (missing ids are simply absent)."""
    found: dict[str, int] = {}
    ids = sorted(node_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for node_id, pk in conn.execute(
            select(nodes.c.node_id, nodes.c.pk).where(nodes.c.node_id.in_(chunk))
        ):
            found[node_id] = pk
    return found


def create_node(conn: Connection, spec: NodeSpec, now: datetime) -> Any:
    _check_spec(spec)
    if conn.execute(select(nodes.c.pk).where(nodes.c.node_id == spec.node_id)).first():
        raise Conflict(f"node {spec.node_id!r} already exists", field="node_id", rule="unique")
    conn.execute(
        insert(nodes).values(**spec.__dict__, status="active", backlog_units=0, updated_at=now)
    )
    _bump_version(conn)
    return node_row(conn, spec.node_id)


def update_node(
    conn: Connection,
    node_id: str,
    changes: dict[str, Any],
    now: datetime,
    actor: str,
    request_id: str | None = None,
) -> Any:
    """Change some attributes of a node; a new default safety stock flows to its balances."""
    row = node_row(conn, node_id)
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{name} cannot be changed", field=name, rule="updatable")
    merged = NodeSpec(node_id=node_id, **{k: changes.get(k, getattr(row, k)) for k in UPDATABLE})
    _check_spec(merged)
    new_default = changes.get("default_safety_stock")
    if new_default is not None and new_default != row.default_safety_stock:
        # Balances before the node row: the lock order routing uses too.
        _apply_default_safety(conn, row.pk, int(new_default), now, actor, request_id)
    conn.execute(update(nodes).where(nodes.c.pk == row.pk).values(**changes, updated_at=now))
    _bump_version(conn)
    return node_row(conn, node_id)


def _apply_default_safety(
    conn: Connection, node_pk: int, safety: int, now: datetime, actor: str, request_id: str | None
) -> None:
    following = conn.execute(
        select(balances.c.sku, balances.c.safety_stock)
        .where(balances.c.node_pk == node_pk, balances.c.safety_explicit.is_(False))
        .order_by(balances.c.sku)
    ).all()
    changed = [(sku, safety - old) for sku, old in following if old != safety]
    if not changed:
        return
    conn.execute(
        update(balances)
        .where(balances.c.node_pk == node_pk, balances.c.safety_explicit.is_(False))
        .values(safety_stock=safety)
    )
    ledger.append(
        conn,
        [
            ledger.Entry(node_pk, sku, "safety", d_safety=delta, ref="node default")
            for sku, delta in changed
        ],
        now=now,
        actor=actor,
        request_id=request_id,
    )


def set_status(conn: Connection, node_id: str, status: str, now: datetime) -> Any:
    if status not in NODE_STATUSES:
        raise InvalidInput(f"status must be one of {NODE_STATUSES}", field="status", rule="enum")
    row = node_row(conn, node_id)
    conn.execute(update(nodes).where(nodes.c.pk == row.pk).values(status=status, updated_at=now))
    _bump_version(conn)
    return node_row(conn, node_id)


def list_nodes(conn: Connection, *, status: str | None = None) -> list[Any]:
    query = select(nodes).order_by(nodes.c.node_id)
    if status is not None:
        query = query.where(nodes.c.status == status)
    return list(conn.execute(query).all())
