"""Fulfilment modes: how a shipment (order, node) reaches the customer, and its cost.

A profile (docs/profiles.md, "Fulfilment modes") may set three fields on top of the
base format, each with one function here that works on a block of B orders over N
nodes, so the batch (``router.problem.build_problem``, waves) and the single-order
route (``router.pool.routing``) build the same candidates and costs:

- :func:`format_shipping`: ship from a warehouse or a store at the format's cost
  (``ship_fixed + ship_per_km * km``), or pick up at the order's ``pickup_node``
  (no shipping); the modes ``warehouse_ship``, ``store_ship``, ``pickup``;
- :func:`pickup_transfer`: a pickup order's lines may also come from another node,
  moved to the pickup store at ``per_shipment + per_km * km(node, pickup store)``
  (mode ``pickup_transfer``), with a delay counted against a promised date
  (:func:`transfer_promise`);
- :func:`same_city`: a node of the listed kinds within ``radius_km`` of the customer
  may deliver by same-city courier at ``cost_per_shipment + per_km * km`` instead of
  the format's cost (mode ``same_city``; the cheaper, or always when preferred);
- :func:`endless_aisle`: an order taken in a store (``origin_store``) and shipped
  from elsewhere: the origin store may be excluded, or preferred by a cost on every
  other node.

Without these fields the cost and the candidates are exactly the format's. The
checker (``router.checker``) recomputes the same modes with :func:`shipment_mode`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from router.geo import haversine_km
from router.profile_fields import ProfileError, json_object, number

MODES = ("warehouse_ship", "store_ship", "pickup", "pickup_transfer", "same_city")
"""Mode names, indexed by the codes of :attr:`ShipmentModes.mode`."""
WAREHOUSE_SHIP, STORE_SHIP, PICKUP, PICKUP_TRANSFER, SAME_CITY = range(len(MODES))
FIELDS = ("pickup_transfer", "same_city", "endless_aisle")
_KINDS = ("warehouse", "store")


@dataclass(frozen=True)
class Modes:
    """One profile's fulfilment modes, compiled. The defaults are the format's."""

    transfer: bool = False
    transfer_per_shipment: float = 0.0
    transfer_per_km: float = 0.0
    transfer_delay_days: float = 0.0
    transfer_max_km: float = math.inf
    same_city_radius_km: float = -math.inf
    """``-inf``: no same-city delivery."""
    same_city_per_shipment: float = 0.0
    same_city_per_km: float = 0.0
    same_city_kinds: tuple[str, ...] = ("store",)
    same_city_days: float = math.nan
    """Delivery days of a same-city shipment for a promise (NaN: the bands' days)."""
    same_city_preferred: bool = False
    """Use the courier whenever it may, not only when it is cheaper."""
    exclude_origin: bool = False
    origin_preference: float = 0.0
    """Cost added to a shipment from any node other than the order's origin store."""

    @property
    def same_city(self) -> bool:
        return self.same_city_radius_km >= 0


# --- the profile fields ---------------------------------------------------------------------


def check_fields(doc: dict[str, Any], path) -> None:
    """Validate the mode fields of a profile document (:class:`ProfileError` if broken)."""
    if "pickup_transfer" in doc:
        raw = json_object(doc["pickup_transfer"], path("pickup_transfer"))
        _known(
            raw,
            ("allowed", "per_shipment", "per_km", "delay_days", "max_km"),
            path("pickup_transfer"),
        )
        if "allowed" in raw and not isinstance(raw["allowed"], bool):
            raise ProfileError(
                path("pickup_transfer", "allowed"),
                f"must be true or false (got {raw['allowed']!r})",
            )
        for key in ("per_shipment", "per_km"):
            if key in raw:
                number(raw[key], path("pickup_transfer", key))
        if "delay_days" in raw:
            number(raw["delay_days"], path("pickup_transfer", "delay_days"), integer=True)
        if raw.get("max_km") is not None:
            number(raw["max_km"], path("pickup_transfer", "max_km"))
    if "same_city" in doc:
        raw = json_object(doc["same_city"], path("same_city"))
        _known(
            raw,
            ("radius_km", "cost_per_shipment", "per_km", "node_kinds", "delivery_days", "prefer"),
            path("same_city"),
        )
        if "radius_km" not in raw:
            raise ProfileError(path("same_city", "radius_km"), "required")
        for key in ("radius_km", "cost_per_shipment", "per_km"):
            if key in raw:
                number(raw[key], path("same_city", key))
        if raw.get("delivery_days") is not None:
            number(raw["delivery_days"], path("same_city", "delivery_days"), integer=True)
        kinds = raw.get("node_kinds", ["store"])
        if not isinstance(kinds, list) or not kinds:
            raise ProfileError(
                path("same_city", "node_kinds"), "must be a non-empty list of node kinds"
            )
        for i, kind in enumerate(kinds):
            if kind not in _KINDS:
                raise ProfileError(
                    path("same_city", f"node_kinds[{i}]"),
                    f"must be one of warehouse, store (got {kind!r})",
                )
        if raw.get("prefer", "cheaper") not in ("cheaper", "same_city"):
            raise ProfileError(
                path("same_city", "prefer"),
                f"must be 'cheaper' or 'same_city' (got {raw['prefer']!r})",
            )
    if "endless_aisle" in doc:
        raw = json_object(doc["endless_aisle"], path("endless_aisle"))
        _known(raw, ("exclude_origin", "origin_preference"), path("endless_aisle"))
        if "exclude_origin" in raw and not isinstance(raw["exclude_origin"], bool):
            raise ProfileError(
                path("endless_aisle", "exclude_origin"),
                f"must be true or false (got {raw['exclude_origin']!r})",
            )
        if "origin_preference" in raw:
            number(raw["origin_preference"], path("endless_aisle", "origin_preference"))


def _known(raw: dict, keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ProfileError(f"{where}.{unknown[0]}", f"unknown field (expected {', '.join(keys)})")


def compile_modes(doc: dict[str, Any]) -> Modes:
    """The mode fields of a validated profile document as :class:`Modes`."""
    transfer = doc.get("pickup_transfer")
    allowed = transfer is not None and bool(transfer.get("allowed", True))
    transfer = transfer or {}
    city = doc.get("same_city")
    aisle = doc.get("endless_aisle") or {}
    max_km = transfer.get("max_km")
    days = None if city is None else city.get("delivery_days")
    return Modes(
        transfer=allowed,
        transfer_per_shipment=float(transfer.get("per_shipment", 0.0)),
        transfer_per_km=float(transfer.get("per_km", 0.0)),
        transfer_delay_days=float(transfer.get("delay_days", 0)),
        transfer_max_km=math.inf if max_km is None else float(max_km),
        same_city_radius_km=-math.inf if city is None else float(city["radius_km"]),
        same_city_per_shipment=0.0 if city is None else float(city.get("cost_per_shipment", 0.0)),
        same_city_per_km=0.0 if city is None else float(city.get("per_km", 0.0)),
        same_city_kinds=("store",) if city is None else tuple(city.get("node_kinds", ["store"])),
        same_city_days=math.nan if days is None else float(days),
        same_city_preferred=city is not None and city.get("prefer") == "same_city",
        exclude_origin=bool(aisle.get("exclude_origin", False)),
        origin_preference=float(aisle.get("origin_preference", 0.0)),
    )


# --- the modes over a block of orders ---------------------------------------------------------


@dataclass(frozen=True)
class NodeArrays:
    """What the modes read of the N nodes."""

    lat: np.ndarray
    lon: np.ndarray
    is_store: np.ndarray
    ship_fixed: np.ndarray
    ship_per_km: np.ndarray


@dataclass(frozen=True)
class ShipmentModes:
    """A block of B orders over N nodes: ``allowed`` the nodes each order may use by
    location and mode, ``ship_cost`` the shipping of the pair's mode, ``mode`` its code
    (:data:`MODES`), ``extra`` a profile cost of the pair (the endless aisle's
    preference for the origin store), ``fixed_days`` a pair's delivery days for a
    promise when its mode sets them (NaN: the profile's bands)."""

    allowed: np.ndarray
    ship_cost: np.ndarray
    mode: np.ndarray
    extra: np.ndarray
    fixed_days: np.ndarray


def format_shipping(
    km: np.ndarray, pickup: np.ndarray, nodes: NodeArrays
) -> tuple[np.ndarray, np.ndarray]:
    """The format's shipping of every pair and its mode: ``ship_fixed + ship_per_km *
    km`` from a warehouse or a store, nothing for a pickup order."""
    is_pickup = (pickup >= 0)[:, None]
    cost = np.where(is_pickup, 0.0, nodes.ship_fixed[None, :] + nodes.ship_per_km[None, :] * km)
    ship = np.where(nodes.is_store, STORE_SHIP, WAREHOUSE_SHIP)[None, :]
    mode = np.where(is_pickup, PICKUP, ship).astype(np.int8)
    return cost, mode


def pickup_transfer(
    modes: Modes,
    allowed: np.ndarray,
    cost: np.ndarray,
    mode: np.ndarray,
    pickup: np.ndarray,
    nodes: NodeArrays,
    eligible: np.ndarray | None,
) -> None:
    """Pick up with transfer: a pickup order may also use any other node within
    ``max_km`` of its pickup store, moved there at ``per_shipment + per_km * km``.

    Only when the pickup store itself may serve the order (``eligible``: the
    profile's node rules). Updates ``allowed``, ``cost`` and ``mode`` in place (the
    caller's block copies).
    """
    if not modes.transfer:
        return
    rows = np.flatnonzero(pickup >= 0)
    if eligible is not None:
        rows = rows[eligible[pickup[rows]]]
    if rows.size == 0:
        return
    store = pickup[rows]
    km = haversine_km(
        nodes.lat[store][:, None], nodes.lon[store][:, None], nodes.lat[None, :], nodes.lon[None, :]
    )
    source = km <= modes.transfer_max_km
    source[np.arange(rows.size), store] = False  # the pickup store is a plain pickup
    block = allowed[rows] | source
    allowed[rows] = block
    cost[rows] = np.where(
        source, modes.transfer_per_shipment + modes.transfer_per_km * km, cost[rows]
    )
    mode[rows] = np.where(source, PICKUP_TRANSFER, mode[rows])


def same_city(
    modes: Modes,
    cost: np.ndarray,
    mode: np.ndarray,
    fixed_days: np.ndarray,
    km: np.ndarray,
    pickup: np.ndarray,
    nodes: NodeArrays,
) -> None:
    """Same-city delivery: a node of ``node_kinds`` within ``radius_km`` of a delivery
    order's customer ships by courier at ``cost_per_shipment + per_km * km`` when that
    is cheaper than the format's cost (or always, with ``prefer: same_city``)."""
    if not modes.same_city:
        return
    kind_ok = np.where(
        nodes.is_store, "store" in modes.same_city_kinds, "warehouse" in modes.same_city_kinds
    )
    courier = (
        (pickup < 0)[:, None]
        & kind_ok[None, :]
        & (np.nan_to_num(km, nan=np.inf) <= modes.same_city_radius_km)
    )
    city_cost = modes.same_city_per_shipment + modes.same_city_per_km * np.nan_to_num(km)
    use = courier & (True if modes.same_city_preferred else city_cost < cost)
    cost[...] = np.where(use, city_cost, cost)
    mode[...] = np.where(use, SAME_CITY, mode)
    fixed_days[...] = np.where(use, modes.same_city_days, fixed_days)


def endless_aisle(modes: Modes, allowed: np.ndarray, extra: np.ndarray, origin: np.ndarray) -> None:
    """An order taken in a store (``origin`` >= 0) and shipped from elsewhere: with
    ``exclude_origin`` its origin store may not ship it (the order was taken because the
    store lacks the goods); ``origin_preference`` is added to every other node."""
    rows = np.flatnonzero(origin >= 0)
    if rows.size == 0:
        return
    if modes.exclude_origin:
        allowed[rows, origin[rows]] = False
    if modes.origin_preference > 0:
        extra[rows] = modes.origin_preference
        extra[rows, origin[rows]] = 0.0


def shipment_modes(
    modes: Modes | None,
    allowed: np.ndarray,
    km: np.ndarray,
    pickup: np.ndarray,
    origin: np.ndarray | None,
    nodes: NodeArrays,
    eligible: np.ndarray | None = None,
) -> ShipmentModes:
    """Every mode over a block of B orders and N nodes, in one place for both paths.

    ``allowed`` (B, N): the format's reach and pickup rules; ``km`` (B, N): customer to
    node; ``pickup`` (B,): the pickup node's column (-1: delivery); ``origin`` (B,): the
    origin store's column (-1: none); ``eligible`` (N,): the profile's node rules.
    """
    modes = modes or Modes()
    allowed = allowed.copy()
    cost, mode = format_shipping(km, pickup, nodes)
    extra = np.zeros(allowed.shape)
    fixed_days = np.full(allowed.shape, np.nan)
    pickup_transfer(modes, allowed, cost, mode, pickup, nodes, eligible)
    same_city(modes, cost, mode, fixed_days, km, pickup, nodes)
    if origin is not None:
        endless_aisle(modes, allowed, extra, origin)
    return ShipmentModes(allowed, cost, mode, extra, fixed_days)


def transfer_promise(
    modes: Modes,
    allowed: np.ndarray,
    mode: np.ndarray,
    holds: np.ndarray,
    days_left: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The promise rule of a pickup order with transfers: the pickup store has the
    goods ready at once, a transfer after ``delay_days``. If an allowed node holding
    any of the order's SKUs meets the promised date, the order uses only nodes that
    meet it; otherwise it is routed without the promise and flagged (``late``)."""
    late = np.zeros(allowed.shape[0], dtype=bool)
    transfer = mode == PICKUP_TRANSFER
    promised = np.isfinite(days_left) & transfer.any(axis=1)
    if not modes.transfer or not promised.any():
        return allowed, late
    meets = ~transfer | (modes.transfer_delay_days <= days_left[:, None])
    usable = allowed & holds
    can_meet = (usable & meets).any(axis=1)
    restrict = promised & can_meet
    allowed = np.where(restrict[:, None], allowed & meets, allowed)
    late = promised & ~can_meet & usable.any(axis=1)
    return allowed, late


def shipment_mode(
    modes: Modes,
    *,
    pickup: bool,
    at_pickup: bool,
    is_store: bool,
    km: float,
    transfer_km: float,
    format_cost: float,
) -> tuple[int, float] | None:
    """One shipment's mode and shipping, recomputed from the definitions (the checker):
    ``None`` when no mode allows it (a pickup order at another node without a transfer)."""
    if pickup:
        if at_pickup:
            return PICKUP, 0.0
        if modes.transfer and transfer_km <= modes.transfer_max_km:
            return (
                PICKUP_TRANSFER,
                modes.transfer_per_shipment + modes.transfer_per_km * transfer_km,
            )
        return None
    mode = STORE_SHIP if is_store else WAREHOUSE_SHIP
    kind = "store" if is_store else "warehouse"
    if modes.same_city and kind in modes.same_city_kinds and km <= modes.same_city_radius_km:
        city = modes.same_city_per_shipment + modes.same_city_per_km * km
        if modes.same_city_preferred or city < format_cost:
            return SAME_CITY, city
    return mode, format_cost
