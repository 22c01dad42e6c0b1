"""Campaign stock locks on the pool, on SQLite and PostgreSQL: lock, use, release, expiry
on the ledger with the layer identity, locked-first routing, and bad input that changes
nothing.

The network of ``conftest``: for the customer C, W1 costs 10 + 1/unit (0 km) and S1
costs 4.5 + 2/unit (10 km), so an ordinary one-unit order goes to S1 (6.5 < 11).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from router.pool import Pool
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.locks import LockRow
from router.pool.routing import Order, OrderLine, complete_from_pool
from router.pool.schema import balances, campaign_locks, ledger, nodes
from solver.order_dp import OrderProblem, order_cost, solve_order
from tests.service.conftest import CUSTOMER, seed_network

DAY = timedelta(days=1)


def order(order_id: str, qty: int, sku: str = "A", campaign: str | None = None) -> Order:
    return Order(
        order_id, (OrderLine("l1", sku, qty),), CUSTOMER[0], CUSTOMER[1], campaign=campaign
    )


def layers(pool: Pool, node_id: str, sku: str = "A") -> dict[str, int]:
    (found,) = pool.availability([sku])
    stock = next(n for n in found.nodes if n.node_id == node_id)
    return {
        "available": stock.available,
        "reserved": stock.reserved,
        "locked": stock.locked,
        "on_hand": stock.on_hand,
    }


def check_books(pool: Pool) -> None:
    """For every pair: the ledger sums to the balance, ``locked`` is the sum of the active
    locks' remaining units, and on_hand = available + reserved + safety + unsellable + locked."""
    with pool.db.read() as conn:
        sums = {
            (r.node_pk, r.sku): r[2:]
            for r in conn.execute(
                select(
                    ledger.c.node_pk,
                    ledger.c.sku,
                    func.sum(ledger.c.d_on_hand),
                    func.sum(ledger.c.d_unsellable),
                    func.sum(ledger.c.d_safety),
                    func.sum(ledger.c.d_reserved),
                    func.sum(ledger.c.d_locked),
                ).group_by(ledger.c.node_pk, ledger.c.sku)
            )
        }
        remaining = {
            (r.node_pk, r.sku): r.units
            for r in conn.execute(
                select(
                    campaign_locks.c.node_pk,
                    campaign_locks.c.sku,
                    func.sum(campaign_locks.c.remaining).label("units"),
                )
                .where(campaign_locks.c.status == "active")
                .group_by(campaign_locks.c.node_pk, campaign_locks.c.sku)
            )
        }
        for b in conn.execute(select(balances)):
            assert tuple(sums[(b.node_pk, b.sku)]) == (
                b.on_hand,
                b.unsellable,
                b.safety_stock,
                b.reserved,
                b.locked,
            )
            assert b.locked == remaining.get((b.node_pk, b.sku), 0)
            available = b.on_hand - b.unsellable - b.safety_stock - b.reserved - b.locked
            assert available >= 0
            assert b.on_hand == available + b.reserved + b.safety_stock + b.unsellable + b.locked


def movements(pool: Pool, node_id: str, sku: str = "A") -> list[tuple[str, int, int]]:
    return [(e.movement, e.d_reserved, e.d_locked) for e in pool.ledger(node_id, sku)]


@pytest.fixture
def seeded(pool, clock):
    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 2, ("S1", "B"): 1})
    return pool, clock


def lock(pool, clock, rows, campaign="spring", start=timedelta(0), length=DAY, **kw):
    return pool.lock_stock(
        campaign,
        [LockRow(*r) for r in rows],
        starts_at=clock.now + start,
        ends_at=clock.now + start + length,
        actor="t",
        **kw,
    )


# --- lock ------------------------------------------------------------------------------------


def test_a_lock_leaves_what_other_channels_can_sell(seeded):
    pool, clock = seeded
    view = lock(pool, clock, [("S1", "A", 2)])
    assert [(lk.node_id, lk.qty, lk.remaining, lk.status) for lk in view.locks] == [
        ("S1", 2, 2, "active")
    ]
    assert layers(pool, "S1") == {"available": 0, "reserved": 0, "locked": 2, "on_hand": 2}
    assert movements(pool, "S1") == [("set", 0, 0), ("lock", 0, 2)]
    # An ordinary order cannot take S1's locked units: it goes to the dearer W1.
    result = pool.route(order("o1", 1))
    assert [a.node_id for a in result.lines[0].allocations] == ["W1"]
    assert result.locked_units == 0
    check_books(pool)


def test_locked_units_cannot_be_sold_at_all_when_everything_is_locked(seeded):
    pool, clock = seeded
    lock(pool, clock, [("S1", "A", 2), ("W1", "A", 5)])
    result = pool.route(order("o1", 1))
    assert result.status == "unfilled"
    check_books(pool)


# --- use -------------------------------------------------------------------------------------


def test_a_campaign_order_routes_from_its_locked_units_first(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 3)])
    # S1 would be cheaper (6.5 < 11), but the campaign spends its own W1 units first.
    result = pool.route(order("c1", 1, campaign="spring"))
    assert [(a.node_id, a.qty) for a in result.lines[0].allocations] == [("W1", 1)]
    assert result.locked_units == 1 and result.cost.total == 11.0
    (lk,) = pool.campaign("spring").locks
    assert (lk.used, lk.remaining) == (1, 2)
    assert layers(pool, "W1") == {"available": 2, "reserved": 1, "locked": 2, "on_hand": 5}
    assert movements(pool, "W1")[-1] == ("lock_use", 1, -1)
    check_books(pool)


def test_the_rest_comes_from_the_pool_completing_the_locked_shipment(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 1)])
    # 1 locked unit at W1; the 2 others: W1 already ships (2 x 1) beats S1 (4.5 + 4 + split 6).
    result = pool.route(order("c1", 3, campaign="spring"))
    assert [(a.node_id, a.qty) for a in result.lines[0].allocations] == [("W1", 3)]
    assert result.locked_units == 1 and result.cost.total == 10.0 + 3.0
    assert movements(pool, "W1")[-2:] == [("lock_use", 1, -1), ("reserve", 2, 0)]
    check_books(pool)


def test_a_campaign_that_does_not_allow_the_pool_stops_at_its_locked_units(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 1)], allow_pool=False)
    result = pool.route(order("c1", 3, campaign="spring"))
    assert result.status == "partial" and result.lines[0].unfilled == 2
    assert result.locked_units == 1
    assert layers(pool, "W1")["available"] == 4 and layers(pool, "S1")["available"] == 2
    check_books(pool)


def test_locks_are_used_only_inside_their_window(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 2)], start=timedelta(hours=1))
    early = pool.route(order("c1", 1, campaign="spring"))
    assert early.locked_units == 0 and early.lines[0].allocations[0].node_id == "S1"
    assert layers(pool, "W1")["locked"] == 2  # held for the window all the same
    clock.advance(3600)
    on_time = pool.route(order("c2", 1, campaign="spring"))
    assert on_time.locked_units == 1 and on_time.lines[0].allocations[0].node_id == "W1"
    check_books(pool)


def test_a_released_campaign_order_gives_its_units_to_the_pool(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 2)])
    pool.route(order("c1", 1, campaign="spring"))
    pool.close_order("c1", "release", actor="t")
    assert layers(pool, "W1") == {"available": 4, "reserved": 0, "locked": 1, "on_hand": 5}
    check_books(pool)


def test_a_quote_for_a_campaign_reserves_nothing(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 2)])
    quote = pool.route(order("c1", 1, campaign="spring"), quote_only=True)
    assert quote.locked_units == 1 and quote.lines[0].allocations[0].node_id == "W1"
    assert pool.campaign("spring").locks[0].remaining == 2
    check_books(pool)


# --- release and expiry ----------------------------------------------------------------------


def test_release_on_demand_returns_what_is_left_and_a_repeat_is_a_no_op(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 3), ("S1", "A", 1)])
    pool.route(order("c1", 1, campaign="spring"))
    view = pool.release_campaign("spring", actor="t")
    assert sorted((lk.node_id, lk.used, lk.returned, lk.status) for lk in view.locks) == [
        ("S1", 1, 0, "released"),
        ("W1", 0, 3, "released"),
    ]  # the order took S1's locked unit (cheapest of the locked ones)
    assert layers(pool, "W1") == {"available": 5, "reserved": 0, "locked": 0, "on_hand": 5}
    assert movements(pool, "W1")[-1] == ("unlock", 0, -3)
    again = pool.release_campaign("spring", actor="t")
    assert again == view
    check_books(pool)


def test_the_sweep_returns_locked_units_when_the_window_ends(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 3)], length=timedelta(hours=2))
    clock.advance(7199)
    assert pool.expire_locks_due() == 0
    clock.advance(1)
    assert pool.expire_locks_due() == 1
    (lk,) = pool.campaign("spring").locks
    assert (lk.status, lk.remaining, lk.returned) == ("expired", 0, 3)
    assert layers(pool, "W1")["available"] == 5
    assert movements(pool, "W1")[-1] == ("lock_expire", 0, -3)
    after = pool.route(order("c1", 1, campaign="spring"))
    assert after.locked_units == 0
    check_books(pool)


# --- bad input changes nothing ---------------------------------------------------------------


def snapshot(pool: Pool):
    with pool.db.read() as conn:
        return (
            conn.execute(select(balances).order_by(balances.c.node_pk, balances.c.sku)).all(),
            conn.execute(select(func.count()).select_from(ledger)).scalar(),
            conn.execute(select(func.count()).select_from(campaign_locks)).scalar(),
            conn.execute(select(nodes.c.backlog_units).order_by(nodes.c.pk)).all(),
        )


@pytest.mark.parametrize(
    ("rows", "start", "length", "error", "field", "rule"),
    [
        (
            [("W1", "A", 5), ("S1", "A", 3)],
            0,
            DAY,
            InvalidInput,
            "locks[1].qty",
            "within_available",
        ),
        ([("W1", "Z", 1)], 0, DAY, InvalidInput, "locks[0].sku", "known_sku"),
        ([("W9", "A", 1)], 0, DAY, InvalidInput, "locks[0].node_id", "known_node"),
        ([("W1", "A", 0)], 0, DAY, InvalidInput, "locks[0].qty", "minimum"),
        ([("W1", "A", 1), ("W1", "A", 1)], 0, DAY, InvalidInput, "locks[1]", "unique_pair"),
        ([("W1", "A", 1)], 0, -DAY, InvalidInput, "ends_at", "window_ends_after_start"),
        ([("W1", "A", 1)], -2 * DAY, DAY, InvalidInput, "ends_at", "window_not_over"),
    ],
)
def test_bad_lock_requests_change_nothing(seeded, rows, start, length, error, field, rule):
    pool, clock = seeded
    before = snapshot(pool)
    with pytest.raises(error) as raised:
        lock(pool, clock, rows, start=start or timedelta(0), length=length)
    assert (raised.value.field, raised.value.rule) == (field, rule)
    assert snapshot(pool) == before
    with pytest.raises(NotFound):
        pool.campaign("spring")  # not even the campaign was created


def test_overlapping_windows_of_one_campaign_and_pair_conflict(seeded):
    pool, clock = seeded
    lock(pool, clock, [("W1", "A", 1)], length=timedelta(hours=2))
    before = snapshot(pool)
    with pytest.raises(Conflict) as raised:
        lock(pool, clock, [("S1", "A", 1), ("W1", "A", 1)], start=timedelta(hours=1))
    assert (raised.value.field, raised.value.rule) == ("locks[1]", "no_overlapping_windows")
    assert snapshot(pool) == before
    # Back to back is no overlap; another campaign may lock the same pair at the same time.
    lock(pool, clock, [("W1", "A", 1)], start=timedelta(hours=2))
    lock(pool, clock, [("W1", "A", 1)], campaign="other", length=timedelta(hours=2))
    check_books(pool)


def test_an_order_of_an_unknown_campaign_is_refused(seeded):
    pool, _clock = seeded
    before = snapshot(pool)
    with pytest.raises(InvalidInput) as raised:
        pool.route(order("c1", 1, campaign="nope"))
    assert (raised.value.field, raised.value.rule) == ("campaign", "known_campaign")
    assert snapshot(pool) == before


def test_release_of_an_unknown_campaign_is_not_found(seeded):
    pool, _clock = seeded
    with pytest.raises(NotFound):
        pool.release_campaign("nope", actor="t")


def test_stored_windows_are_naive_utc(seeded):
    pool, clock = seeded
    view = lock(pool, clock, [("W1", "A", 1)])
    assert view.locks[0].starts_at == clock.now and view.locks[0].ends_at.tzinfo is None
    assert isinstance(view.locks[0].ends_at, datetime)


def test_a_new_node_completes_the_order_when_the_locked_node_has_no_pool_units(pool, clock):
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 2})
    lock(pool, clock, [("W1", "A", 1)])
    result = pool.route(order("c1", 2, campaign="spring"))
    # W1's locked unit (10 + 1), then S1 from the pool (~4.5 + 2) and one split (6).
    assert sorted((a.node_id, a.qty) for a in result.lines[0].allocations) == [
        ("S1", 1),
        ("W1", 1),
    ]
    assert result.locked_units == 1 and result.cost.total == pytest.approx(23.5, abs=0.01)
    check_books(pool)


# --- the completion rule on arrays (no database) ------------------------------------------------


def test_completing_from_the_pool_charges_only_what_the_shipments_add():
    problem = OrderProblem(
        qty=np.array([3]),
        stock=np.array([[1, 5]]),
        ship_cost=np.array([10.0, 4.0]),
        unit_cost=np.array([[1.0, 2.0]]),
        capacity=np.array([np.inf, 5.0]),
        split_penalty=6.0,
        unfilled_penalty=150.0,
    )
    taken = np.array([[1, 0]])
    rest = complete_from_pool(problem, taken, np.array([[2, 5]]))
    # Node 0 already ships: no second shipment; node 1 would add its shipment and a split.
    assert rest.qty.tolist() == [2] and rest.split_penalty == 0.0
    assert rest.ship_cost.tolist() == [0.0, 10.0] and rest.capacity.tolist() == [np.inf, 5.0]
    plan = solve_order(rest)
    assert plan.alloc.tolist() == [[2, 0]]  # 2 x 1 beats 10 + 2 x 2
    # The combined cost is the cost of what was taken (as if it were the whole order)
    # plus the completion's own cost: 11 + 2 = 13.
    taken_alone = order_cost(replace(problem, qty=taken.sum(axis=1)), taken)
    assert order_cost(problem, taken + plan.alloc) == taken_alone + plan.total_cost == 13.0


def test_completing_from_the_pool_after_nothing_locked_is_the_plain_problem():
    problem = OrderProblem(
        qty=np.array([2]),
        stock=np.array([[0, 0]]),
        ship_cost=np.array([10.0, 4.0]),
        unit_cost=np.array([[1.0, 2.0]]),
        capacity=np.array([np.inf, np.inf]),
        split_penalty=6.0,
        unfilled_penalty=150.0,
    )
    rest = complete_from_pool(problem, np.zeros((1, 2), dtype=np.int64), np.array([[2, 2]]))
    assert rest.ship_cost.tolist() == [10.0, 4.0] and rest.split_penalty == 6.0


def test_an_order_without_a_campaign_keeps_its_fingerprint():
    plain = order("o1", 1)
    assert plain.fingerprint() != order("o1", 1, campaign="spring").fingerprint()
    body = '{"channel":"web","lat":31.2304,"lines":[{"line_id":"l1","qty":1,"sku":"A"}],'
    body += '"lon":121.4737,"order_id":"o1","pickup_node":null}'
    assert plain.fingerprint() == hashlib.sha256(body.encode()).hexdigest()
