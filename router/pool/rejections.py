"""A node rejects or short-picks a line of a routed order: that part moves elsewhere.

The way through, in one write transaction (the order's routing lock held):

1. ``_held_at_node``: the order's held reservations of the line at the node, with the
   checks a request must pass (known order, line and node; the node holds that many);
2. ``_take_off_node``: the rejected units leave the node's reservations (conditional
   updates, ``WHERE status = 'held' AND qty >= units``), its ``reserved`` and backlog;
   one ``release`` ledger entry whose ``ref`` is the rejection;
3. ``reroute_part``: the part is routed as an order of its own (the same destination,
   campaign and hold expiry) through ``routing.plan_order`` / ``plan_campaign_order``,
   the single-order model of ``/v1/route``, with every node that rejected the line
   excluded by the reach rule; the plan is reserved with the same conditional updates
   (``reserve_plan``) and one ``reserve`` entry per (node, sku), ``ref`` = the rejection.

What no other node can serve stays unfilled, and the answer says so. The rest of the
order is not touched. A short pick is recorded as such; it does not change ``on_hand``
(the node's next stock feed or adjust does).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from router.pool import ledger, routing
from router.pool import profiles as pool_profiles
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.nodes import NodeIndex
from router.pool.routing import LostRace, Order, OrderLine, RouteResult, RoutingPolicy
from router.pool.schema import balances, nodes, rejections, reservations
from router.pool.schema import orders as orders_table

KINDS = ("reject", "short_pick")


@dataclass(frozen=True)
class RejectionRequest:
    """What the node reports: ``qty`` units of ``line_id`` it will not (or cannot) pick."""

    order_id: str
    line_id: str
    node_id: str
    qty: int
    kind: str = "reject"
    reason: str | None = None

    def fingerprint(self) -> str:
        body = json.dumps(vars(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Rejection:
    """The answer: what left the node, where it went, what stayed unfilled."""

    rejection_id: str
    order_id: str
    line_id: str
    sku: str
    node_id: str
    kind: str
    qty: int
    status: str  # rerouted | partial | unfilled
    rerouted: int
    unfilled: int
    reroute: RouteResult  # the part's routing, with the new reservation ids
    created_at: datetime
    replayed: bool = False

    def to_json(self) -> str:
        data = {k: v for k, v in vars(self).items() if k not in ("reroute", "created_at")}
        data["created_at"] = self.created_at.isoformat()
        data["reroute"] = json.loads(self.reroute.to_json())
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Rejection:
        data = json.loads(text)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["reroute"] = RouteResult.from_json(json.dumps(data["reroute"]))
        data["replayed"] = True
        return cls(**data)


# --- step 1: what the node holds ---------------------------------------------------------


def _held_at_node(
    conn: Connection, request: RejectionRequest, index: NodeIndex, now: datetime
) -> list[Any]:
    """The held, unexpired reservations of the line at the node, oldest first; raises
    (naming the field) when the order, line or node is unknown or holds too few units."""
    query = (
        select(reservations)
        .where(reservations.c.order_id == request.order_id)
        .order_by(reservations.c.created_at, reservations.c.reservation_id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = conn.execute(query).all()
    if not rows:
        raise NotFound(
            f"order {request.order_id!r} has no reservations",
            field="order_id",
            rule="known_order",
        )
    of_line = [r for r in rows if r.line_id == request.line_id]
    if not of_line:
        raise InvalidInput(
            f"order {request.order_id!r} has no line {request.line_id!r}",
            field="line_id",
            rule="known_line",
        )
    if request.node_id not in index.index_of_id:
        raise InvalidInput(
            f"node {request.node_id!r} does not exist", field="node_id", rule="known_node"
        )
    node_pk = int(index.pk[index.index_of_id[request.node_id]])
    held = [r for r in of_line if r.node_pk == node_pk and r.status == "held"]
    if not held:
        raise InvalidInput(
            f"node {request.node_id!r} holds no reservation of line {request.line_id!r} "
            f"of order {request.order_id!r}",
            field="node_id",
            rule="node_holds_line",
        )
    live = [r for r in held if r.expires_at > now]
    if not live:
        raise Conflict(
            f"the hold of line {request.line_id!r} at {request.node_id!r} expired at "
            f"{held[0].expires_at.isoformat()}",
            field="node_id",
            rule="reservation_not_expired",
        )
    units = sum(r.qty for r in live)
    if request.qty > units:
        raise InvalidInput(
            f"qty {request.qty} is more than the {units} units node {request.node_id!r} "
            f"holds for line {request.line_id!r}",
            field="qty",
            rule="within_reserved",
        )
    return live


# --- step 2: off the rejecting node -----------------------------------------------------

_SHRINK = (
    update(reservations)
    .where(
        and_(
            reservations.c.reservation_id == bindparam("rid"),
            reservations.c.status == "held",
            reservations.c.qty > bindparam("units"),
        )
    )
    .values(qty=reservations.c.qty - bindparam("units"))
)
_RELEASE = (
    update(reservations)
    .where(
        and_(
            reservations.c.reservation_id == bindparam("rid"),
            reservations.c.status == "held",
            reservations.c.qty == bindparam("units"),
        )
    )
    .values(status="released", closed_at=bindparam("at"))
)
_UNRESERVE = (
    update(balances)
    .where(and_(balances.c.node_pk == bindparam("b_node"), balances.c.sku == bindparam("b_sku")))
    .values(reserved=balances.c.reserved - bindparam("units"))
)
_UNLOAD_NODE = (
    update(nodes)
    .where(nodes.c.pk == bindparam("b_node"))
    .values(backlog_units=nodes.c.backlog_units - bindparam("units"))
)


def _take_off_node(
    conn: Connection, held: list[Any], units: int, now: datetime, rejection_id: str, reason: str
) -> ledger.Entry:
    """Take ``units`` off the node's reservations (newest first: the oldest hold stays
    whole); a reservation that loses all its units is released, one that loses some
    keeps the rest. Returns the ledger entry (the caller appends it)."""
    left = units
    for row in reversed(held):
        if left == 0:
            break
        take = min(left, row.qty)
        statement = _RELEASE if take == row.qty else _SHRINK
        params = {"rid": row.reservation_id, "units": take, "at": now}
        if conn.execute(statement, params).rowcount != 1:
            raise LostRace(f"reservation {row.reservation_id!r} changed since it was read")
        left -= take
    node_pk, sku = held[0].node_pk, held[0].sku
    conn.execute(_UNRESERVE, {"b_node": node_pk, "b_sku": sku, "units": units})
    conn.execute(_UNLOAD_NODE, {"b_node": node_pk, "units": units})
    return ledger.Entry(node_pk, sku, "release", d_reserved=-units, ref=rejection_id, reason=reason)


# --- step 3: the part, routed again -----------------------------------------------------


def rejecting_nodes(conn: Connection, order_id: str, line_id: str, index: NodeIndex) -> set[str]:
    """Every node that already rejected or short-picked this line (none serves it again)."""
    pks = conn.execute(
        select(rejections.c.node_pk)
        .where(rejections.c.order_id == order_id, rejections.c.line_id == line_id)
        .distinct()
    ).scalars()
    return {str(index.node_id[index.index_of_pk[pk]]) for pk in pks if pk in index.index_of_pk}


def part_order(held_row: Any, request: RejectionRequest, excluded: set[str]) -> Order:
    """The rejected part as an order of its own: one line, the order's destination."""
    return Order(
        order_id=request.order_id,
        lines=(OrderLine(request.line_id, held_row.sku, request.qty),),
        lat=held_row.dest_lat,
        lon=held_row.dest_lon,
        pickup_node=held_row.pickup_node,
        campaign=held_row.campaign,
        excluded_nodes=tuple(sorted(excluded)),
    )


def reroute_part(
    conn: Connection,
    part: Order,
    index: NodeIndex,
    policy: RoutingPolicy,
    *,
    expires_at: datetime,
    now: datetime,
    attempt: int,
    rejection_id: str,
) -> tuple[RouteResult, list[ledger.Entry]]:
    """Route and reserve the part with the single-order model; its new holds end when
    the rejected one would have. Raises ``LostRace`` (the caller retries)."""
    if part.pickup_node is None and (part.lat is None or part.lon is None):
        # Reserved before its destination was kept (migration 0006): nowhere to send it.
        part = replace(part, pickup_node=part.excluded_nodes[0])
    # The part is routed under its order's channel's profile (pool_orders keeps it).
    channel = conn.execute(
        select(orders_table.c.channel).where(orders_table.c.order_id == part.order_id)
    ).scalar_one_or_none()
    if channel:
        part = replace(part, channel=channel)
    uses: list[routing.LockUse] = []
    if part.campaign is None:
        prepared, plan = routing.plan_order(conn, part, index, policy, now)
    else:
        prepared, plan, uses = routing.plan_campaign_order(conn, part, index, policy, now)
    hold_seconds = max(1, math.ceil((expires_at - now).total_seconds()))
    writes = routing.reserving(
        part, index, prepared, plan, now=now, hold_seconds=hold_seconds, attempt=attempt, uses=uses
    )
    if part.campaign is None:
        routing.reserve_plan(conn, writes.moves)
    else:
        routing.reserve_campaign_plan(conn, writes.moves, uses, now)
    workload = policy.workload_rules(index, now)
    if not pool_profiles.take_units_today(conn, workload, writes.moves, index, now):
        raise LostRace("a node's daily workload changed since it was read")
    routing.write_reservations(conn, [{**row, "expires_at": expires_at} for row in writes.rows])
    result = writes.result
    if result.hold_expires_at is not None:
        result = replace(result, hold_expires_at=expires_at)
    return result, [replace(e, ref=rejection_id) for e in writes.entries]


# --- the whole rejection ----------------------------------------------------------------


def reject(
    conn: Connection,
    request: RejectionRequest,
    index: NodeIndex,
    policy: RoutingPolicy,
    *,
    now: datetime,
    attempt: int,
    actor: str,
    idempotency_key: str | None,
    request_id: str | None,
) -> Rejection:
    """One attempt inside the caller's write transaction (the order's lock held)."""
    if request.kind not in KINDS:
        raise InvalidInput(f"kind must be one of {KINDS}", field="kind", rule="one_of")
    if request.qty < 1:
        raise InvalidInput("qty must be >= 1", field="qty", rule="minimum")
    held = _held_at_node(conn, request, index, now)
    rejection_id = uuid.uuid4().hex
    reason = request.kind if not request.reason else f"{request.kind}: {request.reason}"
    released = _take_off_node(conn, held, request.qty, now, rejection_id, reason[:200])
    excluded = rejecting_nodes(conn, request.order_id, request.line_id, index) | {request.node_id}
    part = part_order(held[0], request, excluded)
    result, reserved = reroute_part(
        conn,
        part,
        index,
        policy,
        expires_at=min(r.expires_at for r in held),
        now=now,
        attempt=attempt,
        rejection_id=rejection_id,
    )
    ledger.append(
        conn,
        [released, *reserved],
        now=now,
        actor=actor,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    unfilled = result.lines[0].unfilled
    rerouted = request.qty - unfilled
    status = "rerouted" if unfilled == 0 else ("unfilled" if rerouted == 0 else "partial")
    answer = Rejection(
        rejection_id=rejection_id,
        order_id=request.order_id,
        line_id=request.line_id,
        sku=held[0].sku,
        node_id=request.node_id,
        kind=request.kind,
        qty=request.qty,
        status=status,
        rerouted=rerouted,
        unfilled=unfilled,
        reroute=result,
        created_at=now,
    )
    conn.execute(
        insert(rejections).values(
            rejection_id=rejection_id,
            order_id=request.order_id,
            line_id=request.line_id,
            node_pk=held[0].node_pk,
            sku=held[0].sku,
            kind=request.kind,
            qty=request.qty,
            rerouted=rerouted,
            unfilled=unfilled,
            reason=request.reason,
            actor=actor,
            created_at=now,
            result=answer.to_json(),
        )
    )
    return answer


def of_order(conn: Connection, order_id: str) -> list[Rejection]:
    """Every rejection of the order, oldest first."""
    listed = [Rejection.from_json(text) for text in _results_of(conn, order_id)]
    return [replace(r, replayed=False, reroute=replace(r.reroute, replayed=False)) for r in listed]


def _results_of(conn: Connection, order_id: str) -> list[str]:
    return list(
        conn.execute(
            select(rejections.c.result)
            .where(rejections.c.order_id == order_id)
            .order_by(rejections.c.created_at, rejections.c.rejection_id)
        ).scalars()
    )
