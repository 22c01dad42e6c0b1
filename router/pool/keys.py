"""API keys: random secrets shown once, stored as SHA-256 hashes, each with a role.

A key looks like ``omr_<key_id>_<secret>``. The secret has 256 bits of entropy,
so a plain SHA-256 (no slow KDF) is enough to make a leaked table useless.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from router.pool.errors import InvalidInput, NotFound
from router.pool.schema import api_keys

ROLES = ("oms", "admin")
PREFIX = "omr"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str

    def may(self, role: str) -> bool:
        """``admin`` may do everything ``oms`` may."""
        return self.role == "admin" or self.role == role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: Connection, role: str, *, now: datetime, label: str | None = None) -> str:
    """Store a new key and return it; this is the only time the key is ever seen."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {ROLES}", field="role", rule="enum")
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    conn.execute(
        insert(api_keys).values(
            key_id=key_id, key_hash=hash_key(key), role=role, label=label, created_at=now
        )
    )
    return key


def lookup(conn: Connection, key: str) -> Principal | None:
    row = conn.execute(
        select(api_keys.c.key_id, api_keys.c.role).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    return Principal(row.key_id, row.role) if row else None


def revoke(conn: Connection, key_id: str, *, now: datetime) -> None:
    if not conn.execute(
        update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=now)
    ).rowcount:
        raise NotFound(f"key {key_id!r} does not exist", field="key_id", rule="known_key")
