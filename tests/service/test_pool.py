"""The inventory pool on both backends: routing rules, reservations, feeds, ledger."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from router.geo import haversine_km
from router.pool import Pool
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.inventory import AdjustRow, SetRow
from router.pool.routing import Order, OrderLine
from router.pool.schema import balances, ledger
from tests.service.conftest import CUSTOMER, NETWORK, seed_network


def order(order_id: str, *lines: tuple[str, str, int], pickup: str | None = None) -> Order:
    return Order(
        order_id,
        tuple(OrderLine(*ln) for ln in lines),
        lat=CUSTOMER[0],
        lon=CUSTOMER[1],
        pickup_node=pickup,
    )


def layers(pool: Pool, node_id: str, sku: str):
    (found,) = pool.availability([sku])
    return next(n for n in found.nodes if n.node_id == node_id)


def assert_ledger_matches_balances(pool: Pool) -> None:
    """Summing every pair's ledger deltas gives its balance row."""
    with pool.db.read() as conn:
        sums = {
            (r.node_pk, r.sku): (r.oh, r.un, r.sa, r.re)
            for r in conn.execute(
                select(
                    ledger.c.node_pk,
                    ledger.c.sku,
                    func.sum(ledger.c.d_on_hand).label("oh"),
                    func.sum(ledger.c.d_unsellable).label("un"),
                    func.sum(ledger.c.d_safety).label("sa"),
                    func.sum(ledger.c.d_reserved).label("re"),
                ).group_by(ledger.c.node_pk, ledger.c.sku)
            )
        }
        rows = {
            (r.node_pk, r.sku): (r.on_hand, r.unsellable, r.safety_stock, r.reserved)
            for r in conn.execute(select(balances))
        }
    assert sums == rows


# --- routing rules -------------------------------------------------------------------------


def test_route_picks_cheapest_reachable_node_and_reserves(pool):
    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5, ("S2", "A"): 5})
    result = pool.route(order("o1", ("l1", "A", 1)))
    # S1: 4 + 0.05 * 9.996 + 2 = 6.50 beats W1 (10 + 1); S2 would be 2.7 but is out of reach.
    assert [a.node_id for a in result.lines[0].allocations] == ["S1"]
    expected = 4.0 + 0.05 * float(haversine_km(*CUSTOMER, 31.3203, 121.4737)) + 2.0
    assert result.cost.total == pytest.approx(expected)
    assert result.status == "filled" and result.exact
    assert layers(pool, "S1", "A").reserved == 1
    assert layers(pool, "S1", "A").available == 4
    assert_ledger_matches_balances(pool)


def test_reach_does_not_bind_when_customer_is_near(pool):
    seed_network(pool, {("W1", "A"): 5, ("S2", "A"): 5})
    near_s2 = Order("o1", (OrderLine("l1", "A", 1),), lat=32.30, lon=121.47)
    assert pool.route(near_s2).lines[0].allocations[0].node_id == "S2"


def test_pickup_order_uses_only_its_node_and_ships_free(pool):
    seed_network(pool, {("W1", "A"): 5, ("S2", "A"): 1})
    result = pool.route(order("o1", ("l1", "A", 2), pickup="S2"))
    assert [(a.node_id, a.qty) for a in result.lines[0].allocations] == [("S2", 1)]
    assert result.status == "partial" and result.cost.shipping == 0.0
    assert result.cost.unfilled_units == 1


def test_unknown_pickup_node_and_unknown_sku_are_rejected_naming_the_field(pool):
    seed_network(pool, {("W1", "A"): 5})
    with pytest.raises(InvalidInput) as error:
        pool.route(order("o1", ("l1", "A", 1), pickup="NOPE"))
    assert error.value.field == "pickup_node"
    with pytest.raises(InvalidInput) as error:
        pool.route(order("o1", ("l1", "A", 1), ("l2", "ZZZ", 1)))
    assert error.value.field == "lines[1].sku" and error.value.rule == "known_sku"
    assert layers(pool, "W1", "A").reserved == 0


def test_paused_node_gets_no_new_orders_until_resumed(pool):
    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    pool.set_node_status("S1", "paused")
    assert pool.route(order("o1", ("l1", "A", 1))).lines[0].allocations[0].node_id == "W1"
    pool.set_node_status("S1", "active")
    assert pool.route(order("o2", ("l1", "A", 1))).lines[0].allocations[0].node_id == "S1"


def test_capacity_limits_held_units_and_commit_frees_it(pool):
    seed_network(pool, {("S1", "A"): 10, ("W1", "A"): 10})
    pool.update_node("S1", {"capacity_units": 2}, actor="test")
    first = pool.route(order("o1", ("l1", "A", 2)))
    assert first.lines[0].allocations[0].node_id == "S1"
    second = pool.route(order("o2", ("l1", "A", 1)))
    assert second.lines[0].allocations[0].node_id == "W1"  # S1 is at capacity
    pool.close_order("o1", "commit", actor="test")
    third = pool.route(order("o3", ("l1", "A", 1)))
    assert third.lines[0].allocations[0].node_id == "S1"


def test_same_sku_on_two_lines_fills_lines_in_order(pool):
    seed_network(pool, {("S1", "A"): 3})
    result = pool.route(order("o1", ("l1", "A", 2), ("l2", "A", 2)))
    assert [
        (ln.line_id, sum(a.qty for a in ln.allocations), ln.unfilled) for ln in result.lines
    ] == [("l1", 2, 0), ("l2", 1, 1)]
    assert result.status == "partial"
    assert layers(pool, "S1", "A").reserved == 3


def test_no_stock_is_unfilled_and_reserves_nothing(pool):
    seed_network(pool, {("S1", "A"): 0})
    result = pool.route(order("o1", ("l1", "A", 2)))
    assert result.status == "unfilled" and result.cost.unfilled_units == 2
    assert result.hold_expires_at is None
    with pytest.raises(NotFound):
        pool.reservations_of("o1")


def test_quote_only_reserves_nothing(pool):
    seed_network(pool, {("S1", "A"): 3})
    result = pool.route(order("o1", ("l1", "A", 2)), quote_only=True)
    assert result.quote_only and result.lines[0].allocations[0].reservation_id is None
    assert layers(pool, "S1", "A").reserved == 0


def test_second_route_of_an_order_with_holds_is_a_conflict(pool):
    seed_network(pool, {("S1", "A"): 3})
    pool.route(order("o1", ("l1", "A", 1)))
    with pytest.raises(Conflict):
        pool.route(order("o1", ("l1", "A", 1)))
    pool.close_order("o1", "release", actor="test")
    pool.route(order("o1", ("l1", "A", 1)))  # re-routing after a release is fine


# --- reservation lifecycle -----------------------------------------------------------------


def test_commit_ships_units_and_is_idempotent(pool):
    seed_network(pool, {("S1", "A"): 3})
    rid = pool.route(order("o1", ("l1", "A", 2))).lines[0].allocations[0].reservation_id
    assert pool.close_reservations([rid], "commit", actor="t").closed_now == 1
    assert pool.close_reservations([rid], "commit", actor="t").closed_now == 0
    stock = layers(pool, "S1", "A")
    assert (stock.on_hand, stock.reserved, stock.available) == (1, 0, 1)
    with pytest.raises(Conflict):
        pool.close_reservations([rid], "release", actor="t")
    assert_ledger_matches_balances(pool)


def test_release_returns_units(pool):
    seed_network(pool, {("S1", "A"): 3})
    pool.route(order("o1", ("l1", "A", 2)))
    closed = pool.close_order("o1", "release", actor="t")
    assert [v.status for v in closed.reservations] == ["released"]
    stock = layers(pool, "S1", "A")
    assert (stock.on_hand, stock.reserved, stock.available) == (3, 0, 3)


def test_hold_expires_after_its_ttl(pool, clock):
    seed_network(pool, {("S1", "A"): 3})
    rid = pool.route(order("o1", ("l1", "A", 2)), hold_seconds=60).lines[0].allocations[0]
    clock.advance(59)
    assert pool.expire_due() == 0
    clock.advance(2)
    with pytest.raises(Conflict) as error:  # too late to commit
        pool.close_reservations([rid.reservation_id], "commit", actor="t")
    assert error.value.rule == "reservation_not_expired"
    assert pool.expire_due() == 1
    assert pool.reservation(rid.reservation_id).status == "expired"
    assert layers(pool, "S1", "A").available == 3
    assert_ledger_matches_balances(pool)


def test_unknown_reservation_and_order_are_not_found(pool):
    seed_network(pool, {("S1", "A"): 3})
    with pytest.raises(NotFound):
        pool.close_reservations(["nope"], "commit", actor="t")
    with pytest.raises(NotFound):
        pool.close_order("nope", "commit", actor="t")


# --- idempotency ---------------------------------------------------------------------------


def test_idempotent_retry_replays_and_reserves_once(pool):
    seed_network(pool, {("S1", "A"): 3})
    first = pool.route(order("o1", ("l1", "A", 2)), actor="k", idempotency_key="abc")
    again = pool.route(order("o1", ("l1", "A", 2)), actor="k", idempotency_key="abc")
    assert again.replayed and not first.replayed
    assert again.lines == first.lines and again.cost == first.cost
    assert layers(pool, "S1", "A").reserved == 2
    with pytest.raises(InvalidInput) as error:
        pool.route(order("o1", ("l1", "A", 1)), actor="k", idempotency_key="abc")
    assert error.value.field == "Idempotency-Key"


# --- feeds ---------------------------------------------------------------------------------


def test_set_feed_is_all_or_nothing(pool):
    seed_network(pool, {("S1", "A"): 3})
    with pytest.raises(InvalidInput) as error:
        pool.set_stock([SetRow("S1", "A", 9), SetRow("NOPE", "B", 1)], actor="t")
    assert error.value.field == "rows[1].node_id"
    assert layers(pool, "S1", "A").on_hand == 3
    with pytest.raises(InvalidInput) as error:
        pool.adjust_stock([AdjustRow("S1", "A", 5), AdjustRow("W1", "A", -1)], actor="t")
    assert error.value.field == "rows[1].delta_on_hand"
    assert layers(pool, "S1", "A").on_hand == 3


def test_compare_and_set_on_version(pool):
    seed_network(pool, {("S1", "A"): 3})
    version = layers(pool, "S1", "A").version
    with pytest.raises(Conflict):
        pool.set_stock([SetRow("S1", "A", 7, expected_version=version + 5)], actor="t")
    pool.set_stock([SetRow("S1", "A", 7, expected_version=version)], actor="t")
    pool.set_stock([SetRow("S1", "NEW", 1, expected_version=0)], actor="t")
    assert layers(pool, "S1", "A").on_hand == 7


def test_adjust_and_layers_make_availability(pool):
    seed_network(pool, {("S1", "A"): 10})
    pool.adjust_stock([AdjustRow("S1", "A", delta_on_hand=2, delta_unsellable=3)], actor="t")
    pool.set_stock([SetRow("S1", "A", 12, safety_stock=4)], actor="t")
    pool.route(order("o1", ("l1", "A", 1)))
    stock = layers(pool, "S1", "A")
    assert (stock.on_hand, stock.unsellable, stock.safety_stock, stock.reserved) == (12, 3, 4, 1)
    assert stock.available == 12 - 3 - 4 - 1
    (found,) = pool.availability(["A"])
    assert found.pooled_available == 4
    assert_ledger_matches_balances(pool)


def test_node_default_safety_stock_applies_unless_explicit(pool):
    seed_network(pool, {("S1", "A"): 10, ("S1", "B"): 10})
    pool.set_stock([SetRow("S1", "B", 10, safety_stock=1)], actor="t")
    pool.update_node("S1", {"default_safety_stock": 3}, actor="t")
    assert layers(pool, "S1", "A").safety_stock == 3
    assert layers(pool, "S1", "B").safety_stock == 1
    assert_ledger_matches_balances(pool)


def test_bulk_feed_of_many_rows_applies_in_one_go(pool):
    seed_network(pool, {})
    rows = [SetRow("W1", f"SKU{i:06d}", i % 7) for i in range(5_000)]
    assert pool.set_stock(rows, actor="t").created == 5_000
    again = pool.adjust_stock([AdjustRow("W1", f"SKU{i:06d}", 1) for i in range(5_000)], actor="t")
    assert again.updated == 5_000
    assert layers(pool, "W1", "SKU000006").on_hand == 7


# --- durability ----------------------------------------------------------------------------


def test_reopening_the_database_loses_nothing(db_url, clock):
    first = Pool.open(db_url, clock=clock)
    seed_network(first, {("S1", "A"): 3})
    result = first.route(order("o1", ("l1", "A", 2)))
    first.close()
    second = Pool.open(db_url, clock=clock)
    try:
        (view,) = second.reservations_of("o1")
        assert view.reservation_id == result.lines[0].allocations[0].reservation_id
        assert view.status == "held"
        assert second.ledger("S1", "A")[-1].movement == "reserve"
        assert len(second.read_model().index.node_id) == len(NETWORK)
    finally:
        second.close()


def test_concurrent_retries_with_one_key_reserve_once(pool):
    """Eight threads send the same request with the same key at once: one reservation."""
    from concurrent.futures import ThreadPoolExecutor

    seed_network(pool, {("S1", "A"): 5, ("W1", "A"): 5})
    the_order = order("o1", ("l1", "A", 2))
    with ThreadPoolExecutor(8) as executor:
        results = list(
            executor.map(
                lambda _: pool.route(the_order, actor="k", idempotency_key="same"), range(8)
            )
        )
    assert sum(not r.replayed for r in results) == 1
    assert len({tuple(a.reservation_id for a in r.lines[0].allocations) for r in results}) == 1
    assert len(pool.reservations_of("o1")) == len(results[0].lines[0].allocations)
    (stock,) = pool.availability(["A"])
    assert sum(n.reserved for n in stock.nodes) == 2


def test_idempotency_records_are_forgotten_after_their_retention(pool, clock):
    seed_network(pool, {("S1", "A"): 5})
    pool.route(order("o1", ("l1", "A", 1)), actor="k", idempotency_key="old")
    clock.advance(3600)
    assert pool.prune_idempotency(keep_seconds=7200) == 0
    clock.advance(3601)
    assert pool.prune_idempotency(keep_seconds=7200) == 1


def test_concurrent_routes_of_one_order_without_a_key_reserve_once(pool):
    """Eight threads route the same order id at once, no key: one holds, the rest conflict."""
    from concurrent.futures import ThreadPoolExecutor

    seed_network(pool, {("S1", "A"): 50})

    def attempt(_):
        try:
            return pool.route(order("o1", ("l1", "A", 1)))
        except Conflict:
            return None

    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(attempt, range(8)))
    assert sum(r is not None for r in results) == 1
    assert len(pool.reservations_of("o1")) == 1


def test_pooled_availability_counts_paused_nodes_but_active_does_not(pool):
    seed_network(pool, {("S1", "A"): 3, ("W1", "A"): 4})
    pool.set_node_status("S1", "paused")
    (found,) = pool.availability(["A"])
    assert (found.pooled_available, found.active_available) == (7, 4)


def test_a_scenario_loads_its_stock_in_feeds_of_at_most_the_feed_limit(sqlite_pool):
    """`omniroute load` of an inventory larger than one feed (a 20,000-order scenario has
    about 254,000 rows, a feed takes 200,000) goes in as several feeds: nothing is lost."""
    from router.bundled import bundled
    from router.pool.scenario_load import load_into_pool
    from router.scenario import load_scenario

    scenario = load_scenario(bundled("fixtures") / "cn-2000")
    summary = load_into_pool(sqlite_pool, scenario, feed_rows=997)
    assert summary.stock_rows == len(scenario.inventory) > 997
    skus = sorted(set(scenario.inventory["sku"]))[:25]
    expected = scenario.inventory[scenario.inventory["sku"].isin(skus)].groupby("sku")["available"]
    got = {a.sku: a.pooled_available for a in sqlite_pool.availability(skus)}
    assert got == {sku: int(units) for sku, units in expected.sum().items()}
