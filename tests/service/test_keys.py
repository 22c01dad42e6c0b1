"""API keys: list, revoke and expiry, in the pool (both backends), through the
``omniroute keys`` commands, and against a real server (a revoked or expired key
gets 401)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import typer
from typer.testing import CliRunner

from api.commands import expiry
from router.pool import Pool
from router.pool.errors import InvalidInput, NotFound
from tests.service.conftest import running_server

# --- the pool, on SQLite and PostgreSQL ------------------------------------------------------


def test_a_key_expires_even_while_cached(pool, clock):
    key = pool.create_key("oms", expires_at=clock.now + timedelta(hours=1))
    assert pool.authenticate(key).role == "oms"  # now cached for key_cache_ttl
    clock.advance(3599)
    assert pool.cached_principal(key).role == "oms"
    clock.advance(1)  # expires_at itself: no longer valid
    assert pool.cached_principal(key) is None
    assert pool.authenticate(key) is None


def test_a_key_without_expiry_lasts(pool, clock):
    key = pool.create_key("admin")
    clock.advance(10 * 365 * 86400)
    assert pool.authenticate(key).role == "admin"


def test_an_expiry_in_the_past_is_refused(pool, clock):
    with pytest.raises(InvalidInput) as info:
        pool.create_key("oms", expires_at=clock.now)
    assert info.value.field == "expires_at"
    assert pool.list_keys() == []


def test_revoke_takes_effect_at_once_and_keeps_its_first_time(pool, clock):
    key = pool.create_key("oms", label="shop 7")
    assert pool.authenticate(key) is not None
    (info,) = pool.list_keys()
    pool.revoke_key(info.key_id)
    assert pool.authenticate(key) is None
    clock.advance(60)
    pool.revoke_key(info.key_id)  # again: no error, same time
    (after,) = pool.list_keys()
    assert after.revoked_at == clock.now - timedelta(seconds=60)
    with pytest.raises(NotFound) as missing:
        pool.revoke_key("nope")
    assert missing.value.field == "key_id"


def test_list_shows_metadata_never_the_secret(pool, clock):
    first = pool.create_key("oms", label="a")
    clock.advance(1)
    pool.create_key("admin", expires_at=clock.now + timedelta(days=30))
    infos = pool.list_keys()
    assert [(k.role, k.label, k.created_at) for k in infos] == [
        ("oms", "a", clock.now - timedelta(seconds=1)),
        ("admin", None, clock.now),
    ]
    assert infos[1].expires_at == clock.now + timedelta(days=30)
    assert first.split("_")[1] == infos[0].key_id
    assert all(first.split("_", 2)[2] not in repr(k) for k in infos)


# --- the expiry options -----------------------------------------------------------------------

NOW = datetime(2026, 1, 5, 9, 0, 0)


@pytest.mark.parametrize(
    ("expires_in", "expires_at", "expected"),
    [
        ("30d", None, NOW + timedelta(days=30)),
        ("12h", None, NOW + timedelta(hours=12)),
        ("90m", None, NOW + timedelta(minutes=90)),
        ("2w", None, NOW + timedelta(weeks=2)),
        (None, "2026-01-31T18:00:00+08:00", datetime(2026, 1, 31, 10, 0, 0)),
        (None, "2026-01-31T10:00:00Z", datetime(2026, 1, 31, 10, 0, 0)),
        (None, None, None),
    ],
)
def test_expiry_options(expires_in, expires_at, expected):
    assert expiry(expires_in, expires_at, NOW) == expected


@pytest.mark.parametrize(
    ("expires_in", "expires_at", "message"),
    [
        ("0d", None, "--expires-in"),
        ("30", None, "--expires-in"),
        ("-1d", None, "--expires-in"),
        ("1y", None, "--expires-in"),
        ("99999w", None, "at most 100 years"),
        (None, "2026-01-31T18:00:00", "with an offset"),
        (None, "tomorrow", "RFC 3339"),
        ("1d", "2026-01-31T18:00:00Z", "not both"),
    ],
)
def test_bad_expiry_options(expires_in, expires_at, message):
    with pytest.raises(typer.BadParameter, match=message):
        expiry(expires_in, expires_at, NOW)


# --- the commands -----------------------------------------------------------------------------


def test_keys_create_list_revoke(cli, db_url):
    run = CliRunner().invoke
    url = ["--database-url", db_url]
    created = run(
        cli, ["keys", "create", "--role", "oms", "--label", "shop 7", "--expires-in", "30d", *url]
    )
    assert created.exit_code == 0, created.output
    key = created.output.strip()
    key_id = key.split("_")[1]

    listed = run(cli, ["keys", "list", *url])
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["KEY_ID", "ROLE", "CREATED", "EXPIRES", "REVOKED", "LABEL"]
    cells = row.split()
    assert cells[:2] == [key_id, "oms"] and cells[4] == "-" and row.endswith("shop 7")
    created_at = datetime.fromisoformat(cells[2])
    expires_at = datetime.fromisoformat(cells[3])
    assert created_at.tzinfo == UTC and expires_at - created_at == pytest.approx(
        timedelta(days=30), abs=timedelta(seconds=5)
    )
    assert key.split("_", 2)[2] not in listed.output

    revoked = run(cli, ["keys", "revoke", key_id, *url])
    assert revoked.exit_code == 0 and revoked.output.strip() == f"revoked {key_id}"
    assert run(cli, ["keys", "list", *url]).output.splitlines()[1].split()[4] != "-"
    pool = Pool.open(db_url)
    try:
        assert pool.authenticate(key) is None
    finally:
        pool.close()

    unknown = run(cli, ["keys", "revoke", "nope", *url])
    assert unknown.exit_code == 2 and "'nope' does not exist" in unknown.output


def test_keys_create_refuses_a_past_expiry(cli, sqlite_url):
    result = CliRunner().invoke(
        cli, ["keys", "create", "--role", "oms", "--expires-at", "2020-01-01T00:00:00Z",
              "--database-url", sqlite_url],
    )  # fmt: skip
    assert result.exit_code == 2 and "--expires-at" in result.output


# --- a real server --------------------------------------------------------------------------


@pytest.mark.slow  # starts a server
def test_a_revoked_or_expired_key_gets_401_from_the_server(sqlite_url):
    pool = Pool.open(sqlite_url)
    try:
        lasting = pool.create_key("admin")
        revoked = pool.create_key("admin")
        pool.revoke_key(revoked.split("_")[1])
        with running_server(sqlite_url) as base:

            def status(key: str) -> int:
                headers = {"Authorization": f"Bearer {key}"}
                return httpx.get(f"{base}/v1/nodes", headers=headers, timeout=10).status_code

            assert status(lasting) == 200
            assert status(revoked) == 401
            expires_at = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=3)
            short = pool.create_key("admin", expires_at=expires_at)
            assert status(short) == 200  # the server caches it from here on, for 30 s
            left = expires_at - datetime.now(UTC).replace(tzinfo=None)
            time.sleep(max(0.0, left.total_seconds()) + 0.2)
            assert status(short) == 401
            assert status(lasting) == 200
    finally:
        pool.close()
