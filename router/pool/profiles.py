"""Routing profiles in the pool: each channel's versions, and the nodes' daily workload.

``PUT /v1/profiles/{channel}`` validates a profile (``router.profiles.parse_profile``)
and stores it as the channel's next version; a rejected profile changes nothing, so
the previous version stays in force. Every API process reloads the profiles with its
node read model (the nodes version is bumped), and routes an order with its
channel's latest version (or the ``default`` channel's, or none).

A node's daily workload (``daily_limits`` of the default profile) is counted in
``pool_node_days`` per node and local day: every reservation at a limited node adds
its units, from single-order routes, rejections and waves alike; the count of a new
local day starts at 0, so the limit resets at the node's local midnight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, bindparam, func, insert, select, update

from router.pool.errors import InvalidInput, NotFound
from router.pool.nodes import NodeIndex, _bump_version
from router.pool.schema import balances, node_days
from router.pool.schema import profiles as profiles_table
from router.profiles import (
    _CHANNEL,
    DEFAULT_CHANNEL,
    NodeRules,
    Profile,
    ProfileError,
    check_workload_owner,
    compile_rules,
    local_day,
    parse_profile,
)


@dataclass(frozen=True)
class ProfileVersion:
    channel: str
    version: int
    document: dict[str, Any]
    actor: str
    created_at: datetime


@dataclass
class ProfileBook:
    """The latest version of every channel's profile, compiled on demand per minute."""

    latest: dict[str, tuple[int, Profile]]
    _cache: dict[tuple, NodeRules] = field(default_factory=dict)

    def rules(self, channel: str, index: NodeIndex, now: datetime) -> NodeRules | None:
        """The channel's rules (or the default channel's, or none: an empty profile, as
        ``ProfileSet.of``) at ``now`` (naive UTC)."""
        found = self.latest.get(channel) or self.latest.get(DEFAULT_CHANNEL)
        default = self.latest.get(DEFAULT_CHANNEL)
        minute = now.replace(second=0, microsecond=0)
        key = (channel, index.version, minute)
        rules = self._cache.get(key)
        if rules is None:
            if len(self._cache) > 256:
                self._cache.clear()
            rules = compile_rules(
                found[1] if found else Profile({}),
                index.node_id,
                index.kind,
                index.group if index.group is not None else np.full(index.size, "", dtype=object),
                now.replace(tzinfo=UTC),
                workload=default[1] if default else None,
            )
            self._cache[key] = rules
        return rules


def load_book(conn: Connection) -> ProfileBook:
    latest = (
        select(profiles_table.c.channel, func.max(profiles_table.c.version).label("version"))
        .group_by(profiles_table.c.channel)
        .subquery()
    )
    rows = conn.execute(
        select(profiles_table.c.channel, profiles_table.c.version, profiles_table.c.document).join(
            latest,
            and_(
                latest.c.channel == profiles_table.c.channel,
                latest.c.version == profiles_table.c.version,
            ),
        )
    ).all()
    return ProfileBook({r.channel: (r.version, Profile(json.loads(r.document))) for r in rows})


def _check_channel(channel: str) -> None:
    if not _CHANNEL.match(channel):
        raise InvalidInput(
            "channel must be 1-64 of A-Z a-z 0-9 _ . -", field="channel", rule="pattern"
        )


def put_profile(
    conn: Connection, channel: str, raw: Any, actor: str, now: datetime
) -> ProfileVersion:
    """Validate ``raw`` and store it as the channel's next version."""
    _check_channel(channel)
    try:
        profile = parse_profile(raw)
        check_workload_owner({channel: profile})
    except ProfileError as exc:
        where = exc.field.removeprefix(f"profiles.{channel}").lstrip(".")
        raise InvalidInput(exc.reason, field=where or "profile", rule="profile") from None
    current = conn.execute(
        select(func.max(profiles_table.c.version)).where(profiles_table.c.channel == channel)
    ).scalar_one_or_none()
    version = int(current or 0) + 1
    document = json.dumps(profile.document, sort_keys=True)
    conn.execute(
        insert(profiles_table).values(
            channel=channel, version=version, document=document, actor=actor, created_at=now
        )
    )
    _bump_version(conn)  # every process reloads its read model, profiles included
    return ProfileVersion(channel, version, profile.document, actor, now)


def versions(conn: Connection, channel: str) -> list[ProfileVersion]:
    _check_channel(channel)
    rows = conn.execute(
        select(profiles_table)
        .where(profiles_table.c.channel == channel)
        .order_by(profiles_table.c.version.desc())
    ).all()
    if not rows:
        raise NotFound(f"channel {channel!r} has no profile", field="channel", rule="known_profile")
    return [
        ProfileVersion(r.channel, r.version, json.loads(r.document), r.actor, r.created_at)
        for r in rows
    ]


def read_weekly_sales(conn: Connection, sku_list, available) -> dict[tuple[int, str], float]:
    """(node_pk, sku) -> units sold a week, for the pairs of an availability read."""
    pks = sorted({row[0] for row in available.rows})
    if not pks:
        return {}
    rows = conn.execute(
        select(balances.c.node_pk, balances.c.sku, balances.c.weekly_sales).where(
            balances.c.node_pk.in_(pks),
            balances.c.sku.in_(list(sku_list)),
            balances.c.weekly_sales.is_not(None),
        )
    ).all()
    return {(int(pk), sku): float(rate) for pk, sku, rate in rows}


# --- daily workload -------------------------------------------------------------------------


def units_left_today(
    conn: Connection, rules: NodeRules, positions: np.ndarray, index: NodeIndex, now: datetime
) -> np.ndarray:
    """(M,) units each node at ``positions`` may still take today (``inf``: no limit;
    0 when the node has taken its daily orders)."""
    return work_left_today(conn, rules, positions, index, now)[0]


def work_left_today(
    conn: Connection,
    rules: NodeRules,
    positions: np.ndarray,
    index: NodeIndex,
    now: datetime,
    *,
    held_units: np.ndarray | None = None,
    held_orders: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(units, orders) each node at ``positions`` may still take today (``inf``: no
    limit); a node out of orders has 0 units left.

    ``held_units`` / ``held_orders`` (M,): units and orders a re-optimization's orders
    hold at the nodes, counted as left to them (an order that stays adds no work).
    """
    limit = rules.daily_units[positions]
    order_limit = _order_limits(rules)[positions]
    held_units = np.zeros(positions.size) if held_units is None else held_units
    held_orders = np.zeros(positions.size) if held_orders is None else held_orders
    left = limit.copy()
    orders_left = order_limit.copy()
    limited = np.flatnonzero(np.isfinite(limit) | np.isfinite(order_limit))
    if not limited.size:
        return left, orders_left
    aware = now.replace(tzinfo=UTC)
    day_of = {
        int(index.pk[positions[i]]): local_day(aware, str(rules.timezone[positions[i]]))
        for i in limited
    }
    taken = {
        (pk, day): (units, orders)
        for pk, day, units, orders in conn.execute(
            select(
                node_days.c.node_pk, node_days.c.day, node_days.c.units, node_days.c.orders
            ).where(
                node_days.c.node_pk.in_(list(day_of)), node_days.c.day.in_(set(day_of.values()))
            )
        ).all()
    }
    for i in limited:
        pk = int(index.pk[positions[i]])
        units, orders = taken.get((pk, day_of[pk]), (0, 0))
        left[i] = max(0.0, limit[i] - units) + held_units[i]
        orders_left[i] = max(0.0, order_limit[i] - orders) + held_orders[i]
        if orders_left[i] < 1:
            left[i] = 0.0
    return left, orders_left


def _order_limits(rules: NodeRules) -> np.ndarray:
    if rules.daily_orders is None:
        return np.full(rules.daily_units.size, np.inf)
    return rules.daily_orders


_ADD_UNITS = (
    update(node_days)
    .where(
        node_days.c.node_pk == bindparam("b_node"),
        node_days.c.day == bindparam("b_day"),
        node_days.c.units + bindparam("b_units") <= bindparam("b_limit"),
        node_days.c.orders + bindparam("b_orders") <= bindparam("b_order_limit"),
    )
    .values(
        units=node_days.c.units + bindparam("b_units"),
        orders=node_days.c.orders + bindparam("b_orders"),
    )
)


def take_units_today(
    conn: Connection,
    rules: NodeRules | None,
    moves: list[tuple[int, str, int]],
    index: NodeIndex,
    now: datetime,
    orders: dict[int, int] | None = None,
) -> bool:
    """Count the moves' units (and one order per node, or ``orders[node_pk]`` for a
    wave's summed moves) against each limited node's day; False when a limit would be
    passed (another transaction took the room first: the caller rolls back)."""
    if rules is None:
        return True
    order_limit = _order_limits(rules)
    if not (np.isfinite(rules.daily_units).any() or np.isfinite(order_limit).any()):
        return True
    per_node: dict[int, int] = {}
    for pk, _sku, units in moves:
        per_node[pk] = per_node.get(pk, 0) + units
    aware = now.replace(tzinfo=UTC)
    from sqlalchemy.dialects import postgresql, sqlite

    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    for pk in sorted(per_node):
        position = index.index_of_pk[pk]
        limit = float(rules.daily_units[position])
        most_orders = float(order_limit[position])
        if not np.isfinite(limit) and not np.isfinite(most_orders):
            continue
        day = local_day(aware, str(rules.timezone[position]))
        conn.execute(
            dialect.insert(node_days)
            .values(node_pk=pk, day=day, units=0, orders=0)
            .on_conflict_do_nothing()
        )
        params = {
            "b_node": pk,
            "b_day": day,
            "b_units": per_node[pk],
            "b_limit": limit if np.isfinite(limit) else 1e18,
            "b_orders": 1 if orders is None else orders.get(pk, 1),
            "b_order_limit": most_orders if np.isfinite(most_orders) else 1e18,
        }
        if conn.execute(_ADD_UNITS, params).rowcount != 1:
            return False
    return True
