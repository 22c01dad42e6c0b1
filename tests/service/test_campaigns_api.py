"""/v1/campaigns through a real uvicorn server on loopback, on SQLite and PostgreSQL:
lock, use, availability, release, the background expiry sweep, and a problem+json
answer naming the field and rule for each kind of bad input (with nothing changed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.service.conftest import CUSTOMER, served_clients

PROBLEM = "application/problem+json"


@pytest.fixture
def served(db_url):
    """A seeded pool behind ``omniroute serve``: (client as admin, client as oms)."""
    with served_clients(db_url, {("W1", "A"): 5, ("S1", "A"): 2, ("S1", "B"): 1}) as clients:
        yield clients


def window(start_s: float = -60, length_s: float = 86_400, tz: timedelta = timedelta(0)):
    """An RFC 3339 window around the server's real clock, written with the given offset."""
    zone = timezone(tz) if tz else UTC
    start = datetime.now(UTC) + timedelta(seconds=start_s)
    return {
        "starts_at": start.astimezone(zone).isoformat(),
        "ends_at": (start + timedelta(seconds=length_s)).astimezone(zone).isoformat(),
    }


def lock_body(*rows, **extra):
    return {
        "locks": [{"node_id": n, "sku": s, "qty": q} for n, s, q in rows],
        **window(),
        **extra,
    }


def route_body(order_id, qty, campaign=None):
    body = {
        "order_id": order_id,
        "lines": [{"line_id": "l1", "sku": "A", "qty": qty}],
        "customer": {"lat": CUSTOMER[0], "lon": CUSTOMER[1]},
    }
    if campaign:
        body["campaign"] = campaign
    return body


def layers(client, node_id, sku="A"):
    found = client.get("/v1/availability", params={"sku": sku}).json()["skus"][0]
    return next(n for n in found["nodes"] if n["node_id"] == node_id)


def assert_problem(response, status, field, rule):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["field"], body["rule"]) == (field, rule), body
    return body


def test_lock_use_and_release_over_http(served):
    admin, oms = served
    created = admin.post(
        "/v1/campaigns/spring/locks",
        json={
            "locks": [{"node_id": "W1", "sku": "A", "qty": 3}],
            **window(tz=timedelta(hours=8)),  # any offset; stored as UTC
            "reason": "spring sale",
        },
    )
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["campaign_id"], view["allow_pool"], view["locked"]) == ("spring", True, 3)
    assert view["locks"][0]["ends_at"].endswith("Z")  # answered in UTC
    w1 = layers(oms, "W1")
    assert (w1["on_hand"], w1["locked"], w1["available"]) == (5, 3, 2)

    # An ordinary order goes to the cheaper S1; the campaign's order takes its W1 units.
    plain = oms.post("/v1/route", json=route_body("o1", 1)).json()
    assert plain["lines"][0]["allocations"][0]["node_id"] == "S1" and plain["locked_units"] == 0
    mine = oms.post("/v1/route", json=route_body("c1", 2, "spring")).json()
    assert [(a["node_id"], a["qty"]) for a in mine["lines"][0]["allocations"]] == [("W1", 2)]
    assert mine["locked_units"] == 2

    seen = oms.get("/v1/campaigns/spring").json()
    assert (seen["locked"], seen["used"]) == (1, 2)
    released = admin.post("/v1/campaigns/spring/release").json()
    assert [(lk["status"], lk["returned"]) for lk in released["locks"]] == [("released", 1)]
    assert admin.post("/v1/campaigns/spring/release").json() == released  # a repeat: no-op
    assert layers(oms, "W1")["locked"] == 0 and layers(oms, "W1")["available"] == 3
    moves = [
        (e["movement"], e["d_reserved"], e["d_locked"])
        for e in admin.get("/v1/inventory/W1/A/ledger").json()["entries"]
    ]
    assert moves == [("set", 0, 0), ("lock", 0, 3), ("lock_use", 2, -2), ("unlock", 0, -1)]


def test_only_admin_keys_lock_or_release(served):
    _admin, oms = served
    r = oms.post("/v1/campaigns/spring/locks", json=lock_body(("W1", "A", 1)))
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert oms.post("/v1/campaigns/spring/release").status_code == 403


def test_the_background_sweep_returns_locks_whose_window_ended(served):
    admin, oms = served
    body = {"locks": [{"node_id": "W1", "sku": "A", "qty": 2}], **window(-1, 3)}
    assert admin.post("/v1/campaigns/flash/locks", json=body).status_code == 201
    deadline = time.monotonic() + 20  # window end (2 s) + at most one sweep period (5 s)
    while time.monotonic() < deadline:
        lk = oms.get("/v1/campaigns/flash").json()["locks"][0]
        if lk["status"] == "expired":
            break
        time.sleep(0.5)
    assert (lk["status"], lk["returned"]) == ("expired", 2)
    assert layers(oms, "W1")["available"] == 5


def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(served):
    admin, oms = served
    assert (
        admin.post("/v1/campaigns/spring/locks", json=lock_body(("W1", "A", 1))).status_code == 201
    )
    before = (layers(oms, "W1"), layers(oms, "S1"), oms.get("/v1/campaigns/spring").json())
    naive = lock_body(("W1", "A", 1))
    naive["starts_at"] = "2030-01-01T00:00:00"
    backwards = {**lock_body(("W1", "A", 1)), **window(3600, -60)}
    cases = [
        (naive, 422, "starts_at", "timezone_aware"),
        (backwards, 422, "ends_at", "window_ends_after_start"),
        (lock_body(("S1", "A", 3)), 422, "locks[0].qty", "within_available"),
        (lock_body(("S1", "A", 1), ("S1", "B", 9)), 422, "locks[1].qty", "within_available"),
        (lock_body(("W1", "Z", 1)), 422, "locks[0].sku", "known_sku"),
        (lock_body(("W9", "A", 1)), 422, "locks[0].node_id", "known_node"),
        (lock_body(("W1", "A", 0)), 422, "locks[0].qty", "greater_than_equal"),
        (lock_body(("W1", "A", 1)), 409, "locks[0]", "no_overlapping_windows"),
        ({**window()}, 422, "locks", "missing"),
    ]
    for body, status, field, rule in cases:
        assert_problem(admin.post("/v1/campaigns/spring/locks", json=body), status, field, rule)
    assert_problem(
        admin.post("/v1/campaigns/sp%20ring/locks", json=lock_body(("W1", "A", 1))),
        422,
        "campaign_id",
        "id_characters",
    )
    assert_problem(
        oms.post("/v1/route", json=route_body("c1", 1, "nope")), 422, "campaign", "known_campaign"
    )
    assert_problem(oms.get("/v1/campaigns/nope"), 404, "campaign_id", "known_campaign")
    assert_problem(admin.post("/v1/campaigns/nope/release"), 404, "campaign_id", "known_campaign")
    after = (layers(oms, "W1"), layers(oms, "S1"), oms.get("/v1/campaigns/spring").json())
    assert after == before
