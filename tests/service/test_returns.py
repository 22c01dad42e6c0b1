"""Returns: the choice of return node (pure, by hand), and receipt into the pool on
both backends (sellable raises available, unsellable raises unsellable, the ledger
adds up), bad input changes nothing.

The network of conftest: the customer C sits on warehouse W1; store S1 is 10 km
north of C, store S2 120 km north.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from router.geo import haversine_km
from router.pool.errors import Conflict, InvalidInput, NotFound
from router.pool.returns import (
    ReturnCandidate,
    ReturnRequest,
    cheapest_warehouse,
    choose_return_node,
    nearest_store,
)
from router.pool.schema import ledger, returns
from tests.service.conftest import seed_network
from tests.service.test_pool import assert_ledger_matches_balances, layers, order

# --- the choice, by hand: points on the equator, 1 degree of longitude = 111.2 km ----------


def node(node_id, kind, lon, *, fixed=0.0, per_km=0.0, handling=0.0, carries=True):
    return ReturnCandidate(node_id, kind, 0.0, lon, fixed, per_km, handling, carries)


KM_PER_DEGREE = float(haversine_km(0.0, 0.0, 0.0, 1.0))


def test_nearest_store_wins_among_stores_that_carry_the_sku():
    found = [node("far", "store", 2.0), node("near", "store", 1.0), node("W", "warehouse", 0.1)]
    choice = nearest_store(found, 0.0, 0.0, 1)
    assert (choice.node_id, choice.chosen_by) == ("near", "nearest_store")
    assert choice.distance_km == pytest.approx(KM_PER_DEGREE, abs=1e-3)


def test_a_nearer_store_that_does_not_carry_the_sku_is_skipped():
    found = [node("far", "store", 2.0), node("near", "store", 1.0, carries=False)]
    assert nearest_store(found, 0.0, 0.0, 1).node_id == "far"


def test_cheapest_warehouse_weighs_fixed_distance_and_handling():
    # A at 1 degree: 10 + 0.01 * 111.2 + 1 * 3 = 14.11; B at 2 degrees: 2 + 2.22 + 2 * 3 = 10.22.
    found = [
        node("A", "warehouse", 1.0, fixed=10.0, per_km=0.01, handling=1.0),
        node("B", "warehouse", 2.0, fixed=2.0, per_km=0.01, handling=2.0),
    ]
    choice = cheapest_warehouse(found, 0.0, 0.0, 3)
    assert choice.node_id == "B"
    assert choice.restocking_cost == pytest.approx(2.0 + 0.01 * 2 * KM_PER_DEGREE + 6.0, abs=1e-4)
    # One unit: A = 10 + 1.11 + 1 = 12.11, B = 2 + 2.22 + 2 = 6.22: B still; with B's fixed
    # cost at 9, B = 13.22 and A wins.
    found[1] = node("B", "warehouse", 2.0, fixed=9.0, per_km=0.01, handling=2.0)
    assert cheapest_warehouse(found, 0.0, 0.0, 1).node_id == "A"


def test_preference_and_fallback():
    store, warehouse = node("S", "store", 1.0), node("W", "warehouse", 0.5)
    assert choose_return_node([store, warehouse], 0, 0, 1, "store").node_id == "S"
    assert choose_return_node([store, warehouse], 0, 0, 1, "warehouse").node_id == "W"
    no_store = [node("S", "store", 1.0, carries=False), warehouse]
    assert choose_return_node(no_store, 0, 0, 1, "store").chosen_by == "cheapest_warehouse"
    assert choose_return_node([store], 0, 0, 1, "warehouse").chosen_by == "nearest_store"
    assert choose_return_node([node("S", "store", 1.0, carries=False)], 0, 0, 1, "store") is None


# --- on the pool ----------------------------------------------------------------------------


@pytest.fixture
def shipped(pool):
    """o1 shipped 2 units of A from S1 (the cheapest node for C)."""
    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5, ("S2", "A"): 5})
    result = pool.route(order("o1", ("l1", "A", 2)))
    assert [a.node_id for a in result.lines[0].allocations] == ["S1"]
    pool.close_order("o1", "commit", actor="t")
    return pool


def test_return_goes_to_the_nearest_store_from_where_the_order_went(shipped):
    view = shipped.create_return(ReturnRequest("o1", "l1", 1))
    assert (view.node_id, view.chosen_by, view.state) == ("S1", "nearest_store", "expected")
    assert view.distance_km == pytest.approx(
        float(haversine_km(31.2304, 121.4737, 31.3203, 121.4737)), abs=1e-3
    )
    assert layers(shipped, "S1", "A").on_hand == 3  # nothing moves before the receipt


def test_return_started_elsewhere_and_preferring_a_warehouse(shipped):
    near_s2 = shipped.create_return(ReturnRequest("o1", "l1", 1, lat=32.3, lon=121.47))
    assert near_s2.node_id == "S2"
    to_warehouse = shipped.create_return(ReturnRequest("o1", "l1", 1, prefer="warehouse"))
    assert (to_warehouse.node_id, to_warehouse.chosen_by) == ("W1", "cheapest_warehouse")
    assert to_warehouse.restocking_cost == pytest.approx(10.0 + 0.0 + 1.0)


def test_receipt_as_sellable_raises_available(shipped):
    view = shipped.create_return(ReturnRequest("o1", "l1", 2))
    before = layers(shipped, "S1", "A")
    received = shipped.receive_return(view.return_id, sellable=2, unsellable=0)
    after = layers(shipped, "S1", "A")
    assert received.state == "received" and received.sellable == 2
    assert (after.on_hand, after.available, after.unsellable) == (
        before.on_hand + 2,
        before.available + 2,
        before.unsellable,
    )
    with shipped.db.read() as conn:
        (entry,) = conn.execute(select(ledger).where(ledger.c.ref == view.return_id)).all()
    assert (entry.movement, entry.d_on_hand, entry.d_unsellable) == ("return", 2, 0)
    assert_ledger_matches_balances(shipped)


def test_receipt_as_unsellable_raises_unsellable_not_available(shipped):
    view = shipped.create_return(ReturnRequest("o1", "l1", 2))
    before = layers(shipped, "S1", "A")
    shipped.receive_return(view.return_id, sellable=1, unsellable=1)
    after = layers(shipped, "S1", "A")
    assert after.on_hand == before.on_hand + 2
    assert after.unsellable == before.unsellable + 1
    assert after.available == before.available + 1
    assert_ledger_matches_balances(shipped)


def test_return_to_a_node_without_the_sku_creates_its_stock_row(shipped):
    # W1 carries A here; a warehouse W9 that never held A takes it in.
    from router.pool.nodes import NodeSpec

    shipped.create_node(NodeSpec("W9", "warehouse", 31.2304, 121.4737))  # free to restock
    view = shipped.create_return(ReturnRequest("o1", "l1", 1, prefer="warehouse"))
    assert view.node_id == "W9"
    shipped.receive_return(view.return_id, sellable=0, unsellable=1)
    w9 = layers(shipped, "W9", "A")
    assert (w9.on_hand, w9.unsellable, w9.available) == (1, 1, 0)
    assert_ledger_matches_balances(shipped)


def test_repeated_receipt_is_a_no_op_and_a_different_one_conflicts(shipped):
    view = shipped.create_return(ReturnRequest("o1", "l1", 1))
    shipped.receive_return(view.return_id, sellable=1, unsellable=0)
    shipped.receive_return(view.return_id, sellable=1, unsellable=0)
    assert layers(shipped, "S1", "A").on_hand == 4
    with pytest.raises(Conflict) as raised:
        shipped.receive_return(view.return_id, sellable=0, unsellable=1)
    assert raised.value.rule == "return_expected"
    assert layers(shipped, "S1", "A").on_hand == 4


def test_same_idempotency_key_records_one_return(shipped):
    first = shipped.create_return(ReturnRequest("o1", "l1", 1), idempotency_key="r-1")
    again = shipped.create_return(ReturnRequest("o1", "l1", 1), idempotency_key="r-1")
    assert again.return_id == first.return_id and again.replayed and not first.replayed
    with shipped.db.read() as conn:
        assert len(conn.execute(select(returns)).all()) == 1


@pytest.mark.parametrize(
    ("request_", "error", "field", "rule"),
    [
        (ReturnRequest("nope", "l1", 1), NotFound, "order_id", "known_order"),
        (ReturnRequest("o1", "l9", 1), InvalidInput, "line_id", "known_line"),
        (ReturnRequest("o1", "l1", 3), InvalidInput, "qty", "within_shipped"),
        (ReturnRequest("o1", "l1", 0), InvalidInput, "qty", "minimum"),
        (ReturnRequest("o1", "l1", 1, node_id="ZZ"), InvalidInput, "node_id", "known_node"),
        (ReturnRequest("o1", "l1", 1, prefer="moon"), InvalidInput, "prefer", "one_of"),
    ],
)
def test_bad_returns_name_the_field_and_record_nothing(shipped, request_, error, field, rule):
    with pytest.raises(error) as raised:
        shipped.create_return(request_)
    assert (raised.value.field, raised.value.rule) == (field, rule)
    with shipped.db.read() as conn:
        assert conn.execute(select(returns)).all() == []


def test_units_not_shipped_or_already_returned_cannot_come_back(shipped):
    shipped.route(order("o2", ("l1", "A", 1)))  # held, not shipped
    with pytest.raises(InvalidInput) as raised:
        shipped.create_return(ReturnRequest("o2", "l1", 1))
    assert raised.value.rule == "within_shipped"
    shipped.create_return(ReturnRequest("o1", "l1", 2))
    with pytest.raises(InvalidInput) as raised:
        shipped.create_return(ReturnRequest("o1", "l1", 1))
    assert raised.value.rule == "within_shipped"


def test_bad_receipts_name_the_field_and_change_nothing(shipped):
    view = shipped.create_return(ReturnRequest("o1", "l1", 2))
    with pytest.raises(InvalidInput) as raised:
        shipped.receive_return(view.return_id, sellable=1, unsellable=0)
    assert (raised.value.field, raised.value.rule) == ("sellable", "receipt_matches_return")
    with pytest.raises(NotFound) as raised:
        shipped.receive_return("nope", sellable=2, unsellable=0)
    assert raised.value.field == "return_id"
    assert shipped.return_of(view.return_id).state == "expected"
    assert layers(shipped, "S1", "A").on_hand == 3
