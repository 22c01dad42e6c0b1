"""Hostile input and operations, through a real ``omniroute serve`` on loopback, on both
backends: control characters in ids, integers beyond BIGINT, non-strict quantities,
undecodable bodies, UTC timestamps, JSON logs with the request id, Retry-After on a
busy 503, /metrics over two workers, and ``serve``'s own checks."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import text

from api.schemas import Timestamp
from router.pool import Pool
from router.pool.inventory import SetRow
from router.pool.schema import skus
from tests.service.conftest import (
    CUSTOMER,
    NETWORK,
    REPO,
    SERVE_SCRIPT,
    pg_schema_url,
    running_server,
    seed_network,
)

PROBLEM = "application/problem+json"


@contextlib.contextmanager
def backend_url(backend: str, tmp_path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'pool.db'}"
    else:
        with pg_schema_url() as url:
            yield url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(request, tmp_path_factory):
    """A seeded pool behind a real server: (base URL, admin headers, oms headers, db URL)."""
    tmp = tmp_path_factory.mktemp(request.param)
    with backend_url(request.param, tmp) as url:
        pool = Pool.open(url)
        seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 2})
        admin, oms = pool.create_key("admin"), pool.create_key("oms")
        pool.close()
        with running_server(url, log_dir=tmp) as base:
            yield base, {"Authorization": f"Bearer {admin}"}, {"X-API-Key": oms}, url


def order(order_id="o1", sku="A", qty=1, line_id="l1", **extra) -> dict:
    return {
        "order_id": order_id,
        "lines": [{"line_id": line_id, "sku": sku, "qty": qty}],
        "customer": {"lat": CUSTOMER[0], "lon": CUSTOMER[1]},
        **extra,
    }


def assert_problem(response: httpx.Response, status: int, field: str, rule: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["field"] == field, body
    assert body["request_id"] == response.headers["x-request-id"]
    if rule is not None:
        assert body["rule"] == rule, body
    return body


# --- ids --------------------------------------------------------------------------------

BAD_ID_BODIES = [
    ("/v1/route", "oms", order(sku="K00\u00001"), "lines[0].sku"),
    ("/v1/route", "oms", order(order_id="o\u00011"), "order_id"),
    ("/v1/route", "oms", order(line_id="l\t1"), "lines[0].line_id"),
    ("/v1/route", "oms", order(pickup_node="S1\u0000"), "pickup_node"),
    ("/v1/route", "oms", order(channel="web\u001b"), "channel"),
    (
        "/v1/inventory/set",
        "admin",
        {"rows": [{"node_id": "W1", "sku": "B\u0000", "on_hand": 1}]},
        "rows[0].sku",
    ),
    (
        "/v1/inventory/adjust",
        "admin",
        {"rows": [{"node_id": "W\u00001", "sku": "A", "delta_on_hand": 1}]},
        "rows[0].node_id",
    ),
    (
        "/v1/inventory/set",
        "admin",
        {"rows": [{"node_id": "W1", "sku": "A", "on_hand": 1}], "reason": "r\u0000"},
        "reason",
    ),
    (
        "/v1/nodes",
        "admin",
        {"node_id": "N\u00001", "kind": "store", "lat": 30.0, "lon": 120.0},
        "node_id",
    ),
]


def test_control_characters_in_body_ids_are_422_and_nothing_is_stored(served):
    base, admin, oms, url = served
    keys = {"admin": admin, "oms": oms}
    for path, role, body, field in BAD_ID_BODIES:
        r = httpx.post(base + path, json=body, headers=keys[role])
        rule = "text_characters" if field == "reason" else "id_characters"
        assert_problem(r, 422, field, rule)
    pool = Pool.open(url)
    try:
        with pool.db.read() as conn:
            stored = {row.sku for row in conn.execute(skus.select())}
        assert stored == {"A"}
        assert sorted(n.node_id for n in pool.list_nodes()) == ["S1", "S2", "W1"]
    finally:
        pool.close()


def test_control_characters_in_path_query_and_header_ids_are_422(served):
    base, admin, oms, _ = served
    cases = [
        (f"{base}/v1/nodes/W%001", admin, "node_id"),
        (f"{base}/v1/inventory/W1/A%00/ledger", admin, "sku"),
        (f"{base}/v1/orders/o%011/reservations", oms, "order_id"),
        (f"{base}/v1/reservations/r%00", oms, "reservation_id"),
        (f"{base}/v1/availability?sku=A&sku=B%00", oms, "sku[1]"),
    ]
    for url, headers, field in cases:
        assert_problem(httpx.get(url, headers=headers), 422, field, "id_characters")
    r = httpx.post(f"{base}/v1/route", json=order(), headers={**oms, "Idempotency-Key": "k 1"})
    assert_problem(r, 422, "Idempotency-Key", "id_characters")


# --- integers ---------------------------------------------------------------------------


def test_integer_parameters_are_bounded_to_bigint(served):
    base, admin, _oms, _ = served
    ledger = f"{base}/v1/inventory/W1/A/ledger"
    assert_problem(
        httpx.get(ledger, params={"after": 10**20}, headers=admin), 422, "after", "less_than_equal"
    )
    assert httpx.get(ledger, params={"after": 2**63 - 1}, headers=admin).status_code == 200
    assert_problem(httpx.get(ledger, params={"limit": 10**20}, headers=admin), 422, "limit")
    row = {"node_id": "W1", "sku": "A", "on_hand": 1, "expected_version": 2**63}
    r = httpx.post(f"{base}/v1/inventory/set", json={"rows": [row]}, headers=admin)
    assert_problem(r, 422, "rows[0].expected_version", "less_than_equal")


@pytest.mark.parametrize("qty", [True, "2", 1.0, 1.5])
def test_quantities_are_strict_integers(served, qty):
    base, admin, oms, _ = served
    r = httpx.post(f"{base}/v1/route", json=order(qty=qty, quote_only=True), headers=oms)
    assert_problem(r, 422, "lines[0].qty", "int_type")
    row = {"node_id": "W1", "sku": "A", "on_hand": qty}
    r = httpx.post(f"{base}/v1/inventory/set", json={"rows": [row]}, headers=admin)
    assert_problem(r, 422, "rows[0].on_hand", "int_type")


def test_hold_seconds_and_flags_are_strict(served):
    base, _admin, oms, _ = served
    r = httpx.post(f"{base}/v1/route", json=order(hold_seconds="30"), headers=oms)
    assert_problem(r, 422, "hold_seconds", "int_type")
    r = httpx.post(f"{base}/v1/route", json=order(quote_only="yes"), headers=oms)
    assert_problem(r, 422, "quote_only", "bool_type")


# --- bodies -----------------------------------------------------------------------------


def test_undecodable_bodies_are_400_naming_the_body(served):
    base, _admin, oms, _ = served
    headers = {**oms, "Content-Type": "application/json"}
    not_utf8 = b'{"order_id": "o\xff1", "lines": []}'
    r = httpx.post(f"{base}/v1/route", content=not_utf8, headers=headers)
    assert_problem(r, 400, "body", "utf8")
    deep = b"[" * 100_000 + b"]" * 100_000
    r = httpx.post(f"{base}/v1/route", content=deep, headers=headers)
    assert_problem(r, 400, "body", "json_depth")


# --- times ------------------------------------------------------------------------------


def test_returned_timestamps_are_utc_with_an_offset(served):
    base, admin, oms, _ = served
    before = datetime.now(UTC)
    body = httpx.post(
        f"{base}/v1/route", json=order(order_id="t1", hold_seconds=600), headers=oms
    ).json()
    expires = body["hold_expires_at"]
    assert expires.endswith("Z")
    held_for = (datetime.fromisoformat(expires) - before).total_seconds()
    assert 590 < held_for < 660  # a local-time or naive reading would be hours off
    (reservation,) = httpx.get(f"{base}/v1/orders/t1/reservations", headers=oms).json()[
        "reservations"
    ]
    for name in ("created_at", "expires_at"):
        assert datetime.fromisoformat(reservation[name]).utcoffset().total_seconds() == 0
    node = httpx.get(f"{base}/v1/nodes/W1", headers=admin).json()
    assert node["updated_at"].endswith("Z")
    entries = httpx.get(f"{base}/v1/inventory/W1/A/ledger", headers=admin).json()["entries"]
    assert entries and all(e["at"].endswith("Z") for e in entries)


def test_input_timestamps_need_an_offset_and_are_stored_as_utc():
    adapter = TypeAdapter(Timestamp)
    with pytest.raises(ValidationError) as error:
        adapter.validate_json('"2026-12-02T16:00:00"')
    assert error.value.errors()[0]["type"] == "timezone_aware"
    assert adapter.validate_json('"2026-12-02T18:00:00+02:00"') == datetime(2026, 12, 2, 16)
    assert adapter.validate_json('"2026-12-02T16:00:00Z"') == datetime(2026, 12, 2, 16)


# --- busy -------------------------------------------------------------------------------

# A trigger that silently skips every stock update: each routing attempt then finds
# its conditional update matched no row, exactly as when another order took the stock.
SKIP_STOCK_UPDATES = {
    "sqlite": [
        "CREATE TRIGGER skip_stock BEFORE UPDATE ON pool_balances BEGIN SELECT RAISE(IGNORE); END"
    ],
    "postgres": [
        "CREATE FUNCTION skip_stock() RETURNS trigger AS $$ BEGIN RETURN NULL; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER skip_stock BEFORE UPDATE ON pool_balances "
        "FOR EACH ROW EXECUTE FUNCTION skip_stock()",
    ],
}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_busy_503_carries_retry_after(backend, tmp_path):
    with backend_url(backend, tmp_path) as url:
        pool = Pool.open(url)
        seed_network(pool, {("S1", "A"): 2})
        oms = pool.create_key("oms")
        with running_server(url) as base:
            with pool.db.write() as conn:
                for statement in SKIP_STOCK_UPDATES[backend]:
                    conn.execute(text(statement))
            r = httpx.post(f"{base}/v1/route", json=order(), headers={"X-API-Key": oms})
        pool.close()
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert r.json()["rule"] == "route_retries"


# --- logs -------------------------------------------------------------------------------


def test_a_500_and_every_log_record_are_json_lines_with_the_request_id(tmp_path):
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    pool = Pool.open(url)
    seed_network(pool, {("S1", "A"): 2})
    admin = pool.create_key("admin")
    headers = {"Authorization": f"Bearer {admin}", "X-Request-ID": "trace-500"}
    with running_server(url, log_dir=tmp_path, args=("--log-level", "info")) as base:
        ok = httpx.get(f"{base}/v1/nodes", headers={**headers, "X-Request-ID": "trace-200"})
        with pool.db.write() as conn:  # break the database under the running server
            conn.execute(text("DROP TABLE pool_ledger"))
        feed = {"rows": [{"node_id": "S1", "sku": "A", "delta_on_hand": 1}]}
        failed = httpx.post(f"{base}/v1/inventory/adjust", json=feed, headers=headers)
    pool.close()
    assert ok.status_code == 200
    assert failed.status_code == 500 and failed.headers["content-type"] == PROBLEM
    assert failed.json()["request_id"] == failed.headers["x-request-id"] == "trace-500"
    stdout = (tmp_path / "stdout.txt").read_text()
    assert stdout.startswith(f"omniroute: listening on {base} (1 worker)")
    records = [json.loads(line) for line in (tmp_path / "stderr.txt").read_text().splitlines()]
    (error,) = [r for r in records if r["level"] == "ERROR"]
    assert error["request_id"] == "trace-500" and "pool_ledger" in error["exc_info"]
    assert error["exc_info"].startswith("Traceback")
    access = {r["request_id"]: r for r in records if r["logger"] == "omniroute.access"}
    assert access["trace-200"]["status"] == 200 and access["trace-500"]["status"] == 500
    # uvicorn's own records (start-up, shutdown) are JSON too, outside any request.
    assert any(r["logger"].startswith("uvicorn") and r["request_id"] is None for r in records)


# --- metrics over workers ---------------------------------------------------------------


def _value(exposition: str, sample: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_add_up_over_two_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    pool = Pool.open(url)
    seed_network(pool, {("S1", "A"): 2})
    oms = pool.create_key("oms")
    pool.close()
    headers = {"X-API-Key": oms}
    sent = 24
    with running_server(url, workers=2, log_dir=tmp_path) as base:
        for i in range(sent):  # a new connection each time, so both workers answer
            r = httpx.post(
                f"{base}/v1/route", json=order(f"q{i}", quote_only=True), headers=headers
            )
            assert r.status_code == 200
        readings = [httpx.get(f"{base}/metrics", headers=headers).text for _ in range(6)]
    records = [json.loads(line) for line in (tmp_path / "stderr.txt").read_text().splitlines()]
    routed_by = {r["process"] for r in records if r.get("path") == "/v1/route"}
    assert len(routed_by) == 2, "one worker answered every request; the sum proves nothing"
    for exposition in readings:
        assert _value(exposition, 'omniroute_routes_total{outcome="quote"}') == sent
        count = 'omniroute_http_request_duration_seconds_count{method="POST",route="/v1/route",status="200"}'
        assert _value(exposition, count) == sent


# --- serve ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "99999", "error: --port: must be 1-65535, got 99999"),
        ("--port", "0", "error: --port: must be 1-65535, got 0"),
        ("--workers", "0", "error: --workers: must be 1 or more, got 0"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(option, value, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, "serve", option, value],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "OMNIROUTE_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == message


# --- schemathesis -----------------------------------------------------------------------


def run_schemathesis(
    base: str,
    api_key: str,
    examples: int,
    report_dir: Path,
    phases: str = "examples,coverage,fuzzing,stateful",
) -> dict:
    """Fuzz every operation of the OpenAPI spec with an admin key; only a 5xx fails.
    Returns schemathesis' JSON report."""
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json"]
    command += ["-H", f"Authorization: Bearer {api_key}", "--max-examples", str(examples)]
    command += ["--checks", "not_a_server_error", "--phases", phases]
    command += ["--generation-allow-x00", "true"]  # off by default; NUL broke PostgreSQL
    command += ["--workers", "1", "--seed", "6"]
    command += ["--report", "json", "--report-dir", str(report_dir)]
    report_dir.mkdir(parents=True, exist_ok=True)
    # Run beside the report: schemathesis keeps a crash cache in its working folder.
    subprocess.run(
        command, cwd=report_dir, capture_output=True, text=True, timeout=600, check=False
    )
    (report,) = report_dir.glob("json-*.json")
    return json.loads(report.read_text())


def seed_for_fuzzing(pool: Pool) -> str:
    """The hand network plus the ids a fuzzer tries first ("0") and the spec's example
    SKU, so that generated orders reach routing and reservations, not only 404 or 422."""
    seed_network(pool, {})
    pool.create_node(replace(NETWORK[0], node_id="0"))
    stock = [(n, s) for n in ("W1", "S1", "0") for s in ("0", "A", "SKU-1001")]
    pool.set_stock([SetRow(n, s, 1000) for n, s in stock], actor="test")
    return pool.create_key("admin")


# The suite's modest run: the boundary cases of every field (coverage phase) and five
# random cases per operation. OMNIROUTE_FUZZ_EXAMPLES=150 runs the long one of
# benchmarks/SERVICE.md (every phase, 150 per operation).
FUZZ_EXAMPLES = int(os.environ.get("OMNIROUTE_FUZZ_EXAMPLES", "5"))
FUZZ_PHASES = (
    "examples,coverage,fuzzing,stateful"
    if "OMNIROUTE_FUZZ_EXAMPLES" in os.environ
    else "examples,coverage,fuzzing"
)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_schemathesis_finds_no_server_error(backend, tmp_path):
    with backend_url(backend, tmp_path) as url:
        pool = Pool.open(url)
        admin = seed_for_fuzzing(pool)
        pool.close()
        with running_server(url) as base:
            report = run_schemathesis(base, admin, FUZZ_EXAMPLES, tmp_path / "report", FUZZ_PHASES)
    assert report["complete"] and report["operations"]["tested"] >= 17, report["operations"]
    assert report["test_cases"]["with_failures"] == 0, report["failures"]
    assert report["exit_code"] == 0 and report["test_cases"]["generated"] > 500
