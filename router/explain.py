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
  the node out (stock, capacity, reach, pickup, or cost: shipping it costs more
  than the unfilled penalty).

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
from typing import Any

import numpy as np

from solver.order_dp import OrderProblem, order_cost, solve_order

TOP_ALTERNATIVES = 3
"""Alternative plans listed per order."""
LISTED_NODES = 5
"""Nodes listed per rule for an unfilled line, and candidates tried per counterfactual kind."""
COUNTERFACTUAL_MAX_ORDERS = 500
"""A batch up to this many orders gets counterfactuals in ``explanations.jsonl``."""
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

    def replace(self, **changes: Any) -> OrderContext:
        return replace(self, **changes)

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
        )


# --- routing the order alone, on some stock ------------------------------------------


def _order_problem(
    ctx: OrderContext,
    stock: np.ndarray,
    capacity: np.ndarray,
    ship_cost: np.ndarray | None = None,
    cols: np.ndarray | slice = slice(None),
) -> OrderProblem:
    """The order's :class:`OrderProblem` over the nodes ``cols``."""
    ship = ctx.ship_cost if ship_cost is None else ship_cost
    return OrderProblem(
        qty=ctx.qty,
        stock=stock[:, cols],
        ship_cost=ship[cols],
        unit_cost=np.broadcast_to(ctx.handling[cols], stock[:, cols].shape).copy(),
        capacity=capacity[cols],
        split_penalty=ctx.split_penalty,
        unfilled_penalty=ctx.unfilled_penalty,
    )


def plan_cost(ctx: OrderContext, alloc: np.ndarray, ship_cost: np.ndarray | None = None) -> float:
    """The order's cost of ``alloc`` (K, N) under the scenario cost formula."""
    return order_cost(_order_problem(ctx, ctx.stock_left, ctx.capacity_left, ship_cost), alloc)


def route_alone(
    ctx: OrderContext,
    *,
    stock: np.ndarray | None = None,
    capacity: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    ship_cost: np.ndarray | None = None,
) -> np.ndarray:
    """The order's exact optimum on the given stock, capacity and allowed nodes
    (by default: what the other orders left, under the reach and pickup rules)."""
    stock = ctx.stock_left if stock is None else stock
    capacity = ctx.capacity_left if capacity is None else capacity
    allowed = ctx.allowed if allowed is None else allowed
    ship = ctx.ship_cost if ship_cost is None else ship_cost
    cols = np.flatnonzero(allowed)
    alloc = np.zeros_like(ctx.chosen)
    if cols.size == 0:
        return alloc
    plan = solve_order(_order_problem(ctx, stock, capacity, ship, cols))
    alloc[:, cols] = plan.alloc
    return alloc


def single_node_plan(ctx: OrderContext, node: int) -> np.ndarray:
    """Everything node ``node`` can give from what the others left; the rest unfilled."""
    alloc = np.zeros_like(ctx.chosen)
    take = np.minimum(ctx.qty, np.maximum(ctx.stock_left[:, node], 0))
    room = ctx.capacity_left[node]
    if take.sum() > room:  # handling is per node: which SKU yields does not change the cost
        left = int(max(room, 0))
        for k in range(take.size):
            take[k] = min(take[k], left)
            left -= int(take[k])
    alloc[:, node] = take
    return alloc


# --- the explanation -------------------------------------------------------------------


def explain_order(ctx: OrderContext, *, with_counterfactual: bool = False) -> dict[str, Any]:
    """The explanation of one order (a JSON-ready dict; see the module docstring)."""
    chosen_cost = plan_cost(ctx, ctx.chosen)
    unfilled = int(ctx.qty.sum() - ctx.chosen.sum())
    ordered = int(ctx.qty.sum())
    status = "filled" if unfilled == 0 else ("unfilled" if unfilled == ordered else "partial")
    out: dict[str, Any] = {
        "order_id": ctx.order_id,
        "status": status,
        "pickup_node": ctx.pickup_node,
        "cost": _cost_terms(ctx, ctx.chosen),
        "chosen": _shipments(ctx, ctx.chosen),
        "alternatives": _alternatives(ctx, chosen_cost),
        "taken_away": _taken_away(ctx, chosen_cost),
        "unfilled_lines": _unfilled_lines(ctx),
    }
    if with_counterfactual:
        out["counterfactuals"] = counterfactuals(ctx)
    return out


def _r(value: float) -> float:
    return round(float(value), 6)


def _cost_terms(ctx: OrderContext, alloc: np.ndarray) -> dict[str, Any]:
    used = alloc.sum(axis=0) > 0
    splits = max(0, int(used.sum()) - 1)
    unfilled = int(ctx.qty.sum() - alloc.sum())
    return {
        "total": _r(plan_cost(ctx, alloc)),
        "shipping": _r(ctx.ship_cost[used].sum()),
        "handling": _r((alloc.sum(axis=0) * ctx.handling).sum()),
        "split": _r(ctx.split_penalty * splits),
        "unfilled": _r(ctx.unfilled_penalty * unfilled),
        "splits": splits,
        "unfilled_units": unfilled,
    }


def _km(ctx: OrderContext, n: int) -> float | None:
    return None if ctx.pickup_node is not None or math.isnan(ctx.km[n]) else _r(ctx.km[n])


def _shipments(ctx: OrderContext, alloc: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for n in np.flatnonzero(alloc.sum(axis=0) > 0).tolist():
        units = alloc[:, n]
        rows.append(
            {
                "node_id": ctx.node_ids[n],
                "kind": ctx.node_kind[n],
                "km": _km(ctx, n),
                "units": int(units.sum()),
                "skus": {ctx.skus[k]: int(units[k]) for k in np.flatnonzero(units).tolist()},
                "shipping": _r(ctx.ship_cost[n]),
                "handling": _r(units.sum() * ctx.handling[n]),
            }
        )
    return rows


def _plan(ctx: OrderContext, alloc: np.ndarray, chosen_cost: float) -> dict[str, Any]:
    cost = plan_cost(ctx, alloc)
    return {
        "nodes": [ctx.node_ids[n] for n in np.flatnonzero(alloc.sum(axis=0) > 0).tolist()],
        "cost": _r(cost),
        "extra_cost": _r(cost - chosen_cost),
        "cost_terms": _cost_terms(ctx, alloc),
        "shipments": _shipments(ctx, alloc),
    }


def _alternatives(ctx: OrderContext, chosen_cost: float) -> list[dict[str, Any]]:
    """The best plans other than the choice, on what the other orders left.

    The best plan without each chosen node (exact), and each node's single-node
    plan; the cheapest of them is the exact next-best plan among those that do not
    use every chosen node.
    """
    plans: dict[bytes, np.ndarray] = {}
    chosen_key = ctx.chosen.tobytes()
    for n in np.flatnonzero(ctx.chosen.sum(axis=0) > 0).tolist():
        allowed = ctx.allowed.copy()
        allowed[n] = False
        alloc = route_alone(ctx, allowed=allowed)
        plans.setdefault(alloc.tobytes(), alloc)
    for n in np.flatnonzero(ctx.allowed).tolist():
        alloc = single_node_plan(ctx, n)
        if alloc.any():
            plans.setdefault(alloc.tobytes(), alloc)
    plans.pop(chosen_key, None)
    ranked = sorted(plans.values(), key=lambda a: (plan_cost(ctx, a), a.tobytes()))
    return [_plan(ctx, a, chosen_cost) for a in ranked[:TOP_ALTERNATIVES]]


def _taken_away(ctx: OrderContext, chosen_cost: float) -> list[dict[str, Any]]:
    """Cheaper plans that a rule forbids: the binding constraints, with their prices."""
    found = []
    whole = route_alone(ctx, stock=ctx.stock_total, capacity=ctx.capacity_total)
    if plan_cost(ctx, whole) < chosen_cost - _EPS:
        plan = _plan(ctx, whole, chosen_cost)
        plan["binding"] = _binding_stock_and_capacity(ctx, whole)
        found.append(plan)
    if ctx.pickup_node is None and not ctx.allowed.all():
        anywhere = np.ones_like(ctx.allowed)
        wide = route_alone(ctx, allowed=anywhere)
        if plan_cost(ctx, wide) < chosen_cost - _EPS:
            plan = _plan(ctx, wide, chosen_cost)
            plan["binding"] = [
                {
                    "rule": "reach",
                    "node_id": ctx.node_ids[n],
                    "km": _r(ctx.km[n]),
                    "max_km": _r(ctx.max_km[n]),
                }
                for n in np.flatnonzero((wide.sum(axis=0) > 0) & ~ctx.allowed).tolist()
            ]
            found.append(plan)
    return found


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
        reasons: dict[str, list[dict[str, Any]]] = {}
        order = np.argsort(np.where(np.isnan(ctx.km), 0.0, ctx.km), kind="stable")
        for n in order.tolist():
            if ctx.stock_total[k, n] <= 0:
                continue
            rule, detail = _why_not(ctx, k, n)
            listed = reasons.setdefault(rule, [])
            if len(listed) < LISTED_NODES:
                listed.append({"node_id": ctx.node_ids[n], **detail})
        holders = int((ctx.stock_total[k] > 0).sum())
        out.append(
            {
                "line_id": line_id,
                "sku": ctx.skus[k],
                "unfilled_units": qty - got,
                "nodes_holding_sku": holders,
                "ruled_out": reasons,
            }
        )
    return out


def _why_not(ctx: OrderContext, k: int, n: int) -> tuple[str, dict[str, Any]]:
    """The rule that stops node n giving one more unit of SKU k to this order."""
    if not ctx.allowed[n]:
        if ctx.pickup_node is not None:
            return "pickup", {"pickup_node": ctx.pickup_node}
        return "reach", {"km": _r(ctx.km[n]), "max_km": _r(ctx.max_km[n])}
    if ctx.stock_left[k, n] - ctx.chosen[k, n] <= 0:
        return "stock", {
            "units_left": int(max(ctx.stock_left[k, n] - ctx.chosen[k, n], 0)),
            "used_by_other_orders": int(ctx.stock_total[k, n] - ctx.stock_left[k, n]),
            "price": None if ctx.price_stock is None else _r(ctx.price_stock[k, n]),
        }
    if ctx.capacity_left[n] - ctx.chosen[:, n].sum() <= 0:
        return "capacity", {
            "capacity_left": 0,
            "used_by_other_orders": int(ctx.capacity_total[n] - ctx.capacity_left[n]),
            "price": None if ctx.price_capacity is None else _r(ctx.price_capacity[n]),
        }
    ships = ctx.chosen[:, n].sum() > 0
    marginal = ctx.handling[n] + (0.0 if ships else ctx.ship_cost[n] + ctx.split_penalty)
    return "cost", {"cost_of_one_more_unit": _r(marginal), "unfilled_penalty": ctx.unfilled_penalty}


# --- counterfactuals -------------------------------------------------------------------


def counterfactuals(ctx: OrderContext) -> list[dict[str, Any]]:
    """The smallest change of each kind that routes the order differently.

    Each candidate change is applied to the order's context and the order routed
    again alone, exactly, on what the other orders left; only changes under which
    the new optimum differs from the choice are kept. Kinds: ``stock`` (fewest
    extra units of one SKU at one node), ``capacity`` (fewest extra units of a
    node's capacity), ``reach`` (the smallest ``max_km`` that lets a node in),
    and, when none of those exists, ``cost`` (the smallest cut of a node's
    shipping cost that makes its plan win). Sorted by the cost of the new plan.
    """
    found: list[dict[str, Any]] = []
    base = ctx.chosen
    chosen_cost = plan_cost(ctx, base)

    def differs(alloc: np.ndarray) -> bool:
        return not np.array_equal(alloc, base)

    stock_keys = _stock_candidates(ctx)
    best: dict[str, Any] | None = None
    for k, n in stock_keys:
        for extra in range(1, int(ctx.qty[k]) + 1):
            stock = ctx.stock_left.copy()
            stock[k, n] += extra
            alloc = route_alone(ctx, stock=stock)
            if differs(alloc):
                change = {
                    "kind": "stock",
                    "node_id": ctx.node_ids[n],
                    "sku": ctx.skus[k],
                    "units": extra,
                    "text": f"{extra} more unit{'s' * (extra > 1)} of {ctx.skus[k]} "
                    f"at {ctx.node_ids[n]}",
                }
                cand = {**change, **_new_plan(ctx, alloc, chosen_cost, stock=stock)}
                if best is None or (extra, cand["new_cost"]) < (best["units"], best["new_cost"]):
                    best = cand
                break
    if best is not None:
        found.append(best)

    best = None
    load = base.sum(axis=0)
    for n in np.flatnonzero(ctx.allowed & np.isfinite(ctx.capacity_left)).tolist():
        if ctx.capacity_left[n] - load[n] >= ctx.qty.sum():
            continue
        for extra in range(1, int(ctx.qty.sum()) + 1):
            capacity = ctx.capacity_left.copy()
            capacity[n] += extra
            alloc = route_alone(ctx, capacity=capacity)
            if differs(alloc):
                cand = {
                    "kind": "capacity",
                    "node_id": ctx.node_ids[n],
                    "units": extra,
                    "text": f"{extra} more unit{'s' * (extra > 1)} of capacity "
                    f"at {ctx.node_ids[n]}",
                    **_new_plan(ctx, alloc, chosen_cost, capacity=capacity),
                }
                if best is None or (extra, cand["new_cost"]) < (best["units"], best["new_cost"]):
                    best = cand
                break
    if best is not None:
        found.append(best)

    if ctx.pickup_node is None:
        outside = np.flatnonzero(~ctx.allowed & (ctx.stock_left.sum(axis=0) > 0))
        outside = outside[np.argsort(ctx.km[outside] - ctx.max_km[outside], kind="stable")]
        for n in outside[:LISTED_NODES].tolist():
            radius = math.ceil(ctx.km[n] * 100) / 100  # the km column, rounded up to 10 m
            allowed = ctx.allowed.copy()
            allowed[n] = radius >= ctx.km[n]
            alloc = route_alone(ctx, allowed=allowed)
            if differs(alloc):
                found.append(
                    {
                        "kind": "reach",
                        "node_id": ctx.node_ids[n],
                        "max_km": radius,
                        "text": f"if {ctx.node_ids[n]}'s radius were {radius:g} km "
                        f"(it is {ctx.max_km[n]:g} km)",
                        **_new_plan(ctx, alloc, chosen_cost, allowed=allowed),
                    }
                )
                break

    if not found:
        cut = _cost_counterfactual(ctx, chosen_cost)
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
    by_cost = np.argsort(ctx.ship_cost + ctx.handling, kind="stable")
    for k in np.flatnonzero(missing > 0).tolist():
        nodes = [n for n in by_cost.tolist() if ctx.allowed[n]]
        keys.extend((k, n) for n in nodes[:LISTED_NODES] if (k, n) not in keys)
    return keys


def _cost_counterfactual(ctx: OrderContext, chosen_cost: float) -> dict[str, Any] | None:
    """The smallest cut of one node's shipping cost under which the order moves there."""
    for alt in _alternatives(ctx, chosen_cost):
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
        alloc = route_alone(ctx, ship_cost=ship)
        if not np.array_equal(alloc, ctx.chosen):
            return {
                "kind": "cost",
                "node_id": ctx.node_ids[n],
                "shipping_cut": cut,
                "text": f"if shipping from {ctx.node_ids[n]} cost {cut:.2f} less "
                f"({ctx.ship_cost[n]:.2f} now)",
                **_new_plan(ctx, alloc, chosen_cost, ship_cost=ship),
            }
    return None


def _new_plan(ctx: OrderContext, alloc: np.ndarray, chosen_cost: float, **_change) -> dict:
    ship_cost = _change.get("ship_cost")
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
            lines.append(
                f"  {' + '.join(alt['nodes'])}: {alt['cost']:,.2f} ({alt['extra_cost']:+,.2f})"
            )
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
    return _contexts_of(problem, units, prices, range(problem.num_orders))


def _contexts_of(problem, units: np.ndarray, prices, orders):
    """Yield the :class:`OrderContext` of each of ``orders`` in a batch answer.

    ``problem`` is a :class:`router.problem.Problem`, ``units`` (C,) the answer,
    ``prices`` a :class:`solver.bound.Prices` or None. The stock and capacity
    left to an order are the problem's minus what every other order uses. The
    considered nodes are the order's candidates and, beyond the reach (or, for a
    pickup order, beyond its pickup node), the nodes holding one of its SKUs
    that could matter: any, if the order has unfilled units, else those whose
    one shipment costs less than the order's whole cost.
    """
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
    holds = problem.stock > 0
    kind = np.where(problem.node_is_store, "store", "warehouse")
    for o in orders:
        yield _batch_context(problem, units, prices, key_used, node_used, holds, kind, o)


def _batch_context(problem, units, prices, key_used, node_used, holds, kind, o) -> OrderContext:
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
    own_nodes = problem.cand_node[own_c]
    own_k = sku_of_line[problem.cand_line[own_c] - lines.start]
    own_units = units[own_c]
    cost_so_far = (
        problem.unfilled_penalty * (line_qty.sum() - own_units.sum())
        + (problem.handling[own_nodes] * own_units).sum()
        + problem.pair_ship_cost[pairs][np.isin(allowed_nodes, own_nodes)].sum()
    )
    pickup = int(problem.order_pickup[o])
    unfilled = own_units.sum() < line_qty.sum()
    # Nodes beyond the rules that hold one of the SKUs and could matter.
    holders = np.flatnonzero(holds[:, skus].any(axis=1))
    outside = holders[~np.isin(holders, allowed_nodes)]
    if outside.size:
        km_out = _km_to(problem, o, outside)
        ship_out = problem.ship_fixed[outside] + problem.ship_per_km[outside] * km_out
        if pickup >= 0:
            keep = np.full(outside.size, bool(unfilled))
            ship_out = np.zeros(outside.size)
        else:
            keep = unfilled | (ship_out < cost_so_far)
        outside, km_out, ship_out = outside[keep], km_out[keep], ship_out[keep]
    else:
        km_out = ship_out = np.zeros(0)
    nodes = np.concatenate([allowed_nodes, outside])
    n_allowed = allowed_nodes.size
    allowed = np.zeros(nodes.size, dtype=bool)
    allowed[:n_allowed] = True
    km = np.concatenate([problem.pair_km[pairs], km_out])
    if pickup >= 0:
        km = np.full(nodes.size, np.nan)
    ship = np.concatenate([problem.pair_ship_cost[pairs], ship_out])
    column = np.searchsorted(allowed_nodes, own_nodes)  # own nodes are candidates
    chosen = np.zeros((skus.size, nodes.size), dtype=np.int64)
    np.add.at(chosen, (own_k, column), own_units)
    sub = np.ix_(nodes, skus)
    stock_total = problem.stock[sub].T
    stock_left = stock_total - key_used[sub].T.astype(np.int64) + chosen
    capacity_total = problem.capacity[nodes]
    capacity_left = capacity_total - node_used[nodes] + chosen.sum(axis=0)
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
            (str(line_id), int(k), int(q))
            for line_id, k, q in zip(problem.line_ids[lines], sku_of_line, line_qty, strict=True)
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
    )


def _km_to(problem, o: int, nodes: np.ndarray) -> np.ndarray:
    from router.geo import haversine_km

    return haversine_km(
        problem.order_lat[o], problem.order_lon[o], problem.node_lat[nodes], problem.node_lon[nodes]
    )


def explain_batch(problem, result, *, with_counterfactual: bool | None = None) -> list[dict]:
    """The explanation of every order of a batch answer (a ``RoutingResult``).

    Counterfactuals are computed for batches of up to :data:`COUNTERFACTUAL_MAX_ORDERS`
    orders unless ``with_counterfactual`` says otherwise.
    """
    if with_counterfactual is None:
        with_counterfactual = problem.num_orders <= COUNTERFACTUAL_MAX_ORDERS
    return [
        explain_order(ctx, with_counterfactual=with_counterfactual)
        for ctx in batch_contexts(problem, result.units, result.prices)
    ]


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
    ctx = next(_contexts_of(problem, units, None, [o]))
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
