"""Addresses through a real uvicorn server on loopback (SQLite and PostgreSQL), with the
geocoder a Nominatim-compatible stub on loopback: an order routes to where its address
is, the answer says how it was placed, the database cache outlives the geocoder, and an
address that cannot be placed is problem+json naming the field, with nothing reserved."""

from __future__ import annotations

import httpx
import pytest

from router.geocode import AddressGeocoder, GeocoderSettings
from router.pool import Pool
from router.pool.geocache import PoolGeocodeCache
from tests.nominatim_stub import nominatim
from tests.service.conftest import CUSTOMER, running_server, seed_network
from tests.service.test_campaigns_api import assert_problem, layers

HOME = "88 Middle Henan Road, Huangpu, Shanghai"
NEAR_S2 = "1 Harbour Road, Nantong"  # 120 km north of C, by S2 (reach 50 km)
S2_AT = (32.3097, 121.4737)


def address_order(order_id, address, **extra):
    return {
        "order_id": order_id,
        "lines": [{"line_id": "l1", "sku": "A", "qty": 1}],
        "address": address,
        **extra,
    }


@pytest.fixture
def served(db_url, monkeypatch):
    pool = Pool.open(db_url)
    seed_network(pool, {("W1", "A"): 5, ("S1", "A"): 5, ("S2", "A"): 5})
    admin, oms = pool.create_key("admin"), pool.create_key("oms")
    pool.close()
    with nominatim({HOME: CUSTOMER, NEAR_S2: S2_AT}) as stub:
        monkeypatch.setenv("OMNIROUTE_GEOCODER_URL", stub.url)
        monkeypatch.setenv("OMNIROUTE_GEOCODER_MIN_DELAY_SECONDS", "0")
        with (
            running_server(db_url) as base,
            # The first centroid builds the city index (seconds on a busy machine).
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=60
            ) as a,
            httpx.Client(base_url=base, headers={"X-API-Key": oms}, timeout=60) as o,
        ):
            yield a, o, stub


def test_an_address_routes_like_its_coordinates(served):
    _admin, oms, stub = served
    near = oms.post("/v1/route", json=address_order("o1", HOME))
    assert near.status_code == 200, near.text
    body = near.json()
    assert body["located"] == {
        "lat": CUSTOMER[0],
        "lon": CUSTOMER[1],
        "source": "geocoder",
        "label": None,
    }
    assert body["lines"][0]["allocations"][0]["node_id"] == "S1"  # as for C's coordinates
    far = oms.post("/v1/route", json=address_order("o2", NEAR_S2)).json()
    assert far["lines"][0]["allocations"][0]["node_id"] == "S2"
    again = oms.post("/v1/route", json=address_order("o3", HOME, quote_only=True)).json()
    assert again["located"]["source"] == "cache"
    assert len(stub.asked) == 2


def test_a_city_named_in_an_unknown_address_gives_its_centroid(served):
    _admin, oms, _stub = served
    body = oms.post("/v1/route", json=address_order("o1", "9 Unknown St, Shanghai, China")).json()
    assert (body["located"]["source"], body["located"]["label"]) == (
        "city_centroid",
        "Shanghai, CN",
    )
    assert body["status"] == "filled"


def test_bad_addresses_are_problems_naming_the_field_and_reserve_nothing(served):
    admin, oms, _stub = served
    assert_problem(
        oms.post("/v1/route", json=address_order("o1", "over the rainbow")),
        422,
        "address",
        "address_found",
    )
    both = address_order("o1", HOME, customer={"lat": CUSTOMER[0], "lon": CUSTOMER[1]})
    assert_problem(oms.post("/v1/route", json=both), 422, "address", "one_location")
    assert_problem(
        oms.post("/v1/route", json=address_order("o1", "")), 422, "address", "string_too_short"
    )
    assert_problem(
        oms.post("/v1/orders", json=address_order("o1", "over the rainbow")),
        422,
        "address",
        "address_found",
    )
    assert layers(admin, "S1")["reserved"] == 0
    assert oms.get("/v1/orders/o1/reservations").status_code == 404


def test_a_queued_order_is_placed_when_it_is_queued(served):
    _admin, oms, stub = served
    queued = oms.post("/v1/orders", json=address_order("q1", NEAR_S2))
    assert queued.status_code == 202, queued.text
    assert [q for _, q in stub.asked] == [" ".join(NEAR_S2.split()).casefold()]


def test_a_return_may_start_at_an_address(served):
    _admin, oms, _stub = served
    oms.post("/v1/route", json=address_order("o1", HOME))
    oms.post("/v1/orders/o1/commit")
    ret = oms.post(
        "/v1/returns", json={"order_id": "o1", "line_id": "l1", "qty": 1, "address": NEAR_S2}
    )
    assert ret.status_code == 201, ret.text
    assert ret.json()["node_id"] == "S2"  # the store nearest the address, not the order's S1


def test_the_cache_is_in_the_database_and_outlives_the_geocoder(db_url, clock):
    pool = Pool.open(db_url, clock=clock)
    try:
        with nominatim({HOME: CUSTOMER}) as stub:
            first = AddressGeocoder(
                GeocoderSettings(stub.url, min_delay_seconds=0), PoolGeocodeCache(pool.db, clock)
            ).place(HOME)
        assert first.source == "geocoder"
        with nominatim({}) as empty:  # a new process, a geocoder that knows nothing
            later = AddressGeocoder(
                GeocoderSettings(empty.url, min_delay_seconds=0), PoolGeocodeCache(pool.db, clock)
            ).place(HOME)
        assert (later.lat, later.lon, later.source) == (*CUSTOMER, "cache")
        assert empty.asked == []
    finally:
        pool.close()
