"""Reservation lifecycle after routing: commit (shipped), release (cancelled), expire.

Each closing step is a conditional update of the reservation row
(``WHERE status = 'held'``), so two API processes closing the same reservation
at once move its units exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, select, update

from router.pool import ledger
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.schema import balances, nodes, reservations

CLOSING = {"commit": "committed", "release": "released", "expire": "expired"}


@dataclass(frozen=True)
class ReservationView:
    reservation_id: str
    order_id: str
    line_id: str
    node_id: str
    sku: str
    qty: int
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class Closed:
    """Reservations after a commit/release/expire call, and how many it closed now."""

    reservations: list[ReservationView]
    closed_now: int


_VIEW = select(
    reservations.c.reservation_id,
    reservations.c.order_id,
    reservations.c.line_id,
    nodes.c.node_id,
    reservations.c.sku,
    reservations.c.qty,
    reservations.c.status,
    reservations.c.created_at,
    reservations.c.expires_at,
    reservations.c.closed_at,
).join(nodes, nodes.c.pk == reservations.c.node_pk)


def _views(conn: Connection, query) -> list[ReservationView]:
    return [ReservationView(*r) for r in conn.execute(query).all()]


def of_order(conn: Connection, order_id: str) -> list[ReservationView]:
    return _views(
        conn,
        _VIEW.where(reservations.c.order_id == order_id).order_by(
            reservations.c.created_at, reservations.c.line_id, nodes.c.node_id
        ),
    )


def get(conn: Connection, reservation_id: str) -> ReservationView:
    found = _views(conn, _VIEW.where(reservations.c.reservation_id == reservation_id))
    if not found:
        raise NotFound(
            f"reservation {reservation_id!r} does not exist",
            field="reservation_id",
            rule="known_reservation",
        )
    return found[0]


_CLOSE = (
    update(reservations)
    .where(and_(reservations.c.reservation_id == bindparam("rid"), reservations.c.status == "held"))
    .values(status=bindparam("new_status"), closed_at=bindparam("at"))
)
_UNRESERVE = (
    update(balances)
    .where(and_(balances.c.node_pk == bindparam("b_node"), balances.c.sku == bindparam("b_sku")))
    .values(
        reserved=balances.c.reserved - bindparam("units"),
        on_hand=balances.c.on_hand - bindparam("shipped"),
    )
)
_UNLOAD_NODE = (
    update(nodes)
    .where(nodes.c.pk == bindparam("b_node"))
    .values(backlog_units=nodes.c.backlog_units - bindparam("units"))
)


def close(
    conn: Connection,
    reservation_ids: list[str],
    action: str,
    *,
    now: datetime,
    actor: str,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> Closed:
    """Commit, release or expire held reservations.

    Closing a reservation again with the same action is a no-op (a retried call
    succeeds); a reservation already closed otherwise, or a commit of a hold past
    its expiry, is a conflict and nothing changes.
    """
    new_status = CLOSING[action]
    ids = sorted(set(reservation_ids))
    if not ids:
        raise InvalidInput("no reservation given", field="reservation_ids", rule="min_length")
    query = (
        select(reservations)
        .where(reservations.c.reservation_id.in_(ids))
        .order_by(reservations.c.reservation_id)
    )
    if not _is_sqlite(conn):
        query = query.with_for_update()
    rows = {r.reservation_id: r for r in conn.execute(query).all()}
    for rid in ids:
        if rid not in rows:
            raise NotFound(
                f"reservation {rid!r} does not exist",
                field="reservation_id",
                rule="known_reservation",
            )
    to_close = []
    for rid in ids:
        row = rows[rid]
        if row.status == new_status:
            continue
        if row.status != "held":
            raise Conflict(
                f"reservation {rid!r} is already {row.status}",
                field="reservation_id",
                rule="reservation_held",
            )
        if action == "commit" and row.expires_at <= now:
            raise Conflict(
                f"reservation {rid!r} expired at {row.expires_at.isoformat()}",
                field="reservation_id",
                rule="reservation_not_expired",
            )
        to_close.append(row)
    for row in to_close:
        conn.execute(_CLOSE, {"rid": row.reservation_id, "new_status": new_status, "at": now})
    shipped = action == "commit"
    per_pair: dict[tuple[int, str], int] = {}
    per_node: dict[int, int] = {}
    for row in to_close:
        per_pair[(row.node_pk, row.sku)] = per_pair.get((row.node_pk, row.sku), 0) + row.qty
        per_node[row.node_pk] = per_node.get(row.node_pk, 0) + row.qty
    for (node_pk, sku), units in sorted(per_pair.items()):
        conn.execute(
            _UNRESERVE,
            {"b_node": node_pk, "b_sku": sku, "units": units, "shipped": units if shipped else 0},
        )
    for node_pk, units in sorted(per_node.items()):
        conn.execute(_UNLOAD_NODE, {"b_node": node_pk, "units": units})
    ledger.append(
        conn,
        [
            ledger.Entry(
                row.node_pk,
                row.sku,
                action,
                d_reserved=-row.qty,
                d_on_hand=-row.qty if shipped else 0,
                ref=row.reservation_id,
            )
            for row in to_close
        ],
        now=now,
        actor=actor,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )
    views = _views(
        conn,
        _VIEW.where(reservations.c.reservation_id.in_(ids)).order_by(reservations.c.reservation_id),
    )
    return Closed(views, len(to_close))


def held_ids_of_order(conn: Connection, order_id: str) -> list[str]:
    ids = list(
        conn.execute(
            select(reservations.c.reservation_id).where(
                reservations.c.order_id == order_id, reservations.c.status == "held"
            )
        ).scalars()
    )
    if (
        not ids
        and not conn.execute(
            select(reservations.c.reservation_id)
            .where(reservations.c.order_id == order_id)
            .limit(1)
        ).first()
    ):
        raise NotFound(
            f"order {order_id!r} has no reservations", field="order_id", rule="known_order"
        )
    return ids


def due_ids(conn: Connection, now: datetime, limit: int) -> list[str]:
    return list(
        conn.execute(
            select(reservations.c.reservation_id)
            .where(reservations.c.status == "held", reservations.c.expires_at <= now)
            .order_by(reservations.c.expires_at)
            .limit(limit)
        ).scalars()
    )


def _is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"
