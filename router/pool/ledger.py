"""The append-only ledger: one row per movement of a (node, sku) balance.

Nothing ever updates or deletes a ledger row. Summing the deltas of a pair
gives its balance (``on_hand``, ``unsellable``, ``safety_stock``, ``reserved``,
``locked``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from router.pool.schema import ledger

MOVEMENTS = (
    "set",
    "adjust",
    "reserve",
    "commit",
    "release",
    "expire",
    "safety",
    # campaign locks: units locked, taken by a campaign order, given back, run out of time
    "lock",
    "lock_use",
    "unlock",
    "lock_expire",
    # a return received at a node (router.pool.returns): on_hand up, unsellable up for
    # the units that cannot be sold again
    "return",
)


_APPEND = insert(ledger)  # built once: statement construction shows up on the hot path


@dataclass(frozen=True)
class Entry:
    """One movement; deltas are signed unit counts."""

    node_pk: int
    sku: str
    movement: str
    d_on_hand: int = 0
    d_unsellable: int = 0
    d_safety: int = 0
    d_reserved: int = 0
    d_locked: int = 0
    ref: str | None = None
    reason: str | None = None


def append(
    conn: Connection,
    entries: list[Entry],
    *,
    now: datetime,
    actor: str,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> None:
    """Append entries in the caller's transaction (so a movement and its record are atomic)."""
    if not entries:
        return
    conn.execute(
        _APPEND,
        [
            {
                "at": now,
                "node_pk": e.node_pk,
                "sku": e.sku,
                "movement": e.movement,
                "d_on_hand": e.d_on_hand,
                "d_unsellable": e.d_unsellable,
                "d_safety": e.d_safety,
                "d_reserved": e.d_reserved,
                "d_locked": e.d_locked,
                "actor": actor,
                "reason": e.reason,
                "ref": e.ref,
                "idempotency_key": idempotency_key,
                "request_id": request_id,
            }
            for e in entries
        ],
    )


def entries_for(
    conn: Connection, node_pk: int, sku: str, *, after: int = 0, limit: int = 100
) -> list[Any]:
    """Entries of one (node, sku), oldest first, after the given entry id (for paging)."""
    return list(
        conn.execute(
            select(ledger)
            .where(ledger.c.node_pk == node_pk, ledger.c.sku == sku, ledger.c.entry_id > after)
            .order_by(ledger.c.entry_id)
            .limit(limit)
        ).all()
    )
