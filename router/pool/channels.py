"""Channel shares in the pool: each channel's sellable quantities and low-stock alerts.

The rules are the channel profiles' ``channel_share``, ``reserved`` and
``low_stock_threshold`` (``router.channels``, docs/profiles.md "Channel shares"); the
pooled quantity of a SKU is its available units over the active nodes, what routing can
promise now. ``/v1/route`` limits an order to its channel's sellable quantity through
the same function as a batch (``router.channels.ChannelStock.sellable``).

A low-stock alert of (channel, SKU) is raised when the channel's sellable quantity falls
below its threshold and cleared when it is back at or above it; at most one is open per
pair. :func:`refresh_alerts` runs after every change of the stock (routes, waves, stock
feeds) for the SKUs it touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, and_, func, insert, select, update

from router.channels import ChannelStock
from router.pool.errors import InvalidInput
from router.pool.schema import balances, channel_alerts, nodes, skus

MAX_LISTED = 1000

_AVAILABLE = (
    balances.c.on_hand
    - balances.c.unsellable
    - balances.c.safety_stock
    - balances.c.reserved
    - balances.c.locked
)


def channel_stock(profiles) -> ChannelStock | None:
    """The share rules of a ``ProfileBook`` (``None``: no profiles)."""
    if profiles is None:
        return None
    return ChannelStock({c: profile for c, (_v, profile) in profiles.latest.items()})


def pooled_available(conn: Connection, sku_list: Sequence[str]) -> np.ndarray:
    """(S,) available units of each SKU over the active nodes."""
    if not sku_list:
        return np.zeros(0, dtype=np.int64)
    rows = conn.execute(
        select(balances.c.sku, func.sum(_AVAILABLE))
        .join(nodes, nodes.c.pk == balances.c.node_pk)
        .where(balances.c.sku.in_(list(sku_list)), nodes.c.status == "active", _AVAILABLE > 0)
        .group_by(balances.c.sku)
    ).all()
    found = {sku: int(total) for sku, total in rows}
    return np.array([found.get(sku, 0) for sku in sku_list], dtype=np.int64)


def sellable_for(
    conn: Connection, profiles, channel: str, sku_list: Sequence[str]
) -> np.ndarray | None:
    """(S,) what ``channel`` may sell of each SKU now; ``None`` when no share binds."""
    rules = channel_stock(profiles)
    if rules is None or not rules.binds:
        return None
    return rules.sellable(channel, sku_list, pooled_available(conn, sku_list))


@dataclass(frozen=True)
class ChannelSku:
    sku: str
    pooled_available: int
    sellable: int
    reserved: int  # units reserved for this channel
    low_stock_threshold: int | None
    low: bool


def channel_availability(
    conn: Connection, profiles, channel: str, sku_list: Sequence[str] | None
) -> list[ChannelSku]:
    """The channel's sellable quantity of each SKU (every SKU of the pool by default)."""
    if sku_list is None:
        sku_list = list(
            conn.execute(select(skus.c.sku).order_by(skus.c.sku).limit(MAX_LISTED)).scalars()
        )
    else:
        known = set(conn.execute(select(skus.c.sku).where(skus.c.sku.in_(sku_list))).scalars())
        for i, sku in enumerate(sku_list):
            if sku not in known:
                raise InvalidInput(
                    f"sku {sku!r} is not in the pool", field=f"sku[{i}]", rule="known_sku"
                )
    rules = channel_stock(profiles) or ChannelStock({})
    pooled = pooled_available(conn, sku_list)
    sellable = rules.sellable(channel, sku_list, pooled)
    reserved = rules.reserved(channel, sku_list)
    out = []
    for i, sku in enumerate(sku_list):
        threshold = rules.threshold(channel, sku)
        out.append(
            ChannelSku(
                sku,
                int(pooled[i]),
                int(sellable[i]),
                int(reserved[i]),
                threshold,
                threshold is not None and int(sellable[i]) < threshold,
            )
        )
    return out


@dataclass(frozen=True)
class AlertView:
    alert_id: int
    channel: str
    sku: str
    sellable: int
    threshold: int
    raised_at: datetime
    cleared_at: datetime | None


def refresh_alerts(conn: Connection, profiles, sku_list: Sequence[str], now: datetime) -> int:
    """Raise the alerts of (channel, SKU) pairs now below their threshold, clear those
    back at or above it; returns how many were raised."""
    rules = channel_stock(profiles)
    if rules is None or not sku_list:
        return 0
    channels = rules.alerting_channels
    if not channels:
        return 0
    sku_list = sorted(set(sku_list))
    pooled = pooled_available(conn, sku_list)
    open_rows = {
        (r.channel, r.sku): r.alert_id
        for r in conn.execute(
            select(channel_alerts.c.alert_id, channel_alerts.c.channel, channel_alerts.c.sku).where(
                channel_alerts.c.cleared_at.is_(None),
                channel_alerts.c.sku.in_(sku_list),
                channel_alerts.c.channel.in_(channels),
            )
        )
    }
    raised = 0
    for channel in channels:
        sellable = rules.sellable(channel, sku_list, pooled)
        for sku, units in zip(sku_list, sellable.tolist(), strict=True):
            threshold = rules.threshold(channel, sku)
            low = threshold is not None and units < threshold
            alert = open_rows.get((channel, sku))
            if low and alert is None:
                conn.execute(
                    insert(channel_alerts).values(
                        channel=channel,
                        sku=sku,
                        sellable=units,
                        threshold=threshold,
                        raised_at=now,
                    )
                )
                raised += 1
            elif not low and alert is not None:
                conn.execute(
                    update(channel_alerts)
                    .where(channel_alerts.c.alert_id == alert)
                    .values(cleared_at=now)
                )
    return raised


def list_alerts(
    conn: Connection, *, channel: str | None = None, state: str = "open"
) -> list[AlertView]:
    """Alerts newest first; ``state``: ``open``, ``cleared`` or ``all``."""
    if state not in ("open", "cleared", "all"):
        raise InvalidInput("state must be open, cleared or all", field="state", rule="enum")
    where = []
    if channel is not None:
        where.append(channel_alerts.c.channel == channel)
    if state == "open":
        where.append(channel_alerts.c.cleared_at.is_(None))
    elif state == "cleared":
        where.append(channel_alerts.c.cleared_at.is_not(None))
    rows = conn.execute(
        select(channel_alerts)
        .where(and_(True, *where))
        .order_by(channel_alerts.c.alert_id.desc())
        .limit(MAX_LISTED)
    ).all()
    return [
        AlertView(
            r.alert_id,
            r.channel,
            r.sku,
            int(r.sellable),
            int(r.threshold),
            r.raised_at,
            r.cleared_at,
        )
        for r in rows
    ]


def open_alert_counts(conn: Connection) -> dict[str, int]:
    """Open alerts per channel (for ``/metrics``)."""
    rows = conn.execute(
        select(channel_alerts.c.channel, func.count())
        .where(channel_alerts.c.cleared_at.is_(None))
        .group_by(channel_alerts.c.channel)
    ).all()
    return {channel: int(n) for channel, n in rows}
