"""A hypothesis state machine drives random feeds, routes, commits, releases, expiries,
pauses, rejections (the part re-routed without the rejecting node), returns received
as sellable or unsellable, and campaign locks (lock, campaign orders using them, release, window expiry)
against the pool and against a plain in-memory model of the ledger; after every step
both must agree on every layer of every (node, sku), the ledger must sum to the
balances, and ``locked`` must be what the active locks have left."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import func, select

from router.pool import Pool
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.inventory import AdjustRow, SetRow
from router.pool.locks import LockRow
from router.pool.nodes import NodeSpec
from router.pool.rejections import RejectionRequest
from router.pool.returns import ReturnRequest
from router.pool.routing import Order, OrderLine
from router.pool.schema import balances, campaign_locks, ledger, nodes
from tests.service.conftest import FakeClock, pg_schema_url

NODES = ("N0", "N1", "N2")
SKUS = ("A", "B", "C")
CAMPAIGNS = ("c1", "c2")
node_ids = st.sampled_from(NODES)
sku_names = st.sampled_from(SKUS)
units = st.integers(0, 6)


@dataclass
class Layers:
    on_hand: int = 0
    unsellable: int = 0
    safety: int = 0
    reserved: int = 0
    locked: int = 0

    @property
    def available(self) -> int:
        return max(0, self.signed_available)

    @property
    def signed_available(self) -> int:
        """Below zero only after a feed counted fewer units than are promised."""
        return self.on_hand - self.unsellable - self.safety - self.reserved - self.locked


@dataclass
class Hold:
    node: str
    sku: str
    qty: int
    status: str
    expires_at: datetime
    order: str = ""
    pickup: str | None = None
    created_at: datetime | None = None


@dataclass
class Lock:
    campaign: str
    node: str
    sku: str
    remaining: int
    starts_at: datetime
    ends_at: datetime
    status: str = "active"

    def in_window(self, now: datetime) -> bool:
        return self.status == "active" and self.starts_at <= now < self.ends_at


class PoolVersusModel(RuleBasedStateMachine):
    database_url: str | None = None  # None: a fresh SQLite file per example

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self._tmp = None
        self._pg = None
        if self.database_url is None:
            self._tmp = tempfile.mkdtemp()
            url = f"sqlite:///{self._tmp}/pool.db"
        else:
            self._pg = pg_schema_url()
            url = self._pg.__enter__()
        self.pool = Pool.open(url, clock=self.clock, index_ttl=0.0)
        for i, node in enumerate(NODES):
            self.pool.create_node(
                NodeSpec(node, "store", 30.0 + i, 120.0, ship_fixed=1.0 + i, handling_per_unit=1.0)
            )
        self.layers: dict[tuple[str, str], Layers] = {}
        self.holds: dict[str, Hold] = {}
        self.paused: set[str] = set()
        self.orders = 0
        self.locks: dict[str, Lock] = {}
        self.allow_pool: dict[str, bool] = {}  # campaigns that exist
        self.rejected_by: dict[str, set[str]] = {}  # order -> nodes that rejected its line
        self.returned: dict[str, int] = {}  # order -> units of its line returned

    def teardown(self) -> None:
        self.pool.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._pg:
            self._pg.__exit__(None, None, None)

    # --- feeds -----------------------------------------------------------------------------

    @initialize(stock=st.lists(st.integers(0, 6), min_size=6, max_size=6), locked=st.integers(0, 2))
    def stock_and_first_locks(self, stock, locked):
        """Most examples start with A and B in stock (C stays unknown until a feed) and
        campaigns c1 (on A) and c2 (on B) holding locks, so that campaign orders, locks,
        releases and expiries meet early and often."""
        pairs = [(n, s) for n in NODES for s in ("A", "B")]
        for (node, sku), on_hand in zip(pairs, stock, strict=True):
            self.set_stock(node, sku, on_hand, None, None)
        for node in NODES:
            for campaign, sku in (("c1", "A"), ("c2", "B")):
                if locked and self.layers[(node, sku)].available >= locked:
                    self.lock(campaign, node, sku, locked, 0, 120, None)

    @rule(
        node=node_ids,
        sku=sku_names,
        on_hand=units,
        unsellable=st.none() | st.integers(0, 2),
        safety=st.none() | st.integers(0, 2),
    )
    def set_stock(self, node, sku, on_hand, unsellable, safety):
        self.pool.set_stock([SetRow(node, sku, on_hand, unsellable, safety)], actor="t")
        layer = self.layers.setdefault((node, sku), Layers())
        layer.on_hand = on_hand
        if unsellable is not None:
            layer.unsellable = unsellable
        if safety is not None:
            layer.safety = safety

    @rule(
        node=node_ids, sku=sku_names, d_on_hand=st.integers(-4, 4), d_unsellable=st.integers(-1, 1)
    )
    def adjust_stock(self, node, sku, d_on_hand, d_unsellable):
        layer = self.layers.get((node, sku), Layers())
        if layer.on_hand + d_on_hand < 0 or layer.unsellable + d_unsellable < 0:
            with pytest.raises(InvalidInput):
                self.pool.adjust_stock([AdjustRow(node, sku, d_on_hand, d_unsellable)], actor="t")
            return
        self.pool.adjust_stock([AdjustRow(node, sku, d_on_hand, d_unsellable)], actor="t")
        layer.on_hand += d_on_hand
        layer.unsellable += d_unsellable
        self.layers[(node, sku)] = layer

    @rule(node=node_ids, pause=st.booleans())
    def pause_or_resume(self, node, pause):
        self.pool.set_node_status(node, "paused" if pause else "active")
        (self.paused.add if pause else self.paused.discard)(node)

    # --- routing ---------------------------------------------------------------------------

    @precondition(lambda self: any((s in {k[1] for k in self.layers}) for s in SKUS))
    @rule(
        sku=sku_names, qty=st.integers(1, 5), pickup=st.none() | node_ids, hold=st.integers(10, 100)
    )
    def route(self, sku, qty, pickup, hold):
        if not any(k[1] == sku for k in self.layers):
            return  # unknown SKU: covered by the API tests
        self.orders += 1
        order = Order(
            f"o{self.orders}", (OrderLine("l1", sku, qty),), lat=30.0, lon=120.0, pickup_node=pickup
        )
        result = self.pool.route(order, hold_seconds=hold)
        usable = [n for n in NODES if n not in self.paused and (pickup is None or n == pickup)]
        can = sum(self.layers.get((n, sku), Layers()).available for n in usable)
        allocated = sum(a.qty for a in result.lines[0].allocations)
        # Unfilled units cost 150, any shipment far less: the optimum fills all it can.
        assert allocated == min(qty, can)
        for a in result.lines[0].allocations:
            layer = self.layers[(a.node_id, sku)]
            assert a.node_id in usable and a.qty <= layer.available
            layer.reserved += a.qty
            self.holds[a.reservation_id] = Hold(
                a.node_id,
                sku,
                a.qty,
                "held",
                self.clock.now + timedelta(seconds=hold),
                order.order_id,
                pickup,
                self.clock.now,
            )

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), action=st.sampled_from(["commit", "release"]))
    def close(self, data, action):
        # (in the order the holds were made: their ids are random, so sorting them
        # would make Hypothesis's replay of a test case draw a different hold)
        rid = data.draw(st.sampled_from(list(self.holds)))
        hold = self.holds[rid]
        target = {"commit": "committed", "release": "released"}[action]
        expired_unswept = hold.status == "held" and hold.expires_at <= self.clock.now
        if hold.status not in ("held", target) or (action == "commit" and expired_unswept):
            with pytest.raises(Conflict):
                self.pool.close_reservations([rid], action, actor="t")
            return
        self.pool.close_reservations([rid], action, actor="t")
        if hold.status == "held":
            layer = self.layers[(hold.node, hold.sku)]
            layer.reserved -= hold.qty
            if action == "commit":
                layer.on_hand -= hold.qty
            hold.status = target

    @precondition(lambda self: any(h.order and h.status == "held" for h in self.holds.values()))
    @rule(data=st.data(), qty=st.integers(1, 6))
    def reject(self, data, qty):
        """A node rejects part of an order's line (orders routed by ``route``, not
        campaign orders): those units leave it and go to the nodes left, if any."""
        rid = data.draw(
            st.sampled_from([r for r, h in self.holds.items() if h.order and h.status == "held"])
        )
        hold = self.holds[rid]
        request = RejectionRequest(hold.order, "l1", hold.node, qty)
        live = sorted(
            (
                (h.created_at, r)
                for r, h in self.holds.items()
                if (h.order, h.node, h.status) == (hold.order, hold.node, "held")
                and h.expires_at > self.clock.now
            ),
        )
        units = sum(self.holds[r].qty for _, r in live)
        expected = (
            (Conflict, "reservation_not_expired")
            if not live
            else (InvalidInput, "within_reserved")
            if qty > units
            else None
        )
        event(f"reject: {expected[1] if expected else 'moved'}")
        if expected is not None:
            with pytest.raises(expected[0]) as raised:
                self.pool.reject(request)
            assert raised.value.rule == expected[1]
            return
        answer = self.pool.reject(request)
        expires_at = min(self.holds[r].expires_at for _, r in live)
        left = qty
        for _, r in reversed(live):  # newest first, as the pool takes them
            take = min(left, self.holds[r].qty)
            if take == self.holds[r].qty:
                self.holds[r].status = "released"
            else:
                self.holds[r].qty -= take
            left -= take
            if left == 0:
                break
        self.layers[(hold.node, hold.sku)].reserved -= qty
        excluded = self.rejected_by.setdefault(hold.order, set())
        excluded.add(hold.node)
        usable = [
            n
            for n in NODES
            if n not in self.paused
            and n not in excluded
            and (hold.pickup is None or n == hold.pickup)
        ]
        can = sum(self.layers.get((n, hold.sku), Layers()).available for n in usable)
        assert answer.rerouted == min(qty, can) and answer.unfilled == qty - answer.rerouted
        for a in answer.reroute.lines[0].allocations:
            layer = self.layers[(a.node_id, hold.sku)]
            assert a.node_id in usable and a.qty <= layer.available
            layer.reserved += a.qty
            self.holds[a.reservation_id] = Hold(
                a.node_id,
                hold.sku,
                a.qty,
                "held",
                expires_at,
                hold.order,
                hold.pickup,
                self.clock.now,
            )

    @precondition(
        lambda self: any(h.order and h.status == "committed" for h in self.holds.values())
    )
    @rule(data=st.data(), node=node_ids, qty=st.integers(1, 4), unsellable=st.integers(0, 4))
    def return_and_receive(self, data, node, qty, unsellable):
        """A shipped line comes back to a node and is received, part of it unsellable."""
        order_id = data.draw(
            st.sampled_from(
                sorted(
                    {h.order for h in self.holds.values() if h.order and h.status == "committed"}
                )
            )
        )
        sku = next(h.sku for h in self.holds.values() if h.order == order_id)
        shipped = sum(
            h.qty for h in self.holds.values() if h.order == order_id and h.status == "committed"
        )
        request = ReturnRequest(order_id, "l1", qty, node_id=node)
        if qty > shipped - self.returned.get(order_id, 0):
            with pytest.raises(InvalidInput) as raised:
                self.pool.create_return(request)
            assert raised.value.rule == "within_shipped"
            event("return: within_shipped")
            return
        event("return: received")
        view = self.pool.create_return(request)
        self.returned[order_id] = self.returned.get(order_id, 0) + qty
        unsellable = min(unsellable, qty)
        self.pool.receive_return(view.return_id, sellable=qty - unsellable, unsellable=unsellable)
        layer = self.layers.setdefault((node, sku), Layers())
        layer.on_hand += qty
        layer.unsellable += unsellable

    @rule(seconds=st.integers(1, 60))
    def time_passes_and_sweep_runs(self, seconds):
        self.clock.advance(seconds)
        expected = 0
        for hold in self.holds.values():
            if hold.status == "held" and hold.expires_at <= self.clock.now:
                hold.status = "expired"
                self.layers[(hold.node, hold.sku)].reserved -= hold.qty
                expected += 1
        assert self.pool.expire_due() == expected
        ended = 0
        for lock in self.locks.values():
            if lock.status == "active" and lock.ends_at <= self.clock.now:
                self._close_lock(lock, "expired")
                ended += 1
        assert self.pool.expire_locks_due() == ended

    # --- campaign locks --------------------------------------------------------------------

    def _close_lock(self, lock: Lock, status: str) -> None:
        self.layers[(lock.node, lock.sku)].locked -= lock.remaining
        lock.remaining, lock.status = 0, status

    @rule(
        campaign=st.sampled_from(CAMPAIGNS),
        node=node_ids,
        sku=sku_names,
        qty=st.integers(1, 4),
        start=st.integers(-20, 30),
        length=st.integers(5, 120),
        allow_pool=st.none() | st.booleans(),
    )
    def lock(self, campaign, node, sku, qty, start, length, allow_pool):
        starts_at = self.clock.now + timedelta(seconds=start)
        ends_at = starts_at + timedelta(seconds=length)

        def attempt():
            return self.pool.lock_stock(
                campaign,
                [LockRow(node, sku, qty)],
                starts_at=starts_at,
                ends_at=ends_at,
                allow_pool=allow_pool,
                actor="t",
            )

        layer = self.layers.get((node, sku), Layers())
        overlaps = any(
            lk.campaign == campaign
            and (lk.node, lk.sku) == (node, sku)
            and lk.status == "active"
            and lk.starts_at < ends_at
            and starts_at < lk.ends_at
            for lk in self.locks.values()
        )
        if ends_at <= self.clock.now:
            expected = (InvalidInput, "window_not_over")
        elif not any(k[1] == sku for k in self.layers):
            expected = (InvalidInput, "known_sku")
        elif overlaps:
            expected = (Conflict, "no_overlapping_windows")
        elif qty > layer.available:
            expected = (InvalidInput, "within_available")
        else:
            expected = None
        event(f"lock: {expected[1] if expected else 'locked'}")
        if expected is not None:
            with pytest.raises(expected[0]) as raised:
                attempt()
            assert raised.value.rule == expected[1]
            return
        view = attempt()
        (lock_id,) = {lk.lock_id for lk in view.locks} - set(self.locks)
        self.locks[lock_id] = Lock(campaign, node, sku, qty, starts_at, ends_at)
        layer.locked += qty
        self.layers[(node, sku)] = layer
        if allow_pool is not None or campaign not in self.allow_pool:
            self.allow_pool[campaign] = True if allow_pool is None else allow_pool
        assert layer.signed_available >= 0

    @precondition(lambda self: any(k[1] in SKUS for k in self.layers))
    @rule(
        campaign=st.sampled_from(CAMPAIGNS),
        sku=sku_names,
        qty=st.integers(1, 6),
        pickup=st.none() | node_ids,
    )
    def campaign_route(self, campaign, sku, qty, pickup):
        if not any(k[1] == sku for k in self.layers):
            return
        self.orders += 1
        order = Order(
            f"o{self.orders}",
            (OrderLine("l1", sku, qty),),
            lat=30.0,
            lon=120.0,
            pickup_node=pickup,
            campaign=campaign,
        )
        if campaign not in self.allow_pool:
            with pytest.raises(InvalidInput) as raised:
                self.pool.route(order)
            assert raised.value.rule == "known_campaign"
            return
        used_before = {lk.lock_id: lk.used for lk in self.pool.campaign(campaign).locks}
        result = self.pool.route(order, hold_seconds=30)
        usable = [n for n in NODES if n not in self.paused and (pickup is None or n == pickup)]
        mine = [
            lk
            for lk in self.locks.values()
            if lk.campaign == campaign
            and lk.sku == sku
            and lk.node in usable
            and lk.in_window(self.clock.now)
        ]
        from_locks = min(qty, sum(lk.remaining for lk in mine))
        pool_can = sum(self.layers.get((n, sku), Layers()).available for n in usable)
        from_pool = min(qty - from_locks, pool_can) if self.allow_pool[campaign] else 0
        event(f"campaign order: from locks {from_locks > 0}, from pool {from_pool > 0}")
        # Locked units first, all of them the order can use; then the pool if allowed.
        assert result.locked_units == from_locks
        allocated = sum(a.qty for a in result.lines[0].allocations)
        assert allocated == from_locks + from_pool
        per_node: dict[str, int] = {}
        for a in result.lines[0].allocations:
            per_node[a.node_id] = per_node.get(a.node_id, 0) + a.qty
            self.holds[a.reservation_id] = Hold(
                a.node_id, sku, a.qty, "held", self.clock.now + timedelta(seconds=30)
            )
        for view in self.pool.campaign(campaign).locks:
            took = view.used - used_before.get(view.lock_id, 0)
            if took:
                lock = self.locks[view.lock_id]
                assert lock.in_window(self.clock.now) and took <= lock.remaining
                lock.remaining -= took
                layer = self.layers[(lock.node, lock.sku)]
                layer.locked -= took
                layer.reserved += took
                per_node[lock.node] -= took
        for node, units in per_node.items():
            layer = self.layers[(node, sku)]
            assert 0 <= units <= layer.available
            layer.reserved += units

    @rule(campaign=st.sampled_from(CAMPAIGNS))
    def release_campaign(self, campaign):
        if campaign not in self.allow_pool:
            with pytest.raises(NotFound):
                self.pool.release_campaign(campaign, actor="t")
            return
        self.pool.release_campaign(campaign, actor="t")
        for lock in self.locks.values():
            if lock.campaign == campaign and lock.status == "active":
                self._close_lock(lock, "released")

    # --- agreement -------------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self):
        with self.pool.db.read() as conn:
            rows = conn.execute(
                select(nodes.c.node_id, balances).join(nodes, nodes.c.pk == balances.c.node_pk)
            ).all()
            ledger_sums = {
                (r.node_id, r.sku): (r.oh, r.un, r.sa, r.re, r.lo)
                for r in conn.execute(
                    select(
                        nodes.c.node_id,
                        ledger.c.sku,
                        func.sum(ledger.c.d_on_hand).label("oh"),
                        func.sum(ledger.c.d_unsellable).label("un"),
                        func.sum(ledger.c.d_safety).label("sa"),
                        func.sum(ledger.c.d_reserved).label("re"),
                        func.sum(ledger.c.d_locked).label("lo"),
                    )
                    .join(nodes, nodes.c.pk == ledger.c.node_pk)
                    .group_by(nodes.c.node_id, ledger.c.sku)
                )
            }
        seen = {}
        for r in rows:
            seen[(r.node_id, r.sku)] = Layers(
                r.on_hand, r.unsellable, r.safety_stock, r.reserved, r.locked
            )
            assert ledger_sums[(r.node_id, r.sku)] == (
                r.on_hand,
                r.unsellable,
                r.safety_stock,
                r.reserved,
                r.locked,
            )
        assert seen == self.layers

    @invariant()
    def locks_match_the_model(self):
        with self.pool.db.read() as conn:
            found = {
                r.lock_id: (r.remaining, r.status)
                for r in conn.execute(
                    select(
                        campaign_locks.c.lock_id,
                        campaign_locks.c.remaining,
                        campaign_locks.c.status,
                    )
                )
            }
        assert found == {k: (lk.remaining, lk.status) for k, lk in self.locks.items()}
        for (node, sku), layer in self.layers.items():
            assert layer.locked == sum(
                lk.remaining
                for lk in self.locks.values()
                if (lk.node, lk.sku) == (node, sku) and lk.status == "active"
            )

    @invariant()
    def pooled_availability_matches(self):
        known = sorted({k[1] for k in self.layers})
        if not known:
            return
        for found in self.pool.availability(known):
            expected = sum(
                self.layers[(n, found.sku)].available
                for n in NODES
                if (n, found.sku) in self.layers and n not in self.paused
            )
            assert found.active_available == expected
            everywhere = sum(
                self.layers[(n, found.sku)].available
                for n in NODES
                if (n, found.sku) in self.layers
            )
            assert found.pooled_available == everywhere


SETTINGS = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolVersusModelSqlite = PoolVersusModel.TestCase
TestPoolVersusModelSqlite.settings = SETTINGS


class PoolVersusModelPostgres(PoolVersusModel):
    database_url = "postgres"


@pytest.mark.postgres
class TestPoolVersusModelPostgres(PoolVersusModelPostgres.TestCase):
    settings = settings(
        max_examples=8,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
