"""``Pool``: the one object the API and the CLI talk to.

It owns the database, the clock and the in-memory node read model, and runs
each use case (route, commit, feed, ...) as one transaction with its ledger
entries and idempotency record.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from router.pool import channels as pool_channels
from router.pool import (
    explanations,
    idempotency,
    inventory,
    keys,
    locks,
    nodes,
    profiles,
    rejections,
    reservations,
    returns,
    routing,
)
from router.pool import kits as pool_kits
from router.pool.db import Database, database_url_from_env, migrate
from router.pool.errors import Busy
from router.pool.nodes import NodeIndex, NodeSpec
from router.pool.routing import LostRace, Order, RouteResult, RoutingPolicy
from router.pool.schema import pool_meta

MAX_HOLD_SECONDS = 7 * 24 * 3600
DEFAULT_HOLD_SECONDS = 900
POLICY_KEYS = ("split_penalty", "unfilled_penalty")


def utcnow() -> datetime:
    """Naive UTC: what the pool stores, identical on SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ReadModel:
    index: NodeIndex
    policy: RoutingPolicy


def _back_off(attempt: int) -> None:
    """Sleep a random moment, longer after each lost race, so that the transactions that
    keep colliding on the same few rows stop arriving in lockstep."""
    time.sleep(random.uniform(0, 0.002 * min(attempt, 8)))


def _is_retryable(error: DBAPIError) -> bool:
    """PostgreSQL deadlock or serialization failure: the attempt may simply be retried."""
    code = getattr(getattr(error, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")


class Pool:
    """The inventory pool service.

    Parameters
    ----------
    database
        Where the pool lives.
    clock
        Returns naive UTC now; tests pass a controllable one to drive expiry.
    index_ttl
        Seconds between checks that another process changed the nodes.
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        index_ttl: float = 1.0,
        key_cache_ttl: float = 30.0,
    ) -> None:
        self.db = database
        self.clock = clock
        self.index_ttl = index_ttl
        self.key_cache_ttl = key_cache_ttl
        self._model: ReadModel | None = None
        self._checked_at = 0.0
        self._model_lock = threading.Lock()
        self._keys: dict[str, tuple[keys.Principal | None, float]] = {}

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        run_migrations: bool = True,
        background_checkpoint: bool = False,
        **kwargs: Any,
    ) -> Pool:
        """Open (and migrate) the pool; ``background_checkpoint`` is for long-running servers."""
        database = Database(url or database_url_from_env(), background_checkpoint)
        if run_migrations:
            migrate(database)
        return cls(database, **kwargs)

    def close(self) -> None:
        self.db.dispose()

    # --- read model ---------------------------------------------------------------------

    def read_model(self, *, force: bool = False) -> ReadModel:
        """Nodes and policy, reloaded when this or another process changed them."""
        now = time.monotonic()
        model = self._model
        if model is not None and not force and now - self._checked_at < self.index_ttl:
            return model
        with self._model_lock:
            with self.db.read() as conn:
                version = nodes.nodes_version(conn)
                if self._model is None or force or version != self._model.index.version:
                    self._model = ReadModel(nodes.load_index(conn), self._read_policy(conn))
            self._checked_at = time.monotonic()
            return self._model

    def _invalidate(self) -> None:
        self._checked_at = 0.0
        self._model = None

    @staticmethod
    def _read_policy(conn) -> RoutingPolicy:
        values = dict(
            conn.execute(
                select(pool_meta.c.key, pool_meta.c.value).where(pool_meta.c.key.in_(POLICY_KEYS))
            ).all()
        )
        defaults = RoutingPolicy()
        book = profiles.load_book(conn)
        kit_book = pool_kits.load_kits(conn)
        return RoutingPolicy(
            split_penalty=float(values.get("split_penalty", defaults.split_penalty)),
            unfilled_penalty=float(values.get("unfilled_penalty", defaults.unfilled_penalty)),
            profiles=book if book.latest else None,
            kits=kit_book or None,
        )

    def set_policy(self, policy: RoutingPolicy) -> None:
        with self.db.write() as conn:
            for key in POLICY_KEYS:
                value = str(float(getattr(policy, key)))
                if not conn.execute(
                    update(pool_meta).where(pool_meta.c.key == key).values(value=value)
                ).rowcount:
                    conn.execute(insert(pool_meta).values(key=key, value=value))
            nodes._bump_version(conn)
        self._invalidate()

    def ready(self) -> bool:
        """Database reachable and read model loaded."""
        try:
            self.db.ping()
            self.read_model()
        except Exception:  # readiness answers, it does not raise
            return False
        return True

    # --- routing ------------------------------------------------------------------------

    def route(
        self,
        order: Order,
        *,
        quote_only: bool = False,
        hold_seconds: int = DEFAULT_HOLD_SECONDS,
        actor: str = "system",
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> RouteResult:
        """Route one order and, unless ``quote_only``, reserve its allocation atomically."""
        model = self.read_model()
        if order.pickup_node is not None and order.pickup_node not in model.index.index_of_id:
            model = self.read_model(force=True)  # created by another process a moment ago?
        routing.validate_order(order, model.index)
        as_sent = order
        order = pool_kits.expand_order(order, model.policy.kits, model.policy.profiles)
        if not 1 <= hold_seconds <= MAX_HOLD_SECONDS:
            raise routing.InvalidInput(
                f"hold_seconds must be within [1, {MAX_HOLD_SECONDS}]",
                field="hold_seconds",
                rule="range",
            )
        if quote_only:
            with self.db.read() as conn:
                return routing.quote(conn, order, model.index, model.policy, self.clock())

        scope_key = idempotency.scope("route", actor, idempotency_key) if idempotency_key else None
        fingerprint = (
            hashlib.sha256(f"{as_sent.fingerprint()}:{hold_seconds}".encode()).hexdigest()
            if scope_key
            else ""
        )
        for attempt in range(1, routing.MAX_ROUTE_ATTEMPTS + 1):
            try:
                with self.db.write() as conn:
                    routing.lock_order(conn, order.order_id)
                    if scope_key:
                        stored = idempotency.find(conn, scope_key, fingerprint)
                        if stored is not None:
                            return RouteResult.from_json(stored.response)
                    now = self.clock()
                    result = routing.route_and_reserve(
                        conn,
                        order,
                        model.index,
                        model.policy,
                        now=now,
                        hold_seconds=hold_seconds,
                        attempt=attempt,
                        actor=actor,
                        idempotency_key=idempotency_key,
                        request_id=request_id,
                    )
                    pool_channels.refresh_alerts(
                        conn, model.policy.profiles, [ln.sku for ln in order.lines], now
                    )
                    if scope_key:
                        idempotency.record(conn, scope_key, fingerprint, 200, result.to_json(), now)
                    return result
            except LostRace:
                _back_off(attempt)
                continue
            except IntegrityError:
                if scope_key is None:
                    raise
                # A concurrent retry with the same key committed first: replay its answer.
                continue
            except DBAPIError as error:
                if not _is_retryable(error):
                    raise
                _back_off(attempt)
        raise Busy(
            f"routing lost the race for stock {routing.MAX_ROUTE_ATTEMPTS} times; retry",
            rule="route_retries",
        )

    # --- rejections (issue 9) ------------------------------------------------------------

    def reject(
        self,
        request: rejections.RejectionRequest,
        *,
        actor: str = "system",
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> rejections.Rejection:
        """A node rejects or short-picks part of a line: re-route that part elsewhere
        (see ``router.pool.rejections``); all of it happens, or nothing."""
        model = self.read_model()
        scope_key = idempotency.scope("reject", actor, idempotency_key) if idempotency_key else None
        for attempt in range(1, routing.MAX_ROUTE_ATTEMPTS + 1):
            try:
                with self.db.write() as conn:
                    routing.lock_order(conn, request.order_id)
                    if scope_key:
                        stored = idempotency.find(conn, scope_key, request.fingerprint())
                        if stored is not None:
                            return rejections.Rejection.from_json(stored.response)
                    now = self.clock()
                    answer = rejections.reject(
                        conn,
                        request,
                        model.index,
                        model.policy,
                        now=now,
                        attempt=attempt,
                        actor=actor,
                        idempotency_key=idempotency_key,
                        request_id=request_id,
                    )
                    if scope_key:
                        idempotency.record(
                            conn, scope_key, request.fingerprint(), 200, answer.to_json(), now
                        )
                    return answer
            except LostRace:
                _back_off(attempt)
                continue
            except IntegrityError:
                if scope_key is None:
                    raise
                continue  # a concurrent retry with the same key committed first
            except DBAPIError as error:
                if not _is_retryable(error):
                    raise
                _back_off(attempt)
        raise Busy(
            f"the rejection lost the race for stock {routing.MAX_ROUTE_ATTEMPTS} times; retry",
            rule="route_retries",
        )

    def rejections_of(self, order_id: str) -> list[rejections.Rejection]:
        with self.db.read() as conn:
            return rejections.of_order(conn, order_id)

    # --- returns (issue 9) ----------------------------------------------------------------

    def create_return(
        self,
        request: returns.ReturnRequest,
        *,
        actor: str = "system",
        idempotency_key: str | None = None,
    ) -> returns.ReturnView:
        """Choose the return node and record the return as expected there."""
        scope_key = idempotency.scope("return", actor, idempotency_key) if idempotency_key else None
        fingerprint = hashlib.sha256(repr(request).encode()).hexdigest()

        def work(conn):
            routing.lock_order(conn, request.order_id)  # two returns of a line count together
            if scope_key:
                stored = idempotency.find(conn, scope_key, fingerprint)
                if stored is not None:
                    return replace(returns.get(conn, stored.response), replayed=True)
            now = self.clock()
            view = returns.create_return(conn, request, now=now, actor=actor)
            if scope_key:
                idempotency.record(conn, scope_key, fingerprint, 201, view.return_id, now)
            return view

        return self._write_retrying(work)

    def receive_return(
        self,
        return_id: str,
        *,
        sellable: int,
        unsellable: int,
        actor: str = "system",
        request_id: str | None = None,
    ) -> returns.ReturnView:
        """The node confirms receipt: the units enter its stock, sellable or not."""
        return self._write_retrying(
            lambda conn: returns.receive(
                conn,
                return_id,
                sellable,
                unsellable,
                now=self.clock(),
                actor=actor,
                request_id=request_id,
            )
        )

    def return_of(self, return_id: str) -> returns.ReturnView:
        with self.db.read() as conn:
            return returns.get(conn, return_id)

    def explanation(self, order_id: str) -> dict[str, Any]:
        """Why a routed order went where it went (``router.pool.explanations``)."""
        with self.db.read() as conn:
            return explanations.explanation(conn, order_id)

    # --- reservations -------------------------------------------------------------------

    def reservations_of(self, order_id: str) -> list[reservations.ReservationView]:
        with self.db.read() as conn:
            found = reservations.of_order(conn, order_id)
        if not found:
            raise reservations.NotFound(
                f"order {order_id!r} has no reservations", field="order_id", rule="known_order"
            )
        return found

    def reservation(self, reservation_id: str) -> reservations.ReservationView:
        with self.db.read() as conn:
            return reservations.get(conn, reservation_id)

    def close_reservations(
        self,
        reservation_ids: list[str],
        action: str,
        *,
        actor: str,
        request_id: str | None = None,
    ) -> reservations.Closed:
        """Commit or release the given reservations (all of them, or none)."""
        for attempt in range(routing.MAX_ROUTE_ATTEMPTS):
            try:
                with self.db.write() as conn:
                    return reservations.close(
                        conn,
                        reservation_ids,
                        action,
                        now=self.clock(),
                        actor=actor,
                        request_id=request_id,
                    )
            except DBAPIError as error:
                if not _is_retryable(error) or attempt == routing.MAX_ROUTE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def close_order(
        self, order_id: str, action: str, *, actor: str, request_id: str | None = None
    ) -> reservations.Closed:
        """Commit or release every held reservation of an order."""
        with self.db.write() as conn:
            ids = reservations.held_ids_of_order(conn, order_id)
            closed_now = 0
            if ids:
                closed_now = reservations.close(
                    conn, ids, action, now=self.clock(), actor=actor, request_id=request_id
                ).closed_now
            return reservations.Closed(reservations.of_order(conn, order_id), closed_now)

    def expire_due(self, *, batch: int = 500) -> int:
        """Release every hold past its expiry; returns how many were expired."""
        expired = 0
        while True:
            try:
                with self.db.write() as conn:
                    ids = reservations.due_ids(conn, self.clock(), batch)
                    closed = 0
                    if ids:
                        closed = reservations.close(
                            conn, ids, "expire", now=self.clock(), actor="sweeper"
                        ).closed_now
            except (reservations.Conflict, DBAPIError):
                # Another process closed one of them first; the next sweep retries.
                return expired
            expired += closed
            if len(ids) < batch:
                return expired

    # --- campaign locks (issue 8.3) ------------------------------------------------------

    def _write_retrying(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(conn)`` in a write transaction, again after a PostgreSQL deadlock."""
        for attempt in range(1, routing.MAX_ROUTE_ATTEMPTS + 1):
            try:
                with self.db.write() as conn:
                    return work(conn)
            except DBAPIError as error:
                if not _is_retryable(error) or attempt == routing.MAX_ROUTE_ATTEMPTS:
                    raise
                _back_off(attempt)
        raise AssertionError("unreachable")

    def lock_stock(
        self,
        campaign_id: str,
        rows: list[locks.LockRow],
        *,
        starts_at: datetime,
        ends_at: datetime,
        allow_pool: bool | None = None,
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> locks.CampaignView:
        """Lock units for a campaign over a window (all rows or none); see ``router.pool.locks``."""

        def work(conn):
            locks.create_locks(
                conn,
                campaign_id,
                rows,
                starts_at=starts_at,
                ends_at=ends_at,
                allow_pool=allow_pool,
                now=self.clock(),
                actor=actor,
                reason=reason,
                request_id=request_id,
            )
            return locks.campaign(conn, campaign_id)

        return self._write_retrying(work)

    def campaign(self, campaign_id: str) -> locks.CampaignView:
        with self.db.read() as conn:
            return locks.campaign(conn, campaign_id)

    def release_campaign(
        self, campaign_id: str, *, actor: str, request_id: str | None = None
    ) -> locks.CampaignView:
        """Return what is left of every active lock of the campaign to the pool now."""

        def work(conn):
            locks.release(conn, campaign_id, now=self.clock(), actor=actor, request_id=request_id)
            return locks.campaign(conn, campaign_id)

        return self._write_retrying(work)

    def expire_locks_due(self, *, batch: int = 500) -> int:
        """Return to the pool what is left of every lock whose window has ended."""
        expired = 0
        while True:
            closed = self._write_retrying(lambda conn: locks.expire_due(conn, self.clock(), batch))
            expired += closed
            if closed < batch:
                return expired

    def prune_idempotency(self, *, keep_seconds: int = idempotency.RETENTION_SECONDS) -> int:
        """Drop idempotency records older than ``keep_seconds`` (the sweeper calls this)."""
        with self.db.write() as conn:
            return idempotency.prune(conn, self.clock() - timedelta(seconds=keep_seconds))

    # --- inventory ----------------------------------------------------------------------

    def set_stock(
        self,
        rows: list[inventory.SetRow],
        *,
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> inventory.FeedResult:
        return self._feed(inventory.apply_set, rows, actor, reason, request_id)

    def adjust_stock(
        self,
        rows: list[inventory.AdjustRow],
        *,
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> inventory.FeedResult:
        return self._feed(inventory.apply_adjust, rows, actor, reason, request_id)

    def _feed(self, apply, rows, actor, reason, request_id) -> inventory.FeedResult:
        """One feed in one write transaction (row locks only where the backend has them)."""
        profiles = self.read_model().policy.profiles
        with self.db.write() as conn:
            now = self.clock()
            result = apply(
                conn,
                rows,
                now=now,
                actor=actor,
                lock=not self.db.is_sqlite,
                reason=reason,
                request_id=request_id,
            )
            pool_channels.refresh_alerts(conn, profiles, sorted({r.sku for r in rows}), now)
            return result

    def availability(self, sku_list: list[str]) -> list[inventory.SkuAvailability]:
        """Each SKU's availability; a kit's is derived from its components
        (``router.pool.kits.availability_of_kit``)."""
        kit_book = self.read_model().policy.kits or {}
        with self.db.read() as conn:
            plain = [sku for sku in sku_list if sku not in kit_book]
            found = {a.sku: a for a in inventory.availability(conn, plain)} if plain else {}
            for sku in dict.fromkeys(s for s in sku_list if s in kit_book):
                kit = kit_book[sku]
                known = inventory.known_skus(conn, [part for part, _ in kit])
                parts = inventory.availability(conn, known) if known else []
                found[sku] = pool_kits.availability_of_kit(sku, kit, parts)
        return [found[sku] for sku in sku_list]

    # --- channel shares -----------------------------------------------------------------

    def channel_availability(
        self, channel: str, sku_list: list[str] | None = None
    ) -> list[pool_channels.ChannelSku]:
        """The channel's sellable quantity of each SKU (``router.pool.channels``)."""
        profiles = self.read_model().policy.profiles
        with self.db.read() as conn:
            return pool_channels.channel_availability(conn, profiles, channel, sku_list)

    def alerts(
        self, *, channel: str | None = None, state: str = "open"
    ) -> list[pool_channels.AlertView]:
        with self.db.read() as conn:
            return pool_channels.list_alerts(conn, channel=channel, state=state)

    def alert_counts(self) -> dict[str, int]:
        """Open low-stock alerts per channel."""
        with self.db.read() as conn:
            return pool_channels.open_alert_counts(conn)

    def refresh_alerts(self, sku_list: list[str]) -> int:
        """Raise or clear the low-stock alerts of these SKUs now (e.g. after a profile
        changed a threshold); returns how many were raised."""
        profiles = self.read_model().policy.profiles
        with self.db.write() as conn:
            return pool_channels.refresh_alerts(conn, profiles, sku_list, self.clock())

    # --- kits ---------------------------------------------------------------------------

    def put_kit(self, kit_sku: str, components: Any, actor: str = "system") -> Any:
        """Validate and store a kit's components (``router.pool.kits.put_kit``)."""
        with self.db.write() as conn:
            view = pool_kits.put_kit(conn, kit_sku, components, actor, self.clock())
        self._invalidate()
        return view

    def kit(self, kit_sku: str) -> Any:
        with self.db.read() as conn:
            return pool_kits.get_kit(conn, kit_sku)

    def ledger(self, node_id: str, sku: str, *, after: int = 0, limit: int = 100) -> list[Any]:
        with self.db.read() as conn:
            return inventory.ledger_of(conn, node_id, sku, after=after, limit=limit)

    # --- nodes --------------------------------------------------------------------------

    # --- routing profiles ---------------------------------------------------------------

    def put_profile(self, channel: str, document: Any, actor: str = "system") -> Any:
        """Validate and store the channel's next profile version; a rejected profile
        raises ``InvalidInput`` and leaves the previous version in force."""
        with self.db.write() as conn:
            version = profiles.put_profile(conn, channel, document, actor, self.clock())
        self._invalidate()
        return version

    def profile_versions(self, channel: str) -> list[Any]:
        """The channel's versions, newest first (``NotFound`` when it has none)."""
        with self.db.read() as conn:
            return profiles.versions(conn, channel)

    def create_node(self, spec: NodeSpec) -> Any:
        with self.db.write() as conn:
            row = nodes.create_node(conn, spec, self.clock())
        self._invalidate()
        return row

    def update_node(
        self, node_id: str, changes: dict[str, Any], *, actor: str, request_id: str | None = None
    ) -> Any:
        with self.db.write() as conn:
            row = nodes.update_node(conn, node_id, changes, self.clock(), actor, request_id)
        self._invalidate()
        return row

    def upsert_node(self, spec: NodeSpec, *, actor: str) -> Any:
        with self.db.write() as conn:
            exists = conn.execute(
                select(nodes.nodes.c.pk).where(nodes.nodes.c.node_id == spec.node_id)
            ).first()
        if exists:
            changes = {k: getattr(spec, k) for k in nodes.UPDATABLE}
            return self.update_node(spec.node_id, changes, actor=actor)
        return self.create_node(spec)

    def set_node_status(self, node_id: str, status: str) -> Any:
        with self.db.write() as conn:
            row = nodes.set_status(conn, node_id, status, self.clock())
        self._invalidate()
        return row

    def node(self, node_id: str) -> Any:
        with self.db.read() as conn:
            return nodes.node_row(conn, node_id)

    def list_nodes(self, *, status: str | None = None) -> list[Any]:
        with self.db.read() as conn:
            return nodes.list_nodes(conn, status=status)

    # --- API keys -----------------------------------------------------------------------

    def create_key(
        self, role: str, *, label: str | None = None, expires_at: datetime | None = None
    ) -> str:
        """A new key (shown only now); ``expires_at`` is naive UTC, None for never."""
        with self.db.write() as conn:
            return keys.create_key(conn, role, now=self.clock(), label=label, expires_at=expires_at)

    def list_keys(self) -> list[keys.KeyInfo]:
        with self.db.read() as conn:
            return keys.list_keys(conn)

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key. This process forgets its cached keys at once; other
        processes (a running server) within ``key_cache_ttl`` seconds."""
        with self.db.write() as conn:
            keys.revoke(conn, key_id, now=self.clock())
        self._keys.clear()

    def cached_principal(self, key: str) -> keys.Principal | None:
        """The principal of a key if it was looked up recently (no query), else None."""
        cached = self._keys.get(keys.hash_key(key))
        if cached is not None and cached[1] > time.monotonic():
            if cached[0] is not None and not cached[0].valid_at(self.clock()):
                return None
            return cached[0]
        return None

    def authenticate(self, key: str) -> keys.Principal | None:
        """The principal of a key, cached briefly so the hot path costs no query."""
        digest = keys.hash_key(key)
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            principal = cached[0]
            return principal if principal is None or principal.valid_at(self.clock()) else None
        with self.db.read() as conn:
            principal = keys.lookup(conn, key, now=self.clock())
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[digest] = (principal, now + self.key_cache_ttl)
        return principal
