"""Waves on the live pool (SQLite and PostgreSQL): lifecycle, joint routing, repair,
restart, idempotency, bad input.

The little network of ``conftest`` (customer C at W1; S1 10 km away; S2 120 km away,
reach 50 km) with two orders, one at C and one at S2's location (outside S2's reach
for A since S2 holds none), and one unit of A at S1 and W1:

- order ``near`` (at C): S1 = 4 + 0.05*10 + 2 = 6.5, W1 = 10 + 0 + 1 = 11;
- order ``far`` (at S2, ~110 km from S1, ~120 km from W1): S1 = 11.5, W1 = 17.

One by one, ``near`` takes S1 and ``far`` pays W1: 6.5 + 17 = 23.5. Jointly,
``near`` takes W1 and ``far`` S1: 11 + 11.5 = 22.5.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from router.pool.inventory import AdjustRow, SetRow
from router.pool.routing import Order, OrderLine
from router.pool.schema import balances, ledger, reservations
from router.pool.waves import LostClaim, Waves, WaveSettings
from tests.service.conftest import CUSTOMER, REPO, seed_network

FAR = (32.3097, 121.4737)


def order(order_id: str, where=CUSTOMER, sku: str = "A", qty: int = 1, **extra) -> Order:
    return Order(order_id, (OrderLine("l1", sku, qty),), where[0], where[1], **extra)


def node_of(view) -> list[str]:
    return [a.node_id for line in view.result.lines for a in line.allocations]


def assert_invariant(pool) -> None:
    """Every balance: reserved = its held reservations, nothing oversold, ledger adds up."""
    with pool.db.read() as conn:
        for b in conn.execute(select(balances)).all():
            held = sum(
                r.qty
                for r in conn.execute(
                    select(reservations.c.qty).where(
                        reservations.c.node_pk == b.node_pk,
                        reservations.c.sku == b.sku,
                        reservations.c.status == "held",
                    )
                )
            )
            assert b.reserved == held, b
            assert b.on_hand - b.unsellable - b.safety_stock - b.reserved >= 0, b
            moves = conn.execute(
                select(ledger.c.d_reserved).where(
                    ledger.c.node_pk == b.node_pk, ledger.c.sku == b.sku
                )
            ).scalars()
            assert sum(moves) == b.reserved, b


@pytest.fixture
def waves(pool):
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    return Waves(pool, WaveSettings(window_seconds=60, max_orders=3, time_limit=5))


# --- lifecycle -----------------------------------------------------------------------------


def test_window_closes_the_wave_and_the_joint_answer_beats_one_by_one(waves, clock):
    first = waves.queue(order("near"), hold_seconds=900)
    second = waves.queue(order("far", FAR), hold_seconds=900)
    assert first.wave_id == second.wave_id and first.state == "queued"
    assert first.planned_close_at == clock.now.replace(minute=1)  # 09:00 + 60 s

    assert waves.run_due() == []  # window not elapsed: still open, nothing reserved
    assert waves.wave(first.wave_id).state == "open"
    assert waves.order("near").state == "queued" and waves.order("near").result is None

    clock.advance(60)
    assert waves.run_due() == [first.wave_id]
    wave = waves.wave(first.wave_id)
    assert (wave.state, wave.close_reason, wave.solve_attempts) == ("done", "window", 1)
    assert node_of(waves.order("near")) == ["W1"]
    assert node_of(waves.order("far")) == ["S1"]
    kpis = wave.kpis
    assert kpis["cost"] == pytest.approx(22.5, abs=0.01)
    assert kpis["solve"]["status"] == "optimal" and kpis["solve"]["gap"] == 0.0
    assert kpis["solve"]["lower_bound"] == pytest.approx(kpis["cost"])
    assert (kpis["fill_rate"], kpis["splits"], kpis["orders_repaired"]) == (1.0, 0, 0)
    assert kpis["store_unit_share"] == 0.5
    reservation = waves.order("far").result.lines[0].allocations[0].reservation_id
    assert waves.pool.reservation(reservation).status == "held"
    assert_invariant(waves.pool)


def test_size_limit_closes_the_wave_and_the_next_order_opens_another(waves):
    ids = [waves.queue(order(f"o{i}"), hold_seconds=900).wave_id for i in range(4)]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    closed = waves.wave(ids[0])
    assert (closed.state, closed.close_reason, closed.orders) == ("closed", "size", 3)
    assert waves.wave(ids[3]).state == "open"
    assert waves.run_due() == [ids[0]]
    # Two units for three orders: one order goes unfilled, nothing is oversold.
    statuses = sorted(waves.order(f"o{i}").result.status for i in range(3))
    assert statuses == ["filled", "filled", "unfilled"]
    assert waves.order("o3").state == "queued"
    assert_invariant(waves.pool)


def test_channels_have_their_own_waves_and_windows(pool, clock):
    seed_network(pool, {("W1", "A"): 5})
    waves = Waves(pool, WaveSettings(window_seconds=300, channel_windows={"store": 30}))
    web = waves.queue(order("w"), hold_seconds=900)
    store = waves.queue(order("s", channel="store"), hold_seconds=900)
    assert web.wave_id != store.wave_id
    assert (store.planned_close_at - clock.now).total_seconds() == 30
    clock.advance(30)
    assert waves.run_due() == [store.wave_id]
    assert waves.wave(web.wave_id).state == "open"


def test_close_on_demand(waves):
    queued = waves.queue(order("near"), hold_seconds=900)
    view = waves.close(queued.wave_id)
    assert (view.state, view.close_reason) == ("closed", "demand")
    assert waves.close(queued.wave_id).close_reason == "demand"  # a repeat changes nothing
    waves.run_due()
    assert waves.order("near").state == "routed"
    # An order arriving after the close goes to a new wave.
    assert waves.queue(order("next"), hold_seconds=900).wave_id != queued.wave_id


# --- repair --------------------------------------------------------------------------------


def test_stock_taken_between_solve_and_reserve_is_repaired_never_oversold(pool, clock):
    seed_network(pool, {("W1", "A"): 2, ("S1", "A"): 1})
    waves = Waves(pool, WaveSettings(window_seconds=60))
    waves.queue(order("near"), hold_seconds=900)
    wave_id = waves.queue(order("far", FAR), hold_seconds=900).wave_id

    def take_s1(solved_wave: str) -> None:
        assert solved_wave == wave_id
        # The joint plan gives S1's unit to "far"; the store sells it over the counter.
        pool.adjust_stock([AdjustRow("S1", "A", delta_on_hand=-1)], actor="store")

    waves.after_solve = take_s1
    waves.close(wave_id)
    waves.run_due()
    near, far = waves.order("near"), waves.order("far")
    assert (near.repaired, node_of(near)) == (False, ["W1"])
    assert (far.repaired, node_of(far)) == (True, ["W1"])  # re-routed on what was left
    assert far.result.status == "filled"
    assert waves.wave(wave_id).kpis["orders_repaired"] == 1
    (stock,) = pool.availability(["A"])
    assert {n.node_id: (n.on_hand, n.reserved) for n in stock.nodes} == {
        "S1": (0, 0),
        "W1": (2, 2),
    }
    assert_invariant(pool)


def test_an_order_routed_elsewhere_meanwhile_is_rejected_not_double_reserved(waves):
    wave_id = waves.queue(order("near"), hold_seconds=900).wave_id
    waves.after_solve = lambda _w: waves.pool.route(order("near"), actor="oms")
    waves.close(wave_id)
    waves.run_due()
    view = waves.order("near")
    assert view.state == "rejected" and view.rejection["rule"] == "one_open_routing_per_order"
    assert len(waves.pool.reservations_of("near")) == 1
    assert_invariant(waves.pool)


# --- restart -------------------------------------------------------------------------------


def test_a_lapsed_claim_is_solved_again_and_the_stale_solver_writes_nothing(pool, clock):
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    waves = Waves(pool, WaveSettings(window_seconds=60, lease_seconds=30))
    wave_id = waves.queue(order("near"), hold_seconds=900).wave_id
    waves.close(wave_id)
    stale = waves.claim_next()  # a process claims the wave, then dies mid-solve
    assert stale is not None and waves.claim_next() is None
    assert waves.wave(wave_id).state == "solving"
    clock.advance(31)
    assert waves.run_due() == [wave_id]
    view = waves.wave(wave_id)
    assert (view.state, view.solve_attempts) == ("done", 2)
    with pytest.raises(LostClaim):
        waves.solve(*stale)  # the old process wakes up: its token is void
    assert len(pool.reservations_of("near")) == 1
    assert_invariant(pool)


_CRASH_SCRIPT = """
import sys, time
from router.pool import Pool
from router.pool.waves import Waves, WaveSettings
pool = Pool.open(sys.argv[1])
waves = Waves(pool, WaveSettings(lease_seconds=1))
def hang(_wave):
    print("solved", flush=True)
    time.sleep(600)
waves.after_solve = hang
waves.run_due()
"""


def test_a_process_killed_mid_solve_leaves_nothing_half_reserved(sqlite_url):
    from router.pool import Pool

    pool = Pool.open(sqlite_url, index_ttl=0.0)
    try:
        seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
        waves = Waves(pool, WaveSettings(lease_seconds=1))
        wave_id = waves.queue(order("near"), hold_seconds=900).wave_id
        waves.queue(order("far", FAR), hold_seconds=900)
        waves.close(wave_id)
        proc = subprocess.Popen(
            [sys.executable, "-c", _CRASH_SCRIPT, sqlite_url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "solved"
        finally:
            proc.kill()
            proc.wait()
        assert waves.wave(wave_id).state == "solving"
        (stock,) = pool.availability(["A"])
        assert sum(n.reserved for n in stock.nodes) == 0  # nothing half-reserved
        time.sleep(1.1)
        assert waves.run_due() == [wave_id]
        assert waves.wave(wave_id).solve_attempts == 2
        assert {waves.order(o).state for o in ("near", "far")} == {"routed"}
        assert_invariant(pool)
    finally:
        pool.close()


# --- idempotency and bad input -------------------------------------------------------------


def test_idempotent_queueing(waves):
    first = waves.queue(order("near"), hold_seconds=900, actor="k1", idempotency_key="x")
    again = waves.queue(order("near"), hold_seconds=900, actor="k1", idempotency_key="x")
    assert again.replayed and (again.wave_id, again.order_id) == (first.wave_id, "near")
    assert waves.wave(first.wave_id).orders == 1
    from router.pool.errors import Conflict, InvalidInput

    with pytest.raises(InvalidInput) as reused:
        waves.queue(order("near", qty=2), hold_seconds=900, actor="k1", idempotency_key="x")
    assert reused.value.rule == "same_key_same_body"
    with pytest.raises(Conflict) as twice:
        waves.queue(order("near"), hold_seconds=900)
    assert twice.value.rule == "order_already_queued"


@pytest.mark.parametrize(
    ("bad", "kwargs", "field", "rule"),
    [
        (order("o", sku="NOPE"), {}, "lines[0].sku", "known_sku"),
        (order("o", pickup_node="XX"), {}, "pickup_node", "known_node"),
        (Order("o", (OrderLine("l1", "A", 1),)), {}, "customer", "required_for_delivery"),
        (order("o"), {"hold_seconds": 0}, "hold_seconds", "range"),
        (order("o"), {"callback_url": "http://127.0.0.1:9/cb"}, "callback_url", None),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(waves, bad, kwargs, field, rule):
    from router.pool.errors import PoolError

    with pytest.raises(PoolError) as refused:
        waves.queue(bad, **{"hold_seconds": 900, **kwargs})
    assert refused.value.field == field
    if rule:
        assert refused.value.rule == rule
    assert waves.counts() == {}


def test_an_order_already_routed_by_route_cannot_be_queued(waves):
    waves.pool.route(order("near"), actor="oms")
    from router.pool.errors import Conflict

    with pytest.raises(Conflict) as refused:
        waves.queue(order("near"), hold_seconds=900)
    assert refused.value.rule == "one_open_routing_per_order"


def test_settings_from_env_name_the_bad_variable():
    settings = WaveSettings.from_env({"OMNIROUTE_WAVE_WINDOWS": "web=300, store=60"})
    assert settings.window_of("store") == 60 and settings.window_of("other") == 300
    with pytest.raises(ValueError, match="OMNIROUTE_WAVE_WINDOWS"):
        WaveSettings.from_env({"OMNIROUTE_WAVE_WINDOWS": "web"})
    with pytest.raises(ValueError, match="OMNIROUTE_WAVE_MAX_ORDERS"):
        WaveSettings.from_env({"OMNIROUTE_WAVE_MAX_ORDERS": "0"})


def test_unknown_wave_and_order_are_not_found(waves):
    from router.pool.errors import NotFound

    with pytest.raises(NotFound):
        waves.wave("nope")
    with pytest.raises(NotFound):
        waves.order("nope")
    with pytest.raises(NotFound):
        waves.close("nope")


def test_pool_stock_rows_are_untouched_by_queueing(waves):
    waves.queue(order("near"), hold_seconds=900)
    (stock,) = waves.pool.availability(["A"])
    assert sum(n.reserved for n in stock.nodes) == 0
    waves.pool.set_stock([SetRow("W1", "A", 3)], actor="feed")  # feeds still work meanwhile


# --- one problem, one model ----------------------------------------------------------------

HAND_CHECKED = [
    "capacity-binds",
    "pickup-competes",
    "beyond-max-km",
    "same-sku-two-lines",
    "greedy-trap",
    "split-vs-wait",
]


@pytest.mark.parametrize("fixture", HAND_CHECKED)
def test_a_wave_of_a_fixture_reserves_its_proven_optimum(pool, fixture):
    """Loaded into the pool and queued as one wave, each hand-checked fixture costs exactly
    its optimum: the wave is the batch model (stock, capacity, reach, pickup, penalties)."""
    import json

    from router.pool.scenario_load import load_into_pool
    from router.scenario import load_scenario

    folder = REPO / "fixtures" / fixture
    scenario = load_scenario(folder)
    load_into_pool(pool, scenario)
    waves = Waves(pool, WaveSettings(window_seconds=60, time_limit=5, rel_gap=0.0))
    wave_id = None
    for order_id, rows in scenario.orders.groupby("order_id", sort=False):
        first = rows.iloc[0]
        lines = tuple(OrderLine(str(r.line_id), str(r.sku), int(r.qty)) for r in rows.itertuples())
        queued = waves.queue(
            Order(
                str(order_id), lines, float(first.lat), float(first.lon), first.pickup_node or None
            ),
            hold_seconds=900,
        )
        wave_id = queued.wave_id
    waves.close(wave_id)
    waves.run_due()
    expected = json.loads((folder / "expected.json").read_text())["optimal_total_cost"]
    kpis = waves.wave(wave_id).kpis
    assert kpis["orders_routed"] == scenario.orders["order_id"].nunique()
    assert kpis["cost"] == pytest.approx(expected, abs=1e-5)
    assert kpis["solve"]["status"] == "optimal"
    assert_invariant(pool)


def test_a_paused_node_gets_nothing_and_a_pickup_there_stays_unfilled(pool):
    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5})
    pool.set_node_status("S1", "paused")
    waves = Waves(pool, WaveSettings(window_seconds=60))
    wave_id = waves.queue(order("delivery"), hold_seconds=900).wave_id
    waves.queue(order("pickup", pickup_node="S1"), hold_seconds=900)
    waves.close(wave_id)
    waves.run_due()
    assert node_of(waves.order("delivery")) == ["W1"]  # S1 would be cheaper, but paused
    pickup = waves.order("pickup")
    assert pickup.result.status == "unfilled" and node_of(pickup) == []
    assert pickup.reservations == []
    assert_invariant(pool)


# --- callbacks (delivery loop in-process, against a real HTTP receiver on loopback) ----------


def test_a_callback_that_keeps_failing_backs_off_then_fails_and_the_order_stays_routed(pool, clock):
    import httpx

    from router.pool.callbacks import CallbackSettings, deliver_due
    from tests.service.test_waves_api import receiver

    seed_network(pool, {("W1", "A"): 1})
    settings = CallbackSettings(secret="s", max_attempts=3, first_delay=10.0)
    waves = Waves(pool, WaveSettings(window_seconds=60), callbacks_enabled=True)
    with receiver(fail_first=99) as (hook, received), httpx.Client() as client:
        wave_id = waves.queue(order("near"), hold_seconds=900, callback_url=hook).wave_id
        assert deliver_due(pool, settings, client) == 0 and received == []  # not routed yet
        waves.close(wave_id)
        waves.run_due()
        assert deliver_due(pool, settings, client) == 0 and len(received) == 1
        assert deliver_due(pool, settings, client) == 0 and len(received) == 1  # backing off
        clock.advance(10)  # first retry after 10 s, the second after 20 s more
        deliver_due(pool, settings, client)
        clock.advance(19)
        deliver_due(pool, settings, client)
        assert len(received) == 2
        clock.advance(1)
        deliver_due(pool, settings, client)
        assert len(received) == 3
        clock.advance(3600)
        deliver_due(pool, settings, client)
        assert len(received) == 3  # gave up after max_attempts
    view = waves.order("near")
    assert (view.callback_state, view.callback_attempts) == ("failed", 3)
    assert view.callback_error == "HTTP 500"
    assert view.state == "routed" and view.reservations[0].status == "held"
    assert settings.delay_after(1) == 10.0 and settings.delay_after(30) == settings.max_delay
