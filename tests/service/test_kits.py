"""Kits through both paths: the batch (``omniroute solve`` on a scenario folder with
``kits.csv``) and the single order (``Pool.route`` on the same network loaded into the
pool with ``load_into_pool``), on SQLite and PostgreSQL; a wave; the API.

The network of ``tests/test_kits.py``: kit K = a + b; W holds a (5), T holds b (2), S
holds both (8). Whole from S costs 8, split W + T 7.
"""

from __future__ import annotations

import pytest

from router.pool.errors import InvalidInput
from router.pool.routing import Order, OrderLine
from router.pool.scenario_load import load_into_pool
from router.scenario import load_scenario
from tests.service.conftest import CUSTOMER, seed_network, served_clients
from tests.service.test_campaigns_api import assert_problem
from tests.test_kits import write_kitted
from tests.test_profiles import batch_nodes


def kit_order(order_id: str = "o1", channel: str = "web", qty: int = 1) -> Order:
    return Order(order_id, (OrderLine("l1", "K", qty),), lat=0.0, lon=0.0, channel=channel)


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        (None, {"S"}),  # the kit rule binds without profiles
        ({"default": {}}, {"S"}),
        ({"default": {"split_kits": True}}, {"W", "T"}),  # does not bind
    ],
)
def test_kit_rule_gives_the_same_nodes_in_both_paths(profiles, expected, tmp_path, pool):
    folder = write_kitted(tmp_path / "s", profiles=profiles)
    assert batch_nodes(folder, tmp_path) == {"o1": expected}
    load_into_pool(pool, load_scenario(folder))
    result = pool.route(kit_order(), quote_only=True)
    assert {s.node_id for s in result.shipments} == expected
    assert [(ln.line_id, ln.sku, ln.qty, ln.kit_line) for ln in result.lines] == [
        ("l1/a", "a", 1, "l1"),
        ("l1/b", "b", 1, "l1"),
    ]


def test_a_kit_no_node_holds_whole_is_unfilled_in_both_paths(tmp_path, pool):
    folder = write_kitted(tmp_path / "s", inventory=[("W", "a", 5), ("T", "b", 5)])
    assert batch_nodes(folder, tmp_path) == {}
    load_into_pool(pool, load_scenario(folder))
    result = pool.route(kit_order())
    assert result.status == "unfilled" and result.shipments == []


def test_reserving_a_kit_holds_its_components_and_availability_follows(tmp_path, pool):
    kits = "kit_sku,component_sku,quantity\nK,a,2\nK,b,1\n"
    folder = write_kitted(tmp_path / "s", kits=kits, inventory=[("S", "a", 5), ("S", "b", 5)])
    load_into_pool(pool, load_scenario(folder))
    before = pool.availability(["K", "a"])
    kit, a = before
    assert (kit.sku, kit.pooled_available, kit.active_available) == ("K", 2, 2)  # floor(5/2)
    assert [(n.node_id, n.available) for n in kit.nodes] == [("S", 2)]
    assert kit.components == [
        {"component_sku": "a", "quantity": 2},
        {"component_sku": "b", "quantity": 1},
    ]
    assert a.pooled_available == 5 and a.components is None
    result = pool.route(kit_order(qty=2))
    assert result.status == "filled"
    assert [(ln.sku, ln.qty) for ln in result.lines] == [("a", 4), ("b", 2)]
    after = pool.availability(["K"])[0]
    assert after.pooled_available == 0  # 1 a left


def test_kit_availability_per_node_and_pooled(pool):
    seed_network(pool, {("W1", "a"): 3, ("S1", "b"): 4, ("S2", "a"): 2, ("S2", "b"): 9})
    pool.put_kit(
        "K", [{"component_sku": "a", "quantity": 1}, {"component_sku": "b", "quantity": 2}]
    )
    kit = pool.availability(["K"])[0]
    # per node: W1 has no b, S1 no a, S2 min(2, 9 // 2) = 2; pooled min(5, 13 // 2) = 5
    assert [(n.node_id, n.available) for n in kit.nodes] == [("S2", 2)]
    assert kit.pooled_available == 5


def test_put_kit_rejects_bad_kits_naming_the_field(pool):
    seed_network(pool, {("W1", "a"): 3, ("W1", "X"): 1})
    pool.put_kit("K", [{"component_sku": "a", "quantity": 1}])
    cases = [
        ("J", [{"component_sku": "a", "quantity": 0}], "components[0].quantity", "kit"),
        ("J", [], "components", "kit"),
        ("J", [{"component_sku": "a", "qty": 1}], "components[0].qty", "kit"),
        (
            "J",
            [{"component_sku": "K", "quantity": 1}],
            "components[0].component_sku",
            "kit_not_nested",
        ),
        ("a", [{"component_sku": "b", "quantity": 1}], "kit_sku", "kit_not_nested"),
        ("X", [{"component_sku": "a", "quantity": 1}], "kit_sku", "kit_has_no_stock"),
    ]
    for kit_sku, parts, field, rule in cases:
        with pytest.raises(InvalidInput) as caught:
            pool.put_kit(kit_sku, parts)
        assert (caught.value.field, caught.value.rule) == (field, rule), caught.value.message
    assert pool.kit("K").components == [("a", 1)]


def test_a_component_ordered_beside_its_kit_is_refused(tmp_path, pool):
    load_into_pool(pool, load_scenario(write_kitted(tmp_path / "s")))
    order = Order(
        "o1", (OrderLine("l1", "K", 1), OrderLine("l2", "a", 1)), lat=0.0, lon=0.0, channel="web"
    )
    with pytest.raises(InvalidInput) as caught:
        pool.route(order, quote_only=True)
    assert (caught.value.field, caught.value.rule) == ("lines[1].sku", "kit")


def test_a_wave_keeps_kits_whole(tmp_path, pool, clock):
    from router.pool.waves import Waves, WaveSettings

    folder = write_kitted(tmp_path / "s")
    load_into_pool(pool, load_scenario(folder))
    waves = Waves(pool, WaveSettings(window_seconds=60, max_orders=5, time_limit=5.0))
    waves.queue(kit_order("w1"), hold_seconds=600)
    clock.advance(60)
    assert len(waves.run_due()) == 1
    view = waves.order("w1")
    assert {s.node_id for s in view.result.shipments} == {"S"}
    assert {ln.kit_line for ln in view.result.lines} == {"l1"}


# --- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def served(db_url):
    with served_clients(db_url, {("W1", "a"): 5, ("S1", "b"): 5, ("S1", "a"): 5}) as clients:
        yield clients


def test_kits_over_http(served):
    admin, oms = served
    put = admin.put(
        "/v1/kits/K",
        json={
            "components": [
                {"component_sku": "a", "quantity": 1},
                {"component_sku": "b", "quantity": 1},
            ]
        },
    )
    assert put.status_code == 200, put.text
    assert put.json()["components"] == [
        {"component_sku": "a", "quantity": 1},
        {"component_sku": "b", "quantity": 1},
    ]
    assert oms.get("/v1/kits/K").json()["kit_sku"] == "K"
    assert oms.get("/v1/kits/Z").status_code == 404
    bad = admin.put("/v1/kits/J", json={"components": [{"component_sku": "a", "quantity": 0}]})
    assert_problem(bad, 422, "components[0].quantity", "kit")

    answer = oms.get("/v1/availability", params={"sku": "K"})
    assert answer.status_code == 200, answer.text
    found = answer.json()["skus"][0]
    assert (found["pooled_available"], [n["node_id"] for n in found["nodes"]]) == (5, ["S1"])
    body = {
        "order_id": "o1",
        "lines": [{"line_id": "l1", "sku": "K", "qty": 1}],
        "customer": {"lat": CUSTOMER[0], "lon": CUSTOMER[1]},
    }
    routed = oms.post("/v1/route", json=body)
    assert routed.status_code == 200, routed.text
    lines = routed.json()["lines"]
    assert [(ln["line_id"], ln["kit_line"]) for ln in lines] == [("l1/a", "l1"), ("l1/b", "l1")]
    assert {s["node_id"] for s in routed.json()["shipments"]} == {"S1"}
