"""Waves: orders that can wait are queued, then routed jointly and reserved.

The life of a wave (one row of ``pool_waves``)::

    open ──(window elapsed | size limit | on demand)──► closed ──(claimed)──► solving ──► done

- **Queue.** ``POST /v1/orders`` puts an order in the open wave of its channel
  (opening one if there is none); the answer names the wave and its planned
  close. An order that reaches the size limit closes the wave at once.
- **Solve.** One process claims a closed wave with a conditional update
  (``state = 'closed'`` → ``'solving'`` with a fresh claim token), so a wave is
  solved once however many API processes run. The queued orders and the pool
  (:mod:`router.pool.snapshot`) become one scenario, solved by
  ``router.run.solve_scenario``: the very path of ``omniroute solve``, checker
  included.
- **Reserve.** Each order's part of the joint answer is reserved with the
  conditional updates of ``/v1/route`` (``routing.reserve_routing``), inside a
  savepoint. If its stock or capacity was taken since the snapshot, the
  savepoint rolls back and the order is *repaired*: routed alone on what is
  left now, by the single-order code of ``/v1/route``. Orders are reserved in
  chunks, each one transaction with the orders' new state, so a crash leaves
  every order either routed (and reserved) or still queued, never half.
- **Restart.** A claim lapses when its process stops refreshing it (each chunk
  refreshes it, and every write checks the token); another process then solves
  the wave again, for the orders still queued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from router.pool import channels as pool_channels
from router.pool import explanations, idempotency, ledger, reservations, routing
from router.pool import kits as pool_kits
from router.pool import profiles as pool_profiles
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.nodes import NodeIndex
from router.pool.reservations import ReservationView
from router.pool.routing import LostRace, Order, OrderLine, PreparedOrder, RouteResult
from router.pool.schema import reservations as reservations_table
from router.pool.schema import wave_orders, waves
from router.pool.snapshot import snapshot_scenario
from router.problem import Problem
from solver.batch import OptimizeParams
from solver.order_dp import OrderPlan, OrderProblem, order_cost

log = logging.getLogger("omniroute.waves")

MAX_CHANNEL_LENGTH = 32
MAX_CALLBACK_URL = 2000
_LOCK_CHANNEL = text("SELECT pg_advisory_xact_lock(hashtext(:key))")


# --- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveSettings:
    """How waves are cut and solved.

    Parameters
    ----------
    window_seconds
        How long a wave stays open, unless its channel has its own window.
    channel_windows
        Window per channel, e.g. ``{"web": 300, "marketplace": 60}``.
    max_orders
        A wave closes as soon as it holds this many orders.
    time_limit
        Seconds the joint solve may take.
    rel_gap
        The joint solve stops once its answer is proven within this gap of the bound.
    lease_seconds
        A solving wave whose claim was not refreshed for this long is solved again.
    reserve_chunk
        Orders reserved per transaction.
    """

    window_seconds: float = 300.0
    channel_windows: Mapping[str, float] = field(default_factory=dict)
    max_orders: int = 2000
    time_limit: float = 10.0
    rel_gap: float = 0.005
    lease_seconds: float = 60.0
    reserve_chunk: int = 100

    def window_of(self, channel: str) -> float:
        return float(self.channel_windows.get(channel, self.window_seconds))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WaveSettings:
        """Read ``OMNIROUTE_WAVE_*``; a bad value raises ``ValueError`` naming the variable."""

        def number(name: str, default: float, *, minimum: float) -> float:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: not a number") from None
            if not math.isfinite(value) or value < minimum:
                raise ValueError(f"{name}={raw!r}: must be a number >= {minimum}")
            return value

        windows: dict[str, float] = {}
        raw_windows = environ.get("OMNIROUTE_WAVE_WINDOWS", "")
        for item in filter(None, (part.strip() for part in raw_windows.split(","))):
            channel, _, seconds = item.partition("=")
            try:
                value = float(seconds)
            except ValueError:
                value = -1.0
            if not channel or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"OMNIROUTE_WAVE_WINDOWS: {item!r} must read CHANNEL=SECONDS (seconds >= 0)"
                )
            windows[channel] = value
        return cls(
            window_seconds=number("OMNIROUTE_WAVE_WINDOW_SECONDS", 300.0, minimum=0),
            channel_windows=windows,
            max_orders=int(number("OMNIROUTE_WAVE_MAX_ORDERS", 2000, minimum=1)),
            time_limit=number("OMNIROUTE_WAVE_TIME_LIMIT", 10.0, minimum=0.1),
            rel_gap=number("OMNIROUTE_WAVE_GAP", 0.005, minimum=0),
            lease_seconds=number("OMNIROUTE_WAVE_LEASE_SECONDS", 60.0, minimum=1),
        )


# --- views -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """The answer to queueing an order (stored for idempotent retries)."""

    order_id: str
    state: str
    wave_id: str
    planned_close_at: datetime
    replayed: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "order_id": self.order_id,
                "state": self.state,
                "wave_id": self.wave_id,
                "planned_close_at": self.planned_close_at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, body: str) -> Queued:
        data = json.loads(body)
        return cls(
            data["order_id"],
            data["state"],
            data["wave_id"],
            datetime.fromisoformat(data["planned_close_at"]),
            replayed=True,
        )


@dataclass(frozen=True)
class OrderView:
    order_id: str
    state: str  # queued | routed | rejected
    wave_id: str
    channel: str
    queued_at: datetime
    routed_at: datetime | None
    repaired: bool
    result: RouteResult | None
    rejection: dict | None
    callback_state: str | None
    callback_attempts: int
    callback_error: str | None
    reservations: list[ReservationView] = field(default_factory=list)
    """The order's reservations now (held, committed, released or expired)."""


@dataclass(frozen=True)
class WaveView:
    wave_id: str
    channel: str
    state: str
    orders: int
    opened_at: datetime
    planned_close_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    solve_attempts: int
    done_at: datetime | None
    kpis: dict | None


def order_to_json(order: Order) -> str:
    return json.dumps(asdict(order), separators=(",", ":"))


def order_from_json(body: str) -> Order:
    data = json.loads(body)
    return Order(
        order_id=data["order_id"],
        lines=tuple(OrderLine(**line) for line in data["lines"]),
        lat=data["lat"],
        lon=data["lon"],
        pickup_node=data["pickup_node"],
        channel=data["channel"],
        promised_date=data.get("promised_date"),
        origin_store=data.get("origin_store"),
    )


_RECORD_OUTCOME = (
    update(wave_orders)
    .where(wave_orders.c.order_id == bindparam("b_order"))
    .values(
        state=bindparam("state"),
        result=bindparam("result"),
        repaired=bindparam("repaired"),
        routed_at=bindparam("routed_at"),
        callback_state=bindparam("callback_state"),
        callback_next_at=bindparam("callback_next_at"),
    )
)


def _routed(result: RouteResult, repaired: bool) -> dict[str, Any]:
    return {"state": "routed", "result": result.to_json(), "repaired": repaired}


class LostClaim(Exception):
    """Another process took the wave over (our claim lapsed); stop writing."""


@dataclass
class _Entry:
    """One queued order on its way through the reservation step."""

    order: Order
    hold_seconds: int
    actor: str
    has_callback: bool
    joint: tuple[PreparedOrder, OrderPlan] | None
    context: str | None = None  # the joint solve's router.explain.OrderContext JSON


# --- the service -----------------------------------------------------------------------


class Waves:
    """Queue, close, solve and report waves over a :class:`router.pool.Pool`.

    ``after_solve`` is a seam: called with the wave id between the joint solve
    and the reservation step (tests move stock there to exercise the repair).
    """

    def __init__(
        self,
        pool: Any,
        settings: WaveSettings | None = None,
        *,
        callbacks_enabled: bool = False,
    ) -> None:
        self.pool = pool
        self.settings = settings or WaveSettings()
        self.callbacks_enabled = callbacks_enabled
        self.after_solve: Callable[[str], None] | None = None

    @property
    def db(self):
        return self.pool.db

    # --- queue -------------------------------------------------------------------------

    def queue(
        self,
        order: Order,
        *,
        hold_seconds: int,
        callback_url: str | None = None,
        actor: str = "system",
        idempotency_key: str | None = None,
    ) -> Queued:
        """Put the order in its channel's open wave; everything is checked now, not later."""
        from router.pool.service import MAX_HOLD_SECONDS

        model = self.pool.read_model()
        if order.pickup_node is not None and order.pickup_node not in model.index.index_of_id:
            model = self.pool.read_model(force=True)
        routing.validate_order(order, model.index)
        as_sent = order
        order = pool_kits.expand_order(order, model.policy.kits, model.policy.profiles)
        if not 1 <= hold_seconds <= MAX_HOLD_SECONDS:
            raise InvalidInput(
                f"hold_seconds must be within [1, {MAX_HOLD_SECONDS}]",
                field="hold_seconds",
                rule="range",
            )
        if not 1 <= len(order.channel) <= MAX_CHANNEL_LENGTH:
            raise InvalidInput(
                f"channel must be 1 to {MAX_CHANNEL_LENGTH} characters",
                field="channel",
                rule="length",
            )
        if callback_url is not None:
            self._check_callback_url(callback_url)

        scope_key = idempotency.scope("order", actor, idempotency_key) if idempotency_key else None
        fingerprint = hashlib.sha256(
            f"{as_sent.fingerprint()}:{hold_seconds}:{callback_url}".encode()
        ).hexdigest()
        for _attempt in range(routing.MAX_ROUTE_ATTEMPTS):
            try:
                with self.db.write() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(_LOCK_CHANNEL, {"key": f"omniroute-wave:{order.channel}"})
                    if scope_key:
                        stored = idempotency.find(conn, scope_key, fingerprint)
                        if stored is not None:
                            return Queued.from_json(stored.response)
                    queued = self._queue_in(conn, order, hold_seconds, callback_url, actor)
                    if scope_key:
                        idempotency.record(
                            conn, scope_key, fingerprint, 202, queued.to_json(), self.pool.clock()
                        )
                    return queued
            except IntegrityError:
                if scope_key is None:
                    raise Conflict(
                        f"order {order.order_id!r} is already queued",
                        field="order_id",
                        rule="order_already_queued",
                    ) from None
                # A concurrent retry with the same key committed first: replay its answer.
                continue
        raise Conflict("could not queue the order; retry", rule="queue_retries")

    def _check_callback_url(self, url: str) -> None:
        if not self.callbacks_enabled:
            raise InvalidInput(
                "callbacks are off: the server has no OMNIROUTE_CALLBACK_SECRET to sign them",
                field="callback_url",
                rule="callbacks_configured",
            )
        if len(url) > MAX_CALLBACK_URL or not url.startswith(("http://", "https://")):
            raise InvalidInput(
                f"callback_url must be an http(s) URL of at most {MAX_CALLBACK_URL} characters",
                field="callback_url",
                rule="http_url",
            )

    def _queue_in(
        self,
        conn: Connection,
        order: Order,
        hold_seconds: int,
        callback_url: str | None,
        actor: str,
    ) -> Queued:
        routing.check_known_skus(conn, order, set())
        known = conn.execute(
            select(wave_orders.c.order_id).where(wave_orders.c.order_id == order.order_id)
        ).first()
        if known is not None:
            raise Conflict(
                f"order {order.order_id!r} is already queued (or was routed by a wave)",
                field="order_id",
                rule="order_already_queued",
            )
        if routing.order_has_holds(conn, order.order_id):
            raise Conflict(
                f"order {order.order_id!r} already holds reservations; release them first",
                field="order_id",
                rule="one_open_routing_per_order",
            )
        now = self.pool.clock()
        wave = conn.execute(
            select(waves.c.wave_id, waves.c.planned_close_at, waves.c.orders)
            .where(waves.c.channel == order.channel, waves.c.state == "open")
            .order_by(waves.c.opened_at.desc())
            .limit(1)
        ).first()
        wave_id, planned, size = None, None, 0
        if wave is not None and wave.planned_close_at <= now:
            self._close(conn, wave.wave_id, now, "window")
        elif wave is not None:
            # Taking the wave row first keeps a concurrent close waiting until we commit.
            joined = conn.execute(
                update(waves)
                .where(waves.c.wave_id == wave.wave_id, waves.c.state == "open")
                .values(orders=waves.c.orders + 1)
            ).rowcount
            if joined:
                wave_id, planned, size = wave.wave_id, wave.planned_close_at, wave.orders + 1
        if wave_id is None:
            wave_id = uuid.uuid4().hex
            planned = now + timedelta(seconds=self.settings.window_of(order.channel))
            size = 1
            conn.execute(
                insert(waves).values(
                    wave_id=wave_id,
                    channel=order.channel,
                    state="open",
                    orders=1,
                    opened_at=now,
                    planned_close_at=planned,
                    solve_attempts=0,
                )
            )
        conn.execute(
            insert(wave_orders).values(
                order_id=order.order_id,
                wave_id=wave_id,
                body=order_to_json(order),
                hold_seconds=hold_seconds,
                actor=actor,
                state="queued",
                repaired=False,
                queued_at=now,
                callback_url=callback_url,
                callback_attempts=0,
            )
        )
        if size >= self.settings.max_orders:
            self._close(conn, wave_id, now, "size")
        assert planned is not None
        return Queued(order.order_id, "queued", wave_id, planned)

    # --- close -------------------------------------------------------------------------

    @staticmethod
    def _close(conn: Connection, wave_id: str, now: datetime, reason: str) -> bool:
        return bool(
            conn.execute(
                update(waves)
                .where(waves.c.wave_id == wave_id, waves.c.state == "open")
                .values(state="closed", closed_at=now, close_reason=reason)
            ).rowcount
        )

    def close(self, wave_id: str) -> WaveView:
        """Close a wave on demand (a wave already closed is left as it is)."""
        with self.db.write() as conn:
            self._wave_row(conn, wave_id)
            self._close(conn, wave_id, self.pool.clock(), "demand")
        return self.wave(wave_id)

    def close_due(self) -> int:
        """Close every open wave whose window has elapsed; returns how many."""
        now = self.pool.clock()
        with self.db.write() as conn:
            return conn.execute(
                update(waves)
                .where(waves.c.state == "open", waves.c.planned_close_at <= now)
                .values(state="closed", closed_at=now, close_reason="window")
            ).rowcount

    def claim_next(self) -> tuple[str, str] | None:
        """Claim one closed wave (or one whose solver stopped): (wave_id, claim token)."""
        now = self.pool.clock()
        lapsed = now - timedelta(seconds=self.settings.lease_seconds)
        claimable = or_(
            waves.c.state == "closed",
            and_(waves.c.state == "solving", waves.c.claimed_at < lapsed),
        )
        with self.db.write() as conn:
            found = conn.execute(
                select(waves.c.wave_id).where(claimable).order_by(waves.c.planned_close_at).limit(4)
            ).scalars()
            for wave_id in list(found):
                token = uuid.uuid4().hex
                claimed = conn.execute(
                    update(waves)
                    .where(waves.c.wave_id == wave_id, claimable)
                    .values(
                        state="solving",
                        claim_token=token,
                        claimed_at=now,
                        solve_attempts=waves.c.solve_attempts + 1,
                    )
                ).rowcount
                if claimed:
                    return wave_id, token
        return None

    def run_due(self) -> list[str]:
        """Close the waves that are due, then solve every claimable one; returns their ids."""
        self.close_due()
        solved = []
        while (claim := self.claim_next()) is not None:
            try:
                self.solve(*claim)
            except LostClaim:
                log.warning("wave %s was taken over by another process", claim[0])
            solved.append(claim[0])
        return solved

    # --- solve and reserve -------------------------------------------------------------

    def solve(self, wave_id: str, token: str) -> WaveView:
        """Solve the wave's queued orders jointly, reserve them, record the KPIs."""
        from router.run import solve_scenario

        model = self.pool.read_model(force=True)
        with self.db.read() as conn:
            rows = conn.execute(
                select(
                    wave_orders.c.body,
                    wave_orders.c.hold_seconds,
                    wave_orders.c.actor,
                    wave_orders.c.callback_url,
                )
                .where(wave_orders.c.wave_id == wave_id, wave_orders.c.state == "queued")
                .order_by(wave_orders.c.queued_at, wave_orders.c.order_id)
            ).all()
            orders = [order_from_json(r.body) for r in rows]
            scenario = snapshot_scenario(
                conn, f"wave {wave_id}", orders, model.index, model.policy, now=self.pool.clock()
            )

        started = time.perf_counter()
        solve_kpis: dict[str, Any] = {"orders": len(orders)}
        joint: dict[str, tuple[PreparedOrder, OrderPlan]] = {}
        contexts: dict[str, str] = {}
        if orders:
            try:
                output = solve_scenario(
                    scenario,
                    params=OptimizeParams(
                        time_limit=self.settings.time_limit, rel_gap=self.settings.rel_gap
                    ),
                )
            except Exception:  # the orders are then routed one by one: nothing is lost
                log.exception(
                    "joint solve of wave %s failed; routing its orders one by one", wave_id
                )
                solve_kpis["status"] = "failed"
            else:
                result = output.result
                joint = _order_plans(
                    output.problem, result.units, model.index, exact=result.status == "optimal"
                )
                contexts = _contexts(output.problem, result)
                solve_kpis.update(
                    status=result.status,
                    cost=round(result.cost.total_cost, 6),
                    lower_bound=None
                    if result.lower_bound is None
                    else round(result.lower_bound, 6),
                    gap=None if result.gap is None else round(result.gap, 8),
                    splits=result.cost.splits,
                )
        solve_kpis["seconds"] = round(time.perf_counter() - started, 3)

        if self.after_solve is not None:
            self.after_solve(wave_id)

        started = time.perf_counter()
        entries = [
            _Entry(
                order,
                r.hold_seconds,
                r.actor,
                r.callback_url is not None,
                joint.get(order.order_id),
                contexts.get(order.order_id),
            )
            for order, r in zip(orders, rows, strict=True)
        ]
        chunk = self.settings.reserve_chunk
        for start in range(0, len(entries), chunk):
            self._reserve_chunk(wave_id, token, entries[start : start + chunk], model.index)
        reserve_seconds = round(time.perf_counter() - started, 3)
        with self.db.write() as conn:
            kpis = _wave_kpis(conn, wave_id, model.index)
            kpis["solve"] = solve_kpis
            kpis["reserve_seconds"] = reserve_seconds
            done = conn.execute(
                update(waves)
                .where(waves.c.wave_id == wave_id, waves.c.claim_token == token)
                .values(state="done", done_at=self.pool.clock(), kpis=json.dumps(kpis))
            ).rowcount
            if not done:
                raise LostClaim(wave_id)
        return self.wave(wave_id)

    def _reserve_chunk(
        self, wave_id: str, token: str, entries: list[_Entry], index: NodeIndex
    ) -> None:
        """Reserve the chunk's joint plans in one transaction; if some stock is gone, reserve
        (or repair) its orders one transaction each, so that the transactions that race
        ``/v1/route`` clients hold few rows and briefly."""
        if not self._in_transaction(wave_id, token, entries, index, all_or_nothing=True):
            for entry in entries:
                self._in_transaction(wave_id, token, [entry], index, all_or_nothing=False)

    def _in_transaction(
        self,
        wave_id: str,
        token: str,
        entries: list[_Entry],
        index: NodeIndex,
        *,
        all_or_nothing: bool,
    ) -> bool:
        """One write transaction (retried whole on a PostgreSQL deadlock) that first refreshes
        the claim and stops if another process has taken the wave."""
        from router.pool.service import _back_off, _is_retryable

        for attempt in range(1, routing.MAX_ROUTE_ATTEMPTS + 1):
            try:
                with self.db.write() as conn:
                    now = self.pool.clock()
                    if not conn.execute(
                        update(waves)
                        .where(waves.c.wave_id == wave_id, waves.c.claim_token == token)
                        .values(claimed_at=now)
                    ).rowcount:
                        raise LostClaim(wave_id)
                    return self._reserve_entries(
                        conn, entries, index, now, all_or_nothing=all_or_nothing
                    )
            except LostRace:  # an order could not even be repaired: redo the transaction
                if attempt == routing.MAX_ROUTE_ATTEMPTS:
                    raise
                _back_off(attempt)
            except DBAPIError as error:
                if not _is_retryable(error) or attempt == routing.MAX_ROUTE_ATTEMPTS:
                    raise
                _back_off(attempt)
        raise AssertionError("unreachable")

    def _reserve_entries(
        self,
        conn: Connection,
        entries: list[_Entry],
        index: NodeIndex,
        now: datetime,
        *,
        all_or_nothing: bool,
    ) -> bool:
        """Reserve the joint plans at once when their stock is all still there (one
        conditional update per (node, sku) of the summed moves); else, with
        ``all_or_nothing``, write nothing and answer False; without, order by order with
        repairs. Orders already routed (an interrupted earlier run) are skipped."""
        ids = sorted(e.order.order_id for e in entries)
        for order_id in ids:
            routing.lock_order(conn, order_id)
        states = dict(
            conn.execute(
                select(wave_orders.c.order_id, wave_orders.c.state).where(
                    wave_orders.c.order_id.in_(ids)
                )
            ).all()
        )
        holding = set(
            conn.execute(
                select(reservations_table.c.order_id)
                .where(
                    reservations_table.c.order_id.in_(ids),
                    reservations_table.c.status == "held",
                )
                .distinct()
            ).scalars()
        )
        todo = [e for e in entries if states.get(e.order.order_id) == "queued"]
        outcome: dict[str, dict[str, Any]] = {}
        for entry in todo:
            if entry.order.order_id in holding:
                rejection = {
                    "rule": "one_open_routing_per_order",
                    "detail": f"order {entry.order.order_id!r} was routed elsewhere "
                    "(it holds reservations)",
                }
                outcome[entry.order.order_id] = {
                    "state": "rejected",
                    "result": json.dumps(rejection),
                }
        fresh = [e for e in todo if e.order.order_id not in holding]
        planned = [e for e in fresh if e.joint is not None]
        writes = {
            e.order.order_id: routing.reserving(
                e.order,
                index,
                *e.joint,
                now=now,
                hold_seconds=e.hold_seconds,
                attempt=1,
                context=e.context,
                source="wave",
            )
            for e in planned
            if e.joint is not None
        }
        summed: dict[tuple[int, str], int] = {}
        for w in writes.values():
            for pk, sku, units in w.moves:
                summed[(pk, sku)] = summed.get((pk, sku), 0) + units
        all_there = False
        if writes:
            try:
                with conn.begin_nested():
                    moves = sorted((pk, s, u) for (pk, s), u in summed.items())
                    routing.reserve_plan(conn, moves)
                    workload = self.pool.read_model().policy.workload_rules(index, now)
                    served: dict[int, int] = {}
                    for w in writes.values():
                        for pk in {pk for pk, _sku, _units in w.moves}:
                            served[pk] = served.get(pk, 0) + 1
                    if not pool_profiles.take_units_today(
                        conn, workload, moves, index, now, orders=served
                    ):
                        raise LostRace("a node's daily workload changed since it was read")
                all_there = True
            except LostRace:
                if all_or_nothing:
                    return False
        if all_there:
            routing.write_reservations(conn, [row for w in writes.values() for row in w.rows])
            routing.record_orders(
                conn, [e.order for e in planned if writes[e.order.order_id].rows], now
            )
            explanations.record(conn, [w.explanation for w in writes.values()])
            by_actor: dict[str, list] = {}
            for e in planned:
                by_actor.setdefault(e.actor, []).extend(writes[e.order.order_id].entries)
            for actor, ledger_entries in by_actor.items():
                ledger.append(conn, ledger_entries, now=now, actor=actor)
            for e in planned:
                outcome[e.order.order_id] = _routed(writes[e.order.order_id].result, False)
        for entry in fresh:
            if entry.order.order_id not in outcome:
                outcome[entry.order.order_id] = _routed(
                    *self._reserve_order(conn, entry, index, now)
                )
        if not outcome:
            return True
        pool_channels.refresh_alerts(
            conn,
            self.pool.read_model().policy.profiles,
            sorted({line.sku for e in todo for line in e.order.lines}),
            now,
        )
        callbacks = {e.order.order_id for e in todo if e.has_callback}
        conn.execute(
            _RECORD_OUTCOME,
            [
                {
                    "b_order": order_id,
                    "state": change["state"],
                    "result": change["result"],
                    "repaired": change.get("repaired", False),
                    "routed_at": now,
                    "callback_state": "pending"
                    if order_id in callbacks and change["state"] == "routed"
                    else None,
                    "callback_next_at": now if order_id in callbacks else None,
                }
                for order_id, change in outcome.items()
            ],
        )
        return True

    def _reserve_order(
        self, conn: Connection, entry: _Entry, index: NodeIndex, now: datetime
    ) -> tuple[RouteResult, bool]:
        """The joint plan if its stock is still there, else a repair: (result, repaired)."""
        if entry.joint is not None:
            prepared, plan = entry.joint
            try:
                with conn.begin_nested():
                    result = routing.reserve_routing(
                        conn,
                        entry.order,
                        index,
                        prepared,
                        plan,
                        now=now,
                        hold_seconds=entry.hold_seconds,
                        attempt=1,
                        actor=entry.actor,
                        idempotency_key=None,
                        request_id=None,
                        context=entry.context,
                        source="wave",
                        rules=self.pool.read_model().policy.workload_rules(index, now),
                    )
                return result, False
            except LostRace:
                pass
        policy = self.pool.read_model().policy
        for attempt in range(1, routing.MAX_ROUTE_ATTEMPTS + 1):
            try:
                with conn.begin_nested():
                    result = routing.route_and_reserve(
                        conn,
                        entry.order,
                        index,
                        policy,
                        now=now,
                        hold_seconds=entry.hold_seconds,
                        attempt=attempt,
                        actor=entry.actor,
                        idempotency_key=None,
                        request_id=None,
                    )
                return result, entry.joint is not None
            except LostRace:
                continue
        raise LostRace(f"order {entry.order.order_id!r} could not be repaired")

    # --- read --------------------------------------------------------------------------

    @staticmethod
    def _wave_row(conn: Connection, wave_id: str) -> Any:
        row = conn.execute(select(waves).where(waves.c.wave_id == wave_id)).first()
        if row is None:
            raise NotFound(f"wave {wave_id!r} does not exist", field="wave_id", rule="known_wave")
        return row

    def wave(self, wave_id: str) -> WaveView:
        with self.db.read() as conn:
            row = self._wave_row(conn, wave_id)
        return WaveView(
            wave_id=row.wave_id,
            channel=row.channel,
            state=row.state,
            orders=row.orders,
            opened_at=row.opened_at,
            planned_close_at=row.planned_close_at,
            closed_at=row.closed_at,
            close_reason=row.close_reason,
            solve_attempts=row.solve_attempts,
            done_at=row.done_at,
            kpis=json.loads(row.kpis) if row.kpis else None,
        )

    def order(self, order_id: str) -> OrderView:
        with self.db.read() as conn:
            row = conn.execute(
                select(wave_orders, waves.c.channel)
                .join(waves, waves.c.wave_id == wave_orders.c.wave_id)
                .where(wave_orders.c.order_id == order_id)
            ).first()
            held = reservations.of_order(conn, order_id) if row is not None else []
        if row is None:
            raise NotFound(
                f"order {order_id!r} was not queued in a wave", field="order_id", rule="known_order"
            )
        routed = row.state == "routed"
        return OrderView(
            order_id=row.order_id,
            state=row.state,
            wave_id=row.wave_id,
            channel=row.channel,
            queued_at=row.queued_at,
            routed_at=row.routed_at,
            repaired=bool(row.repaired),
            result=RouteResult.from_json(row.result) if routed else None,
            rejection=json.loads(row.result) if row.state == "rejected" else None,
            callback_state=row.callback_state,
            callback_attempts=row.callback_attempts,
            callback_error=row.callback_error,
            reservations=held if routed else [],
        )

    def counts(self) -> dict[str, int]:
        """Waves per state (for tests and metrics)."""
        with self.db.read() as conn:
            return dict(
                conn.execute(select(waves.c.state, func.count()).group_by(waves.c.state)).all()
            )


# --- the joint answer, order by order -------------------------------------------------------


def _order_plans(
    problem: Problem, units: np.ndarray, index: NodeIndex, *, exact: bool
) -> dict[str, tuple[PreparedOrder, OrderPlan]]:
    """Each order's part of the joint answer in the single-order form ``/v1/route`` reserves.

    The snapshot lists the nodes in read-model order, so node ``n`` of the problem is
    position ``n`` of the ``NodeIndex``.
    """
    plans = {}
    for o in range(problem.num_orders):
        lines = problem.lines_of(o)
        sku_of_line = problem.sku_ids[problem.line_sku[lines]]
        sku_list = tuple(dict.fromkeys(str(s) for s in sku_of_line))
        row_of_sku = {s: k for k, s in enumerate(sku_list)}
        qty = np.zeros(len(sku_list), dtype=np.int64)
        for sku, q in zip(sku_of_line, problem.line_qty[lines], strict=True):
            qty[row_of_sku[str(sku)]] += int(q)
        cands = slice(
            int(problem.line_cand_start[lines.start]), int(problem.line_cand_start[lines.stop])
        )
        used = np.flatnonzero(units[cands] > 0) + cands.start
        used_nodes = np.unique(problem.cand_node[used])
        column = {int(n): j for j, n in enumerate(used_nodes)}
        alloc = np.zeros((len(sku_list), used_nodes.size), dtype=np.int64)
        for c in used:
            sku = str(problem.sku_ids[problem.line_sku[problem.cand_line[c]]])
            alloc[row_of_sku[sku], column[int(problem.cand_node[c])]] += int(units[c])
        pairs = problem.pairs_of(o)
        pair_of_node = {
            int(n): p for p, n in enumerate(problem.pair_node[pairs], start=pairs.start)
        }
        chosen = [pair_of_node[int(n)] for n in used_nodes]
        pickup = problem.order_pickup[o] >= 0
        unit_cost = np.broadcast_to(
            problem.handling[used_nodes], (len(sku_list), used_nodes.size)
        ).copy()
        if problem.cand_credit is not None:  # a profile's clearance credit
            for c in used:
                sku = str(problem.sku_ids[problem.line_sku[problem.cand_line[c]]])
                node = int(problem.cand_node[c])
                unit_cost[row_of_sku[sku], column[node]] = (
                    problem.handling[node] - problem.cand_credit[c]
                )
        order_problem = OrderProblem(
            qty=qty,
            stock=alloc.copy(),
            ship_cost=problem.pair_ship_cost[chosen].astype(np.float64),
            unit_cost=unit_cost,
            capacity=np.full(used_nodes.size, np.inf),
            split_penalty=problem.split_penalty,
            unfilled_penalty=problem.unfilled_penalty,
        )
        prepared = PreparedOrder(
            problem=order_problem,
            sku_list=sku_list,
            candidates=used_nodes.astype(np.int64),
            distance_km=np.full(used_nodes.size, np.nan)
            if pickup
            else problem.pair_km[chosen].astype(np.float64),
            mode=None if problem.pair_mode is None else problem.pair_mode[chosen],
        )
        plan = OrderPlan(alloc=alloc, total_cost=order_cost(order_problem, alloc), exact=exact)
        plans[str(problem.order_ids[o])] = (prepared, plan)
    return plans


def _contexts(problem: Problem, result) -> dict[str, str]:
    """Each order's explanation context from the joint solve (``router.explain``); the
    wave goes on without them if building them fails (its orders then keep the
    context of their part of the plan, as an order routed alone would)."""
    from router.explain import batch_contexts

    try:
        return {
            ctx.order_id: ctx.to_json()
            for ctx in batch_contexts(problem, result.units, result.prices)
        }
    except Exception:
        log.exception("explaining the joint solve failed; its orders keep their own plans")
        return {}


def _wave_kpis(conn: Connection, wave_id: str, index: NodeIndex) -> dict[str, Any]:
    """KPIs of what the wave reserved: cost, splits, fill, store share, repairs."""
    rows = conn.execute(
        select(wave_orders.c.state, wave_orders.c.result, wave_orders.c.repaired).where(
            wave_orders.c.wave_id == wave_id
        )
    ).all()
    cost = 0.0
    splits = shipments = ordered = unfilled = store_units = repaired = rejected = routed = 0
    for row in rows:
        if row.state == "rejected":
            rejected += 1
            continue
        if row.state != "routed":
            continue
        routed += 1
        repaired += int(bool(row.repaired))
        data = json.loads(row.result)
        cost += data["cost"]["total"]
        splits += data["cost"]["splits"]
        unfilled += data["cost"]["unfilled_units"]
        ordered += sum(line["qty"] for line in data["lines"])
        shipments += len(data["shipments"])
        store_units += sum(s["units"] for s in data["shipments"] if s["kind"] == "store")
    allocated = ordered - unfilled
    return {
        "orders_routed": routed,
        "orders_rejected": rejected,
        "orders_repaired": repaired,
        "cost": round(cost, 6),
        "splits": splits,
        "shipments": shipments,
        "units": ordered,
        "unfilled_units": unfilled,
        "fill_rate": round(allocated / ordered, 6) if ordered else 1.0,
        "store_unit_share": round(store_units / allocated, 6) if allocated else 0.0,
    }
