"""Rejections and short picks on both backends: the part moves, the rest stays, the
ledger records both moves under the rejection, bad requests change nothing.

The network is the one of conftest: the customer C sits on W1; S1 is a store 10 km away
(cost of one unit 4 + 0.05 * 10 + 2 = 6.5), W1 costs 10 + 1 = 11, S2 is out of reach.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.rejections import RejectionRequest
from router.pool.routing import Order, OrderLine
from router.pool.schema import ledger
from tests.service.conftest import seed_network
from tests.service.test_pool import assert_ledger_matches_balances, layers, order


def held(pool, order_id):
    return sorted(
        (r.line_id, r.node_id, r.qty) for r in pool.reservations_of(order_id) if r.status == "held"
    )


def test_rejected_line_moves_to_the_next_node_and_the_rest_stays(pool):
    seed_network(pool, {("S1", "A"): 5, ("S1", "B"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 2), ("l2", "B", 1)))
    assert held(pool, "o1") == [("l1", "S1", 2), ("l2", "S1", 1)]

    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 2))

    assert answer.status == "rerouted" and answer.rerouted == 2 and answer.unfilled == 0
    assert [(a.node_id, a.qty) for a in answer.reroute.lines[0].allocations] == [("W1", 2)]
    # l2 stays at S1; l1 moved to W1 although S1 still has the units.
    assert held(pool, "o1") == [("l1", "W1", 2), ("l2", "S1", 1)]
    assert layers(pool, "S1", "A").reserved == 0 and layers(pool, "S1", "A").available == 5
    assert layers(pool, "W1", "A").reserved == 2
    with pool.db.read() as conn:
        moves = conn.execute(
            select(ledger.c.movement, ledger.c.d_reserved).where(
                ledger.c.ref == answer.rejection_id
            )
        ).all()
    assert sorted(moves) == [("release", -2), ("reserve", 2)]
    assert_ledger_matches_balances(pool)


def test_short_pick_moves_only_the_missing_units(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 3)))
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 1, kind="short_pick"))
    assert answer.kind == "short_pick" and answer.rerouted == 1
    assert held(pool, "o1") == [("l1", "S1", 2), ("l1", "W1", 1)]
    assert layers(pool, "S1", "A").reserved == 2
    assert_ledger_matches_balances(pool)


def test_nothing_else_can_serve_it_so_it_is_unfilled(pool):
    seed_network(pool, {("S1", "A"): 5})  # W1 has none, S2 is out of reach
    pool.route(order("o1", ("l1", "A", 2)))
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 2))
    assert answer.status == "unfilled" and answer.unfilled == 2 and answer.rerouted == 0
    assert answer.reroute.status == "unfilled"
    assert held(pool, "o1") == []
    assert layers(pool, "S1", "A").reserved == 0
    assert_ledger_matches_balances(pool)


def test_part_of_it_elsewhere_is_partial(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 1})
    pool.route(order("o1", ("l1", "A", 3)))
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 3))
    assert (answer.status, answer.rerouted, answer.unfilled) == ("partial", 1, 2)


def test_a_node_that_rejected_the_line_does_not_get_it_back(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 1)))
    pool.reject(RejectionRequest("o1", "l1", "S1", 1))
    second = pool.reject(RejectionRequest("o1", "l1", "W1", 1))
    assert second.status == "unfilled"  # S1 rejected it before, W1 now: nobody is left
    assert held(pool, "o1") == []


def test_pickup_order_rejected_by_its_store_is_unfilled(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 1), pickup="S1"))
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 1))
    assert answer.status == "unfilled"


def test_rerouted_hold_keeps_the_original_expiry(pool, clock):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    first = pool.route(order("o1", ("l1", "A", 1)), hold_seconds=600)
    clock.advance(100)
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 1))
    assert answer.reroute.hold_expires_at == first.hold_expires_at
    (moved,) = [r for r in pool.reservations_of("o1") if r.node_id == "W1"]
    assert moved.expires_at == first.hold_expires_at


def test_same_idempotency_key_moves_once(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 2)))
    request = RejectionRequest("o1", "l1", "S1", 1)
    first = pool.reject(request, idempotency_key="rej-1")
    again = pool.reject(request, idempotency_key="rej-1")
    assert again.replayed and again.rejection_id == first.rejection_id
    assert held(pool, "o1") == [("l1", "S1", 1), ("l1", "W1", 1)]
    with pytest.raises(InvalidInput) as error:
        pool.reject(RejectionRequest("o1", "l1", "S1", 2), idempotency_key="rej-1")
    assert error.value.rule == "same_key_same_body"
    assert_ledger_matches_balances(pool)


def test_rerouting_never_oversells(pool):
    seed_network(pool, {("S1", "A"): 2, ("W1", "A"): 1})
    pool.route(order("o1", ("l1", "A", 2)))  # both of S1's units
    pool.route(order("o2", ("l1", "A", 1)))  # W1's only unit
    answer = pool.reject(RejectionRequest("o1", "l1", "S1", 2))
    assert answer.unfilled == 2  # W1's unit is o2's
    assert layers(pool, "W1", "A").reserved == 1 and layers(pool, "W1", "A").available == 0


@pytest.mark.parametrize(
    ("request_", "error", "field", "rule"),
    [
        (RejectionRequest("nope", "l1", "S1", 1), NotFound, "order_id", "known_order"),
        (RejectionRequest("o1", "l9", "S1", 1), InvalidInput, "line_id", "known_line"),
        (RejectionRequest("o1", "l1", "ZZ", 1), InvalidInput, "node_id", "known_node"),
        (RejectionRequest("o1", "l1", "W1", 1), InvalidInput, "node_id", "node_holds_line"),
        (RejectionRequest("o1", "l1", "S1", 3), InvalidInput, "qty", "within_reserved"),
        (RejectionRequest("o1", "l1", "S1", 0), InvalidInput, "qty", "minimum"),
    ],
)
def test_bad_rejections_name_the_field_and_change_nothing(pool, request_, error, field, rule):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 2)))
    with pytest.raises(error) as raised:
        pool.reject(request_)
    assert (raised.value.field, raised.value.rule) == (field, rule)
    assert held(pool, "o1") == [("l1", "S1", 2)]
    assert pool.rejections_of("o1") == []
    assert_ledger_matches_balances(pool)


def test_committed_or_expired_holds_cannot_be_rejected(pool, clock):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 1)), hold_seconds=60)
    clock.advance(61)
    with pytest.raises(Conflict) as raised:
        pool.reject(RejectionRequest("o1", "l1", "S1", 1))
    assert raised.value.rule == "reservation_not_expired"
    pool.route(order("o2", ("l1", "A", 1)))
    pool.close_order("o2", "commit", actor="t")
    with pytest.raises(InvalidInput) as raised:
        pool.reject(RejectionRequest("o2", "l1", "S1", 1))
    assert raised.value.rule == "node_holds_line"


def test_rejections_are_listed_by_order(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 2)))
    first = pool.reject(RejectionRequest("o1", "l1", "S1", 1, reason="damaged"))
    (listed,) = pool.rejections_of("o1")
    assert listed.rejection_id == first.rejection_id and not listed.replayed


def test_a_wave_order_rejected_with_no_other_stock_is_unfilled(pool, clock):
    """The wave of test_waves: ``far`` (at S2's place) jointly gets S1 and ``near`` W1;
    when S1 rejects ``far``, W1's only unit is ``near``'s, so ``far`` stays unfilled."""
    from router.pool.waves import Waves, WaveSettings
    from tests.service.test_waves import FAR
    from tests.service.test_waves import order as wave_order

    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    waves = Waves(pool, WaveSettings(window_seconds=60, max_orders=3, time_limit=5))
    waves.queue(wave_order("near"), hold_seconds=900)
    waves.queue(wave_order("far", FAR), hold_seconds=900)
    clock.advance(60)
    waves.run_due()
    assert held(pool, "far") == [("l1", "S1", 1)] and held(pool, "near") == [("l1", "W1", 1)]

    assert pool.reject(RejectionRequest("far", "l1", "S1", 1)).status == "unfilled"
    assert held(pool, "near") == [("l1", "W1", 1)]  # the rest of the pool stays put
    assert_ledger_matches_balances(pool)


def test_wave_order_rejection_goes_to_the_next_node_at_its_destination(pool, clock):
    from router.pool.waves import Waves, WaveSettings
    from tests.service.test_waves import FAR
    from tests.service.test_waves import order as wave_order

    seed_network(pool, {("W1", "A"): 2, ("S1", "A"): 1})
    waves = Waves(pool, WaveSettings(window_seconds=60, max_orders=3, time_limit=5))
    waves.queue(wave_order("far", FAR), hold_seconds=900)
    clock.advance(60)
    waves.run_due()
    assert held(pool, "far") == [("l1", "S1", 1)]  # FAR: S1 = 11.5 beats W1 = 17
    answer = pool.reject(RejectionRequest("far", "l1", "S1", 1))
    assert [(a.node_id, a.qty) for a in answer.reroute.lines[0].allocations] == [("W1", 1)]
    # The cost is that of shipping to FAR (~120 km from W1), so the destination was kept.
    assert answer.reroute.cost.shipping == pytest.approx(
        10.0 + 0.05 * answer.reroute.shipments[0].distance_km
    )
    assert answer.reroute.shipments[0].distance_km > 100


def test_a_campaign_orders_part_goes_to_the_campaigns_other_locked_units_first(pool, clock):
    """S1 is the cheapest for C, but the campaign's locked units come first: W1's lock
    serves the order. When W1 rejects it, the part is routed as a campaign order again
    without W1: no lock is left elsewhere, so it takes S1's pool units (the campaign
    allows the pool). The unit W1 released goes to W1's pool stock, not back to the
    lock (the lock counted it as used)."""
    from datetime import timedelta

    from router.pool.locks import LockRow

    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.lock_stock(
        "spring",
        [LockRow("W1", "A", 2)],
        starts_at=clock.now - timedelta(seconds=1),
        ends_at=clock.now + timedelta(hours=1),
        actor="t",
    )
    campaign_order = Order(
        "o1", (OrderLine("l1", "A", 1),), lat=31.2304, lon=121.4737, campaign="spring"
    )
    first = pool.route(campaign_order)
    assert first.locked_units == 1 and held(pool, "o1") == [("l1", "W1", 1)]
    answer = pool.reject(RejectionRequest("o1", "l1", "W1", 1))
    assert held(pool, "o1") == [("l1", "S1", 1)] and answer.reroute.locked_units == 0
    assert pool.campaign("spring").locks[0].remaining == 1  # the lock is not given back
    assert_ledger_matches_balances(pool)
