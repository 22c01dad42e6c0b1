"""Re-optimization of held reservations before a promotion (issue 8.2), on the live pool.

The life of a job (one row of ``pool_reoptimizations``)::

    queued ──(claimed)──► running ──► ready ──(apply)──► applied
                             └──────► failed

- **Create.** ``POST /v1/reoptimizations`` checks the request (selectors, churn
  rule) and stores a ``queued`` job; nothing else is read or written.
- **Run.** One process claims the job with a conditional update and a fresh claim
  token (as waves are claimed). In one read transaction it snapshots the selected
  orders (their held reservations and their records in ``pool_orders``) and the
  pool. The stock the solve sees is the pool's available stock *plus* the selected
  orders' own held units (as if their reservations were free); node capacity
  likewise. Their current routing is their held reservations. Orders that cannot be
  re-decided are skipped and listed in the plan (:data:`SKIP_RULES`). The scenario
  goes through :func:`router.reoptimize.reoptimize_scenario`, the one way through
  of ``omniroute reoptimize``. The plan (KPIs before and after, gap, moves, the
  per-order diff) and what apply needs (the moved orders' new allocations and a
  fingerprint of every balance, reservation and node the apply touches) are stored
  with the state ``ready``.
- **Restart.** A heartbeat refreshes the claim while the solve runs; a ``running``
  job whose claim lapsed (its process stopped) is claimed again and run from the
  start, up to :attr:`ReoptimizationSettings.max_attempts` runs, then ``failed``.
  A ``queued`` job is just a row: it waits for the next process.
- **Apply.** One write transaction: every fingerprinted row is read again (locked
  on PostgreSQL) and compared; any difference refuses the apply (409 naming the
  first) and nothing is written. Otherwise the moved orders' held reservations are
  released and their new allocations reserved with the conditional updates of
  ``/v1/route`` (never overselling), each ledger entry with the job as ``ref``.
  Applying again answers 409 ``already_applied``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, and_, or_, select, tuple_, update
from sqlalchemy.exc import DBAPIError

from router.pool import ledger, routing
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.nodes import NodeIndex
from router.pool.reservations import _CLOSE, _UNLOAD_NODE, _UNRESERVE
from router.pool.routing import LostRace, Order, OrderLine
from router.pool.schema import balances, nodes, reoptimizations, reservations
from router.pool.schema import orders as orders_table
from router.pool.snapshot import (
    attach_kit_lines,
    attach_profiles,
    nodes_frame,
    orders_frame,
    read_node_state,
)
from router.scenario import Scenario
from solver.batch import OptimizeParams

log = logging.getLogger("omniroute.reoptimizations")

STATES = ("queued", "running", "ready", "failed", "applied")
MAX_ORDER_IDS = 100_000
MAX_NODE_IDS = 10_000
MAX_TIME_LIMIT = 600.0
_CHUNK = 500

SKIP_RULES = {
    "order_unknown": "no record of the order (routed before re-optimization existed)",
    "order_partly_committed": "part of the order's routing is already committed (shipped)",
    "order_record_mismatch": "the held reservations do not match the order's lines",
    "node_not_active": "a reservation sits at a node that is no longer active",
    "stock_below_reservations": "a reservation sits where the stock is now below what is held",
    "capacity_below_backlog": "a reservation sits at a node whose backlog exceeds its capacity",
    "node_out_of_reach": "a reservation sits at a node whose reach no longer covers the order",
    "node_not_allowed": "a reservation sits at a node the order's channel's profile does not "
    "allow now (its node rules or calendar)",
    "over_split_cap": "the order ships from more nodes than its channel's profile allows "
    "(max_shipments)",
}
"""Why a selected order is left as it is (listed in the plan's ``skipped``)."""


# --- the request ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which held reservations to re-optimize: every given selector must match (AND)."""

    channel: str | None = None
    campaign: str | None = None
    node_ids: tuple[str, ...] | None = None
    """Orders with at least one held reservation at one of these nodes."""
    created_before: datetime | None = None
    """Orders whose held reservations were all created before this time (naive UTC)."""
    order_ids: tuple[str, ...] | None = None

    def is_empty(self) -> bool:
        return all(
            value is None
            for value in (
                self.channel,
                self.campaign,
                self.node_ids,
                self.created_before,
                self.order_ids,
            )
        )


@dataclass(frozen=True)
class ReoptimizationRequest:
    selection: Selection
    max_moves: int | str | None = None
    """A number of orders, or a share of the re-decided orders (``"10%"``)."""
    move_cost: float | None = None
    time_limit: float | None = None

    def to_json(self) -> str:
        s = self.selection
        return json.dumps(
            {
                "channel": s.channel,
                "campaign": s.campaign,
                "node_ids": list(s.node_ids) if s.node_ids is not None else None,
                "created_before": s.created_before.isoformat() if s.created_before else None,
                "order_ids": list(s.order_ids) if s.order_ids is not None else None,
                "max_moves": self.max_moves,
                "move_cost": self.move_cost,
                "time_limit": self.time_limit,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ReoptimizationRequest:
        data = json.loads(text)
        return cls(
            Selection(
                channel=data["channel"],
                campaign=data["campaign"],
                node_ids=tuple(data["node_ids"]) if data["node_ids"] is not None else None,
                created_before=datetime.fromisoformat(data["created_before"])
                if data["created_before"]
                else None,
                order_ids=tuple(data["order_ids"]) if data["order_ids"] is not None else None,
            ),
            max_moves=data["max_moves"],
            move_cost=data["move_cost"],
            time_limit=data["time_limit"],
        )


_SHARE = re.compile(r"\d+(?:\.\d+)?\s*%")


def check_request(request: ReoptimizationRequest, index: NodeIndex) -> None:
    """The rules of a request that its schema cannot say; each error names its field."""
    selection = request.selection
    if selection.is_empty():
        raise InvalidInput(
            "select the reservations to re-optimize: channel, campaign, node_ids, "
            "created_before or order_ids (at least one)",
            field="body",
            rule="selector_required",
        )
    if request.max_moves is None and request.move_cost is None:
        raise InvalidInput(
            'a churn rule is required: max_moves (a number or a share such as "10%"), '
            "move_cost (>= 0), or both",
            field="max_moves",
            rule="churn_rule_required",
        )
    if isinstance(request.max_moves, bool) or (
        isinstance(request.max_moves, int) and request.max_moves < 0
    ):
        raise InvalidInput(
            'max_moves must be a number of orders >= 0 or a share such as "10%"',
            field="max_moves",
            rule="max_moves_format",
        )
    if isinstance(request.max_moves, str):
        text = request.max_moves.strip()
        if _SHARE.fullmatch(text):
            if float(text.rstrip("% ")) > 100:
                raise InvalidInput(
                    f"max_moves {request.max_moves!r}: a share is at most 100%",
                    field="max_moves",
                    rule="share_at_most_100",
                )
        elif not re.fullmatch(r"\d+", text):
            raise InvalidInput(
                f"max_moves {request.max_moves!r}: expected a number of orders (250) "
                'or a share ("10%")',
                field="max_moves",
                rule="max_moves_format",
            )
    if request.move_cost is not None and not (
        math.isfinite(request.move_cost) and request.move_cost >= 0
    ):
        raise InvalidInput(
            "move_cost must be a finite number >= 0", field="move_cost", rule="minimum"
        )
    if request.time_limit is not None and not (0 < request.time_limit <= MAX_TIME_LIMIT):
        raise InvalidInput(
            f"time_limit must be within (0, {MAX_TIME_LIMIT:g}] seconds",
            field="time_limit",
            rule="range",
        )
    for i, node_id in enumerate(selection.node_ids or ()):
        if node_id not in index.index_of_id:
            raise InvalidInput(
                f"node {node_id!r} does not exist", field=f"node_ids[{i}]", rule="known_node"
            )


def max_moves_of(request: ReoptimizationRequest, orders: int) -> int | None:
    """The move limit in orders, for ``orders`` re-decided orders."""
    from router.reoptimize import parse_max_moves

    if request.max_moves is None:
        return None
    return parse_max_moves(str(request.max_moves), orders)


# --- settings and views -----------------------------------------------------------------


@dataclass(frozen=True)
class ReoptimizationSettings:
    """How jobs run: default solve time, claim lease, runs before a job fails."""

    time_limit: float = 60.0
    lease_seconds: float = 60.0
    max_attempts: int = 3
    heartbeat_seconds: float = 1.0
    rel_gap: float = 1e-3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReoptimizationSettings:
        """Read ``OMNIROUTE_REOPT_TIME_LIMIT`` and ``OMNIROUTE_REOPT_LEASE_SECONDS``; a bad
        value raises ``ValueError`` naming the variable."""
        import os

        environ = os.environ if environ is None else environ

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: not a number") from None
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name}={raw!r}: must be a number within [{low:g}, {high:g}]")
            return value

        return cls(
            time_limit=number("OMNIROUTE_REOPT_TIME_LIMIT", 60.0, 0.1, MAX_TIME_LIMIT),
            lease_seconds=number("OMNIROUTE_REOPT_LEASE_SECONDS", 60.0, 1.0, 86400.0),
        )


@dataclass(frozen=True)
class JobView:
    job_id: str
    state: str
    request: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    applied_at: datetime | None
    attempts: int
    progress: dict | None
    plan: dict | None
    error: dict | None


class LostClaim(Exception):
    """Another process took the job over (our claim lapsed); stop writing."""


# --- the snapshot -----------------------------------------------------------------------


@dataclass
class _Held:
    """One held reservation of a selected order."""

    reservation_id: str
    line_id: str
    node_pk: int
    sku: str
    qty: int
    created_at: datetime
    expires_at: datetime


@dataclass
class Snapshot:
    """The selected orders and the pool at one moment, ready to solve."""

    scenario: Scenario | None
    current: pd.DataFrame
    """Held reservations of the re-decided orders (order_id, line_id, node_id, qty)."""
    selected: int
    skipped: list[dict]
    held: dict[str, list[_Held]]
    """Held reservations of the re-decided orders, by order."""
    pairs: dict[tuple[int, str], tuple[int, int, int, int, int]]
    """(node_pk, sku) -> (on_hand, unsellable, safety_stock, reserved, locked) of the SKUs."""
    node_state: dict[int, tuple[str, int | None, int]]


_HELD_COLUMNS = (
    reservations.c.order_id,
    reservations.c.reservation_id,
    reservations.c.line_id,
    reservations.c.node_pk,
    reservations.c.sku,
    reservations.c.qty,
    reservations.c.created_at,
    reservations.c.expires_at,
)
_RECORD_COLUMNS = (
    orders_table.c.order_id,
    orders_table.c.channel,
    orders_table.c.campaign,
    orders_table.c.lat,
    orders_table.c.lon,
    orders_table.c.pickup_node,
    orders_table.c.lines,
    orders_table.c.routed_at,
)


def _chunks(values: list, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _select_held(
    conn: Connection, selection: Selection, index: NodeIndex
) -> tuple[dict[str, list[_Held]], dict[str, Any]]:
    """Held reservations of the selected orders, by order, and the orders' records."""
    query = select(*_HELD_COLUMNS, *_RECORD_COLUMNS[1:]).select_from(
        reservations.outerjoin(orders_table, orders_table.c.order_id == reservations.c.order_id)
    )
    query = query.where(reservations.c.status == "held")
    if selection.channel is not None:
        query = query.where(orders_table.c.channel == selection.channel)
    if selection.campaign is not None:
        query = query.where(orders_table.c.campaign == selection.campaign)
    if selection.order_ids is not None:
        wanted = sorted(set(selection.order_ids))
        rows: list[Any] = []
        for chunk in _chunks(wanted):
            rows += conn.execute(query.where(reservations.c.order_id.in_(chunk))).all()
    else:
        rows = list(conn.execute(query).all())
    held: dict[str, list[_Held]] = defaultdict(list)
    records: dict[str, Any] = {}
    for r in rows:
        held[r.order_id].append(
            _Held(r.reservation_id, r.line_id, r.node_pk, r.sku, r.qty, r.created_at, r.expires_at)
        )
        records[r.order_id] = r if r.lines is not None else None
    if selection.node_ids is not None:
        pks = {int(index.pk[index.index_of_id[n]]) for n in selection.node_ids}
        held = {o: hs for o, hs in held.items() if any(h.node_pk in pks for h in hs)}
    if selection.created_before is not None:
        held = {
            o: hs
            for o, hs in held.items()
            if max(h.created_at for h in hs) < selection.created_before
        }
    ordered = dict(sorted(held.items()))
    return ordered, {o: records[o] for o in ordered}


def _read_pairs(
    conn: Connection, sku_list: list[str]
) -> dict[tuple[int, str], tuple[int, int, int, int, int]]:
    pairs = {}
    for chunk in _chunks(sku_list):
        for r in conn.execute(
            select(
                balances.c.node_pk,
                balances.c.sku,
                balances.c.on_hand,
                balances.c.unsellable,
                balances.c.safety_stock,
                balances.c.reserved,
                balances.c.locked,
            ).where(balances.c.sku.in_(chunk))
        ).all():
            pairs[(r[0], r[1])] = (r[2], r[3], r[4], r[5], r[6])
    return pairs


def _available(levels: tuple[int, int, int, int, int]) -> int:
    on_hand, unsellable, safety, reserved, locked = levels
    return on_hand - unsellable - safety - reserved - locked


def _order_of(record: Any) -> Order:
    return Order(
        order_id=record.order_id,
        lines=tuple(
            OrderLine(
                str(line[0]),
                str(line[1]),
                int(line[2]),
                ship_group=line[3] if len(line) > 3 and line[3] else None,
                kit_line=line[4] if len(line) > 4 else None,
            )
            for line in json.loads(record.lines)
        ),
        lat=record.lat,
        lon=record.lon,
        pickup_node=record.pickup_node,
        channel=record.channel,
        campaign=record.campaign,
    )


def _within_reach(order: Order, index: NodeIndex, position: int) -> bool:
    """The reach rule of the checker for one held reservation (pickup orders: any node
    they were routed to is their pickup node)."""
    from router.geo import haversine_km

    limit = float(index.max_km[position])
    if order.pickup_node is not None or math.isnan(limit):
        return True
    distance = float(
        haversine_km(order.lat, order.lon, float(index.lat[position]), float(index.lon[position]))
    )
    return distance <= limit


def take_snapshot(
    conn: Connection,
    name: str,
    selection: Selection,
    index: NodeIndex,
    policy: routing.RoutingPolicy,
    now: datetime | None = None,
) -> Snapshot:
    """Read the selected orders and the pool (in ``conn``'s one transaction) as a scenario.

    The stock of each (node, sku) is its available stock plus the held units of the
    re-decided orders there; a node's capacity left likewise. With routing profiles and
    ``now`` (naive UTC), the scenario carries them as a wave's does
    (:func:`router.pool.snapshot.attach_profiles`), the daily workload left including
    what the re-decided orders hold. See :data:`SKIP_RULES` for the orders left out.
    """
    held, records = _select_held(conn, selection, index)
    node_state = read_node_state(conn)
    skipped: list[dict] = []

    def skip(order_id: str, rule: str, detail: str) -> None:
        skipped.append({"order_id": order_id, "rule": rule, "detail": detail})

    committed: set[str] = set()
    for chunk in _chunks(list(held)):
        committed |= set(
            conn.execute(
                select(reservations.c.order_id)
                .select_from(
                    reservations.join(
                        orders_table, orders_table.c.order_id == reservations.c.order_id
                    )
                )
                .where(
                    reservations.c.order_id.in_(chunk),
                    reservations.c.status == "committed",
                    reservations.c.created_at >= orders_table.c.routed_at,
                )
            ).scalars()
        )
    sku_list = sorted({h.sku for hs in held.values() for h in hs})
    orders: dict[str, Order] = {}
    for order_id, hs in held.items():
        record = records[order_id]
        if record is None:
            skip(order_id, "order_unknown", SKIP_RULES["order_unknown"])
            continue
        if order_id in committed:
            skip(order_id, "order_partly_committed", SKIP_RULES["order_partly_committed"])
            continue
        order = _order_of(record)
        wanted = {ln.line_id: (ln.sku, ln.qty) for ln in order.lines}
        per_line: dict[str, int] = defaultdict(int)
        for h in hs:
            per_line[h.line_id] += h.qty
        if any(h.line_id not in wanted or wanted[h.line_id][0] != h.sku for h in hs) or any(
            units > wanted[line][1] for line, units in per_line.items()
        ):
            skip(order_id, "order_record_mismatch", SKIP_RULES["order_record_mismatch"])
            continue
        if order.pickup_node is None and (order.lat is None or order.lon is None):
            skip(order_id, "order_record_mismatch", "a delivery order without a location")
            continue
        orders[order_id] = order
    sku_list = sorted({ln.sku for o in orders.values() for ln in o.lines} | set(sku_list))
    pairs = _read_pairs(conn, sku_list)

    for order_id in list(orders):
        for h in held[order_id]:
            status, capacity, backlog = node_state.get(h.node_pk, ("closed", 0, 0))
            node_id = str(index.node_id[index.index_of_pk[h.node_pk]])
            if status != "active":
                skip(order_id, "node_not_active", f"node {node_id!r} is {status}")
            elif _available(pairs.get((h.node_pk, h.sku), (0, 0, 0, 0, 0))) < 0:
                skip(
                    order_id,
                    "stock_below_reservations",
                    f"({node_id!r}, {h.sku!r}) has less stock than is reserved there",
                )
            elif capacity is not None and backlog > capacity:
                skip(
                    order_id,
                    "capacity_below_backlog",
                    f"node {node_id!r} holds more backlog than its capacity",
                )
            elif not _within_reach(orders[order_id], index, index.index_of_pk[h.node_pk]):
                skip(
                    order_id,
                    "node_out_of_reach",
                    f"node {node_id!r} no longer reaches the order's location",
                )
            else:
                continue
            del orders[order_id]
            break
    scenario: Scenario | None = None
    if orders and policy.profiles is not None and now is not None:
        scenario, current = _scenario_of(
            conn, name, orders, held, pairs, node_state, index, policy, now
        )
        breaks = _profile_breaks(scenario, current)
        for order_id, (rule, detail) in breaks.items():
            skip(order_id, rule, detail)
            del orders[order_id]
        if breaks:  # their units are not freed: the scenario is built again without them
            scenario = None
    kept_held = {o: held[o] for o in orders}
    if not orders:
        current = _current_frame(kept_held, index)
        return Snapshot(None, current, len(held), skipped, kept_held, pairs, node_state)
    if scenario is None:
        scenario, current = _scenario_of(
            conn, name, orders, held, pairs, node_state, index, policy, now
        )
    return Snapshot(scenario, current, len(held), skipped, kept_held, pairs, node_state)


def _current_frame(held: dict[str, list[_Held]], index: NodeIndex) -> pd.DataFrame:
    """The held reservations as a current routing (rows as ``assignments.csv``)."""
    rows = [
        (order_id, h.line_id, str(index.node_id[index.index_of_pk[h.node_pk]]), h.qty)
        for order_id, hs in held.items()
        for h in hs
    ]
    return pd.DataFrame(rows, columns=["order_id", "line_id", "node_id", "qty"]).astype(
        {"qty": np.int64}
    )


def _scenario_of(
    conn: Connection,
    name: str,
    orders: dict[str, Order],
    held: dict[str, list[_Held]],
    pairs: dict[tuple[int, str], tuple[int, int, int, int, int]],
    node_state: dict[int, tuple[str, int | None, int]],
    index: NodeIndex,
    policy: routing.RoutingPolicy,
    now: datetime | None,
) -> tuple[Scenario, pd.DataFrame]:
    """The scenario of the re-decided ``orders`` (their held units free to them) and
    their current routing."""
    kept_held = {o: held[o] for o in orders}
    freed: dict[tuple[int, str], int] = defaultdict(int)
    held_units = np.zeros(index.size)
    held_orders = np.zeros(index.size)
    for hs in kept_held.values():
        for h in hs:
            freed[(h.node_pk, h.sku)] += h.qty
            held_units[index.index_of_pk[h.node_pk]] += h.qty
        for pk in {h.node_pk for h in hs}:
            held_orders[index.index_of_pk[pk]] += 1
    node_frame, active = nodes_frame(index, node_state)
    capacity = node_frame["capacity_units"].to_numpy().copy()
    capacity = np.where(active & ~np.isnan(capacity), capacity + held_units, capacity)
    node_frame["capacity_units"] = capacity
    active_pks = {int(pk) for pk, is_active in zip(index.pk, active, strict=True) if is_active}
    stock_rows = []
    for (pk, sku), levels in pairs.items():
        if pk not in active_pks:
            continue
        units = max(0, _available(levels)) + freed.get((pk, sku), 0)
        if units > 0:
            stock_rows.append((str(index.node_id[index.index_of_pk[pk]]), sku, units))
    inventory = pd.DataFrame(stock_rows, columns=["node_id", "sku", "available"]).astype(
        {"node_id": str, "sku": str, "available": np.int64}
    )
    order_list = list(orders.values())
    order_frame = orders_frame(order_list, index)
    profile_set = None
    if now is not None:
        profile_set = attach_profiles(
            conn,
            node_frame,
            inventory,
            order_frame,
            order_list,
            index,
            policy,
            now,
            held_units=held_units,
            held_orders=held_orders,
        )
    attach_kit_lines(order_frame, order_list, profile_set)
    scenario = Scenario(
        name=name,
        split_penalty=policy.split_penalty,
        unfilled_penalty=policy.unfilled_penalty,
        nodes=node_frame,
        inventory=inventory,
        orders=order_frame,
        profiles=profile_set,
    )
    return scenario, _current_frame(kept_held, index)


def _profile_breaks(scenario: Scenario, current: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """The orders whose current routing breaks a rule of their channel's profile now,
    with the rule and what breaks it: a held (line, node) that is not a candidate of
    the profiled problem (``node_not_allowed``), more shipments than the split cap
    (``over_split_cap``). They cannot be re-decided from a feasible start."""
    from router.problem import build_problem

    problem = build_problem(scenario)
    n = problem.num_nodes
    line_index = pd.MultiIndex.from_arrays(
        [problem.order_ids[problem.line_order], problem.line_ids]
    ).get_indexer(pd.MultiIndex.from_arrays([current["order_id"], current["line_id"]]))
    node_index = pd.Index(problem.node_ids).get_indexer(current["node_id"])
    code = problem.cand_line.astype(np.int64) * n + problem.cand_node
    wanted = line_index.astype(np.int64) * n + node_index
    position = np.minimum(np.searchsorted(code, wanted), max(code.size - 1, 0))
    candidate = code[position] == wanted if code.size else np.zeros(wanted.size, dtype=bool)
    channel = scenario.orders.groupby("order_id", sort=False)["channel"].first()
    breaks: dict[str, tuple[str, str]] = {}
    for order_id, node_id in (
        current.loc[~candidate, ["order_id", "node_id"]]
        .drop_duplicates("order_id")
        .itertuples(index=False)
    ):
        breaks[str(order_id)] = (
            "node_not_allowed",
            f"node {node_id!r} may not serve channel {channel[order_id]!r} now "
            "(its profile's node rules or calendar)",
        )
    if problem.order_max_shipments is not None:
        shipments = current.groupby("order_id")["node_id"].nunique()
        cap = pd.Series(problem.order_max_shipments, index=problem.order_ids).reindex(
            shipments.index
        )
        for order_id, count in shipments[shipments > cap].items():
            breaks.setdefault(
                str(order_id),
                (
                    "over_split_cap",
                    f"the order ships from {count} nodes; channel {channel[order_id]!r} "
                    f"allows at most {int(cap[order_id])} (max_shipments)",
                ),
            )
    return dict(sorted(breaks.items()))


def apply_data(snapshot: Snapshot, assignments: pd.DataFrame, moved: list[str], index) -> dict:
    """What apply needs: each moved order's held reservations and new allocations, and
    the fingerprint of every balance and node it touches (as they were at the snapshot)."""
    moved_set = set(moved)
    new = assignments[assignments["order_id"].isin(moved_set)]
    sku_of_line = (
        {
            (str(o), str(line)): str(sku)
            for o, line, sku in snapshot.scenario.orders[["order_id", "line_id", "sku"]].itertuples(
                index=False
            )
        }
        if snapshot.scenario is not None
        else {}
    )
    by_order: dict[str, dict] = {
        o: {
            "reservations": sorted(h.reservation_id for h in snapshot.held[o]),
            "expires_at": min(h.expires_at for h in snapshot.held[o]).isoformat(),
            "new": [],
        }
        for o in moved
    }
    touched_pairs: set[tuple[int, str]] = set()
    for o in moved:
        for h in snapshot.held[o]:
            touched_pairs.add((h.node_pk, h.sku))
    for o, line, node_id, qty in new[["order_id", "line_id", "node_id", "qty"]].itertuples(
        index=False
    ):
        sku = sku_of_line[(str(o), str(line))]
        by_order[str(o)]["new"].append([str(line), str(node_id), sku, int(qty)])
        touched_pairs.add((int(index.pk[index.index_of_id[str(node_id)]]), sku))
    touched_nodes = sorted({pk for pk, _ in touched_pairs})
    node_id_of = {pk: str(index.node_id[index.index_of_pk[pk]]) for pk in touched_nodes}
    return {
        "orders": by_order,
        "balances": [
            [node_id_of[pk], sku, *snapshot.pairs.get((pk, sku), (0, 0, 0, 0, 0))]
            for pk, sku in sorted(touched_pairs)
        ],
        "nodes": [[node_id_of[pk], *snapshot.node_state[pk]] for pk in touched_nodes],
    }


# --- the service ------------------------------------------------------------------------


class _Progress:
    """The solver's progress events, kept for the heartbeat to store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: dict[str, Any] = {"phase": "snapshot", "best_cost": None, "bound": None}
        self.changed = True

    def __call__(self, phase: str, details: Mapping[str, Any]) -> None:
        with self.lock:
            best = details.get("best")
            bound = details.get("bound")
            self.value = {
                "phase": phase,
                "best_cost": round(float(best), 6) if best is not None else self.value["best_cost"],
                "bound": round(float(bound), 6)
                if bound is not None and math.isfinite(bound)
                else self.value["bound"],
            }
            self.changed = True

    def take(self) -> dict | None:
        with self.lock:
            if not self.changed:
                return None
            self.changed = False
            return dict(self.value)


class Reoptimizations:
    """Create, run, report and apply re-optimization jobs over a :class:`router.pool.Pool`.

    ``after_snapshot`` is a seam: called with the job id after the snapshot and
    before the solve (tests use it to hold a job in ``running``).
    """

    def __init__(self, pool: Any, settings: ReoptimizationSettings | None = None) -> None:
        self.pool = pool
        self.settings = settings or ReoptimizationSettings()
        self.after_snapshot: Any = None

    @property
    def db(self):
        return self.pool.db

    # --- create and read ---------------------------------------------------------------

    def create(self, request: ReoptimizationRequest, *, actor: str) -> JobView:
        """Check the request and queue the job; nothing is read from the pool yet."""
        check_request(request, self.pool.read_model(force=bool(request.selection.node_ids)).index)
        job_id = uuid.uuid4().hex
        with self.db.write() as conn:
            conn.execute(
                reoptimizations.insert().values(
                    job_id=job_id,
                    state="queued",
                    request=request.to_json(),
                    actor=actor,
                    created_at=self.pool.clock(),
                    attempts=0,
                    progress=json.dumps({"phase": "queued", "best_cost": None, "bound": None}),
                )
            )
        return self.job(job_id)

    @staticmethod
    def _row(conn: Connection, job_id: str, *, lock: bool = False) -> Any:
        query = select(reoptimizations).where(reoptimizations.c.job_id == job_id)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"re-optimization {job_id!r} does not exist",
                field="reoptimization_id",
                rule="known_reoptimization",
            )
        return row

    def job(self, job_id: str) -> JobView:
        with self.db.read() as conn:
            row = self._row(conn, job_id)
        return JobView(
            job_id=row.job_id,
            state=row.state,
            request=json.loads(row.request),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            applied_at=row.applied_at,
            attempts=row.attempts,
            progress=json.loads(row.progress) if row.progress else None,
            plan=json.loads(row.plan) if row.plan else None,
            error=json.loads(row.error) if row.error else None,
        )

    def moves_csv(self, job_id: str) -> str:
        """The per-order diff of a ready (or applied) plan, as CSV."""
        with self.db.read() as conn:
            row = self._row(conn, job_id)
        if row.state not in ("ready", "applied"):
            raise Conflict(
                f"re-optimization {job_id!r} is {row.state}; its moves exist once it is ready",
                field="reoptimization_id",
                rule="plan_ready",
            )
        return row.moves_csv or ""

    # --- claim and run -----------------------------------------------------------------

    def claim_next(self) -> tuple[str, str] | None:
        """Claim the oldest queued job, or a running one whose claim lapsed: (id, token).

        A lapsed job that has used up its runs is marked failed instead.
        """
        from datetime import timedelta

        now = self.pool.clock()
        lapsed = now - timedelta(seconds=self.settings.lease_seconds)
        claimable = or_(
            reoptimizations.c.state == "queued",
            and_(reoptimizations.c.state == "running", reoptimizations.c.claimed_at < lapsed),
        )
        with self.db.write() as conn:
            found = conn.execute(
                select(reoptimizations.c.job_id, reoptimizations.c.attempts)
                .where(claimable)
                .order_by(reoptimizations.c.created_at)
                .limit(4)
            ).all()
            for job_id, attempts in found:
                if attempts >= self.settings.max_attempts:
                    conn.execute(
                        update(reoptimizations)
                        .where(reoptimizations.c.job_id == job_id, claimable)
                        .values(
                            state="failed",
                            finished_at=now,
                            claim_token=None,
                            error=json.dumps(
                                {
                                    "rule": "attempts_exhausted",
                                    "detail": f"the job was started {attempts} times and its "
                                    "process stopped each time",
                                }
                            ),
                        )
                    )
                    continue
                token = uuid.uuid4().hex
                claimed = conn.execute(
                    update(reoptimizations)
                    .where(reoptimizations.c.job_id == job_id, claimable)
                    .values(
                        state="running",
                        claim_token=token,
                        claimed_at=now,
                        started_at=now,
                        attempts=reoptimizations.c.attempts + 1,
                        progress=json.dumps(
                            {"phase": "snapshot", "best_cost": None, "bound": None}
                        ),
                    )
                ).rowcount
                if claimed:
                    return job_id, token
        return None

    def run_due(self) -> list[str]:
        """Run every claimable job; returns their ids."""
        ran = []
        while (claim := self.claim_next()) is not None:
            try:
                self.run(*claim)
            except LostClaim:
                log.warning("re-optimization %s was taken over by another process", claim[0])
            ran.append(claim[0])
        return ran

    def _refresh(self, job_id: str, token: str, progress: dict | None) -> None:
        values: dict[str, Any] = {"claimed_at": self.pool.clock()}
        if progress is not None:
            values["progress"] = json.dumps(progress)
        with self.db.write() as conn:
            if not conn.execute(
                update(reoptimizations)
                .where(reoptimizations.c.job_id == job_id, reoptimizations.c.claim_token == token)
                .values(**values)
            ).rowcount:
                raise LostClaim(job_id)

    def run(self, job_id: str, token: str) -> JobView:
        """Snapshot, solve and store the plan (or the failure) of a claimed job."""
        with self.db.read() as conn:
            request = ReoptimizationRequest.from_json(self._row(conn, job_id).request)
        progress = _Progress()
        stop = threading.Event()
        lost = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(self.settings.heartbeat_seconds):
                try:
                    self._refresh(job_id, token, progress.take())
                except LostClaim:
                    lost.set()
                    return
                except Exception:  # a failed refresh is retried at the next beat
                    log.exception("heartbeat of re-optimization %s failed", job_id)

        beat = threading.Thread(target=heartbeat, name=f"reopt-{job_id[:8]}", daemon=True)
        beat.start()
        try:
            outcome = self._solve(job_id, request, progress)
        except Exception as error:  # the job fails with the reason; the pool is untouched
            log.exception("re-optimization %s failed", job_id)
            outcome = {
                "state": "failed",
                "error": json.dumps(
                    {"rule": "solve_failed", "detail": f"{error.__class__.__name__}: {error}"}
                ),
            }
        finally:
            stop.set()
            beat.join()
        if lost.is_set():
            raise LostClaim(job_id)
        final = progress.take() or progress.value
        with self.db.write() as conn:
            done = conn.execute(
                update(reoptimizations)
                .where(reoptimizations.c.job_id == job_id, reoptimizations.c.claim_token == token)
                .values(
                    finished_at=self.pool.clock(),
                    progress=json.dumps({**final, "phase": "done"}),
                    **outcome,
                )
            ).rowcount
            if not done:
                raise LostClaim(job_id)
        return self.job(job_id)

    def _solve(
        self, job_id: str, request: ReoptimizationRequest, progress: _Progress
    ) -> dict[str, Any]:
        from router.reoptimize import reoptimize_scenario

        model = self.pool.read_model(force=True)
        started = time.perf_counter()
        with self.db.read() as conn:
            snapshot = take_snapshot(
                conn,
                f"reoptimization {job_id}",
                request.selection,
                model.index,
                model.policy,
                now=self.pool.clock(),
            )
        snapshot_at = self.pool.clock()
        snapshot_seconds = time.perf_counter() - started
        if self.after_snapshot is not None:
            self.after_snapshot(job_id)
        plan: dict[str, Any] = {
            "snapshot_at": snapshot_at.isoformat(),
            "snapshot_seconds": round(snapshot_seconds, 3),
            "orders_selected": snapshot.selected,
            "orders_skipped": len(snapshot.skipped),
            "skipped": snapshot.skipped,
        }
        if snapshot.scenario is None:
            plan.update(orders=0, orders_moved=0, max_moves=max_moves_of(request, 0))
            header = "order_id,moved,old_nodes,new_nodes,old_cost,new_cost\n"
            return {
                "state": "ready",
                "plan": json.dumps(plan),
                "moves_csv": header,
                "apply_data": json.dumps({"orders": {}, "balances": [], "nodes": []}),
            }
        orders = int(snapshot.scenario.orders["order_id"].nunique())
        limit = max_moves_of(request, orders)
        output = reoptimize_scenario(
            snapshot.scenario,
            snapshot.current,
            move_cost=request.move_cost or 0.0,
            max_moves=limit,
            params=OptimizeParams(
                time_limit=request.time_limit or self.settings.time_limit,
                rel_gap=self.settings.rel_gap,
            ),
            progress=progress,
            current_file="the held reservations",
        )
        moved = [str(o) for o in output.moves.loc[output.moves["moved"], "order_id"]]
        summary = {k: v for k, v in output.summary.items() if k not in ("scenario", "strategy")}
        plan.update(summary)
        plan["solve_seconds"] = summary.get("solve_seconds")
        plan["plan_seconds"] = round(time.perf_counter() - started, 3)
        buffer = io.StringIO()
        output.moves.to_csv(buffer, index=False)
        data = apply_data(snapshot, output.assignments, moved, model.index)
        return {
            "state": "ready",
            "plan": json.dumps(plan),
            "moves_csv": buffer.getvalue(),
            "apply_data": json.dumps(data),
        }

    # --- apply -------------------------------------------------------------------------

    def apply(self, job_id: str, *, actor: str, request_id: str | None = None) -> JobView:
        """Swap the moved orders' reservations in one transaction, or refuse (409) and
        change nothing when anything the plan touches changed since its snapshot."""
        from router.pool.service import _back_off, _is_retryable

        for attempt in range(1, routing.MAX_ROUTE_ATTEMPTS + 1):
            try:
                with self.db.write() as conn:
                    self._apply_in(conn, job_id, actor=actor, request_id=request_id)
                return self.job(job_id)
            except DBAPIError as error:
                if not _is_retryable(error) or attempt == routing.MAX_ROUTE_ATTEMPTS:
                    raise
                _back_off(attempt)
        raise AssertionError("unreachable")

    def _apply_in(
        self, conn: Connection, job_id: str, *, actor: str, request_id: str | None
    ) -> None:
        started = time.perf_counter()
        row = self._row(conn, job_id, lock=True)
        if row.state == "applied":
            raise Conflict(
                f"re-optimization {job_id!r} was already applied at {row.applied_at.isoformat()}",
                field="reoptimization_id",
                rule="already_applied",
            )
        if row.state != "ready":
            raise Conflict(
                f"re-optimization {job_id!r} is {row.state}; only a ready plan can be applied",
                field="reoptimization_id",
                rule="plan_ready",
            )
        data = json.loads(row.apply_data)
        model = self.pool.read_model(force=True)
        index = model.index
        pk_of = {str(n): int(index.pk[index.index_of_id[str(n)]]) for n, *_ in data["nodes"]}
        moved = sorted(data["orders"])
        # No per-order advisory lock: a /v1/route of a moved order sees its holds before
        # and after this transaction (the swap is atomic), so it is refused either way;
        # thousands of advisory locks in one transaction would fill PostgreSQL's lock table.
        self._check_unchanged(conn, data, pk_of)
        if not moved:
            self._mark_applied(
                conn,
                job_id,
                row,
                now=self.pool.clock(),
                summary={
                    "orders_moved": 0,
                    "reservations_released": 0,
                    "reservations_created": 0,
                    "seconds": round(time.perf_counter() - started, 3),
                    "actor": actor,
                },
            )
            return

        now = self.pool.clock()
        ref = f"reoptimization:{job_id}"
        # Release the moved orders' held reservations (conditionally: still held).
        old_ids = [rid for o in moved for rid in data["orders"][o]["reservations"]]
        old_rows: list[Any] = []
        for chunk in _chunks(old_ids):
            old_rows += conn.execute(
                select(
                    reservations.c.reservation_id,
                    reservations.c.order_id,
                    reservations.c.node_pk,
                    reservations.c.sku,
                    reservations.c.qty,
                ).where(reservations.c.reservation_id.in_(chunk))
            ).all()
        closed = conn.execute(
            _CLOSE,
            [{"rid": r.reservation_id, "new_status": "released", "at": now} for r in old_rows],
        ).rowcount
        if closed != len(old_ids):
            raise Conflict(
                "a reservation of the plan was closed meanwhile; nothing was applied",
                field="reservations",
                rule="unchanged_since_snapshot",
            )
        per_pair: dict[tuple[int, str], int] = defaultdict(int)
        per_node: dict[int, int] = defaultdict(int)
        for r in old_rows:
            per_pair[(r.node_pk, r.sku)] += r.qty
            per_node[r.node_pk] += r.qty
        conn.execute(
            _UNRESERVE,
            [
                {"b_node": pk, "b_sku": sku, "units": units, "shipped": 0}
                for (pk, sku), units in sorted(per_pair.items())
            ],
        )
        conn.execute(
            _UNLOAD_NODE, [{"b_node": pk, "units": u} for pk, u in sorted(per_node.items())]
        )
        entries = [
            ledger.Entry(
                r.node_pk,
                r.sku,
                "release",
                d_reserved=-r.qty,
                ref=ref,
                reason=f"order {r.order_id}",
            )
            for r in old_rows
        ]
        # Reserve the new allocations with the conditional updates of /v1/route.
        summed: dict[tuple[int, str], int] = defaultdict(int)
        new_rows = []
        for order_id in moved:
            order = data["orders"][order_id]
            expires = datetime.fromisoformat(order["expires_at"])
            for line_id, node_id, sku, qty in order["new"]:
                pk = pk_of[node_id]
                summed[(pk, sku)] += qty
                new_rows.append(
                    {
                        "reservation_id": uuid.uuid4().hex,
                        "order_id": order_id,
                        "line_id": line_id,
                        "node_pk": pk,
                        "sku": sku,
                        "qty": qty,
                        "status": "held",
                        "created_at": now,
                        "expires_at": expires,
                    }
                )
                entries.append(
                    ledger.Entry(
                        pk, sku, "reserve", d_reserved=qty, ref=ref, reason=f"order {order_id}"
                    )
                )
        try:
            routing.reserve_plan(conn, sorted((pk, s, u) for (pk, s), u in summed.items()))
        except LostRace as error:
            raise Conflict(
                f"stock or capacity the plan needs is gone ({error}); nothing was applied",
                field="balances",
                rule="unchanged_since_snapshot",
            ) from None
        self._take_workload(conn, old_rows, new_rows, index, model.policy, now)
        routing.write_reservations(conn, new_rows)
        ledger.append(conn, entries, now=now, actor=actor, request_id=request_id)
        self._mark_applied(
            conn,
            job_id,
            row,
            now=now,
            summary={
                "orders_moved": len(moved),
                "reservations_released": len(old_rows),
                "reservations_created": len(new_rows),
                "seconds": round(time.perf_counter() - started, 3),
                "actor": actor,
            },
        )

    @staticmethod
    def _take_workload(
        conn: Connection,
        old_rows: list[Any],
        new_rows: list[dict],
        index: NodeIndex,
        policy: routing.RoutingPolicy,
        now: datetime,
    ) -> None:
        """Count the moves against each node's day (as a wave does), netted per node as
        the snapshot counted the re-decided orders' holds as left to them: the units moved
        there minus those moved away, and the moved orders that ship from it and did not
        before minus those that no longer do (never below 0); refuse (409) when a daily
        limit would be passed."""
        from router.pool.profiles import take_units_today

        rules = policy.workload_rules(index, now)
        if rules is None:
            return
        before: dict[tuple[str, int], int] = defaultdict(int)
        for r in old_rows:
            before[(r.order_id, r.node_pk)] += r.qty
        after: dict[tuple[str, int], int] = defaultdict(int)
        for r in new_rows:
            after[(r["order_id"], r["node_pk"])] += r["qty"]
        net_units: dict[int, int] = defaultdict(int)
        net_orders: dict[int, int] = defaultdict(int)
        for order_id, pk in set(before) | set(after):
            old, new = before.get((order_id, pk), 0), after.get((order_id, pk), 0)
            net_units[pk] += new - old
            net_orders[pk] += (new > 0) - (old > 0)
        units = {pk: max(0, u) for pk, u in net_units.items()}
        served = {pk: max(0, n) for pk, n in net_orders.items()}
        units = {pk: u for pk, u in units.items() if u or served[pk]}
        moves = [(pk, "", u) for pk, u in sorted(units.items())]
        if not take_units_today(conn, rules, moves, index, now, orders=dict(served)):
            raise Conflict(
                "a node's daily workload limit would be passed (work taken since the "
                "snapshot, or a lower limit); nothing was applied",
                field="nodes",
                rule="unchanged_since_snapshot",
            )

    @staticmethod
    def _mark_applied(
        conn: Connection, job_id: str, row: Any, *, now: datetime, summary: dict
    ) -> None:
        plan = json.loads(row.plan)
        plan["applied"] = summary
        conn.execute(
            update(reoptimizations)
            .where(reoptimizations.c.job_id == job_id, reoptimizations.c.state == "ready")
            .values(state="applied", applied_at=now, plan=json.dumps(plan))
        )

    @staticmethod
    def _check_unchanged(conn: Connection, data: dict, pk_of: dict[str, int]) -> None:
        """Refuse (409, naming the first difference) unless every reservation, balance and
        node the plan touches is as it was at the snapshot. Rows are locked on PostgreSQL
        (reservations, then balances and nodes in key order, as routing takes them)."""
        postgres = conn.dialect.name == "postgresql"
        moved = sorted(data["orders"])
        held: dict[str, set[str]] = defaultdict(set)
        for chunk in _chunks(moved):
            query = (
                select(reservations.c.order_id, reservations.c.reservation_id)
                .where(reservations.c.order_id.in_(chunk), reservations.c.status == "held")
                .order_by(reservations.c.reservation_id)
            )
            for order_id, rid in conn.execute(query.with_for_update() if postgres else query).all():
                held[order_id].add(rid)
        for order_id in moved:
            then = set(data["orders"][order_id]["reservations"])
            if held.get(order_id, set()) != then:
                gone = sorted(then - held.get(order_id, set()))
                detail = (
                    f"reservation {gone[0]!r} is no longer held"
                    if gone
                    else "it holds reservations made since the snapshot"
                )
                raise Conflict(
                    f"order {order_id!r} changed since the snapshot: {detail}; nothing was applied",
                    field="reservations",
                    rule="unchanged_since_snapshot",
                )
        expected = {(pk_of[n], sku): tuple(levels) for n, sku, *levels in data["balances"]}
        node_of = {pk: n for n, pk in pk_of.items()}
        keys = sorted(expected)
        for chunk in _chunks(keys):
            query = (
                select(
                    balances.c.node_pk,
                    balances.c.sku,
                    balances.c.on_hand,
                    balances.c.unsellable,
                    balances.c.safety_stock,
                    balances.c.reserved,
                    balances.c.locked,
                )
                .where(tuple_(balances.c.node_pk, balances.c.sku).in_(chunk))
                .order_by(balances.c.node_pk, balances.c.sku)
            )
            found = {
                (r[0], r[1]): tuple(r[2:])
                for r in conn.execute(query.with_for_update() if postgres else query).all()
            }
            for key in chunk:
                if found.get(key) != expected[key]:
                    names = ("on_hand", "unsellable", "safety_stock", "reserved", "locked")
                    now_levels = found.get(key, (0, 0, 0, 0, 0))
                    what = ", ".join(
                        f"{name} {a} -> {b}"
                        for name, a, b in zip(names, expected[key], now_levels, strict=True)
                        if a != b
                    )
                    raise Conflict(
                        f"balance ({node_of[key[0]]!r}, {key[1]!r}) changed since the snapshot "
                        f"({what}); nothing was applied",
                        field="balances",
                        rule="unchanged_since_snapshot",
                    )
        query = (
            select(nodes.c.pk, nodes.c.status, nodes.c.capacity_units, nodes.c.backlog_units)
            .where(nodes.c.pk.in_(sorted(node_of)))
            .order_by(nodes.c.pk)
        )
        found_nodes: dict[int, tuple[Any, Any, Any]] = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute(query.with_for_update() if postgres else query).all()
        }
        for node_id, status, capacity, backlog in data["nodes"]:
            now_state = found_nodes.get(pk_of[node_id])
            if now_state != (status, capacity, backlog):
                raise Conflict(
                    f"node {node_id!r} changed since the snapshot (status, capacity, backlog "
                    f"{(status, capacity, backlog)} -> {now_state}); nothing was applied",
                    field="nodes",
                    rule="unchanged_since_snapshot",
                )

    # --- for tests and metrics ---------------------------------------------------------

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self.db.read() as conn:
            return dict(
                conn.execute(
                    select(reoptimizations.c.state, func.count()).group_by(reoptimizations.c.state)
                ).all()
            )
