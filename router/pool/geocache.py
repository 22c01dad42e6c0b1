"""The geocoder's persistent cache in the pool's database (``pool_geocode_cache``):
shared by every process of the service, kept across restarts."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from router.pool.db import Database
from router.pool.schema import geocode_cache


class _Clock(Protocol):
    def __call__(self) -> datetime: ...


class PoolGeocodeCache:
    """``router.geocode.GeocodeCache`` on the pool's database."""

    def __init__(self, database: Database, clock: _Clock) -> None:
        self.db = database
        self.clock = clock

    def get(self, address: str) -> tuple[float, float] | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(geocode_cache.c.lat, geocode_cache.c.lon).where(
                    geocode_cache.c.address == address
                )
            ).first()
        return None if row is None else (row.lat, row.lon)

    def put(self, address: str, lat: float, lon: float) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(geocode_cache).values(
                        address=address, lat=lat, lon=lon, created_at=self.clock()
                    )
                )
        except IntegrityError:
            pass  # another request placed the same address a moment ago
