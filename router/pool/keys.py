"""API keys: random secrets shown once, stored as SHA-256 hashes, each with a role.

A key looks like ``omr_<key_id>_<secret>``. The secret has 256 bits of entropy,
so a plain SHA-256 (no slow KDF) is enough to make a leaked table useless.
A key may carry an expiry; a revoked or expired key authenticates nobody.
Times are naive UTC, as everywhere in the pool.
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
    expires_at: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def may(self, role: str) -> bool:
        """``admin`` may do everything ``oms`` may."""
        return self.role == "admin" or self.role == role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key: everything but the secret and its hash."""

    key_id: str
    role: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def create_key(
    conn: Connection,
    role: str,
    *,
    now: datetime,
    label: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Store a new key and return it; this is the only time the key is ever seen."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {ROLES}", field="role", rule="enum")
    if expires_at is not None and expires_at <= now:
        raise InvalidInput(
            f"expiry {expires_at.isoformat()}Z is not in the future", field="expires_at",
            rule="future",
        )  # fmt: skip
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    conn.execute(
        insert(api_keys).values(
            key_id=key_id,
            key_hash=hash_key(key),
            role=role,
            label=label,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return key


def lookup(conn: Connection, key: str, *, now: datetime) -> Principal | None:
    """The principal of a key that is neither revoked nor expired at ``now``."""
    row = conn.execute(
        select(api_keys.c.key_id, api_keys.c.role, api_keys.c.expires_at).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    principal = Principal(row.key_id, row.role, row.expires_at)
    return principal if principal.valid_at(now) else None


def list_keys(conn: Connection) -> list[KeyInfo]:
    """Every key, oldest first (revoked and expired ones too)."""
    rows = conn.execute(
        select(
            api_keys.c.key_id,
            api_keys.c.role,
            api_keys.c.label,
            api_keys.c.created_at,
            api_keys.c.expires_at,
            api_keys.c.revoked_at,
        ).order_by(api_keys.c.created_at, api_keys.c.key_id)
    )
    return [KeyInfo(**row._mapping) for row in rows]


def revoke(conn: Connection, key_id: str, *, now: datetime) -> None:
    """Revoke a key; revoking it again keeps the first revocation time."""
    if conn.execute(
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount:
        return
    if conn.execute(select(api_keys.c.key_id).where(api_keys.c.key_id == key_id)).first() is None:
        raise NotFound(f"key {key_id!r} does not exist", field="key_id", rule="known_key")
