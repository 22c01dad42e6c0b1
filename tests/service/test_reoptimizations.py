"""Re-optimization of held reservations on the live pool (SQLite and PostgreSQL): the job's
life, the churn rule, apply and its refusals, skipped orders, restart.

The little network of ``conftest`` (customer C at W1; S1 10 km away; S2 120 km away,
reach 50 km), one unit of A at S1 and at W1, two orders routed one by one:

- ``near`` (at C): S1 = 4 + 0.05*10 + 2 = 6.5 beats W1 = 10 + 0 + 1 = 11: it holds S1;
- ``far`` (at S2's place, ~110 km from S1, ~120 km from W1): only W1 is left, 17.

Held: 6.5 + 17 = 23.5. Re-decided jointly (their own units free): ``near`` W1 (11),
``far`` S1 (11.5) = 22.5, a saving of 1.0 that needs *both* orders to move.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from router.pool.inventory import AdjustRow
from router.pool.reoptimizations import (
    LostClaim,
    ReoptimizationRequest,
    Reoptimizations,
    ReoptimizationSettings,
    Selection,
)
from router.pool.routing import Order, OrderLine
from router.pool.schema import ledger, reservations
from tests.service.conftest import CUSTOMER, seed_network
from tests.service.test_waves import assert_invariant

FAR = (32.3097, 121.4737)


def order(order_id: str, where=CUSTOMER, qty: int = 1, **extra) -> Order:
    return Order(order_id, (OrderLine("l1", "A", qty),), where[0], where[1], **extra)


def request(**churn) -> ReoptimizationRequest:
    selection = churn.pop("selection", Selection(channel="web"))
    return ReoptimizationRequest(selection, **churn)


def held_nodes(pool, order_id: str) -> list[str]:
    return sorted(r.node_id for r in pool.reservations_of(order_id) if r.status == "held")


def rows_of(pool, table) -> int:
    with pool.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture
def jobs(pool):
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    pool.route(order("near"))
    pool.route(order("far", FAR))
    assert held_nodes(pool, "near") == ["S1"] and held_nodes(pool, "far") == ["W1"]
    return Reoptimizations(pool, ReoptimizationSettings(time_limit=10))


def ready(jobs, **churn):
    job = jobs.create(request(**churn), actor="ops")
    assert job.state == "queued" and job.progress["phase"] == "queued"
    assert jobs.run_due() == [job.job_id]
    job = jobs.job(job.job_id)
    assert job.state == "ready", job.error
    return job


# --- lifecycle ---------------------------------------------------------------------------


def test_a_plan_is_made_then_applied_on_the_ledger_with_the_job_as_ref(jobs):
    pool = jobs.pool
    job = ready(jobs, max_moves="100%")
    plan = job.plan
    assert plan["before"]["cost"] == pytest.approx(23.5, abs=0.01)
    assert plan["after"]["cost"] == pytest.approx(22.5, abs=0.01)
    assert plan["saving"] == pytest.approx(1.0, abs=0.01)
    assert (plan["orders_selected"], plan["orders"], plan["orders_moved"]) == (2, 2, 2)
    assert plan["gap"] == 0.0 and plan["status"] == "optimal" and plan["skipped"] == []
    assert job.progress["phase"] == "done"
    assert job.progress["best_cost"] == pytest.approx(22.5, abs=0.01)
    lines = jobs.moves_csv(job.job_id).splitlines()
    assert lines[0] == "order_id,moved,old_nodes,new_nodes,old_cost,new_cost"
    assert sorted(line.split(",")[:4] for line in lines[1:]) == [
        ["far", "True", "W1", "S1"],
        ["near", "True", "S1", "W1"],
    ]
    # A plan changes nothing until it is applied.
    assert held_nodes(pool, "near") == ["S1"]

    applied = jobs.apply(job.job_id, actor="ops")
    assert applied.state == "applied" and applied.applied_at is not None
    assert applied.plan["applied"]["orders_moved"] == 2
    assert held_nodes(pool, "near") == ["W1"] and held_nodes(pool, "far") == ["S1"]
    with pool.db.read() as conn:
        entries = conn.execute(
            select(ledger.c.movement, ledger.c.d_reserved, ledger.c.reason).where(
                ledger.c.ref == f"reoptimization:{job.job_id}"
            )
        ).all()
    assert sorted(entries) == [
        ("release", -1, "order far"),
        ("release", -1, "order near"),
        ("reserve", 1, "order far"),
        ("reserve", 1, "order near"),
    ]
    assert_invariant(pool)
    (stock,) = pool.availability(["A"])
    for node in stock.nodes:
        assert node.on_hand == (
            node.available + node.reserved + node.safety_stock + node.unsellable + node.locked
        )


def test_applying_twice_is_refused_and_changes_nothing(jobs):
    from router.pool.errors import Conflict

    job = ready(jobs, max_moves=2)
    jobs.apply(job.job_id, actor="ops")
    entries = rows_of(jobs.pool, ledger)
    with pytest.raises(Conflict) as refused:
        jobs.apply(job.job_id, actor="ops")
    assert refused.value.rule == "already_applied"
    assert rows_of(jobs.pool, ledger) == entries


# --- the churn rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("churn", "moved"),
    [
        ({"max_moves": 1}, 0),  # binds: the saving needs both orders to move
        ({"max_moves": "50%"}, 0),  # 50% of 2 orders = 1
        ({"max_moves": 2}, 2),  # does not bind
        ({"move_cost": 0.6}, 0),  # binds: 2 * 0.6 > the saving of 1.0
        ({"move_cost": 0.4}, 2),  # does not bind: 2 * 0.4 < 1.0
        ({"max_moves": 2, "move_cost": 0.4}, 2),
    ],
)
def test_the_churn_rule_bounds_the_moves(jobs, churn, moved):
    job = ready(jobs, **churn)
    assert job.plan["orders_moved"] == moved
    expected = 22.5 if moved else 23.5
    assert job.plan["after"]["cost"] == pytest.approx(expected, abs=0.01)
    if "max_moves" in churn:
        assert job.plan["max_moves"] == (1 if churn["max_moves"] in (1, "50%") else 2)


# --- refused applies ---------------------------------------------------------------------


def test_apply_is_refused_after_a_route_took_stock_at_a_touched_pair(pool):
    seed_network(pool, {("W1", "A"): 2, ("S1", "A"): 1})
    pool.route(order("near"))
    pool.route(order("far", FAR))
    jobs = Reoptimizations(pool)
    job = ready(jobs, max_moves="100%")
    assert job.plan["orders_moved"] == 2
    pool.route(order("late"))  # takes W1's last free unit: a pair the plan touches
    entries = rows_of(pool, ledger)
    from router.pool.errors import Conflict

    with pytest.raises(Conflict) as refused:
        jobs.apply(job.job_id, actor="ops")
    assert refused.value.field == "balances" and refused.value.rule == "unchanged_since_snapshot"
    assert "'W1', 'A'" in refused.value.message and "reserved 1 -> 2" in refused.value.message
    assert rows_of(pool, ledger) == entries  # nothing applied
    assert held_nodes(pool, "near") == ["S1"] and held_nodes(pool, "far") == ["W1"]
    assert jobs.job(job.job_id).state == "ready"
    assert_invariant(pool)


def test_apply_is_refused_after_a_reservation_was_released(jobs):
    from router.pool.errors import Conflict

    job = ready(jobs, max_moves=2)
    jobs.pool.close_order("far", "release", actor="oms")
    entries = rows_of(jobs.pool, ledger)
    with pytest.raises(Conflict) as refused:
        jobs.apply(job.job_id, actor="ops")
    assert refused.value.field == "reservations"
    assert "order 'far'" in refused.value.message
    assert rows_of(jobs.pool, ledger) == entries
    assert held_nodes(jobs.pool, "near") == ["S1"]
    assert_invariant(jobs.pool)


def test_apply_is_refused_after_a_stock_feed_at_a_touched_pair(jobs):
    from router.pool.errors import Conflict

    job = ready(jobs, max_moves=2)
    jobs.pool.adjust_stock([AdjustRow("S1", "A", 3)], actor="feed")
    with pytest.raises(Conflict) as refused:
        jobs.apply(job.job_id, actor="ops")
    assert "on_hand 1 -> 4" in refused.value.message
    assert held_nodes(jobs.pool, "near") == ["S1"]


def test_apply_is_refused_after_a_touched_node_changed(jobs):
    from router.pool.errors import Conflict

    job = ready(jobs, max_moves=2)
    jobs.pool.set_node_status("S1", "paused")
    with pytest.raises(Conflict) as refused:
        jobs.apply(job.job_id, actor="ops")
    assert refused.value.field == "nodes" and "'S1'" in refused.value.message


# --- selection and skipped orders --------------------------------------------------------


def test_an_order_held_at_a_node_no_longer_active_is_skipped_and_listed(jobs):
    jobs.pool.set_node_status("S1", "paused")
    job = ready(jobs, max_moves=2)
    assert job.plan["skipped"] == [
        {"order_id": "near", "rule": "node_not_active", "detail": "node 'S1' is paused"}
    ]
    assert (job.plan["orders_selected"], job.plan["orders"], job.plan["orders_moved"]) == (2, 1, 0)


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (Selection(order_ids=("near", "nobody")), 1),
        (Selection(node_ids=("S1",)), 1),
        (Selection(channel="store"), 0),
        (Selection(channel="web", node_ids=("W1", "S1")), 2),
    ],
)
def test_selectors(jobs, selection, selected):
    job = ready(jobs, selection=selection, max_moves=5)
    assert job.plan["orders_selected"] == selected
    assert job.plan["orders_moved"] == (2 if selected == 2 else 0)  # the swap needs both


def test_created_before_selects_by_the_time_of_the_holds(pool, clock):
    seed_network(pool, {("W1", "A"): 1, ("S1", "A"): 1})
    pool.route(order("near"))
    clock.advance(60)
    pool.route(order("far", FAR))
    jobs = Reoptimizations(pool)
    job = ready(
        jobs, selection=Selection(created_before=clock.now), max_moves=2
    )  # only near's holds are older
    assert job.plan["orders_selected"] == 1


# --- restart ------------------------------------------------------------------------------


def test_a_running_job_whose_process_stopped_is_run_again_then_failed(jobs, clock):
    jobs.settings = ReoptimizationSettings(lease_seconds=60, max_attempts=2)
    job = jobs.create(request(max_moves=2), actor="ops")
    first = jobs.claim_next()
    assert first is not None and first[0] == job.job_id
    assert jobs.claim_next() is None  # its claim is fresh: nobody else takes it
    clock.advance(61)
    second = jobs.claim_next()
    assert second is not None and second[0] == job.job_id and second[1] != first[1]
    assert jobs.job(job.job_id).attempts == 2
    with pytest.raises(LostClaim):  # the stopped process's token writes nothing
        jobs.run(*first)
    assert jobs.job(job.job_id).state == "running"
    clock.advance(61)  # the second run stopped too: its runs are used up
    assert jobs.claim_next() is None
    failed = jobs.job(job.job_id)
    assert failed.state == "failed" and failed.error["rule"] == "attempts_exhausted"


def test_a_queued_job_is_run_by_another_process(db_url, jobs):
    from router.pool import Pool

    job = jobs.create(request(max_moves=2), actor="ops")
    other = Pool.open(db_url, index_ttl=0.0)
    try:
        assert Reoptimizations(other).run_due() == [job.job_id]
    finally:
        other.close()
    assert jobs.job(job.job_id).state == "ready"


# --- the order records ------------------------------------------------------------------


def test_reservations_without_an_order_record_are_skipped(jobs):
    from router.pool.schema import orders as orders_table

    with jobs.pool.db.write() as conn:
        conn.execute(orders_table.delete().where(orders_table.c.order_id == "far"))
    assert ready(jobs, max_moves=2).plan["orders_selected"] == 1  # no channel known: not "web"
    job = ready(jobs, selection=Selection(order_ids=("near", "far")), max_moves=2)
    assert [s["rule"] for s in job.plan["skipped"]] == ["order_unknown"]
    assert json.loads(json.dumps(job.plan))["orders"] == 1
    with jobs.pool.db.read() as conn:
        assert (
            conn.execute(
                select(func.count())
                .select_from(reservations)
                .where(reservations.c.status == "held")
            ).scalar_one()
            == 2
        )


# --- states ------------------------------------------------------------------------------


def test_a_plan_that_is_not_ready_cannot_be_applied_or_downloaded(jobs):
    from router.pool.errors import Conflict

    job = jobs.create(request(max_moves=2), actor="ops")
    for attempt in (
        lambda: jobs.apply(job.job_id, actor="ops"),
        lambda: jobs.moves_csv(job.job_id),
    ):
        with pytest.raises(Conflict) as refused:
            attempt()
        assert refused.value.rule == "plan_ready"
    assert jobs.job(job.job_id).state == "queued"


def test_a_job_whose_solve_raises_fails_and_changes_nothing(jobs):
    def broken(_job_id):
        raise RuntimeError("solver exploded")

    jobs.after_snapshot = broken
    entries = rows_of(jobs.pool, ledger)
    job = jobs.create(request(max_moves=2), actor="ops")
    jobs.run_due()
    failed = jobs.job(job.job_id)
    assert failed.state == "failed" and failed.error["rule"] == "solve_failed"
    assert "solver exploded" in failed.error["detail"]
    assert rows_of(jobs.pool, ledger) == entries


# --- apply racing /v1/route ---------------------------------------------------------------


def test_apply_racing_route_calls_never_oversells(pool):
    """Ten ``near`` orders hold S1 and ten ``far`` orders W1; the plan swaps them. While it
    is applied, eight threads route more ``near`` orders for the same stock: the apply
    either wins (before them) or is refused, and nothing is ever oversold."""
    import threading

    seed_network(pool, {("W1", "A"): 14, ("S1", "A"): 14})
    for i in range(10):
        pool.route(order(f"near{i}"))
    for i in range(10):
        pool.route(order(f"far{i}", FAR))
    jobs = Reoptimizations(pool)
    job = ready(jobs, max_moves="100%")
    assert job.plan["orders_moved"] > 0
    outcomes: list[str] = []
    start = threading.Barrier(9)

    def racer(n: int) -> None:
        start.wait()
        for k in range(3):
            pool.route(order(f"race{n}-{k}"))

    def apply() -> None:
        from router.pool.errors import Conflict

        start.wait()
        try:
            jobs.apply(job.job_id, actor="ops")
            outcomes.append("applied")
        except Conflict as refused:
            outcomes.append(str(refused.rule))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=apply))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes in (["applied"], ["unchanged_since_snapshot"])
    assert_invariant(pool)
    state = jobs.job(job.job_id).state
    assert state == ("applied" if outcomes == ["applied"] else "ready")


def test_a_plan_that_moves_nothing_applies_as_a_no_op(jobs):
    job = ready(jobs, max_moves=1)
    entries = rows_of(jobs.pool, ledger)
    applied = jobs.apply(job.job_id, actor="ops")
    assert applied.state == "applied" and applied.plan["applied"]["orders_moved"] == 0
    assert rows_of(jobs.pool, ledger) == entries
    assert held_nodes(jobs.pool, "near") == ["S1"]


def test_an_order_held_at_a_node_that_no_longer_reaches_it_is_skipped(jobs):
    jobs.pool.update_node("S1", {"max_km": 5.0}, actor="admin")  # near is 10 km from S1
    job = ready(jobs, max_moves=2)
    assert [(s["order_id"], s["rule"]) for s in job.plan["skipped"]] == [
        ("near", "node_out_of_reach")
    ]
