"""Why this node: the explanation of one order's routing, with costs.

An explanation answers an operator's three questions about one order:

- **What was chosen, and what does it cost?** Each shipment (node, kind,
  distance, units, shipping, handling) and the order's cost terms.
- **What else was possible?** The best *alternative plans* on the stock and
  capacity the other orders left, each computed exactly for the order alone
  (:func:`solver.order_dp.solve_order`), and how much more each costs: the
  best plan without each chosen node, and every single-node plan.
- **What took the cheaper plans away?** The order routed alone on the whole
  stock and capacity (as if no other order existed), and again with the reach
  rule lifted: when either is cheaper than the choice, the rule that forbids
  it is *binding*: stock of a SKU at a node used by other orders, capacity of
  a node used by other orders, or the reach of a node (``max_km``); with the
  batch LP's price of the stock or capacity row where the solve computed one.
  Every unfilled line names, for each node holding its SKU, the rule that ruled
  the node out (stock, capacity, reach, pickup, the split cap, or cost: shipping
  it costs more than the unfilled penalty).

Every plan obeys a routing profile's rules as the routing applied them (the split
cap, ship groups served whole or not at all) and is priced as the routing priced
it (handling less the clearance credit): :class:`OrderContext` carries them.

A *counterfactual* (:func:`counterfactuals`) is the smallest change of one kind
(more stock at one node, more capacity, a wider radius, a cheaper shipment)
under which the order, routed again alone on what the others left, is routed
differently; each one is verified by that re-solve, never guessed.

Everything works on an :class:`OrderContext`: one order's arrays over the nodes
that hold any of its SKUs. A batch answer (``omniroute solve``) and the live
service (``/v1/route``, waves) both build contexts, so both explain the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from solver.alone import order_problem
from solver.cost import unit_cost as cand_unit_cost
from solver.order_dp import MAX_DP_SKUS, OrderProblem, solve_order

TOP_ALTERNATIVES = 3
"""Alternative plans listed per order."""
LISTED_NODES = 5
"""Nodes listed per rule for an unfilled line, and candidates tried per counterfactual kind."""
COUNTERFACTUAL_MAX_ORDERS = 500
"""A batch up to this many orders gets counterfactuals in ``explanations.jsonl``."""
COUNTERFACTUAL_RESOLVES = 20
"""Re-solves of one order that the counterfactual search may spend (4 beyond
``MAX_DP_SKUS`` units, where each is a small MIP)."""
_EPS = 1e-9


@dataclass(frozen=True)
class OrderContext:
    """One order's routing decision as arrays over its N considered nodes.

    The considered nodes hold at least one of the order's K SKUs. ``allowed``
    says which may serve the order (reach rule, or the pickup node);
    ``stock_total``/``capacity_total`` are what the pool held before any order
    of the batch, ``stock_left``/``capacity_left`` what the other orders left
    to this one (its own units included). ``chosen`` is the decision.
    """

    order_id: str
    pickup_node: str | None
    skus: tuple[str, ...]
    qty: np.ndarray  # (K,)
    lines: tuple[tuple[str, int, int], ...]  # (line_id, sku row k, qty) in order
    node_ids: tuple[str, ...]  # (N,)
    node_kind: tuple[str, ...]  # (N,) warehouse | store
    km: np.ndarray  # (N,) distance to the customer; NaN when unknown (pickup)
    max_km: np.ndarray  # (N,) inf = no limit
    ship_cost: np.ndarray  # (N,) a shipment's cost (0 for a pickup order)
    handling: np.ndarray  # (N,)
    allowed: np.ndarray  # (N,) bool
    stock_total: np.ndarray  # (K, N)
    stock_left: np.ndarray  # (K, N)
    capacity_total: np.ndarray  # (N,) inf = no limit
    capacity_left: np.ndarray  # (N,)
    chosen: np.ndarray  # (K, N) units
    split_penalty: float
    unfilled_penalty: float
    price_stock: np.ndarray | None = None  # (K, N) the batch LP's stock prices
    price_capacity: np.ndarray | None = None  # (N,)
    # A routing profile's rules, as the routing applied them (router/profiles.py):
    max_shipments: int | None = None  # the split cap; None: no cap
    sku_group: np.ndarray | None = None  # (K,) ship group of each SKU row; -1: none
    unit_cost: np.ndarray | None = None  # (K, N) handling less the clearance credit

    def replace(self, **changes: Any) -> OrderContext:
        return replace(self, **changes)

    @cached_property
    def per_unit(self) -> np.ndarray:
        """(K, N) the cost of one unit of each SKU row at each node: its handling, less a
        profile's clearance credit (``unit_cost``, as the routing priced it)."""
        if self.unit_cost is not None:
            return self.unit_cost
        return self.per_unit_of_handling

    @property
    def per_unit_of_handling(self) -> np.ndarray:
        return np.broadcast_to(self.handling, self.stock_total.shape)

    # --- storage (the service keeps one per routed order) ---------------------------

    def to_json(self) -> str:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=float).tolist()

        data = {
            "order_id": self.order_id,
            "pickup_node": self.pickup_node,
            "skus": list(self.skus),
            "qty": self.qty.tolist(),
            "lines": [list(line) for line in self.lines],
            "node_ids": list(self.node_ids),
            "node_kind": list(self.node_kind),
            "km": [None if math.isnan(v) else v for v in self.km.tolist()],
            "max_km": [None if math.isinf(v) else v for v in self.max_km.tolist()],
            "ship_cost": self.ship_cost.tolist(),
            "handling": self.handling.tolist(),
            "allowed": self.allowed.tolist(),
            "stock_total": self.stock_total.tolist(),
            "stock_left": self.stock_left.tolist(),
            "capacity_total": [None if math.isinf(v) else v for v in arr(self.capacity_total)],
            "capacity_left": [None if math.isinf(v) else v for v in arr(self.capacity_left)],
            "chosen": self.chosen.tolist(),
            "split_penalty": self.split_penalty,
            "unfilled_penalty": self.unfilled_penalty,
            "price_stock": arr(self.price_stock),
            "price_capacity": arr(self.price_capacity),
            "max_shipments": self.max_shipments,
            "sku_group": None if self.sku_group is None else self.sku_group.tolist(),
            # Kept only where a credit makes it differ from the handling of each node.
            "unit_cost": None
            if self.unit_cost is None or np.array_equal(self.unit_cost, self.per_unit_of_handling)
            else arr(self.unit_cost),
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> OrderContext:
        d = json.loads(text)
        k, n = len(d["skus"]), len(d["node_ids"])

        def matrix(values, dtype):
            return np.asarray(values, dtype=dtype).reshape(k, n)

        def limit(values):
            return np.array([np.inf if v is None else v for v in values], dtype=float)

        return cls(
            order_id=d["order_id"],
            pickup_node=d["pickup_node"],
            skus=tuple(d["skus"]),
            qty=np.asarray(d["qty"], dtype=np.int64),
            lines=tuple((str(a), int(b), int(c)) for a, b, c in d["lines"]),
            node_ids=tuple(d["node_ids"]),
            node_kind=tuple(d["node_kind"]),
            km=np.array([np.nan if v is None else v for v in d["km"]], dtype=float),
            max_km=limit(d["max_km"]),
            ship_cost=np.asarray(d["ship_cost"], dtype=float),
            handling=np.asarray(d["handling"], dtype=float),
            allowed=np.asarray(d["allowed"], dtype=bool),
            stock_total=matrix(d["stock_total"], np.int64),
            stock_left=matrix(d["stock_left"], np.int64),
            capacity_total=limit(d["capacity_total"]),
            capacity_left=limit(d["capacity_left"]),
            chosen=matrix(d["chosen"], np.int64),
            split_penalty=float(d["split_penalty"]),
            unfilled_penalty=float(d["unfilled_penalty"]),
            price_stock=None if d["price_stock"] is None else matrix(d["price_stock"], float),
            price_capacity=None
            if d["price_capacity"] is None
            else np.asarray(d["price_capacity"], dtype=float),
            # Contexts stored before the profile rules reached explanations have none.
            max_shipments=None if d.get("max_shipments") is None else int(d["max_shipments"]),
            sku_group=None
            if d.get("sku_group") is None
            else np.asarray(d["sku_group"], dtype=np.int64),
            unit_cost=None if d.get("unit_cost") is None else matrix(d["unit_cost"], float),
        )


# --- routing the order alone, on some stock ------------------------------------------


def _order_problem(
    ctx: OrderContext,
    stock: np.ndarray,
    capacity: np.ndarray,
    ship_cost: np.ndarray | None = None,
    cols: np.ndarray | slice = slice(None),
) -> OrderProblem:
    """The order's :class:`OrderProblem` over the nodes ``cols``, under the rules the
    routing applied (split cap, ship groups, the clearance credit in the unit cost)."""
    ship = ctx.ship_cost if ship_cost is None else ship_cost
    return OrderProblem(
        qty=ctx.qty,
        stock=stock[:, cols],
        ship_cost=ship[cols],
        unit_cost=np.array(ctx.per_unit[:, cols], dtype=float),
        capacity=capacity[cols],
        split_penalty=ctx.split_penalty,
        unfilled_penalty=ctx.unfilled_penalty,
        max_shipments=ctx.max_shipments,
        sku_group=ctx.sku_group,
    )


def plan_cost(ctx: OrderContext, alloc: np.ndarray, ship_cost: np.ndarray | None = None) -> float:
    """The order's cost of ``alloc`` (K, N) under the scenario cost formula
    (:func:`solver.order_dp.order_cost`, without building its problem)."""
    ship = ctx.ship_cost if ship_cost is None else ship_cost
    per_node = alloc.sum(axis=0)
    used = per_node > 0
    shipments = int(np.count_nonzero(used))
    goods = per_node @ ctx.handling if ctx.unit_cost is None else (alloc * ctx.unit_cost).sum()
    return float(
        ship[used].sum()
        + goods
        + ctx.split_penalty * max(0, shipments - 1)
        + ctx.unfilled_penalty * (int(ctx.qty.sum()) - int(per_node.sum()))
    )


def route_alone(
    ctx: OrderContext,
    *,
    stock: np.ndarray | None = None,
    capacity: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    ship_cost: np.ndarray | None = None,
    singles: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The order's exact optimum on the given stock, capacity and allowed nodes
    (by default: what the other orders left, under the reach and pickup rules), under
    the same split cap and ship groups as its routing.

    ``singles``: the one-node plans of exactly these arguments, when the caller
    has them (:func:`_single_node_plans`)."""
    stock = ctx.stock_left if stock is None else stock
    capacity = ctx.capacity_left if capacity is None else capacity
    allowed = ctx.allowed if allowed is None else allowed
    ship = ctx.ship_cost if ship_cost is None else ship_cost
    alloc = np.zeros_like(ctx.chosen)
    nodes, gives, cost = singles or _single_node_plans(ctx, stock, capacity, allowed, ship)
    total = int(ctx.qty.sum())
    best_single = float(cost.min()) if cost.size else math.inf
    if min(best_single, ctx.unfilled_penalty * total) <= _split_plan_bound(ctx, nodes, ship, total):
        # No plan with two shipments or more can beat the best one-node plan (or
        # shipping nothing): that plan is the exact optimum, no DP needed.
        if best_single < ctx.unfilled_penalty * total:
            best = int(np.argmin(cost))
            alloc[:, int(nodes[best])] = gives[:, best]
        return alloc
    cols = np.flatnonzero(allowed)
    plan = solve_order(_order_problem(ctx, stock, capacity, ship, cols))
    alloc[:, cols] = plan.alloc
    return alloc


def _single_node_plans(ctx, stock, capacity, allowed, ship):
    """Nodes that can give some units alone, what each gives ((K, nodes): its best
    one-node plan) and that plan's cost.

    A node gives every unit cheaper than leaving it unfilled, a ship group whole or
    none of it, within its capacity (the cheapest units first)."""
    nodes = np.flatnonzero(allowed)
    penalty = ctx.unfilled_penalty
    if ctx.unit_cost is None and ctx.sku_group is None:
        return _single_node_plans_at_handling(ctx, stock, capacity, nodes, ship)
    per_unit = ctx.per_unit[:, nodes]
    gives = np.minimum(ctx.qty[:, None], np.maximum(stock[:, nodes], 0))
    # Each unit a node gives saves the unfilled penalty and costs its unit cost: a
    # unit dearer than the penalty is best left out (the DP decides).
    gives = np.where(per_unit < penalty, gives, 0)
    if ctx.sku_group is not None:
        for g in np.unique(ctx.sku_group[ctx.sku_group >= 0]).tolist():
            rows = ctx.sku_group == g
            need = ctx.qty[rows]
            whole = np.all(stock[rows][:, nodes] >= need[:, None], axis=0)
            whole &= need @ per_unit[rows] < penalty * need.sum()
            gives[rows] = np.where(whole[None, :], need[:, None], 0)
    for j in np.flatnonzero(gives.sum(axis=0) > capacity[nodes]).tolist():
        gives[:, j] = _within_capacity(ctx, gives[:, j], per_unit[:, j], capacity[nodes[j]])
    units = gives.sum(axis=0)
    some = units > 0
    nodes, gives, per_unit = nodes[some], gives[:, some], per_unit[:, some]
    cost = ship[nodes] + (per_unit * gives).sum(axis=0) + penalty * (ctx.qty.sum() - units[some])
    return nodes, gives, cost


def _single_node_plans_at_handling(ctx, stock, capacity, nodes, ship):
    """:func:`_single_node_plans` when a unit costs its node's handling whatever its
    SKU and no ship group binds: a node gives as much as stock and capacity allow
    (the first SKU rows first; which SKU yields does not change the cost)."""
    penalty = ctx.unfilled_penalty
    # A node whose handling exceeds the penalty is best left out (the DP decides).
    nodes = nodes[ctx.handling[nodes] < penalty]
    gives = np.minimum(ctx.qty[:, None], np.maximum(stock[:, nodes], 0))
    units = np.minimum(gives.sum(axis=0), np.maximum(capacity[nodes], 0))
    within = np.minimum(np.cumsum(gives, axis=0), units[None, :])
    gives = np.diff(within, axis=0, prepend=0).astype(gives.dtype)
    some = units > 0
    nodes, gives, units = nodes[some], gives[:, some], units[some]
    cost = ship[nodes] + ctx.handling[nodes] * units + penalty * (ctx.qty.sum() - units)
    return nodes, gives, cost


def _within_capacity(
    ctx: OrderContext, gives: np.ndarray, per_unit: np.ndarray, capacity: float
) -> np.ndarray:
    """The best part of ``gives`` (K,) that one node's capacity holds: the cheapest
    units first; with ship groups, the exact order DP on that node alone."""
    if ctx.sku_group is not None and np.any(gives[ctx.sku_group >= 0] > 0):
        alone = OrderProblem(
            qty=ctx.qty,
            stock=gives[:, None],
            ship_cost=np.zeros(1),
            unit_cost=np.array(per_unit, dtype=float)[:, None],
            capacity=np.array([capacity], dtype=float),
            split_penalty=0.0,
            unfilled_penalty=ctx.unfilled_penalty,
            sku_group=ctx.sku_group,
        )
        return solve_order(alone).alloc[:, 0]
    out = np.zeros_like(gives)
    left = int(max(capacity, 0))
    for k in np.argsort(per_unit, kind="stable").tolist():
        out[k] = min(int(gives[k]), left)
        left -= int(out[k])
    return out


def _split_plan_bound(ctx: OrderContext, nodes: np.ndarray, ship: np.ndarray, total: int) -> float:
    """A lower bound on every plan with two or more shipments: the two cheapest
    shipments, one split, and every unit at the cheapest unit cost (or unfilled);
    none exists under a split cap of one shipment."""
    if nodes.size < 2 or total < 2 or (ctx.max_shipments is not None and ctx.max_shipments < 2):
        return math.inf
    two = np.partition(ship[nodes], 1)[:2].sum()
    per_unit = min(float(ctx.per_unit[:, nodes].min()), ctx.unfilled_penalty)
    return float(two + ctx.split_penalty + per_unit * total)


# --- the explanation -------------------------------------------------------------------


def explain_order(ctx: OrderContext, *, with_counterfactual: bool = False) -> dict[str, Any]:
    """The explanation of one order (a JSON-ready dict; see the module docstring)."""
    chosen = _describe(ctx, ctx.chosen)
    chosen_cost = chosen["cost"]["total"]
    ordered = int(ctx.qty.sum())
    unfilled = chosen["cost"]["unfilled_units"]
    status = "filled" if unfilled == 0 else ("unfilled" if unfilled == ordered else "partial")
    out: dict[str, Any] = {
        "order_id": ctx.order_id,
        "status": status,
        "pickup_node": ctx.pickup_node,
        "alternatives_exact": bool(ctx.qty.sum() <= MAX_DP_SKUS),
        "cost": chosen["cost"],
        "chosen": chosen["shipments"],
        "alternatives": _alternatives(ctx, chosen_cost),
        "taken_away": _taken_away(ctx, chosen_cost),
        "unfilled_lines": _unfilled_lines(ctx) if unfilled else [],
    }
    if with_counterfactual:
        out["counterfactuals"] = counterfactuals(ctx, out["alternatives"])
    return out


def _r(value: float) -> float:
    return round(float(value), 6)  # float(): a numpy scalar rounds to a numpy scalar


def _describe(ctx: OrderContext, alloc: np.ndarray) -> dict[str, Any]:
    """A plan's cost terms and shipments (node, kind, km, units per SKU, costs)."""
    per_node = alloc.sum(axis=0)
    used = np.flatnonzero(per_node).tolist()
    shipments = []
    shipping = handled = 0.0
    allocated = 0
    for n in used:
        column = alloc[:, n].tolist()
        units = sum(column)
        # handling net of a profile's clearance credit: the cost the order was routed by
        ship = float(ctx.ship_cost[n])
        if ctx.unit_cost is None:
            handling = units * float(ctx.handling[n])
        else:
            handling = float(alloc[:, n] @ ctx.unit_cost[:, n])
        shipping += ship
        handled += handling
        allocated += units
        shipments.append(
            {
                "node_id": ctx.node_ids[n],
                "kind": ctx.node_kind[n],
                "km": None if ctx.pickup_node is not None else _r(ctx.km[n]),
                "units": units,
                "skus": {ctx.skus[k]: u for k, u in enumerate(column) if u},
                "shipping": _r(ship),
                "handling": _r(handling),
            }
        )
    splits = max(0, len(used) - 1)
    unfilled = int(ctx.qty.sum()) - allocated
    total = shipping + handled + ctx.split_penalty * splits + ctx.unfilled_penalty * unfilled
    return {
        "cost": {
            "total": _r(total),
            "shipping": _r(shipping),
            "handling": _r(handled),
            "split": _r(ctx.split_penalty * splits),
            "unfilled": _r(ctx.unfilled_penalty * unfilled),
            "splits": splits,
            "unfilled_units": unfilled,
        },
        "shipments": shipments,
    }


def _plan(
    ctx: OrderContext, alloc: np.ndarray, chosen_cost: float, cost: float | None = None
) -> dict[str, Any]:
    """Another plan, briefly: its nodes, the units from each, its cost and how much
    more than the choice it costs (``cost``: the plan's cost, if known)."""
    per_node = alloc.sum(axis=0).tolist()
    used = [n for n, u in enumerate(per_node) if u]
    cost = _r(plan_cost(ctx, alloc) if cost is None else cost)
    return {
        "nodes": [ctx.node_ids[n] for n in used],
        "units": [per_node[n] for n in used],
        "cost": cost,
        "extra_cost": _r(cost - _r(chosen_cost)),
    }


def _alternatives(ctx: OrderContext, chosen_cost: float) -> list[dict[str, Any]]:
    """The best plans other than the choice, on what the other orders left.

    The best plan without each chosen node (exact), each node's one-node plan, and
    shipping nothing; the cheapest of them is the exact next-best plan among those
    that do not use every chosen node. Orders of more than ``MAX_DP_SKUS`` units get
    the one-node plans and shipping nothing only (``alternatives_exact`` is false).
    """
    # plan key -> (cost, its columns (the tie-break: fewer and earlier nodes), alloc)
    plans: dict[bytes, tuple[float, list[int], np.ndarray]] = {}
    nothing = np.zeros_like(ctx.chosen)
    plans[nothing.tobytes()] = (ctx.unfilled_penalty * float(ctx.qty.sum()), [], nothing)
    singles = _single_node_plans(ctx, ctx.stock_left, ctx.capacity_left, ctx.allowed, ctx.ship_cost)
    nodes, gives, cost = singles
    # One unit: the one-node plans below are all the plans. Beyond MAX_DP_SKUS units
    # the exact plan without a node needs a MIP per node: the one-node plans stand in.
    if 1 < ctx.qty.sum() <= MAX_DP_SKUS:
        for n in np.flatnonzero(ctx.chosen.any(axis=0)).tolist():
            allowed = ctx.allowed.copy()
            allowed[n] = False
            keep = nodes != n
            alloc = route_alone(
                ctx, allowed=allowed, singles=(nodes[keep], gives[:, keep], cost[keep])
            )
            key = alloc.tobytes()
            if key not in plans:
                columns = np.flatnonzero(alloc.any(axis=0)).tolist()
                plans[key] = (plan_cost(ctx, alloc), columns, alloc)
    # One-node plans, cheapest first: only the few that can make the list.
    best = np.argsort(cost, kind="stable")[: TOP_ALTERNATIVES + 1]
    for j in best.tolist():
        alloc = np.zeros_like(ctx.chosen)
        alloc[:, int(nodes[j])] = gives[:, j]
        plans.setdefault(alloc.tobytes(), (float(cost[j]), [int(nodes[j])], alloc))
    plans.pop(ctx.chosen.tobytes(), None)
    ranked = sorted(plans.values(), key=lambda item: (item[0], item[1]))
    return [_plan(ctx, alloc, chosen_cost, cost=c) for c, _cols, alloc in ranked[:TOP_ALTERNATIVES]]


def _taken_away(ctx: OrderContext, chosen_cost: float) -> list[dict[str, Any]]:
    """Cheaper plans that a rule forbids: the binding constraints, with their prices."""
    found = []
    others_use = (ctx.stock_total != ctx.stock_left)[:, ctx.allowed].any() or (
        ctx.capacity_total != ctx.capacity_left
    )[ctx.allowed].any()
    whole = (
        route_alone(ctx, stock=ctx.stock_total, capacity=ctx.capacity_total)
        if others_use
        else ctx.chosen
    )
    if others_use and plan_cost(ctx, whole) < chosen_cost - _EPS:
        binding = _binding_stock_and_capacity(ctx, whole)
        if binding:  # else the choice is not the order's best on what was left (the gap)
            found.append({**_plan(ctx, whole, chosen_cost), "binding": binding})
    if ctx.pickup_node is None and _beyond_reach_may_pay(ctx, chosen_cost):
        anywhere = np.ones_like(ctx.allowed)
        wide = route_alone(ctx, allowed=anywhere)
        beyond = np.flatnonzero((wide.sum(axis=0) > 0) & ~ctx.allowed).tolist()
        if beyond and plan_cost(ctx, wide) < chosen_cost - _EPS:
            plan = _plan(ctx, wide, chosen_cost)
            plan["binding"] = [
                {
                    "rule": "reach",
                    "node_id": ctx.node_ids[n],
                    "km": _r(ctx.km[n]),
                    "max_km": _r(ctx.max_km[n]),
                }
                for n in beyond
            ]
            found.append(plan)
    return found


def _beyond_reach_may_pay(ctx: OrderContext, chosen_cost: float) -> bool:
    """Whether a plan using a node beyond the reach could cost less than the choice: it
    ships at least one unit from there, and every other unit costs at least the
    cheapest unit cost (or the unfilled penalty)."""
    outside = np.flatnonzero(~ctx.allowed & (ctx.stock_left.sum(axis=0) > 0))
    if outside.size == 0:
        return False
    per_unit = min(float(ctx.per_unit.min()), ctx.unfilled_penalty)
    first = float((ctx.ship_cost[outside] + ctx.per_unit[:, outside].min(axis=0)).min())
    return first + per_unit * (int(ctx.qty.sum()) - 1) < chosen_cost - _EPS


def _binding_stock_and_capacity(ctx: OrderContext, alloc: np.ndarray) -> list[dict[str, Any]]:
    binding = []
    short_k, short_n = np.nonzero(alloc > ctx.stock_left)
    for k, n in zip(short_k.tolist(), short_n.tolist(), strict=True):
        binding.append(
            {
                "rule": "stock",
                "node_id": ctx.node_ids[n],
                "sku": ctx.skus[k],
                "units_needed": int(alloc[k, n]),
                "units_left": int(max(ctx.stock_left[k, n], 0)),
                "used_by_other_orders": int(ctx.stock_total[k, n] - ctx.stock_left[k, n]),
                "price": None if ctx.price_stock is None else _r(ctx.price_stock[k, n]),
            }
        )
    load = alloc.sum(axis=0)
    for n in np.flatnonzero(load > ctx.capacity_left).tolist():
        binding.append(
            {
                "rule": "capacity",
                "node_id": ctx.node_ids[n],
                "units_needed": int(load[n]),
                "capacity_left": int(max(ctx.capacity_left[n], 0)),
                "used_by_other_orders": int(ctx.capacity_total[n] - ctx.capacity_left[n]),
                "price": None if ctx.price_capacity is None else _r(ctx.price_capacity[n]),
            }
        )
    return binding


def _unfilled_lines(ctx: OrderContext) -> list[dict[str, Any]]:
    """Each line with unfilled units and, per node holding its SKU, the rule that
    ruled the node out (the nodes nearest first, at most :data:`LISTED_NODES` per rule)."""
    allocated = ctx.chosen.sum(axis=1).astype(np.int64)
    out = []
    for line_id, k, qty in ctx.lines:
        got = int(min(qty, allocated[k]))
        allocated[k] -= got
        if got == qty:
            continue
        holders = np.flatnonzero(ctx.stock_total[k] > 0)
        holders = holders[np.argsort(np.nan_to_num(ctx.km[holders]), kind="stable")]
        rule = _rule_codes(ctx, k, holders)
        reasons: dict[str, list[dict[str, Any]]] = {}
        for code in sorted(set(rule.tolist()), key=lambda c: int(np.argmax(rule == c))):
            listed = []
            for n in holders[rule == code][:LISTED_NODES].tolist():
                name, detail = _why_not(ctx, k, n)
                listed.append({"node_id": ctx.node_ids[n], **detail})
            reasons[name] = listed
        out.append(
            {
                "line_id": line_id,
                "sku": ctx.skus[k],
                "unfilled_units": qty - got,
                "nodes_holding_sku": int(holders.size),
                "ruled_out": reasons,
            }
        )
    return out


def _one_more(ctx: OrderContext, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The SKU rows and units the line of SKU row ``k`` needs from one node for one
    more unit: one unit, or its whole ship group."""
    if ctx.sku_group is None or ctx.sku_group[k] < 0:
        return np.array([k]), np.ones(1, dtype=np.int64)
    rows = np.flatnonzero(ctx.sku_group == ctx.sku_group[k])
    return rows, ctx.qty[rows]


def _at_the_cap(ctx: OrderContext) -> bool:
    """Whether the choice already uses every shipment the split cap allows."""
    shipments = int(np.count_nonzero(ctx.chosen.sum(axis=0)))
    return ctx.max_shipments is not None and shipments >= ctx.max_shipments


def _rule_codes(ctx: OrderContext, k: int, nodes: np.ndarray) -> np.ndarray:
    """:func:`_why_not`'s rule for each of ``nodes``, as codes 0-4 (rule order)."""
    rows, need = _one_more(ctx, k)
    beyond = ~ctx.allowed[nodes]
    left = ctx.stock_left[np.ix_(rows, nodes)] - ctx.chosen[np.ix_(rows, nodes)]
    no_stock = np.any(left < need[:, None], axis=0)
    no_room = ctx.capacity_left[nodes] - ctx.chosen[:, nodes].sum(axis=0) < need.sum()
    capped = ~ctx.chosen[:, nodes].any(axis=0) & _at_the_cap(ctx)
    return np.select([beyond, no_stock, no_room, capped], [0, 1, 2, 3], default=4)


def _why_not(ctx: OrderContext, k: int, n: int) -> tuple[str, dict[str, Any]]:
    """The rule that stops node n giving one more unit of SKU k to this order (or, for
    a line in a ship group, the whole group)."""
    rows, need = _one_more(ctx, k)
    grouped = rows.size > 1 or need[0] > 1
    if not ctx.allowed[n]:
        if ctx.pickup_node is not None:
            return "pickup", {"pickup_node": ctx.pickup_node}
        return "reach", {"km": _r(ctx.km[n]), "max_km": _r(ctx.max_km[n])}
    left = ctx.stock_left[rows, n] - ctx.chosen[rows, n]
    if np.any(left < need):
        short = int(rows[np.argmax(left < need)])
        detail: dict[str, Any] = {
            "units_left": int(max(ctx.stock_left[short, n] - ctx.chosen[short, n], 0)),
            "used_by_other_orders": int(ctx.stock_total[short, n] - ctx.stock_left[short, n]),
            "price": None if ctx.price_stock is None else _r(ctx.price_stock[short, n]),
        }
        if grouped:  # the ship group's SKU that is short, and what the group needs of it
            detail = {"sku": ctx.skus[short], "units_needed": int(need[rows == short][0]), **detail}
        return "stock", detail
    if ctx.capacity_left[n] - ctx.chosen[:, n].sum() < need.sum():
        detail = {
            "capacity_left": int(max(ctx.capacity_left[n] - ctx.chosen[:, n].sum(), 0)),
            "used_by_other_orders": int(ctx.capacity_total[n] - ctx.capacity_left[n]),
            "price": None if ctx.price_capacity is None else _r(ctx.price_capacity[n]),
        }
        if grouped:
            detail = {"units_needed": int(need.sum()), **detail}
        return "capacity", detail
    if not ctx.chosen[:, n].any() and _at_the_cap(ctx):
        return "split_cap", {"max_shipments": ctx.max_shipments}
    # One more unit (or the group) from n: its unit cost, and a new shipment (a
    # split, if the order ships from elsewhere already) unless n already ships.
    goods = float(need @ ctx.per_unit[rows, n])
    if ctx.chosen[:, n].any():
        marginal = goods
    else:
        split = ctx.split_penalty if ctx.chosen.any() else 0.0
        marginal = goods + ctx.ship_cost[n] + split
    if grouped:
        return "cost", {
            "cost_of_the_ship_group": _r(marginal),
            "units": int(need.sum()),
            "unfilled_penalty": ctx.unfilled_penalty,
        }
    return "cost", {"cost_of_one_more_unit": _r(marginal), "unfilled_penalty": ctx.unfilled_penalty}


# --- counterfactuals -------------------------------------------------------------------


def counterfactuals(
    ctx: OrderContext, alternatives: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The smallest change of each kind that routes the order differently.

    Each candidate change is applied to the order's context and the order routed
    again alone, exactly, on what the other orders left; only changes under which
    the new optimum differs from the choice are kept. Kinds: ``stock`` (fewest
    extra units of one SKU at one node), ``capacity`` (fewest extra units of a
    node's capacity), ``reach`` (the smallest ``max_km`` that lets a node in),
    and, when none of those exists, ``cost`` (the smallest cut of a node's
    shipping cost that makes the next-best plan win). Sorted by the cost of the
    new plan. The search tries the likeliest changes first, smallest first, and
    stops after :data:`COUNTERFACTUAL_RESOLVES` re-solves: "smallest" is among the
    changes tried; every change returned is verified.
    """
    found: list[dict[str, Any]] = []
    chosen_cost = plan_cost(ctx, ctx.chosen)
    # Beyond MAX_DP_SKUS units every re-solve is a MIP: a few only.
    budget = [COUNTERFACTUAL_RESOLVES if ctx.qty.sum() <= MAX_DP_SKUS else 4]

    def resolve(**change) -> np.ndarray | None:
        """The order's new optimum under ``change``, or None if it is the choice
        again or the budget is spent."""
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        alloc = route_alone(ctx, **change)
        return None if np.array_equal(alloc, ctx.chosen) else alloc

    stock_keys = _stock_candidates(ctx)
    most = max((int(ctx.qty[k]) for k, _n in stock_keys), default=0)
    for extra in range(1, most + 1):  # fewest units first, over every candidate pair
        level = []
        for k, n in stock_keys:
            if extra > ctx.qty[k]:
                continue
            stock = ctx.stock_left.copy()
            stock[k, n] += extra
            alloc = resolve(stock=stock)
            if alloc is not None:
                text = f"{extra} more unit{'s' * (extra > 1)} of {ctx.skus[k]} at {ctx.node_ids[n]}"
                level.append(
                    {
                        "kind": "stock",
                        "node_id": ctx.node_ids[n],
                        "sku": ctx.skus[k],
                        "units": extra,
                        "text": text,
                        **_new_plan(ctx, alloc, chosen_cost),
                    }
                )
        if level:
            found.append(min(level, key=lambda c: c["new_cost"]))
            break
        if budget[0] <= 0:
            break

    load = ctx.chosen.sum(axis=0)
    total = int(ctx.qty.sum())
    short = ctx.allowed & np.isfinite(ctx.capacity_left) & (ctx.capacity_left - load < total)
    tight = np.flatnonzero(short)
    by_cost = ctx.ship_cost + ctx.per_unit.min(axis=0)
    tight = tight[np.argsort(by_cost[tight], kind="stable")][:LISTED_NODES]
    for extra in range(1, total + 1):
        level = []
        for n in tight.tolist():
            capacity = ctx.capacity_left.copy()
            capacity[n] += extra
            alloc = resolve(capacity=capacity)
            if alloc is not None:
                level.append(
                    {
                        "kind": "capacity",
                        "node_id": ctx.node_ids[n],
                        "units": extra,
                        "text": f"{extra} more unit{'s' * (extra > 1)} of capacity "
                        f"at {ctx.node_ids[n]}",
                        **_new_plan(ctx, alloc, chosen_cost),
                    }
                )
        if level:
            found.append(min(level, key=lambda c: c["new_cost"]))
            break
        if budget[0] <= 0:
            break

    if ctx.pickup_node is None:
        outside = np.flatnonzero(~ctx.allowed & (ctx.stock_left.sum(axis=0) > 0))
        outside = outside[np.argsort(ctx.km[outside] - ctx.max_km[outside], kind="stable")]
        for n in outside[:LISTED_NODES].tolist():
            radius = math.ceil(ctx.km[n] * 100) / 100  # the km column, rounded up to 10 m
            allowed = ctx.allowed.copy()
            allowed[n] = radius >= ctx.km[n]
            alloc = resolve(allowed=allowed)
            if alloc is not None:
                found.append(
                    {
                        "kind": "reach",
                        "node_id": ctx.node_ids[n],
                        "max_km": radius,
                        "text": f"if {ctx.node_ids[n]}'s radius were {radius:g} km "
                        f"(it is {ctx.max_km[n]:g} km)",
                        **_new_plan(ctx, alloc, chosen_cost),
                    }
                )
                break

    if not found:
        if alternatives is None:
            alternatives = _alternatives(ctx, chosen_cost)
        cut = _cost_counterfactual(ctx, chosen_cost, alternatives, resolve)
        if cut is not None:
            found.append(cut)
    found.sort(key=lambda c: c["new_cost"])
    return found


def _stock_candidates(ctx: OrderContext) -> list[tuple[int, int]]:
    """(sku row, node) pairs where more stock might change the decision: those the
    order's plan on the whole stock lacks, then nodes that could serve an unfilled SKU."""
    keys: list[tuple[int, int]] = []
    whole = route_alone(ctx, stock=ctx.stock_total, capacity=ctx.capacity_total)
    short_k, short_n = np.nonzero((whole > ctx.stock_left) & ctx.allowed[None, :])
    keys.extend(zip(short_k.tolist(), short_n.tolist(), strict=True))
    missing = ctx.qty - ctx.chosen.sum(axis=1)
    by_cost = np.argsort(ctx.ship_cost + ctx.per_unit.min(axis=0), kind="stable")
    for k in np.flatnonzero(missing > 0).tolist():
        nodes = [n for n in by_cost.tolist() if ctx.allowed[n]]
        keys.extend((k, n) for n in nodes[:LISTED_NODES] if (k, n) not in keys)
    return keys


def _cost_counterfactual(ctx, chosen_cost, alternatives, resolve) -> dict[str, Any] | None:
    """The smallest cut of one node's shipping cost under which the order moves there."""
    for alt in alternatives:
        fresh = [ctx.node_ids.index(node) for node in alt["nodes"]]
        fresh = [n for n in fresh if ctx.chosen[:, n].sum() == 0]
        if not fresh or alt["extra_cost"] <= 0:
            continue
        n = fresh[0]
        cut = math.ceil((alt["extra_cost"] + 0.005) * 100) / 100
        if cut > ctx.ship_cost[n]:
            continue  # no shipping cut is enough
        ship = ctx.ship_cost.copy()
        ship[n] -= cut
        alloc = resolve(ship_cost=ship)
        if alloc is not None:
            return {
                "kind": "cost",
                "node_id": ctx.node_ids[n],
                "shipping_cut": cut,
                "text": f"if shipping from {ctx.node_ids[n]} cost {cut:.2f} less "
                f"({ctx.ship_cost[n]:.2f} now)",
                **_new_plan(ctx, alloc, chosen_cost, ship_cost=ship),
            }
    return None


def _new_plan(
    ctx: OrderContext, alloc: np.ndarray, chosen_cost: float, ship_cost: np.ndarray | None = None
) -> dict[str, Any]:
    """The plan a counterfactual leads to (priced at the changed shipping cost, if any)."""
    return {
        "new_nodes": [ctx.node_ids[n] for n in np.flatnonzero(alloc.sum(axis=0) > 0).tolist()],
        "new_cost": _r(plan_cost(ctx, alloc, ship_cost)),
        "new_allocation": [
            {"node_id": ctx.node_ids[n], "sku": ctx.skus[k], "units": int(alloc[k, n])}
            for k, n in zip(*np.nonzero(alloc), strict=True)
        ],
        "verified": True,
    }


# --- text --------------------------------------------------------------------------------


def format_explanation(expl: dict[str, Any]) -> str:
    """The explanation as readable text (``omniroute explain``)."""
    cost = expl["cost"]
    where = f", pickup at {expl['pickup_node']}" if expl["pickup_node"] else ""
    lines = [
        f"order {expl['order_id']}: {expl['status']}{where}, cost {cost['total']:,.2f} "
        f"(shipping {cost['shipping']:,.2f}, handling {cost['handling']:,.2f}, "
        f"split {cost['split']:,.2f}, unfilled {cost['unfilled']:,.2f})",
    ]
    lines.append("chosen:" if expl["chosen"] else "chosen: nothing ships")
    for s in expl["chosen"]:
        lines.append("  " + _shipment_text(s))
    if expl["alternatives"]:
        lines.append("alternatives (on the stock the other orders left):")
        for alt in expl["alternatives"]:
            where = " + ".join(alt["nodes"]) or "nothing ships (all unfilled)"
            lines.append(f"  {where}: {alt['cost']:,.2f} ({alt['extra_cost']:+,.2f})")
    for plan in expl["taken_away"]:
        lines.append(
            f"cheaper plan taken away: {' + '.join(plan['nodes']) or 'nothing'} at "
            f"{plan['cost']:,.2f} ({plan['extra_cost']:+,.2f}), because:"
        )
        for b in plan["binding"]:
            lines.append("  " + _binding_text(b))
    for line in expl["unfilled_lines"]:
        lines.append(
            f"line {line['line_id']} ({line['sku']}): {line['unfilled_units']} unit(s) unfilled; "
            f"{line['nodes_holding_sku']} node(s) hold {line['sku']}"
        )
        for rule, nodes in line["ruled_out"].items():
            names = ", ".join(n["node_id"] for n in nodes)
            lines.append(f"  ruled out by {rule}: {names}")
    for change in expl.get("counterfactuals") or []:
        lines.append(
            f"would change: {change['text']} -> {' + '.join(change['new_nodes']) or 'nothing'} "
            f"at {change['new_cost']:,.2f}"
        )
    if "counterfactuals" in expl and not expl["counterfactuals"]:
        lines.append("would change: no single change of stock, capacity, reach or cost found")
    return "\n".join(lines)


def _shipment_text(s: dict[str, Any]) -> str:
    km = "pickup" if s["km"] is None else f"{s['km']:,.2f} km"
    skus = ", ".join(f"{units} x {sku}" for sku, units in s["skus"].items())
    return (
        f"{s['node_id']} ({s['kind']}, {km}): {skus}; shipping {s['shipping']:,.2f}, "
        f"handling {s['handling']:,.2f}"
    )


def _binding_text(b: dict[str, Any]) -> str:
    price = "" if b.get("price") is None else f", price {b['price']:,.4g}"
    if b["rule"] == "stock":
        return (
            f"stock of {b['sku']} at {b['node_id']}: needs {b['units_needed']}, "
            f"{b['units_left']} left, {b['used_by_other_orders']} used by other orders{price}"
        )
    if b["rule"] == "capacity":
        return (
            f"capacity of {b['node_id']}: needs {b['units_needed']}, {b['capacity_left']} left, "
            f"{b['used_by_other_orders']} used by other orders{price}"
        )
    return f"reach of {b['node_id']}: {b['km']:,.2f} km, beyond its max_km {b['max_km']:,.2f}"


# --- a batch answer, order by order -----------------------------------------------------


def batch_contexts(problem, units: np.ndarray, prices=None):
    """The contexts of every order (see :func:`_contexts_of`)."""
    return _contexts_of(_BatchState.of(problem, units, prices), range(problem.num_orders))


@dataclass(frozen=True)
class _BatchState:
    """What every order's context needs from the whole answer, computed once."""

    problem: Any
    units: np.ndarray
    prices: Any
    key_used: np.ndarray  # (N, S) units allocated at each (node, sku)
    node_used: np.ndarray  # (N,) units allocated at each node
    order_cost: np.ndarray  # (O,)
    unfilled: np.ndarray  # (O,) bool
    holds: np.ndarray  # (N, S) bool
    kind: np.ndarray  # (N,) warehouse | store

    @classmethod
    def of(cls, problem, units, prices) -> _BatchState:
        units = np.asarray(units, dtype=np.int64)
        num_skus = problem.sku_ids.size
        used = units > 0
        key_of_cand = problem.cand_node * num_skus + problem.line_sku[problem.cand_line]
        key_used = np.bincount(
            key_of_cand[used], weights=units[used], minlength=problem.num_nodes * num_skus
        ).reshape(problem.num_nodes, num_skus)
        node_used = np.bincount(
            problem.cand_node[used], weights=units[used], minlength=problem.num_nodes
        )
        order_cost, unfilled = _order_costs(problem, units)
        if prices is not None and not (prices.key.any() or prices.node.any()):
            prices = None  # the solve priced nothing (no LP duals): no price is known
        return cls(
            problem,
            units,
            prices,
            key_used.astype(np.int64),
            node_used,
            order_cost,
            unfilled,
            problem.stock > 0,
            np.where(problem.node_is_store, "store", "warehouse"),
        )


def _contexts_of(state: _BatchState, orders):
    """Yield the :class:`OrderContext` of each of ``orders`` in a batch answer.

    The stock and capacity left to an order are the problem's minus what every
    other order uses. The considered nodes are the order's candidates and, beyond
    the reach (or, for a pickup order, beyond its pickup node), the nodes holding
    one of its SKUs that could matter: any, if the order has unfilled units, else
    those whose one shipment costs less than the order's whole cost.
    """
    orders = np.asarray(list(orders), dtype=np.int64)
    for lo in range(0, orders.size, _CHUNK):
        chunk = orders[lo : lo + _CHUNK]
        outside = _outside_nodes(state, chunk)
        for row, o in enumerate(chunk.tolist()):
            yield _batch_context(state, o, outside[row])


_CHUNK = 1024
"""Orders per block when looking beyond their candidates (bounds the (orders, nodes) arrays)."""


def _order_costs(problem, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each order's cost in the answer, and whether it has unfilled units."""
    cand_order = problem.line_order[problem.cand_line]
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    shipped = pair_units > 0
    shipments = np.bincount(problem.pair_order[shipped], minlength=problem.num_orders)
    shipping = np.bincount(
        problem.pair_order[shipped],
        weights=problem.pair_ship_cost[shipped],
        minlength=problem.num_orders,
    )
    handling = np.bincount(
        cand_order, weights=cand_unit_cost(problem) * units, minlength=problem.num_orders
    )
    ordered = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    allocated = np.bincount(cand_order, weights=units, minlength=problem.num_orders)
    missing = ordered - allocated
    cost = (
        shipping
        + handling
        + problem.split_penalty * np.maximum(shipments - 1, 0)
        + problem.unfilled_penalty * missing
    )
    return cost, missing > 0


def _outside_nodes(state: _BatchState, chunk: np.ndarray):
    """Per order of ``chunk``: (nodes, km, shipping cost) of the nodes that hold one of
    its SKUs but may not serve it, where they could matter (see :func:`_contexts_of`)."""
    from router.geo import haversine_km

    problem, holds, order_cost, unfilled = (
        state.problem,
        state.holds,
        state.order_cost,
        state.unfilled,
    )
    starts = problem.order_line_start[chunk]
    counts = problem.order_line_start[chunk + 1] - starts
    lines = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
    # Every order has a line, so reduceat over each order's block of lines is its OR.
    first = np.r_[0, np.cumsum(counts)[:-1]]
    order_holds = np.logical_or.reduceat(holds[:, problem.line_sku[lines]].T, first, axis=0)
    is_candidate = np.zeros_like(order_holds)
    pair_lo = problem.order_pair_start[chunk]
    pair_hi = problem.order_pair_start[chunk + 1]
    pair_counts = pair_hi - pair_lo
    pair_rows = np.repeat(np.arange(chunk.size), pair_counts)
    pairs = np.repeat(pair_lo - np.r_[0, np.cumsum(pair_counts)[:-1]], pair_counts) + np.arange(
        pair_counts.sum()
    )
    is_candidate[pair_rows, problem.pair_node[pairs]] = True
    pickup = problem.order_pickup[chunk] >= 0
    # A holder that is not a candidate of a delivery order is beyond its max_km, so
    # its shipment costs more than ship_fixed + ship_per_km * max_km: the distances
    # are computed only where even that floor is below the order's cost.
    reach_limited = np.isfinite(problem.max_km)
    floor = np.full(problem.num_nodes, np.inf)  # a node without max_km reaches everyone
    floor[reach_limited] = (
        problem.ship_fixed[reach_limited]
        + problem.ship_per_km[reach_limited] * problem.max_km[reach_limited]
    )
    cost = order_cost[chunk][:, None]
    missing = unfilled[chunk][:, None]
    maybe = order_holds & ~is_candidate & (missing | (~pickup[:, None] & (floor[None, :] < cost)))
    rows, nodes = np.nonzero(maybe)
    km = haversine_km(
        problem.order_lat[chunk[rows]],
        problem.order_lon[chunk[rows]],
        problem.node_lat[nodes],
        problem.node_lon[nodes],
    )
    ship = problem.ship_fixed[nodes] + problem.ship_per_km[nodes] * km
    keep = missing[rows, 0] | (~pickup[rows] & (ship < cost[rows, 0]))
    rows, nodes, km, ship = rows[keep], nodes[keep], km[keep], ship[keep]
    bounds = np.searchsorted(rows, np.arange(chunk.size + 1))
    out = []
    for row in range(chunk.size):
        part = slice(bounds[row], bounds[row + 1])
        n = nodes[part]
        if pickup[row]:
            out.append((n, np.full(n.size, np.nan), np.zeros(n.size)))
        else:
            out.append((n, km[part], ship[part]))
    return out


_PROFILE_RULES = ("cand_credit", "line_group", "order_max_shipments")
"""The Problem arrays of a routing profile's rules that an explanation obeys."""


def _batch_context(state: _BatchState, o: int, outside) -> OrderContext:
    problem, units, prices, kind = state.problem, state.units, state.prices, state.kind
    lines = problem.lines_of(o)
    line_skus = problem.line_sku[lines]
    skus, sku_of_line = np.unique(line_skus, return_inverse=True)
    line_qty = problem.line_qty[lines]
    qty = np.bincount(sku_of_line, weights=line_qty, minlength=skus.size).astype(np.int64)
    pairs = problem.pairs_of(o)
    allowed_nodes = problem.pair_node[pairs]
    # The order's own units per (sku row, node), from its line candidates.
    cands = slice(
        int(problem.line_cand_start[lines.start]), int(problem.line_cand_start[lines.stop])
    )
    own_c = np.flatnonzero(units[cands]) + cands.start
    own_units = units[own_c]
    outside_nodes, km_out, ship_out = outside
    nodes = np.concatenate([allowed_nodes, outside_nodes])
    # The profile's rules over the candidates as the routing applied them: the very
    # OrderProblem of routing the order alone (its columns are the order's pairs).
    # Nodes beyond the candidates have no clearance credit (it is a candidate's).
    max_shipments = sku_group = unit_cost = None
    if any(getattr(problem, name, None) is not None for name in _PROFILE_RULES):
        routed, _nodes, _skus, _ = order_problem(problem, o)
        max_shipments, sku_group = routed.max_shipments, routed.sku_group
        if getattr(problem, "cand_credit", None) is not None:
            beyond = np.broadcast_to(
                problem.handling[outside_nodes], (skus.size, outside_nodes.size)
            )
            unit_cost = np.concatenate([routed.unit_cost, beyond], axis=1)
    allowed = np.zeros(nodes.size, dtype=bool)
    allowed[: allowed_nodes.size] = True
    pickup = int(problem.order_pickup[o])
    km = np.concatenate([problem.pair_km[pairs], km_out])
    if pickup >= 0:
        km = np.full(nodes.size, np.nan)
    ship = np.concatenate([problem.pair_ship_cost[pairs], ship_out])
    chosen = np.zeros((skus.size, nodes.size), dtype=np.int64)
    # Own nodes are candidates: pair p of the order is column p - pairs.start.
    np.add.at(
        chosen,
        (
            sku_of_line[problem.cand_line[own_c] - lines.start],
            problem.cand_pair[own_c] - pairs.start,
        ),
        own_units,
    )
    sub = np.ix_(nodes, skus)
    stock_total = problem.stock[sub].T
    stock_left = stock_total - state.key_used[sub].T + chosen
    capacity_total = problem.capacity[nodes]
    capacity_left = capacity_total - state.node_used[nodes] + chosen.sum(axis=0)
    price_stock = price_capacity = None
    if prices is not None:
        price_stock = prices.key[sub].T
        price_capacity = np.where(np.isfinite(capacity_total), prices.node[nodes], 0.0)
    return OrderContext(
        order_id=str(problem.order_ids[o]),
        pickup_node=None if pickup < 0 else str(problem.node_ids[pickup]),
        skus=tuple(str(s) for s in problem.sku_ids[skus]),
        qty=qty,
        lines=tuple(
            zip(
                (str(x) for x in problem.line_ids[lines]),
                sku_of_line.tolist(),
                line_qty.tolist(),
                strict=True,
            )
        ),
        node_ids=tuple(str(n) for n in problem.node_ids[nodes]),
        node_kind=tuple(kind[nodes].tolist()),
        km=km,
        max_km=problem.max_km[nodes],
        ship_cost=ship,
        handling=problem.handling[nodes],
        allowed=allowed,
        stock_total=stock_total,
        stock_left=stock_left,
        capacity_total=capacity_total,
        capacity_left=capacity_left,
        chosen=chosen,
        split_penalty=problem.split_penalty,
        unfilled_penalty=problem.unfilled_penalty,
        price_stock=price_stock,
        price_capacity=price_capacity,
        max_shipments=max_shipments,
        sku_group=sku_group,
        unit_cost=unit_cost,
    )


def explain_batch(problem, result, *, with_counterfactual: bool | None = None) -> list[dict]:
    """The explanation of every order of a batch answer (a ``RoutingResult``).

    Counterfactuals are computed for batches of up to :data:`COUNTERFACTUAL_MAX_ORDERS`
    orders unless ``with_counterfactual`` says otherwise. Filled one-unit orders,
    the commonest kind, are explained all at once (:func:`_explain_one_unit_orders`,
    the same answer as :func:`explain_order`); the others one by one.
    """
    if with_counterfactual is None:
        with_counterfactual = problem.num_orders <= COUNTERFACTUAL_MAX_ORDERS
    state = _BatchState.of(problem, result.units, result.prices)
    fast: dict[int, dict] = {}
    if not with_counterfactual:
        fast = _explain_one_unit_orders(state)
    slow = [o for o in range(problem.num_orders) if o not in fast]
    for o, ctx in zip(slow, _contexts_of(state, slow), strict=True):
        fast[o] = explain_order(ctx, with_counterfactual=with_counterfactual)
    return [fast[o] for o in range(problem.num_orders)]


def _explain_one_unit_orders(state: _BatchState) -> dict[int, dict]:
    """:func:`explain_order` for every filled order of one line of one unit, vectorised.

    Such an order's plans are one node or nothing, so its alternatives, its plan
    on the whole stock and its plan beyond the reach are each a minimum over its
    candidates: one sort of all their line candidates answers every order at once.
    """
    problem, units = state.problem, state.units
    lines_per_order = np.diff(problem.order_line_start)
    first_line = np.minimum(problem.order_line_start[:-1], max(problem.num_lines - 1, 0))
    one_unit = (lines_per_order == 1) & (problem.line_qty[first_line] == 1) & ~state.unfilled
    orders = np.flatnonzero(one_unit)
    if orders.size == 0:
        return {}
    cands = np.flatnonzero(one_unit[problem.line_order[problem.cand_line]])
    line = problem.cand_line[cands]
    node = problem.cand_node[cands]
    sku = problem.line_sku[line]
    own = units[cands]
    penalty = problem.unfilled_penalty
    ship = problem.pair_ship_cost[problem.cand_pair[cands]]
    handling = cand_unit_cost(problem, cands)  # net of a profile's clearance credit
    cost = ship + handling
    stock_left = problem.stock[node, sku] - state.key_used[node, sku] + own
    finite = np.isfinite(problem.capacity[node])
    capacity_left = problem.capacity[node] - state.node_used[node] + own
    worth = handling < penalty
    residual = worth & (stock_left >= 1) & (capacity_left >= 1)
    whole = worth & (problem.stock[node, sku] >= 1) & (problem.capacity[node] >= 1)
    others_use = (state.key_used[node, sku] - own != 0) | (
        finite & (state.node_used[node] - own != 0)
    )
    # Line candidates are sorted by line, then node: a stable sort by cost keeps,
    # among equal costs, the node order that explain_order breaks ties by.
    by_cost = np.lexsort((node, cost, line))
    bounds = np.searchsorted(line[by_cost], problem.order_line_start[orders])
    bounds = np.r_[bounds, by_cost.size]
    chosen_at = np.full(problem.num_orders, -1)
    chosen_at[problem.line_order[line[own > 0]]] = np.flatnonzero(own > 0)
    outside = {}
    for lo in range(0, orders.size, _CHUNK):
        chunk = orders[lo : lo + _CHUNK]
        for o, far in zip(chunk.tolist(), _outside_nodes(state, chunk), strict=True):
            outside[o] = far
    out = {}
    for i, o in enumerate(orders.tolist()):
        mine = by_cost[bounds[i] : bounds[i + 1]]
        c = int(chosen_at[o])
        chosen_cost = float(cost[c])
        pickup = int(problem.order_pickup[o])
        sku_id = str(problem.sku_ids[sku[c]])

        def shipment(j: int, sku_id=sku_id, pickup=pickup) -> dict[str, Any]:
            n = int(node[j])
            return {
                "node_id": str(problem.node_ids[n]),
                "kind": str(state.kind[n]),
                "km": None if pickup >= 0 else _r(problem.pair_km[problem.cand_pair[cands[j]]]),
                "units": 1,
                "skus": {sku_id: 1},
                "shipping": _r(ship[j]),
                "handling": _r(handling[j]),
            }

        def plan(j: int, chosen_cost=chosen_cost) -> dict[str, Any]:
            return {
                "nodes": [str(problem.node_ids[node[j]])],
                "units": [1],
                "cost": _r(cost[j]),
                "extra_cost": _r(_r(cost[j]) - _r(chosen_cost)),
            }

        nothing = {
            "nodes": [],
            "units": [],
            "cost": _r(penalty),
            "extra_cost": _r(_r(penalty) - _r(chosen_cost)),
        }
        ranked = []
        others = [j for j in mine[residual[mine]].tolist() if j != c]
        for j in others[:TOP_ALTERNATIVES]:
            if penalty <= cost[j] and nothing not in ranked:
                ranked.append(nothing)
            ranked.append(plan(j))
        if nothing not in ranked:
            ranked.append(nothing)
        taken = []
        if others_use[mine].any():
            best = mine[whole[mine]]
            if best.size and cost[best[0]] < penalty and cost[best[0]] < chosen_cost - _EPS:
                j = int(best[0])
                binding = _one_unit_binding(state, j, node, sku, stock_left, capacity_left)
                if binding:
                    taken.append({**plan(j), "binding": binding})
        if pickup < 0:
            far_nodes, far_km, far_ship = outside[o]
            if far_nodes.size:
                far_left = problem.stock[far_nodes, sku[c]] - state.key_used[far_nodes, sku[c]]
                far_room = problem.capacity[far_nodes] - state.node_used[far_nodes]
                far_cost = far_ship + problem.handling[far_nodes]
                ok = (problem.handling[far_nodes] < penalty) & (far_left >= 1) & (far_room >= 1)
                inside = mine[residual[mine]]
                best_in = float(cost[inside[0]]) if inside.size else np.inf
                if ok.any():
                    f = int(np.flatnonzero(ok)[np.argmin(far_cost[ok])])
                    wide = float(far_cost[f])
                    if wide < best_in and wide < penalty and wide < chosen_cost - _EPS:
                        n = int(far_nodes[f])
                        taken.append(
                            {
                                "nodes": [str(problem.node_ids[n])],
                                "units": [1],
                                "cost": _r(wide),
                                "extra_cost": _r(_r(wide) - _r(chosen_cost)),
                                "binding": [
                                    {
                                        "rule": "reach",
                                        "node_id": str(problem.node_ids[n]),
                                        "km": _r(far_km[f]),
                                        "max_km": _r(problem.max_km[n]),
                                    }
                                ],
                            }
                        )
        chosen = shipment(c)
        out[o] = {
            "order_id": str(problem.order_ids[o]),
            "status": "filled",
            "pickup_node": None if pickup < 0 else str(problem.node_ids[pickup]),
            "alternatives_exact": True,
            "cost": {
                "total": _r(chosen_cost),
                "shipping": chosen["shipping"],
                "handling": chosen["handling"],
                "split": 0.0,
                "unfilled": 0.0,
                "splits": 0,
                "unfilled_units": 0,
            },
            "chosen": [chosen],
            "alternatives": ranked[:TOP_ALTERNATIVES],
            "taken_away": taken,
            "unfilled_lines": [],
        }
    return out


def _one_unit_binding(state, j, node, sku, stock_left, capacity_left) -> list[dict[str, Any]]:
    problem, prices = state.problem, state.prices
    n, s = int(node[j]), int(sku[j])
    binding = []
    if stock_left[j] < 1:
        binding.append(
            {
                "rule": "stock",
                "node_id": str(problem.node_ids[n]),
                "sku": str(problem.sku_ids[s]),
                "units_needed": 1,
                "units_left": int(max(stock_left[j], 0)),
                "used_by_other_orders": int(problem.stock[n, s] - stock_left[j]),
                "price": None if prices is None else _r(prices.key[n, s]),
            }
        )
    if capacity_left[j] < 1:
        binding.append(
            {
                "rule": "capacity",
                "node_id": str(problem.node_ids[n]),
                "units_needed": 1,
                "capacity_left": int(max(capacity_left[j], 0)),
                "used_by_other_orders": int(problem.capacity[n] - capacity_left[j]),
                "price": None if prices is None else _r(prices.node[n]),
            }
        )
    return binding


# --- an answer folder -------------------------------------------------------------------


def explain_from_answer(
    scenario, out_dir, order_id: str, *, with_counterfactual: bool = False
) -> dict[str, Any]:
    """One order's explanation from an answer folder of ``omniroute solve``.

    Read from ``explanations.jsonl`` when it holds the order (and, if asked, its
    counterfactuals); otherwise rebuilt from ``assignments.csv``, which must be a
    feasible answer of ``scenario`` (checked by the independent checker). A
    rebuilt explanation has no LP prices: they live only in ``explanations.jsonl``.
    Raises ``KeyError`` for an order the scenario does not have.
    """
    from pathlib import Path

    from router.checker import check, load_assignments
    from router.problem import build_problem
    from router.scenario import ScenarioError

    if order_id not in set(scenario.orders["order_id"]):
        raise KeyError(order_id)
    out_dir = Path(out_dir)
    stored = _stored_explanation(out_dir / "explanations.jsonl", order_id)
    if stored is not None and (not with_counterfactual or "counterfactuals" in stored):
        return stored
    assignments = load_assignments(out_dir / "assignments.csv")
    report = check(scenario, assignments)
    if not report.feasible:
        raise ScenarioError(
            "assignments.csv",
            f"is not a feasible answer of this scenario ({report.violations[0].message})",
        )
    problem = build_problem(scenario)
    units = units_of_assignments(problem, assignments)
    o = int(np.flatnonzero(problem.order_ids == order_id)[0])
    ctx = next(_contexts_of(_BatchState.of(problem, units, None), [o]))
    fresh = explain_order(ctx, with_counterfactual=with_counterfactual)
    if stored is not None:  # keep the stored parts (with their prices), add what was asked
        return {**stored, "counterfactuals": fresh["counterfactuals"]}
    return fresh


def _stored_explanation(path, order_id: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    prefix = '{"order_id": ' + json.dumps(order_id) + ","
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.startswith(prefix):
                return json.loads(line)
    return None


def units_of_assignments(problem, assignments) -> np.ndarray:
    """``units`` (C,) of a feasible assignment frame (every row names a line candidate)."""
    line_index = {
        (str(problem.order_ids[problem.line_order[line]]), str(problem.line_ids[line])): line
        for line in range(problem.num_lines)
    }
    node_index = {str(node): n for n, node in enumerate(problem.node_ids)}
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    for order_id, line_id, node_id, qty in assignments[
        ["order_id", "line_id", "node_id", "qty"]
    ].itertuples(index=False):
        line = line_index[(order_id, line_id)]
        cands = problem.candidates_of(line)
        c = cands.start + int(np.searchsorted(problem.cand_node[cands], node_index[node_id]))
        units[c] += int(qty)
    return units
