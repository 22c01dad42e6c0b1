"""Stock feeds (absolute set, relative adjust) and availability reads.

A feed applies all of its rows in one transaction or none of them: every row is
validated against the locked current balances before the first write, and any
broken rule raises with the row's index (``rows[17].on_hand``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, text, update

from router.pool import ledger
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.nodes import node_pks, node_row
from router.pool.schema import balances, nodes, skus

CHUNK = 900  # bound parameters per IN (...) query, well under SQLite's limit
MAX_FEED_ROWS = 200_000
BIG_FEED_ROWS = 10_000


@dataclass(frozen=True)
class SetRow:
    """Absolute stock of a (node, sku); ``None`` leaves that layer as it is."""

    node_id: str
    sku: str
    on_hand: int
    unsellable: int | None = None
    safety_stock: int | None = None
    expected_version: int | None = None
    weekly_sales: float | None = None
    """Units sold a week (a profile's clearance target); ``None`` leaves it as it is."""


@dataclass(frozen=True)
class AdjustRow:
    """Relative change of a (node, sku): received, sold at the till, found damaged..."""

    node_id: str
    sku: str
    delta_on_hand: int = 0
    delta_unsellable: int = 0


@dataclass(frozen=True)
class FeedResult:
    rows: int
    created: int
    updated: int


@dataclass
class _Current:
    on_hand: int
    unsellable: int
    safety_stock: int
    safety_explicit: bool
    reserved: int
    version: int


def _locked_balances(
    conn: Connection, pairs_by_node: dict[int, list[str]], lock: bool
) -> dict[tuple[int, str], _Current]:
    """Current balances of the given pairs, row-locked in (node, sku) order on PostgreSQL."""
    found: dict[tuple[int, str], _Current] = {}
    cols = (
        balances.c.node_pk,
        balances.c.sku,
        balances.c.on_hand,
        balances.c.unsellable,
        balances.c.safety_stock,
        balances.c.safety_explicit,
        balances.c.reserved,
        balances.c.version,
    )
    for node_pk in sorted(pairs_by_node):
        wanted = sorted(pairs_by_node[node_pk])
        if len(wanted) > CHUNK:
            # A big feed for one node: read the node's rows once rather than in IN-list
            # chunks (a long IN list is matched row by row when the planner scans).
            queries = [select(*cols).where(balances.c.node_pk == node_pk)]
        else:
            queries = [
                select(*cols).where(balances.c.node_pk == node_pk, balances.c.sku.in_(wanted))
            ]
        wanted_set = set(wanted)
        for query in queries:
            query = query.order_by(balances.c.sku)
            if lock:
                query = query.with_for_update()
            for r in conn.execute(query):
                if r.sku in wanted_set:
                    found[(r.node_pk, r.sku)] = _Current(
                        r.on_hand,
                        r.unsellable,
                        r.safety_stock,
                        bool(r.safety_explicit),
                        r.reserved,
                        r.version,
                    )
    return found


def _resolve(conn: Connection, rows: Sequence[SetRow | AdjustRow]) -> list[int]:
    if not rows:
        raise InvalidInput("a feed needs at least one row", field="rows", rule="min_length")
    if len(rows) > MAX_FEED_ROWS:
        raise InvalidInput(
            f"a feed has at most {MAX_FEED_ROWS} rows", field="rows", rule="max_length"
        )
    pks = node_pks(conn, {r.node_id for r in rows})
    seen: set[tuple[str, str]] = set()
    resolved = []
    for i, r in enumerate(rows):
        if r.node_id not in pks:
            raise InvalidInput(
                f"node {r.node_id!r} does not exist", field=f"rows[{i}].node_id", rule="known_node"
            )
        if not r.sku or len(r.sku) > 64:
            raise InvalidInput(
                "sku must be 1 to 64 characters", field=f"rows[{i}].sku", rule="length"
            )
        if (r.node_id, r.sku) in seen:
            raise InvalidInput(
                f"({r.node_id!r}, {r.sku!r}) appears twice in the feed",
                field=f"rows[{i}]",
                rule="unique_pair",
            )
        seen.add((r.node_id, r.sku))
        resolved.append(pks[r.node_id])
    return resolved


def _node_defaults(conn: Connection, node_pk_list: set[int]) -> dict[int, int]:
    ids = sorted(node_pk_list)
    out: dict[int, int] = {}
    for start in range(0, len(ids), CHUNK):
        for pk, safety in conn.execute(
            select(nodes.c.pk, nodes.c.default_safety_stock).where(
                nodes.c.pk.in_(ids[start : start + CHUNK])
            )
        ):
            out[pk] = safety
    return out


def _register_skus(conn: Connection, new_skus: set[str]) -> None:
    names = sorted(new_skus)
    known: set[str] = set()
    for start in range(0, len(names), CHUNK):
        known.update(
            conn.execute(select(skus.c.sku).where(skus.c.sku.in_(names[start : start + CHUNK])))
            .scalars()
            .all()
        )
    missing = [s for s in names if s not in known]
    if missing:
        conn.execute(insert(skus), [{"sku": s} for s in missing])


_UPDATE_BALANCE = (
    update(balances)
    .where(and_(balances.c.node_pk == bindparam("b_node"), balances.c.sku == bindparam("b_sku")))
    .values(
        on_hand=bindparam("on_hand"),
        unsellable=bindparam("unsellable"),
        safety_stock=bindparam("safety_stock"),
        safety_explicit=bindparam("safety_explicit"),
        version=bindparam("version"),
    )
)


def _write(
    conn: Connection,
    updates: list[dict[str, Any]],
    inserts: list[dict[str, Any]],
    entries: list[ledger.Entry],
    *,
    now: datetime,
    actor: str,
    idempotency_key: str | None,
    request_id: str | None,
) -> None:
    if inserts:
        _register_skus(conn, {r["sku"] for r in inserts})
        conn.execute(insert(balances), inserts)
    if updates:
        conn.execute(_UPDATE_BALANCE, updates)
    if len(inserts) > BIG_FEED_ROWS and conn.dialect.name == "postgresql":
        # Fresh statistics, so the planner keeps using the (node, sku) index for the
        # availability reads of routing right after a large load.
        conn.execute(text("ANALYZE pool_balances, pool_nodes"))
    ledger.append(
        conn,
        entries,
        now=now,
        actor=actor,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


def _feed_state(conn: Connection, rows, lock: bool):
    """What every feed needs first: node keys of the rows, the current balances
    of their pairs (locked in (node, sku) order when ``lock``), node defaults."""
    pks = _resolve(conn, rows)
    by_node: dict[int, list[str]] = {}
    for pk, r in zip(pks, rows, strict=True):
        by_node.setdefault(pk, []).append(r.sku)
    return pks, _locked_balances(conn, by_node, lock), _node_defaults(conn, set(by_node))


def apply_set(
    conn: Connection,
    rows: list[SetRow],
    *,
    now: datetime,
    actor: str,
    lock: bool,
    reason: str | None = None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> FeedResult:
    """Set absolute stock for many pairs; with ``expected_version`` a row is compare-and-set."""
    pks, current, defaults = _feed_state(conn, rows, lock)
    updates, inserts, entries = [], [], []
    for i, (pk, r) in enumerate(zip(pks, rows, strict=True)):
        for name in ("on_hand", "unsellable", "safety_stock"):
            value = getattr(r, name)
            if value is not None and value < 0:
                raise InvalidInput(
                    f"{name} must be >= 0", field=f"rows[{i}].{name}", rule="minimum"
                )
        cur = current.get((pk, r.sku))
        cur_version = cur.version if cur else 0
        if r.expected_version is not None and r.expected_version != cur_version:
            raise Conflict(
                f"({r.node_id!r}, {r.sku!r}) is at version {cur_version}, "
                f"not the expected {r.expected_version}",
                field=f"rows[{i}].expected_version",
                rule="version_match",
            )
        old = cur or _Current(0, 0, defaults[pk], False, 0, 0)
        unsellable = old.unsellable if r.unsellable is None else r.unsellable
        explicit = old.safety_explicit or r.safety_stock is not None
        safety = old.safety_stock if r.safety_stock is None else r.safety_stock
        values = {
            "on_hand": r.on_hand,
            "unsellable": unsellable,
            "safety_stock": safety,
            "safety_explicit": explicit,
            "version": cur_version + 1,
        }
        if cur is None:
            inserts.append(
                {
                    "node_pk": pk,
                    "sku": r.sku,
                    "reserved": 0,
                    "weekly_sales": r.weekly_sales,
                    **values,
                }
            )
        else:
            updates.append({"b_node": pk, "b_sku": r.sku, **values})
        entries.append(
            ledger.Entry(
                pk,
                r.sku,
                "set",
                d_on_hand=r.on_hand - old.on_hand,
                d_unsellable=unsellable - old.unsellable,
                d_safety=safety - old.safety_stock,
                reason=reason,
            )
        )
    _write(
        conn,
        updates,
        inserts,
        entries,
        now=now,
        actor=actor,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    sales = [
        {"b_node": pk, "b_sku": r.sku, "rate": r.weekly_sales}
        for pk, r in zip(pks, rows, strict=True)
        if r.weekly_sales is not None and (pk, r.sku) in current
    ]
    if sales:
        conn.execute(_SET_WEEKLY_SALES, sales)
    return FeedResult(rows=len(rows), created=len(inserts), updated=len(updates))


_SET_WEEKLY_SALES = (
    update(balances)
    .where(balances.c.node_pk == bindparam("b_node"), balances.c.sku == bindparam("b_sku"))
    .values(weekly_sales=bindparam("rate"))
)


def apply_adjust(
    conn: Connection,
    rows: list[AdjustRow],
    *,
    now: datetime,
    actor: str,
    lock: bool,
    reason: str | None = None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    movement: str = "adjust",
    ref: str | None = None,
) -> FeedResult:
    """Add signed deltas to many pairs; no layer may go below zero.

    ``movement`` and ``ref`` name the ledger entries (a received return is a ``return``
    whose ``ref`` is the return id)."""
    pks, current, defaults = _feed_state(conn, rows, lock)
    updates, inserts, entries = [], [], []
    for i, (pk, r) in enumerate(zip(pks, rows, strict=True)):
        cur = current.get((pk, r.sku))
        old = cur or _Current(0, 0, defaults[pk], False, 0, 0)
        on_hand = old.on_hand + r.delta_on_hand
        unsellable = old.unsellable + r.delta_unsellable
        if on_hand < 0:
            raise InvalidInput(
                f"on_hand of ({r.node_id!r}, {r.sku!r}) would become {on_hand}",
                field=f"rows[{i}].delta_on_hand",
                rule="on_hand_not_negative",
            )
        if unsellable < 0:
            raise InvalidInput(
                f"unsellable of ({r.node_id!r}, {r.sku!r}) would become {unsellable}",
                field=f"rows[{i}].delta_unsellable",
                rule="unsellable_not_negative",
            )
        values = {
            "on_hand": on_hand,
            "unsellable": unsellable,
            "safety_stock": old.safety_stock,
            "safety_explicit": old.safety_explicit,
            "version": old.version + 1,
        }
        if cur is None:
            inserts.append({"node_pk": pk, "sku": r.sku, "reserved": 0, **values})
        else:
            updates.append({"b_node": pk, "b_sku": r.sku, **values})
        entries.append(
            ledger.Entry(
                pk,
                r.sku,
                movement,
                d_on_hand=r.delta_on_hand,
                d_unsellable=r.delta_unsellable,
                reason=reason,
                ref=ref,
            )
        )
    _write(
        conn,
        updates,
        inserts,
        entries,
        now=now,
        actor=actor,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    return FeedResult(rows=len(rows), created=len(inserts), updated=len(updates))


@dataclass(frozen=True)
class NodeStock:
    node_id: str
    status: str
    on_hand: int
    unsellable: int
    safety_stock: int
    reserved: int
    locked: int  # held for campaigns (router.pool.locks)
    available: int
    version: int


@dataclass(frozen=True)
class SkuAvailability:
    sku: str
    pooled_available: int  # over every node of the pool
    active_available: int  # over active nodes only: what routing can promise now
    nodes: list[NodeStock]
    components: list[dict] | None = None  # a kit's components (router.pool.kits); None: not a kit


def known_skus(conn: Connection, sku_list: list[str]) -> list[str]:
    """The SKUs of ``sku_list`` the pool knows, in the list's order."""
    known = set(conn.execute(select(skus.c.sku).where(skus.c.sku.in_(sku_list))).scalars())
    return [sku for sku in sku_list if sku in known]


def availability(conn: Connection, sku_list: list[str]) -> list[SkuAvailability]:
    """Per-node layers and pooled availability of each SKU; unknown SKUs raise."""
    known = set(conn.execute(select(skus.c.sku).where(skus.c.sku.in_(sku_list))).scalars())
    for i, sku in enumerate(sku_list):
        if sku not in known:
            raise NotFound(f"sku {sku!r} is not in the pool", field=f"sku[{i}]", rule="known_sku")
    rows = conn.execute(
        select(
            balances.c.sku,
            nodes.c.node_id,
            nodes.c.status,
            balances.c.on_hand,
            balances.c.unsellable,
            balances.c.safety_stock,
            balances.c.reserved,
            balances.c.locked,
            balances.c.version,
        )
        .join(nodes, nodes.c.pk == balances.c.node_pk)
        .where(balances.c.sku.in_(sku_list))
        .order_by(balances.c.sku, nodes.c.node_id)
    ).all()
    per_sku: dict[str, list[NodeStock]] = {s: [] for s in sku_list}
    for r in rows:
        available = max(0, r.on_hand - r.unsellable - r.safety_stock - r.reserved - r.locked)
        per_sku[r.sku].append(
            NodeStock(
                r.node_id,
                r.status,
                r.on_hand,
                r.unsellable,
                r.safety_stock,
                r.reserved,
                r.locked,
                available,
                r.version,
            )
        )
    return [
        SkuAvailability(
            sku,
            sum(n.available for n in stock),
            sum(n.available for n in stock if n.status == "active"),
            stock,
        )
        for sku, stock in per_sku.items()
    ]


def ledger_of(conn: Connection, node_id: str, sku: str, *, after: int, limit: int) -> list[Any]:
    row = node_row(conn, node_id)
    return ledger.entries_for(conn, row.pk, sku, after=after, limit=limit)
