"""Fulfilment modes through both paths: each binds / does-not-bind pair of
``tests/test_modes.py`` solved as a batch (``omniroute solve``) and routed alone by the
pool (``Pool.route``, quote only, the service clock at the scenario's ``as_of``); both
must choose the same nodes by the same modes. Then a wave (the batch path inside the
service) and the HTTP answer: the ``mode`` of each shipment, ``origin_store``, and a
bad mode field as a 422 naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from router.pool.routing import Order, OrderLine
from router.pool.scenario_load import load_into_pool
from router.scenario import load_scenario
from tests.service.conftest import CUSTOMER, seed_network, served_clients
from tests.service.test_campaigns_api import assert_problem, route_body
from tests.service.test_profiles import WEDNESDAY_10Z, _naive
from tests.test_modes import (
    AISLE_NODES,
    AISLE_STOCK,
    CITY,
    TRANSFER,
    TWO_LINES,
    aisle_folder,
    city_folder,
    pickup_folder,
    solved,
    with_origin,
)
from tests.test_profiles import write_profiled


def single_modes(pool, clock, folder: Path) -> dict[str, dict[str, str]]:
    """Each order of the folder routed alone by the pool: {order: {node: mode}}."""
    scenario = load_scenario(folder)
    load_into_pool(pool, scenario)
    clock.now = _naive(WEDNESDAY_10Z)
    chosen: dict[str, dict[str, str]] = {}
    for order_id, rows in scenario.orders.groupby("order_id", sort=False):
        first = rows.iloc[0]
        pickup = first["pickup_node"] or None
        order = Order(
            order_id=str(order_id),
            lines=tuple(OrderLine(r.line_id, r.sku, int(r.qty)) for r in rows.itertuples()),
            lat=None if pickup else float(first["lat"]),
            lon=None if pickup else float(first["lon"]),
            pickup_node=pickup,
            channel=str(first["channel"]),
            promised_date=first["promised_date"].isoformat() if first["promised_date"] else None,
            origin_store=first["origin_store"] or None,
        )
        result = pool.route(order, quote_only=True)
        assert result.origin_store == order.origin_store
        if result.shipments:
            chosen[str(order_id)] = {s.node_id: s.mode for s in result.shipments}
    return chosen


def both_paths(folder: Path, tmp_path: Path, pool, clock) -> dict[str, dict[str, str]]:
    _out, batch = solved(folder, tmp_path)
    assert single_modes(pool, clock, folder) == batch
    return batch


def _two_lines(promised: str) -> list[tuple]:
    return [tuple(promised if v == "{date}" else v for v in row) for row in TWO_LINES]


CASES = {
    # pick-up with transfer: P lacks the SKU, W moves it there
    "transfer_binds": (
        lambda t: pickup_folder(t, TRANSFER, [("W", "a", 5)]),
        {"o1": {"W": "pickup_transfer"}},
    ),
    "transfer_not_needed": (
        lambda t: pickup_folder(t, TRANSFER, [("W", "a", 5), ("P", "a", 5)]),
        {"o1": {"P": "pickup"}},
    ),
    "no_transfer_field": (lambda t: pickup_folder(t, None, [("W", "a", 5)]), {}),
    "transfer_beyond_max_km": (
        lambda t: pickup_folder(t, {**TRANSFER, "max_km": 100}, [("W", "a", 5)]),
        {},
    ),
    # the transfer's 2 days against a promise
    "transfer_promise_binds": (
        lambda t: pickup_folder(
            t, TRANSFER, [("P", "a", 5), ("W", "b", 5)], _two_lines("2026-12-03")
        ),
        {"o1": {"P": "pickup"}},
    ),
    "transfer_promise_free": (
        lambda t: pickup_folder(
            t, TRANSFER, [("P", "a", 5), ("W", "b", 5)], _two_lines("2026-12-04")
        ),
        {"o1": {"P": "pickup", "W": "pickup_transfer"}},
    ),
    # same-city delivery
    "same_city_binds": (lambda t: city_folder(t, CITY), {"o1": {"S": "same_city"}}),
    "same_city_beyond_radius": (
        lambda t: city_folder(t, {**CITY, "radius_km": 5}),
        {"o1": {"W": "warehouse_ship"}},
    ),
    "same_city_cheaper": (
        lambda t: city_folder(t, {"radius_km": 10, "cost_per_shipment": 9.0}, [("S", "a", 5)]),
        {"o1": {"S": "store_ship"}},
    ),
    "same_city_preferred": (
        lambda t: city_folder(
            t, {"radius_km": 10, "cost_per_shipment": 9.0, "prefer": "same_city"}, [("S", "a", 5)]
        ),
        {"o1": {"S": "same_city"}},
    ),
    # endless aisle
    "aisle_excludes_origin": (
        lambda t: aisle_folder(t, {"exclude_origin": True}),
        {"o1": {"W": "warehouse_ship"}},
    ),
    "aisle_keeps_origin": (
        lambda t: aisle_folder(t, {"exclude_origin": False}),
        {"o1": {"S": "store_ship"}},
    ),
}


def _preferred(t: Path, preference: float) -> Path:
    folder = write_profiled(
        t / "s",
        nodes=AISLE_NODES[1:],
        inventory=AISLE_STOCK[1:],
        orders=[("o1", "l1", "a", 1, 0.0, "", "")],
        profiles={"default": {"endless_aisle": {"origin_preference": preference}}},
    )
    return with_origin(folder, {"o1": "T"})


CASES["aisle_prefers_origin"] = (lambda t: _preferred(t, 4.0), {"o1": {"T": "store_ship"}})
CASES["aisle_preference_too_small"] = (
    lambda t: _preferred(t, 2.0),
    {"o1": {"W": "warehouse_ship"}},
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mode_gives_the_same_decision_in_both_paths(case, tmp_path, sqlite_pool, clock):
    build, expected = CASES[case]
    assert both_paths(build(tmp_path), tmp_path, sqlite_pool, clock) == expected


def test_late_transfer_is_flagged_in_both_paths(tmp_path, sqlite_pool, clock):
    orders = [("o1", "l1", "a", 1, 0.0, "", "2026-12-03", "P")]
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5)], orders)
    out, batch = solved(folder, tmp_path)
    assert batch == {"o1": {"W": "pickup_transfer"}} and out.summary["late_orders"] == 1
    load_into_pool(sqlite_pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    order = Order(
        "o1",
        (OrderLine("l1", "a", 1),),
        pickup_node="P",
        channel="default",
        promised_date="2026-12-03",
    )
    result = sqlite_pool.route(order, quote_only=True)
    assert [s.node_id for s in result.shipments] == ["W"] and result.promise_late


def test_same_cost_in_both_paths(tmp_path, sqlite_pool, clock):
    # The single route's shipping is the batch's: the transfer's cost.
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5)])
    out, _ = solved(folder, tmp_path)
    load_into_pool(sqlite_pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    order = Order("o1", (OrderLine("l1", "a", 1),), pickup_node="P", channel="default")
    result = sqlite_pool.route(order, quote_only=True)
    assert result.cost.total == pytest.approx(out.summary["total_cost"])
    assert result.cost.shipping == pytest.approx(out.summary["shipping"])


def test_a_transfer_is_reserved_at_its_source_and_explained(tmp_path, sqlite_pool, clock):
    folder = pickup_folder(tmp_path, TRANSFER, [("W", "a", 5)])
    load_into_pool(sqlite_pool, load_scenario(folder))
    clock.now = _naive(WEDNESDAY_10Z)
    order = Order("o1", (OrderLine("l1", "a", 2),), pickup_node="P", channel="default")
    result = sqlite_pool.route(order)
    assert [(s.node_id, s.mode, s.units) for s in result.shipments] == [("W", "pickup_transfer", 2)]
    assert result.lines[0].allocations[0].reservation_id is not None
    replay = sqlite_pool.route(order, quote_only=True)  # W now holds 3
    assert [s.node_id for s in replay.shipments] == ["W"]


# --- waves: the joint solve in the service ----------------------------------------------------


def test_wave_reports_the_modes_of_its_joint_solve(pool, clock):
    from router.pool.waves import Waves, WaveSettings

    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5})
    # S1 is 10 km from C: the courier (1 + 0.1 a km) beats its format's 4.5; the
    # order taken in S1 may not ship from it (W1).
    pool.put_profile(
        "web",
        {
            "same_city": {"radius_km": 20, "cost_per_shipment": 1.0, "per_km": 0.1},
            "endless_aisle": {"exclude_origin": True},
        },
    )
    waves = Waves(pool, WaveSettings(window_seconds=60, max_orders=5, time_limit=5))
    waves.queue(Order("w1", (OrderLine("l1", "A", 1),), *CUSTOMER, channel="web"), hold_seconds=900)
    aisle = Order("w2", (OrderLine("l1", "A", 1),), *CUSTOMER, channel="web", origin_store="S1")
    waves.queue(aisle, hold_seconds=900)
    clock.advance(60)
    assert len(waves.run_due()) == 1
    first, second = (waves.order(o).result for o in ("w1", "w2"))
    assert [(s.node_id, s.mode) for s in first.shipments] == [("S1", "same_city")]
    assert [(s.node_id, s.mode) for s in second.shipments] == [("W1", "warehouse_ship")]
    assert second.origin_store == "S1"
    # The single route gives the same answers.
    alone = pool.route(
        Order("r1", (OrderLine("l1", "A", 1),), *CUSTOMER, channel="web"), quote_only=True
    )
    assert [(s.node_id, s.mode) for s in alone.shipments] == [("S1", "same_city")]
    assert alone.cost.shipping == pytest.approx(first.cost.shipping)


# --- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def served(db_url):
    with served_clients(db_url, {("W1", "A"): 50, ("S1", "A"): 50}) as clients:
        yield clients


def test_route_answers_each_shipments_mode_over_http(served):
    admin, oms = served
    plain = oms.post("/v1/route", json={**route_body("o1", 1), "quote_only": True}).json()
    assert [(s["node_id"], s["mode"]) for s in plain["shipments"]] == [("S1", "store_ship")]
    city = {"same_city": {"radius_km": 20, "cost_per_shipment": 1.0}}
    assert admin.put("/v1/profiles/web", json=city).status_code == 200
    routed = oms.post("/v1/route", json={**route_body("o2", 1), "quote_only": True}).json()
    assert [(s["node_id"], s["mode"]) for s in routed["shipments"]] == [("S1", "same_city")]
    assert routed["shipments"][0]["shipping_cost"] == 1.0
    aisle = {**city, "endless_aisle": {"exclude_origin": True}}
    assert admin.put("/v1/profiles/web", json=aisle).status_code == 200
    body = {**route_body("o3", 1), "quote_only": True, "origin_store": "S1"}
    taken = oms.post("/v1/route", json=body).json()
    assert [(s["node_id"], s["mode"]) for s in taken["shipments"]] == [("W1", "warehouse_ship")]
    assert taken["origin_store"] == "S1"


def test_bad_mode_values_are_422_naming_the_field(served):
    admin, oms = served
    bad = admin.put("/v1/profiles/web", json={"same_city": {"radius_km": -1}})
    assert (
        "must be a number >= 0"
        in assert_problem(bad, 422, "same_city.radius_km", "profile")["detail"]
    )
    bad = admin.put("/v1/profiles/web", json={"pickup_transfer": {"delay_days": "two"}})
    assert_problem(bad, 422, "pickup_transfer.delay_days", "profile")
    unknown = {**route_body("o1", 1), "quote_only": True, "origin_store": "W1"}
    assert_problem(oms.post("/v1/route", json=unknown), 422, "origin_store", "known_store")
