"""The prepared problem: a validated scenario turned into arrays for the solvers.

Everything the solvers need is computed here, once: indices for nodes, SKUs,
orders and lines; the stock matrix; and the *candidates* that the feasibility
rules allow, so no solver ever re-implements a rule:

- a shipment candidate ``(order, node)`` exists when the node may serve the
  order (reach rule for delivery orders, only the pickup node for pickup
  orders) and holds at least one of the order's SKUs; it carries the shipping
  cost of that shipment (0 for pickup orders; with profiles, the cost of its
  fulfilment mode, ``router.modes``: a pickup order may then also use a node
  moving its units to the pickup store);
- a line candidate ``(line, node)`` exists when the node is a shipment
  candidate of the line's order and holds the line's SKU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from router.channels import ChannelStock, share_caps
from router.geo import EARTH_RADIUS_KM, haversine_km
from router.modes import NodeArrays, shipment_modes, transfer_promise
from router.profiles import (
    DEFAULT_CHANNEL,
    NodeRules,
    compile_rules,
    daily_capacity,
    daily_orders,
    order_candidates,
    promised_days,
)
from router.scenario import Scenario
from solver.churn import Churn

_ORDER_CHUNK = 2048
"""Orders per block when computing distances (bounds memory on big scenarios)."""

_REACH_CHUNK = 32768
"""Orders per block of the reach test without profiles (:func:`_candidates_in_reach`)."""


@dataclass(frozen=True)
class Problem:
    """A routing problem as arrays. Never modified in place: use :meth:`replace`.

    Index spaces: nodes ``n`` (N), SKUs ``s`` (S), orders ``o`` (O), lines
    ``l`` (L), shipment candidates ``p`` (P), line candidates ``c`` (C).
    Candidates are sorted by order (pairs) and by line (line candidates), with
    CSR-style ``*_start`` offsets.
    """

    split_penalty: float
    unfilled_penalty: float
    # nodes
    node_ids: np.ndarray
    node_is_store: np.ndarray
    node_lat: np.ndarray
    node_lon: np.ndarray
    ship_fixed: np.ndarray
    ship_per_km: np.ndarray
    handling: np.ndarray
    capacity: np.ndarray
    """(N,) float; ``inf`` where the node has no capacity limit."""
    max_km: np.ndarray
    """(N,) float; ``inf`` where the node ships to any distance (the reach rule)."""
    # stock
    sku_ids: np.ndarray
    stock: np.ndarray
    """(N, S) int64 units available."""
    # orders and lines (file order)
    order_ids: np.ndarray
    order_lat: np.ndarray
    order_lon: np.ndarray
    order_pickup: np.ndarray
    """(O,) node index of the pickup node, -1 for delivery orders."""
    order_line_start: np.ndarray
    """(O+1,) lines of order o are ``order_line_start[o]:order_line_start[o+1]``."""
    line_ids: np.ndarray
    line_order: np.ndarray
    line_sku: np.ndarray
    line_qty: np.ndarray
    # shipment candidates (order, node)
    pair_order: np.ndarray
    pair_node: np.ndarray
    pair_km: np.ndarray
    pair_ship_cost: np.ndarray
    order_pair_start: np.ndarray
    # line candidates (line, node)
    cand_line: np.ndarray
    cand_node: np.ndarray
    cand_pair: np.ndarray
    """(C,) index of the shipment candidate (order of the line, node)."""
    line_cand_start: np.ndarray
    churn: Churn | None = None
    """A re-optimization's churn rule (:mod:`solver.churn`); ``None`` for a plain batch."""
    pair_profile_cost: np.ndarray | None = None
    """(P,) the routing profile's part of ``pair_ship_cost`` (tiers, per shipment,
    per km; docs/profiles.md); ``None`` without profiles."""
    cand_credit: np.ndarray | None = None
    """(C,) a profile's clearance credit per unit of the line candidate, subtracted
    from its handling (:func:`solver.cost.unit_cost`); ``None``: no credit."""
    node_order_limit: np.ndarray | None = None
    """(N,) float: orders (shipments) a node may take, a profile's daily orders limit
    (``inf``: none); ``None``: no such limit."""
    line_group: np.ndarray | None = None
    """(L,) int: the line's ship group (one node serves the group whole, or none
    of it), numbered over the batch; -1: none; ``None``: no groups."""
    order_max_shipments: np.ndarray | None = None
    """(O,) float: a profile's split cap per order (``inf``: none); ``None``: no caps."""
    line_share: np.ndarray | None = None
    """(L,) int: the line's binding (channel, SKU) pair of a channel share
    (router/channels.py), -1: none; ``None``: no channel share binds."""
    share_cap: np.ndarray | None = None
    """(K,) float: units the pair's channel may sell of its SKU (``channel_share_rule``)."""
    line_kit: np.ndarray | None = None
    """(L,) object: the id of the kit line a component line comes from ("" for an
    ordinary line; router/kits.py); ``None``: no kits."""
    order_late: np.ndarray | None = None
    """(O,) the order's promised date could not be met by any allowed node holding
    its goods: it is routed without the promise, and flagged; ``None`` without profiles."""
    pair_mode: np.ndarray | None = None
    """(P,) int8: the shipment's fulfilment mode, a code of ``router.modes.MODES``
    (its cost is in ``pair_ship_cost``); ``None`` without profiles."""
    order_origin: np.ndarray | None = None
    """(O,) node index of the store the order was taken in (endless aisle), -1: none;
    ``None`` without profiles."""

    @property
    def num_orders(self) -> int:
        return int(self.order_ids.size)

    @property
    def num_lines(self) -> int:
        return int(self.line_ids.size)

    @property
    def num_nodes(self) -> int:
        return int(self.node_ids.size)

    def replace(self, **changes) -> Problem:
        """A copy with some fields changed (prepared data is never mutated)."""
        return replace(self, **changes)

    def pairs_of(self, order: int) -> slice:
        return slice(int(self.order_pair_start[order]), int(self.order_pair_start[order + 1]))

    def lines_of(self, order: int) -> slice:
        return slice(int(self.order_line_start[order]), int(self.order_line_start[order + 1]))

    def candidates_of(self, line: int) -> slice:
        return slice(int(self.line_cand_start[line]), int(self.line_cand_start[line + 1]))


def build_problem(scenario: Scenario) -> Problem:
    """Turn a validated scenario into a :class:`Problem` with all candidates."""
    nodes = scenario.nodes
    node_ids = nodes["node_id"].to_numpy(dtype=object)
    node_index = {node: i for i, node in enumerate(node_ids)}
    n_nodes = node_ids.size

    orders = scenario.orders
    sku_ids = np.array(sorted(set(scenario.inventory["sku"]).union(orders["sku"])), dtype=object)
    sku_index = {sku: i for i, sku in enumerate(sku_ids)}
    stock = np.zeros((n_nodes, sku_ids.size), dtype=np.int64)
    inv = scenario.inventory
    if len(inv):
        stock[inv["node_id"].map(node_index).to_numpy(), inv["sku"].map(sku_index).to_numpy()] = (
            inv["available"].to_numpy()
        )

    # Lines grouped by order (orders keep their first-appearance order).
    order_codes, order_ids = _codes_in_first_appearance(orders["order_id"].to_numpy(dtype=object))
    line_perm = np.argsort(order_codes, kind="stable")
    line_order = order_codes[line_perm]
    line_ids = orders["line_id"].to_numpy(dtype=object)[line_perm]
    line_sku = orders["sku"].map(sku_index).to_numpy(dtype=np.int64)[line_perm]
    line_qty = orders["qty"].to_numpy(dtype=np.int64)[line_perm]
    n_orders = order_ids.size
    order_line_start = np.searchsorted(line_order, np.arange(n_orders + 1))
    first_line = order_line_start[:-1]
    order_lat = orders["lat"].to_numpy()[line_perm][first_line]
    order_lon = orders["lon"].to_numpy()[line_perm][first_line]
    pickup_ids = orders["pickup_node"].to_numpy(dtype=object)[line_perm][first_line]
    order_pickup = np.array([node_index.get(p, -1) for p in pickup_ids], dtype=np.int64)

    capacity = nodes["capacity_units"].fillna(np.inf).to_numpy(dtype=np.float64)
    profile_set = scenario.profiles
    profiled = profile_set is not None
    if profile_set is not None:
        rules = channel_rules(scenario)
        capacity = np.minimum(capacity, daily_capacity(profile_set, nodes))
        order_channel = orders["channel"].to_numpy(dtype=object)[line_perm][first_line]
        promised = orders["promised_date"].to_numpy(dtype=object)[line_perm][first_line]
        as_of = profile_set.as_of
        days_left = np.array([promised_days(d, as_of) for d in promised], dtype=float)
        order_late = np.zeros(n_orders, dtype=bool)
        node_is_store = (nodes["kind"] == "store").to_numpy()
        order_origin = np.full(n_orders, -1, dtype=np.int64)
        if "origin_store" in orders:  # endless aisle: the store the order was taken in
            origin_ids = orders["origin_store"].to_numpy(dtype=object)[line_perm][first_line]
            order_origin = np.array([node_index.get(p, -1) for p in origin_ids], dtype=np.int64)
    max_km = nodes["max_km"].fillna(np.inf).to_numpy(dtype=np.float64)
    node_lat = nodes["lat"].to_numpy(dtype=np.float64)
    node_lon = nodes["lon"].to_numpy(dtype=np.float64)
    ship_fixed = nodes["ship_fixed"].to_numpy(dtype=np.float64)
    ship_per_km = nodes["ship_per_km"].to_numpy(dtype=np.float64)

    if profiled:
        node_arrays = NodeArrays(node_lat, node_lon, node_is_store, ship_fixed, ship_per_km)
    extra_parts, ship_parts, mode_parts = [], [], []
    if not profiled:
        cand_line, cand_node, cand_km = _candidates_in_reach(
            order_lat, order_lon, order_pickup, node_lat, node_lon, max_km,
            stock, line_order, line_sku, order_line_start,
        )  # fmt: skip
    else:
        cand_line_parts, cand_node_parts, km_parts = [], [], []
        for lo in range(0, n_orders, _ORDER_CHUNK):
            hi = min(lo + _ORDER_CHUNK, n_orders)
            km = haversine_km(
                order_lat[lo:hi, None], order_lon[lo:hi, None], node_lat[None, :], node_lon[None, :]
            )
            allowed = km <= max_km[None, :]
            pickup = order_pickup[lo:hi]
            is_pickup = pickup >= 0
            allowed[is_pickup] = False
            allowed[np.flatnonzero(is_pickup), pickup[is_pickup]] = True
            lines = np.arange(order_line_start[lo], order_line_start[hi])
            local = line_order[lines] - lo
            line_holds = stock[:, line_sku[lines]].T > 0
            extra = None
            if profiled:
                holds = np.zeros_like(allowed)
                np.logical_or.at(holds, local, line_holds)
                extra = np.zeros(allowed.shape)
                ship = np.zeros(allowed.shape)
                mode = np.zeros(allowed.shape, dtype=np.int8)
                block_channel = order_channel[lo:hi]
                for channel in np.unique(block_channel):
                    rows = np.flatnonzero(block_channel == channel)
                    channel_rules_ = rules[channel]
                    modes = shipment_modes(
                        channel_rules_.modes,
                        allowed[rows],
                        km[rows],
                        pickup[rows],
                        order_origin[lo:hi][rows],
                        node_arrays,
                        channel_rules_.eligible,
                    )
                    cands = order_candidates(
                        channel_rules_,
                        modes.allowed,
                        km[rows],
                        node_is_store,
                        holds[rows],
                        days_left[lo:hi][rows],
                        is_pickup[rows],
                        fixed_days=modes.fixed_days,
                    )
                    kept, transfer_late = transfer_promise(
                        channel_rules_.modes,
                        cands.allowed,
                        modes.mode,
                        holds[rows],
                        days_left[lo:hi][rows],
                    )
                    allowed[rows] = kept
                    extra[rows] = cands.extra_cost + modes.extra
                    ship[rows] = modes.ship_cost
                    mode[rows] = modes.mode
                    order_late[lo + rows] = cands.late | transfer_late
            usable = allowed[local] & line_holds
            li, ni = np.nonzero(usable)
            cand_line_parts.append(lines[li])
            cand_node_parts.append(ni)
            km_parts.append(km[local[li], ni])
            if extra is not None:
                extra_parts.append(extra[local[li], ni])
                ship_parts.append(ship[local[li], ni])
                mode_parts.append(mode[local[li], ni])
        cand_line = np.concatenate(cand_line_parts) if cand_line_parts else np.zeros(0, np.int64)
        cand_node = np.concatenate(cand_node_parts) if cand_node_parts else np.zeros(0, np.int64)
        cand_km = np.concatenate(km_parts) if km_parts else np.zeros(0)

    # Shipment candidates: the distinct (order, node) of the line candidates.
    cand_order = line_order[cand_line]
    key = cand_order * n_nodes + cand_node
    pair_key, first, cand_pair = np.unique(key, return_index=True, return_inverse=True)
    pair_order = pair_key // n_nodes
    pair_node = pair_key % n_nodes
    pair_km = cand_km[first]
    pair_ship_cost = np.where(
        order_pickup[pair_order] >= 0, 0.0, ship_fixed[pair_node] + ship_per_km[pair_node] * pair_km
    )
    pair_profile_cost = None
    cand_credit = None
    order_caps = None
    order_limit = None
    line_group = None
    # Ship groups come with profiles (``ship_group``) and with kits (a kit line's
    # components): whichever put the column there, the rule binds.
    if "ship_group" in orders and (orders["ship_group"] != "").any():
        named = orders["ship_group"].to_numpy(dtype=object)[line_perm]
        keys = np.array(
            [f"{o}\x00{g}" if g else "" for o, g in zip(line_order, named, strict=True)],
            dtype=object,
        )
        codes, _ = pd.factorize(keys[keys != ""])
        line_group = np.full(keys.size, -1, dtype=np.int64)
        line_group[keys != ""] = codes
    shares = None
    if profile_set is not None and ChannelStock(profile_set.profiles).binds:
        shares = share_caps(
            ChannelStock(profile_set.profiles),
            order_channel[line_order],
            line_sku,
            line_qty,
            sku_ids,
            stock.sum(axis=0),
        )
    if profile_set is not None:
        limit = daily_orders(profile_set, nodes)
        order_limit = limit if np.isfinite(limit).any() else None
    if profile_set is not None and any(np.isfinite(r.max_shipments) for r in rules.values()):
        order_caps = np.array([rules[c].max_shipments for c in order_channel], dtype=float)
    if profile_set is not None and any(r.clearance_credit > 0 for r in rules.values()):
        cand_credit = clearance_credit(
            scenario,
            rules,
            stock,
            sku_index,
            node_index,
            order_channel[line_order[cand_line]],
            cand_node,
            line_sku[cand_line],
        )
    pair_mode = None
    if profiled:
        pair_profile_cost = np.concatenate(extra_parts)[first] if extra_parts else np.zeros(0)
        # Each shipment's mode (router.modes) sets its shipping: the format's cost unless
        # a profile's transfer or same-city mode applies.
        pair_ship_cost = np.concatenate(ship_parts)[first] if ship_parts else np.zeros(0)
        pair_mode = np.concatenate(mode_parts)[first] if mode_parts else np.zeros(0, np.int8)
        pair_ship_cost = pair_ship_cost + pair_profile_cost
    return Problem(
        split_penalty=scenario.split_penalty,
        unfilled_penalty=scenario.unfilled_penalty,
        node_ids=node_ids,
        node_is_store=(nodes["kind"] == "store").to_numpy(),
        node_lat=node_lat,
        node_lon=node_lon,
        ship_fixed=ship_fixed,
        ship_per_km=ship_per_km,
        handling=nodes["handling_per_unit"].to_numpy(dtype=np.float64),
        capacity=capacity,
        max_km=max_km,
        sku_ids=sku_ids,
        stock=stock,
        order_ids=order_ids,
        order_lat=order_lat,
        order_lon=order_lon,
        order_pickup=order_pickup,
        order_line_start=order_line_start,
        line_ids=line_ids,
        line_order=line_order,
        line_sku=line_sku,
        line_qty=line_qty,
        pair_order=pair_order,
        pair_node=pair_node,
        pair_km=pair_km,
        pair_ship_cost=pair_ship_cost,
        order_pair_start=np.searchsorted(pair_order, np.arange(n_orders + 1)),
        cand_line=cand_line,
        cand_node=cand_node,
        cand_pair=cand_pair.astype(np.int64),
        line_cand_start=np.searchsorted(cand_line, np.arange(line_ids.size + 1)),
        pair_profile_cost=pair_profile_cost,
        cand_credit=cand_credit,
        order_max_shipments=order_caps,
        node_order_limit=order_limit,
        line_group=line_group,
        line_share=None if shares is None else shares[0],
        share_cap=None if shares is None else shares[1],
        order_late=order_late if profiled else None,
        pair_mode=pair_mode,
        order_origin=order_origin if profiled else None,
        line_kit=orders["kit_line"].to_numpy(dtype=object)[line_perm]
        if "kit_line" in orders
        else None,
    )


def _candidates_in_reach(
    order_lat: np.ndarray,
    order_lon: np.ndarray,
    order_pickup: np.ndarray,
    node_lat: np.ndarray,
    node_lon: np.ndarray,
    max_km: np.ndarray,
    stock: np.ndarray,
    line_order: np.ndarray,
    line_sku: np.ndarray,
    order_line_start: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line candidates (line, node, km) without profiles, by line then node.

    The same candidates as testing every (order, node) against the reach rule,
    with the same distances, but a national batch (a million orders, 5,000
    stores) has billions of such pairs and only a few dozen in reach per order:
    nodes with a limited reach are looked up in a k-d tree of points on the unit
    sphere (a chord is a monotone function of the great-circle distance, so a
    slightly larger radius finds every node in reach), and the reach rule is
    then applied to those pairs with :func:`router.geo.haversine_km`.
    """
    n_nodes = node_lat.size
    anywhere = np.flatnonzero(~np.isfinite(max_km))
    limited = np.flatnonzero(np.isfinite(max_km))
    tree = radius = None
    if limited.size:
        tree = cKDTree(_unit_sphere(node_lat[limited], node_lon[limited]))
        half_angle = min(float(max_km[limited].max()) / (2.0 * EARTH_RADIUS_KM), math.pi / 2)
        radius = 2.0 * math.sin(half_angle) * (1.0 + 1e-6) + 1e-9
    cand_line, cand_node, cand_km = [], [], []
    for lo in range(0, order_lat.size, _REACH_CHUNK):
        orders = np.arange(lo, min(lo + _REACH_CHUNK, order_lat.size))
        pair_order, pair_node = _pairs_to_test(
            orders, order_lat, order_lon, order_pickup, anywhere, limited, tree, radius
        )
        km = haversine_km(
            order_lat[pair_order], order_lon[pair_order], node_lat[pair_node], node_lon[pair_node]
        )
        allowed = (km <= max_km[pair_node]) | (order_pickup[pair_order] >= 0)
        by_key = np.argsort(pair_order[allowed] * n_nodes + pair_node[allowed], kind="stable")
        pair_order = pair_order[allowed][by_key]
        pair_node = pair_node[allowed][by_key]
        km = km[allowed][by_key]
        # Every line of an order against its order's allowed nodes, in node order.
        first = np.searchsorted(pair_order, orders)
        end = np.searchsorted(pair_order, orders, side="right")
        lines = np.arange(order_line_start[orders[0]], order_line_start[orders[-1] + 1])
        local = line_order[lines] - lo
        per_line = end[local] - first[local]
        line = np.repeat(lines, per_line)
        offsets = np.cumsum(per_line) - per_line
        pair = np.repeat(first[local] - offsets, per_line) + np.arange(line.size)
        holds = stock[pair_node[pair], line_sku[line]] > 0
        cand_line.append(line[holds])
        cand_node.append(pair_node[pair[holds]])
        cand_km.append(km[pair[holds]])
    if not cand_line:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(cand_line), np.concatenate(cand_node), np.concatenate(cand_km)


def _pairs_to_test(orders, order_lat, order_lon, order_pickup, anywhere, limited, tree, radius):
    """(order, node) pairs that may pass the reach rule: a pickup order's pickup node;
    a delivery order's nodes that ship anywhere and its limited-reach nodes near it."""
    pickup = order_pickup[orders]
    delivery = orders[pickup < 0]
    parts_order = [orders[pickup >= 0], np.repeat(delivery, anywhere.size)]
    parts_node = [pickup[pickup >= 0], np.tile(anywhere, delivery.size)]
    if tree is not None and delivery.size:
        points = cKDTree(_unit_sphere(order_lat[delivery], order_lon[delivery]))
        near = points.sparse_distance_matrix(tree, radius, output_type="ndarray")
        parts_order.append(delivery[near["i"]])
        parts_node.append(limited[near["j"]])
    return np.concatenate(parts_order), np.concatenate(parts_node)


def _unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) points on the unit sphere at the given degrees."""
    phi, lam = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def channel_rules(scenario: Scenario) -> dict[str, NodeRules]:
    """Each channel's profile compiled over the scenario's nodes at its ``as_of``."""
    profiles = scenario.profiles
    assert profiles is not None
    nodes = scenario.nodes
    default = profiles.profiles.get(DEFAULT_CHANNEL)
    return {
        channel: compile_rules(
            profiles.of(channel),
            nodes["node_id"].to_numpy(dtype=object),
            nodes["kind"].to_numpy(dtype=object),
            nodes["group"].to_numpy(dtype=object),
            profiles.as_of,
            workload=default,
        )
        for channel in np.unique(scenario.orders["channel"].to_numpy(dtype=object))
    }


def clearance_credit(
    scenario: Scenario,
    rules: dict[str, NodeRules],
    stock: np.ndarray,
    sku_index: dict,
    node_index: dict,
    cand_channel: np.ndarray,
    cand_node: np.ndarray,
    cand_sku: np.ndarray,
) -> np.ndarray:
    """(C,) each line candidate's clearance credit per unit, under its order's channel."""
    sales = np.full(stock.shape, np.nan)
    inv = scenario.inventory
    if len(inv):
        sales[inv["node_id"].map(node_index).to_numpy(), inv["sku"].map(sku_index).to_numpy()] = (
            inv["weekly_sales"].to_numpy(dtype=float)
        )
    credit = np.zeros(cand_node.size)
    for channel, channel_rules_ in rules.items():
        mine = cand_channel == channel
        credit[mine] = channel_rules_.credit(
            stock[cand_node[mine], cand_sku[mine]], sales[cand_node[mine], cand_sku[mine]]
        )
    return credit


def _codes_in_first_appearance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for ``values`` numbered in order of first appearance."""
    uniques, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(uniques.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(uniques.size)
    return rank[inverse], uniques[np.argsort(first, kind="stable")]
