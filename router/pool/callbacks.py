"""Callbacks to the OMS when a queued order is routed: signed, retried, never in the way.

The routing is committed first; the callback is an *outbox* row (the order's
``callback_state = 'pending'``), delivered afterwards by a background loop. A
failed delivery is retried with exponential back-off until ``max_attempts``,
then marked ``failed``; the order stays routed either way and can always be read
with ``GET /v1/orders/{id}``.

Each POST carries the JSON body and two headers the receiver checks::

    X-Omniroute-Timestamp: 1767603600
    X-Omniroute-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>

Two processes never deliver the same attempt: a delivery is claimed by moving
``callback_next_at`` forward with a compare-and-set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from router.pool.schema import wave_orders

SIGNATURE_HEADER = "X-Omniroute-Signature"
TIMESTAMP_HEADER = "X-Omniroute-Timestamp"
DELIVERY_HEADER = "X-Omniroute-Delivery"


@dataclass(frozen=True)
class CallbackSettings:
    """``secret`` signs every body; no secret, no callbacks (queueing one is refused)."""

    secret: str | None = None
    max_attempts: int = 8
    first_delay: float = 1.0
    max_delay: float = 300.0
    timeout: float = 5.0

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def delay_after(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed delivery (1, 2, 4, ... capped)."""
        return min(self.max_delay, self.first_delay * 2 ** (attempts - 1))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CallbackSettings:
        """``OMNIROUTE_CALLBACK_SECRET``, ``OMNIROUTE_CALLBACK_FIRST_DELAY`` (seconds)."""
        delay = environ.get("OMNIROUTE_CALLBACK_FIRST_DELAY", "")
        try:
            first_delay = float(delay) if delay else 1.0
        except ValueError:
            raise ValueError(f"OMNIROUTE_CALLBACK_FIRST_DELAY={delay!r}: not a number") from None
        if not first_delay > 0:
            raise ValueError(f"OMNIROUTE_CALLBACK_FIRST_DELAY={delay!r}: must be > 0")
        return cls(secret=environ.get("OMNIROUTE_CALLBACK_SECRET") or None, first_delay=first_delay)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def callback_body(order_id: str, wave_id: str, result: str) -> bytes:
    return json.dumps(
        {
            "event": "order.routed",
            "order_id": order_id,
            "wave_id": wave_id,
            "result": json.loads(result),
        },
        separators=(",", ":"),
    ).encode()


def deliver_due(
    pool: Any, settings: CallbackSettings, client: httpx.Client, *, limit: int = 20
) -> int:
    """Deliver the callbacks that are due; returns how many were delivered now."""
    if not settings.enabled:
        return 0
    assert settings.secret is not None
    now = pool.clock()
    lease = now + timedelta(seconds=settings.timeout + 5)
    with pool.db.write() as conn:
        due = conn.execute(
            select(
                wave_orders.c.order_id,
                wave_orders.c.wave_id,
                wave_orders.c.callback_url,
                wave_orders.c.callback_attempts,
                wave_orders.c.callback_next_at,
                wave_orders.c.result,
            )
            .where(wave_orders.c.callback_state == "pending", wave_orders.c.callback_next_at <= now)
            .order_by(wave_orders.c.callback_next_at)
            .limit(limit)
        ).all()
        claimed = [
            row
            for row in due
            if conn.execute(
                update(wave_orders)
                .where(
                    wave_orders.c.order_id == row.order_id,
                    wave_orders.c.callback_state == "pending",
                    wave_orders.c.callback_next_at == row.callback_next_at,
                )
                .values(callback_next_at=lease)
            ).rowcount
        ]
    delivered = 0
    for row in claimed:
        body = callback_body(row.order_id, row.wave_id, row.result)
        timestamp = str(int(now.replace(tzinfo=UTC).timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(settings.secret, timestamp, body),
            DELIVERY_HEADER: f"{row.order_id}/{row.callback_attempts + 1}",
        }
        error = None
        try:
            response = client.post(
                row.callback_url, content=body, headers=headers, timeout=settings.timeout
            )
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as failure:
            error = f"{failure.__class__.__name__}: {failure}"[:200]
        attempts = row.callback_attempts + 1
        if error is None:
            changes: dict[str, Any] = {"callback_state": "delivered", "callback_error": None}
            delivered += 1
        elif attempts >= settings.max_attempts:
            changes = {"callback_state": "failed", "callback_error": error}
        else:
            retry_at = pool.clock() + timedelta(seconds=settings.delay_after(attempts))
            changes = {"callback_next_at": retry_at, "callback_error": error}
        with pool.db.write() as conn:
            conn.execute(
                update(wave_orders)
                .where(wave_orders.c.order_id == row.order_id)
                .values(callback_attempts=attempts, **changes)
            )
    return delivered
