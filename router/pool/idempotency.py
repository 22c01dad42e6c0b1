"""Idempotency records: a retried request with the same key gets the stored answer.

The record is written in the same transaction as the effect it describes, so a
request either happened and is recorded, or neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from router.pool.errors import InvalidInput
from router.pool.schema import idempotency

MAX_KEY_LENGTH = 200
RETENTION_SECONDS = 24 * 3600  # how long a retry can still get the stored answer


@dataclass(frozen=True)
class Stored:
    status_code: int
    response: str


def scope(operation: str, actor: str, key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
            field="Idempotency-Key",
            rule="length",
        )
    return f"{operation}:{actor}:{key}"


def find(conn: Connection, scope_key: str, request_hash: str) -> Stored | None:
    """The stored answer for this key; a reused key with another request is rejected."""
    row = conn.execute(
        select(idempotency.c.request_hash, idempotency.c.status_code, idempotency.c.response).where(
            idempotency.c.scope_key == scope_key
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise InvalidInput(
            "this Idempotency-Key was already used with a different request body",
            field="Idempotency-Key",
            rule="same_key_same_body",
        )
    return Stored(row.status_code, row.response)


def record(
    conn: Connection,
    scope_key: str,
    request_hash: str,
    status_code: int,
    response: str,
    now: datetime,
) -> None:
    conn.execute(
        insert(idempotency).values(
            scope_key=scope_key,
            request_hash=request_hash,
            status_code=status_code,
            response=response,
            created_at=now,
        )
    )


def prune(conn: Connection, older_than: datetime) -> int:
    """Forget answers recorded before ``older_than``; returns how many."""
    return conn.execute(delete(idempotency).where(idempotency.c.created_at < older_than)).rowcount
