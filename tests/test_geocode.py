"""Addresses: the user's geocoder (a Nominatim-compatible stub on loopback, never the
internet) behind geopy's rate limiter and a persistent cache, the offline city
centroid, and the error naming the field when nothing can place an address."""

from __future__ import annotations

import pytest

from benchmarks.load import free_port
from router.geocode import (
    AddressGeocoder,
    GeocoderSettings,
    city_centroid,
    normalise_address,
)
from router.pool.errors import InvalidInput
from tests.nominatim_stub import nominatim

HOME = "88 Middle Henan Road, Huangpu, Shanghai"
HOME_AT = (31.2355, 121.4861)


class DictCache:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float]] = {}

    def get(self, address):
        return self.rows.get(address)

    def put(self, address, lat, lon):
        self.rows[address] = (lat, lon)


def geocoder(url: str | None, cache=None, delay: float = 0.0) -> AddressGeocoder:
    return AddressGeocoder(GeocoderSettings(url, min_delay_seconds=delay), cache)


def test_the_geocoder_places_the_address_and_the_cache_answers_the_next_time():
    cache = DictCache()
    with nominatim({HOME: HOME_AT}) as stub:
        first = geocoder(stub.url, cache).place(HOME)
        again = geocoder(stub.url, cache).place("  88 middle henan road,  Huangpu, SHANGHAI ")
    assert (first.lat, first.lon, first.source) == (*HOME_AT, "geocoder")
    assert (again.lat, again.lon, again.source) == (*HOME_AT, "cache")
    assert [q for _, q in stub.asked] == [normalise_address(HOME)]


def test_nothing_found_falls_back_to_the_city_centroid_and_is_not_cached():
    cache = DictCache()
    with nominatim({}) as stub:
        place = geocoder(stub.url, cache).place("1 Nowhere Lane, Shanghai, China")
    assert (place.source, place.label) == ("city_centroid", "Shanghai, CN")
    assert len(stub.asked) == 1 and cache.rows == {}


def test_an_unreachable_geocoder_falls_back_to_the_city_centroid():
    nobody = f"http://127.0.0.1:{free_port()}"
    place = geocoder(nobody).place("1 Rue de Rivoli, 75001 Paris, France")
    assert (place.source, place.label) == ("city_centroid", "Paris, FR")


def test_an_address_nothing_can_place_is_an_error_naming_the_field():
    with pytest.raises(InvalidInput) as raised:
        geocoder(None).place("somewhere over the rainbow", field="address")
    assert (raised.value.field, raised.value.rule) == ("address", "address_found")
    assert "OMNIROUTE_GEOCODER_URL" in raised.value.message
    with nominatim({}) as stub, pytest.raises(InvalidInput) as raised:
        geocoder(stub.url).place("somewhere over the rainbow", field="customer_address")
    assert raised.value.field == "customer_address"


def test_the_rate_limiter_spaces_requests_to_the_geocoder():
    with nominatim({HOME: HOME_AT, "2 Elsewhere, Shanghai": (31.0, 121.0)}) as stub:
        placer = geocoder(stub.url, delay=0.3)
        placer.place(HOME)
        placer.place("2 Elsewhere, Shanghai")
    (first, _), (second, _) = stub.asked
    assert second - first >= 0.3 - 0.01  # geopy's clock and ours differ by a hair


def test_without_a_limit_nothing_waits():
    with nominatim({HOME: HOME_AT}) as stub:
        placer = geocoder(stub.url, delay=0.0)
        placer.place(HOME)
        placer.place("2 Elsewhere, Shanghai")  # falls back; the geocoder was asked twice
    assert len(stub.asked) == 2


def test_city_centroid_by_hand():
    # Shanghai's centroid in GeoNames; the house number and the street are ignored.
    shanghai = city_centroid("88 Nanjing Road, Shanghai, China")
    assert (shanghai.lat, shanghai.lon) == pytest.approx((31.22222, 121.45806))
    assert city_centroid("1 Rue de Rivoli, 75001 Paris").label == "Paris, FR"
    # A named country binds: Paris, Texas, not the bigger Paris.
    assert city_centroid("Paris, Texas, USA").label == "Paris, US"
    assert city_centroid("no city named here") is None


def test_settings_from_the_environment():
    assert GeocoderSettings.from_env({}).url is None
    settings = GeocoderSettings.from_env(
        {
            "OMNIROUTE_GEOCODER_URL": "https://geo.example.org/nominatim",
            "OMNIROUTE_GEOCODER_MIN_DELAY_SECONDS": "0.5",
        }
    )
    assert (settings.url, settings.min_delay_seconds) == ("https://geo.example.org/nominatim", 0.5)
    with pytest.raises(ValueError, match="OMNIROUTE_GEOCODER_URL"):
        GeocoderSettings.from_env({"OMNIROUTE_GEOCODER_URL": "geo.example.org"})
    with pytest.raises(ValueError, match="MIN_DELAY"):
        GeocoderSettings.from_env({"OMNIROUTE_GEOCODER_MIN_DELAY_SECONDS": "-1"})
