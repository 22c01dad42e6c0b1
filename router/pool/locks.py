"""Campaign stock locks: units held for one campaign, over a time window.

A lock takes ``qty`` units of one (node, sku) out of what every other channel can
sell the moment it is created (``balances.locked`` grows by ``qty``), so they are
there when the campaign's window opens. While ``starts_at <= now < ends_at`` the
campaign's orders route from them first (``router.pool.routing``); each unit they
take moves from ``locked`` to ``reserved`` (movement ``lock_use``) and becomes an
ordinary hold: releasing that order later gives the unit back to the pool, not to
the lock. What is left of a lock returns to the pool when its window ends (the
sweep, ``lock_expire``) or on demand (``unlock``).

With these layers every pair keeps
``on_hand = available + reserved + safety_stock + unsellable + locked``, and
``locked`` is the sum of ``remaining`` over the pair's active locks.

Lock order of rows (PostgreSQL): lock rows, then balances in (node, sku) order,
then nodes, the same in every transaction that touches them, so none waits in a
cycle. Creating locks for one campaign is serialized by an advisory lock, so two
overlapping requests cannot both pass the no-overlap rule.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, insert, select, text, update

from router.pool import ledger
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.nodes import node_pks
from router.pool.schema import balances, campaign_locks, campaigns, nodes, skus

MAX_LOCK_ROWS = 1000


@dataclass(frozen=True)
class LockRow:
    """Lock ``qty`` units of ``sku`` at ``node_id``."""

    node_id: str
    sku: str
    qty: int


@dataclass(frozen=True)
class LockView:
    lock_id: str
    node_id: str
    sku: str
    qty: int
    used: int
    remaining: int
    returned: int
    starts_at: datetime
    ends_at: datetime
    status: str  # active | released | expired
    created_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class CampaignView:
    campaign_id: str
    allow_pool: bool
    created_at: datetime
    updated_at: datetime
    locks: list[LockView]


@dataclass(frozen=True)
class LockedStock:
    """One in-window lock of a campaign, as routing reads it."""

    lock_id: str
    node_pk: int
    sku: str
    remaining: int
    capacity_left: int | None


# --- reads ---------------------------------------------------------------------------------

_LOCK_VIEW = select(
    campaign_locks.c.lock_id,
    nodes.c.node_id,
    campaign_locks.c.sku,
    campaign_locks.c.qty,
    campaign_locks.c.used,
    campaign_locks.c.remaining,
    campaign_locks.c.returned,
    campaign_locks.c.starts_at,
    campaign_locks.c.ends_at,
    campaign_locks.c.status,
    campaign_locks.c.created_at,
    campaign_locks.c.closed_at,
).join(nodes, nodes.c.pk == campaign_locks.c.node_pk)


def campaign(conn: Connection, campaign_id: str) -> CampaignView:
    """The campaign and all its locks (oldest first); unknown campaigns raise."""
    row = conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id)).first()
    if row is None:
        raise NotFound(
            f"campaign {campaign_id!r} does not exist", field="campaign_id", rule="known_campaign"
        )
    locks = [
        LockView(**r._mapping)
        for r in conn.execute(
            _LOCK_VIEW.where(campaign_locks.c.campaign_id == campaign_id).order_by(
                campaign_locks.c.created_at, nodes.c.node_id, campaign_locks.c.sku
            )
        )
    ]
    return CampaignView(
        row.campaign_id, bool(row.allow_pool), row.created_at, row.updated_at, locks
    )


def allow_pool_of(conn: Connection, campaign_id: str, field: str = "campaign") -> bool:
    """Whether the campaign's orders may take pool stock; an unknown campaign raises."""
    allow = conn.execute(
        select(campaigns.c.allow_pool).where(campaigns.c.campaign_id == campaign_id)
    ).first()
    if allow is None:
        raise InvalidInput(
            f"campaign {campaign_id!r} does not exist", field=field, rule="known_campaign"
        )
    return bool(allow[0])


_IN_WINDOW = and_(
    campaign_locks.c.status == "active",
    campaign_locks.c.starts_at <= bindparam("now"),
    campaign_locks.c.ends_at > bindparam("now"),
)
_READ_LOCKED = (
    select(
        campaign_locks.c.lock_id,
        campaign_locks.c.node_pk,
        campaign_locks.c.sku,
        campaign_locks.c.remaining,
        (nodes.c.capacity_units - nodes.c.backlog_units).label("capacity_left"),
    )
    .join(nodes, nodes.c.pk == campaign_locks.c.node_pk)
    .where(
        campaign_locks.c.campaign_id == bindparam("campaign_id"),
        campaign_locks.c.sku.in_(bindparam("skus", expanding=True)),
        campaign_locks.c.node_pk.in_(bindparam("node_pks", expanding=True)),
        nodes.c.status == "active",
        campaign_locks.c.remaining > 0,
        _IN_WINDOW,
    )
)


def read_locked(
    conn: Connection,
    campaign_id: str,
    sku_list: tuple[str, ...],
    node_pks: list[int],
    now: datetime,
) -> list[LockedStock]:
    """The campaign's units usable now: in-window locks of the SKUs at the given active nodes.

    The no-overlap rule leaves at most one in-window lock per (campaign, node, sku).
    """
    if not node_pks:
        return []
    rows = conn.execute(
        _READ_LOCKED,
        {"campaign_id": campaign_id, "skus": list(sku_list), "node_pks": node_pks, "now": now},
    )
    return [LockedStock(**r._mapping) for r in rows]


# --- use by a campaign order -----------------------------------------------------------------

_TAKE_FROM_LOCK = (
    update(campaign_locks)
    .where(
        campaign_locks.c.lock_id == bindparam("b_lock"),
        campaign_locks.c.remaining >= bindparam("units"),
        _IN_WINDOW,
    )
    .values(
        remaining=campaign_locks.c.remaining - bindparam("units"),
        used=campaign_locks.c.used + bindparam("units"),
    )
)
_LOCKED_TO_RESERVED = (
    update(balances)
    .where(
        balances.c.node_pk == bindparam("b_node"),
        balances.c.sku == bindparam("b_sku"),
        balances.c.locked >= bindparam("units"),
    )
    .values(
        locked=balances.c.locked - bindparam("units"),
        reserved=balances.c.reserved + bindparam("units"),
    )
)


def take_from_locks(conn: Connection, uses: list[tuple[str, int]], now: datetime) -> bool:
    """Take ``units`` from each ``(lock_id, units)`` if the lock still has them in its window.

    False when a lock changed since it was read (the caller rolls back and retries).
    The balances move separately (``move_locked_to_reserved``), in the global pair order.
    """
    if not uses:
        return True
    params = [{"b_lock": lock_id, "units": units, "now": now} for lock_id, units in uses]
    return conn.execute(_TAKE_FROM_LOCK, params).rowcount == len(params)


def move_locked_to_reserved(conn: Connection, node_pk: int, sku: str, units: int) -> bool:
    """Units of a pair go from its locked layer to its reserved layer (available unchanged)."""
    return (
        conn.execute(
            _LOCKED_TO_RESERVED, {"b_node": node_pk, "b_sku": sku, "units": units}
        ).rowcount
        == 1
    )


# --- create ----------------------------------------------------------------------------------

_AVAILABLE = (
    balances.c.on_hand
    - balances.c.unsellable
    - balances.c.safety_stock
    - balances.c.reserved
    - balances.c.locked
)
_LOCK_STOCK = (
    update(balances)
    .where(
        balances.c.node_pk == bindparam("b_node"),
        balances.c.sku == bindparam("b_sku"),
        bindparam("units") <= _AVAILABLE,
    )
    .values(locked=balances.c.locked + bindparam("units"))
)
_CAMPAIGN_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('campaign:' || :campaign_id))")


def _validate_window(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is not None:
            raise InvalidInput(
                f"{name} must be naive UTC inside the pool", field=name, rule="naive_utc"
            )
    if ends_at <= starts_at:
        raise InvalidInput(
            f"the window ends ({ends_at.isoformat()}) before it starts ({starts_at.isoformat()})",
            field="ends_at",
            rule="window_ends_after_start",
        )
    if ends_at <= now:
        raise InvalidInput(
            f"the window ended already ({ends_at.isoformat()} <= now {now.isoformat()})",
            field="ends_at",
            rule="window_not_over",
        )


def _resolve_rows(conn: Connection, rows: list[LockRow]) -> list[int]:
    """Node keys of the rows; unknown nodes or SKUs, bad quantities, repeated pairs raise."""
    if not rows:
        raise InvalidInput(
            "a lock request needs at least one row", field="locks", rule="min_length"
        )
    if len(rows) > MAX_LOCK_ROWS:
        raise InvalidInput(
            f"a lock request has at most {MAX_LOCK_ROWS} rows", field="locks", rule="max_length"
        )
    pks = node_pks(conn, {r.node_id for r in rows})
    sku_names = sorted({r.sku for r in rows})
    known_skus = set(conn.execute(select(skus.c.sku).where(skus.c.sku.in_(sku_names))).scalars())
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rows):
        if r.node_id not in pks:
            raise InvalidInput(
                f"node {r.node_id!r} does not exist", field=f"locks[{i}].node_id", rule="known_node"
            )
        if r.sku not in known_skus:
            raise InvalidInput(
                f"sku {r.sku!r} is not in the pool", field=f"locks[{i}].sku", rule="known_sku"
            )
        if r.qty < 1:
            raise InvalidInput("qty must be >= 1", field=f"locks[{i}].qty", rule="minimum")
        if (r.node_id, r.sku) in seen:
            raise InvalidInput(
                f"({r.node_id!r}, {r.sku!r}) appears twice in the request",
                field=f"locks[{i}]",
                rule="unique_pair",
            )
        seen.add((r.node_id, r.sku))
    return [pks[r.node_id] for r in rows]


def _check_no_overlap(
    conn: Connection,
    campaign_id: str,
    rows: list[LockRow],
    pks: list[int],
    starts_at: datetime,
    ends_at: datetime,
) -> None:
    """No two active locks of one campaign and pair may share a moment of their windows."""
    overlapping = {
        (r.node_pk, r.sku): r
        for r in conn.execute(
            select(
                campaign_locks.c.node_pk,
                campaign_locks.c.sku,
                campaign_locks.c.lock_id,
                campaign_locks.c.starts_at,
                campaign_locks.c.ends_at,
            ).where(
                campaign_locks.c.campaign_id == campaign_id,
                campaign_locks.c.status == "active",
                campaign_locks.c.starts_at < ends_at,
                campaign_locks.c.ends_at > starts_at,
            )
        )
    }
    for i, (pk, r) in enumerate(zip(pks, rows, strict=True)):
        found = overlapping.get((pk, r.sku))
        if found is not None:
            raise Conflict(
                f"campaign {campaign_id!r} already locks ({r.node_id!r}, {r.sku!r}) from "
                f"{found.starts_at.isoformat()} to {found.ends_at.isoformat()} "
                f"(lock {found.lock_id}); windows of one pair may not overlap",
                field=f"locks[{i}]",
                rule="no_overlapping_windows",
            )


def _upsert_campaign(
    conn: Connection, campaign_id: str, allow_pool: bool | None, now: datetime
) -> None:
    exists = conn.execute(
        select(campaigns.c.campaign_id).where(campaigns.c.campaign_id == campaign_id)
    ).first()
    if exists is None:
        conn.execute(
            insert(campaigns).values(
                campaign_id=campaign_id,
                allow_pool=True if allow_pool is None else allow_pool,
                created_at=now,
                updated_at=now,
            )
        )
    elif allow_pool is not None:
        conn.execute(
            update(campaigns)
            .where(campaigns.c.campaign_id == campaign_id)
            .values(allow_pool=allow_pool, updated_at=now)
        )


def create_locks(
    conn: Connection,
    campaign_id: str,
    rows: list[LockRow],
    *,
    starts_at: datetime,
    ends_at: datetime,
    allow_pool: bool | None,
    now: datetime,
    actor: str,
    reason: str | None = None,
    request_id: str | None = None,
) -> list[str]:
    """Lock every row for the campaign over ``[starts_at, ends_at)``, all rows or none.

    Parameters
    ----------
    campaign_id
        Created on its first lock; ``allow_pool`` (None: keep, new campaigns: True)
        says whether its orders may take pool stock once the locked units run out.
    rows
        One per (node, sku); each ``qty`` must be within what is available now
        (on hand net of unsellable, safety stock, reservations and other locks).
    starts_at, ends_at
        Naive UTC; the window must end after it starts and after ``now``.

    Returns the new lock ids, in the order of ``rows``.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_CAMPAIGN_LOCK, {"campaign_id": campaign_id})
    _validate_window(starts_at, ends_at, now)
    pks = _resolve_rows(conn, rows)
    _check_no_overlap(conn, campaign_id, rows, pks, starts_at, ends_at)
    _upsert_campaign(conn, campaign_id, allow_pool, now)
    # Balances in (node, sku) order: the lock order every transaction follows.
    for i in sorted(range(len(rows)), key=lambda i: (pks[i], rows[i].sku)):
        r = rows[i]
        params = {"b_node": pks[i], "b_sku": r.sku, "units": r.qty}
        if conn.execute(_LOCK_STOCK, params).rowcount != 1:
            available = conn.execute(
                select(_AVAILABLE).where(balances.c.node_pk == pks[i], balances.c.sku == r.sku)
            ).scalar()
            raise InvalidInput(
                f"({r.node_id!r}, {r.sku!r}) has {max(0, available or 0)} units available; "
                f"cannot lock {r.qty}",
                field=f"locks[{i}].qty",
                rule="within_available",
            )
    lock_ids = [uuid.uuid4().hex for _ in rows]
    conn.execute(
        insert(campaign_locks),
        [
            {
                "lock_id": lock_id,
                "campaign_id": campaign_id,
                "node_pk": pk,
                "sku": r.sku,
                "qty": r.qty,
                "used": 0,
                "remaining": r.qty,
                "returned": 0,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "status": "active",
                "created_at": now,
            }
            for lock_id, pk, r in zip(lock_ids, pks, rows, strict=True)
        ],
    )
    ledger.append(
        conn,
        [
            ledger.Entry(
                pk, r.sku, "lock", d_locked=r.qty, ref=f"{campaign_id}/{lock_id}", reason=reason
            )
            for lock_id, pk, r in zip(lock_ids, pks, rows, strict=True)
        ],
        now=now,
        actor=actor,
        request_id=request_id,
    )
    return lock_ids


# --- return to the pool ------------------------------------------------------------------------

_UNLOCK_STOCK = (
    update(balances)
    .where(balances.c.node_pk == bindparam("b_node"), balances.c.sku == bindparam("b_sku"))
    .values(locked=balances.c.locked - bindparam("units"))
)
_CLOSE_LOCK = (
    update(campaign_locks)
    .where(campaign_locks.c.lock_id == bindparam("b_lock"), campaign_locks.c.status == "active")
    .values(
        status=bindparam("new_status"),
        returned=campaign_locks.c.remaining,
        remaining=0,
        closed_at=bindparam("at"),
    )
)


def _close(
    conn: Connection, where, movement: str, *, now: datetime, actor: str, request_id, limit=None
) -> int:
    """Close the active locks matched by ``where``; their remaining units return to the pool."""
    query = (
        select(
            campaign_locks.c.lock_id,
            campaign_locks.c.campaign_id,
            campaign_locks.c.node_pk,
            campaign_locks.c.sku,
            campaign_locks.c.remaining,
        )
        .where(campaign_locks.c.status == "active", where)
        .order_by(campaign_locks.c.node_pk, campaign_locks.c.sku, campaign_locks.c.lock_id)
    )
    if limit is not None:
        query = query.limit(limit)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    found = conn.execute(query).all()
    if not found:
        return 0
    new_status = "released" if movement == "unlock" else "expired"
    conn.execute(
        _CLOSE_LOCK, [{"b_lock": r.lock_id, "new_status": new_status, "at": now} for r in found]
    )
    per_pair: dict[tuple[int, str], int] = {}
    for r in found:
        per_pair[(r.node_pk, r.sku)] = per_pair.get((r.node_pk, r.sku), 0) + r.remaining
    returning = [
        {"b_node": pk, "b_sku": sku, "units": units}
        for (pk, sku), units in sorted(per_pair.items())
        if units
    ]
    if returning:
        conn.execute(_UNLOCK_STOCK, returning)
    ledger.append(
        conn,
        [
            ledger.Entry(
                r.node_pk,
                r.sku,
                movement,
                d_locked=-r.remaining,
                ref=f"{r.campaign_id}/{r.lock_id}",
            )
            for r in found
            if r.remaining
        ],
        now=now,
        actor=actor,
        request_id=request_id,
    )
    return len(found)


def release(
    conn: Connection, campaign_id: str, *, now: datetime, actor: str, request_id: str | None = None
) -> int:
    """Close every active lock of the campaign now (a repeat closes nothing); returns how many."""
    exists = conn.execute(
        select(campaigns.c.campaign_id).where(campaigns.c.campaign_id == campaign_id)
    ).first()
    if exists is None:
        raise NotFound(
            f"campaign {campaign_id!r} does not exist", field="campaign_id", rule="known_campaign"
        )
    return _close(
        conn,
        campaign_locks.c.campaign_id == campaign_id,
        "unlock",
        now=now,
        actor=actor,
        request_id=request_id,
    )


def expire_due(conn: Connection, now: datetime, limit: int) -> int:
    """Close up to ``limit`` active locks whose window has ended; returns how many."""
    return _close(
        conn,
        campaign_locks.c.ends_at <= now,
        "lock_expire",
        now=now,
        actor="sweeper",
        request_id=None,
        limit=limit,
    )
