"""Where an order or a return starts: its coordinates, or its address placed by the
geocoder (``router.geocode``). Called by the handlers before the pool sees the request."""

from __future__ import annotations

from api.schemas import Customer
from router.geocode import AddressGeocoder, Place
from router.pool.errors import InvalidInput


def place_of(
    customer: Customer | None, address: str | None, geocoder: AddressGeocoder
) -> Place | None:
    """The place of ``address`` (None without one); an address next to coordinates is
    refused, so that no request says two things about where it goes."""
    if address is None:
        return None
    if customer is not None:
        raise InvalidInput(
            "give the customer's lat/lon or an address, not both",
            field="address",
            rule="one_location",
        )
    return geocoder.place(address, field="address")


def coordinates(place: Place | None) -> tuple[float, float] | None:
    return None if place is None else (place.lat, place.lon)
