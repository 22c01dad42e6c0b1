"""Why this node, in the live pool: every routed order keeps its decision's arrays.

Routing an order (``/v1/route``, or a wave's reservation of its part of the joint
answer) writes one row of ``pool_explanations`` in the same transaction as its
reservations: the order's :class:`router.explain.OrderContext` as JSON. ``GET
/v1/orders/{id}/explanation`` explains it on request with the very functions of
``omniroute explain`` (:func:`router.explain.explain_order`, counterfactual
included), so the hot path pays only for one small insert.

What a context knows depends on how the order was routed:

- **a wave** (the joint solve): the batch's context, with the stock and capacity
  the wave's other orders used, the nodes beyond the reach that hold its SKUs,
  and the LP prices of the joint solve;
- **``/v1/route``** (and a wave order repaired alone): the nodes the order could
  use and the stock available to it when it was routed (net of every other
  reservation and lock), so the explanation names the chosen nodes, the
  alternatives and the rules that ruled out nodes, but cannot say which other
  order holds a unit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from router.explain import OrderContext, explain_order
from router.pool.errors import NotFound
from router.pool.nodes import NodeIndex
from router.pool.schema import explanations


def route_context(order, prepared, plan, index: NodeIndex) -> OrderContext:
    """The context of an order routed alone (``routing.PreparedOrder`` and its plan):
    the arrays of its ``OrderProblem``, the one the routing solved, profile rules included."""
    problem = prepared.problem
    row_of_sku = {sku: k for k, sku in enumerate(prepared.sku_list)}
    nodes = np.asarray(prepared.candidates, dtype=np.int64)
    max_km = np.asarray(index.max_km[nodes], dtype=float)
    return OrderContext(
        order_id=order.order_id,
        pickup_node=order.pickup_node,
        skus=tuple(prepared.sku_list),
        qty=np.asarray(problem.qty, dtype=np.int64),
        lines=tuple((line.line_id, row_of_sku[line.sku], int(line.qty)) for line in order.lines),
        node_ids=tuple(str(n) for n in index.node_id[nodes]),
        node_kind=tuple(str(k) for k in index.kind[nodes]),
        km=np.asarray(prepared.distance_km, dtype=float),
        max_km=np.where(np.isnan(max_km), np.inf, max_km),
        ship_cost=np.asarray(problem.ship_cost, dtype=float),
        handling=np.asarray(index.handling_per_unit[nodes], dtype=float),
        allowed=np.ones(nodes.size, dtype=bool),
        stock_total=np.asarray(problem.stock, dtype=np.int64),
        stock_left=np.asarray(problem.stock, dtype=np.int64),
        capacity_total=np.asarray(problem.capacity, dtype=float),
        capacity_left=np.asarray(problem.capacity, dtype=float),
        chosen=np.asarray(plan.alloc, dtype=np.int64),
        split_penalty=float(problem.split_penalty),
        unfilled_penalty=float(problem.unfilled_penalty),
        # The profile's rules as the order was routed by them: its split cap, its ship
        # groups and its unit costs (handling less the clearance credit).
        max_shipments=problem.max_shipments,
        sku_group=None if problem.sku_group is None else np.asarray(problem.sku_group),
        unit_cost=np.asarray(problem.unit_cost, dtype=float),
    )


def row(order_id: str, source: str, context: str, now: datetime) -> dict[str, Any]:
    return {"order_id": order_id, "source": source, "context": context, "routed_at": now}


def record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or replace the rows (an order routed again, after a release, is explained anew)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(explanations)
    statement = statement.on_conflict_do_update(
        index_elements=[explanations.c.order_id],
        set_={
            "source": statement.excluded.source,
            "context": statement.excluded.context,
            "routed_at": statement.excluded.routed_at,
        },
    )
    conn.execute(statement, rows)


def explanation(conn: Connection, order_id: str) -> dict[str, Any]:
    """The explanation of a routed order, with its counterfactuals; NotFound if it was
    never routed here (a quote, or an order still queued in a wave, has none)."""
    found = conn.execute(
        select(explanations.c.source, explanations.c.context, explanations.c.routed_at).where(
            explanations.c.order_id == order_id
        )
    ).first()
    if found is None:
        raise NotFound(
            f"order {order_id!r} has no routing to explain", field="order_id", rule="known_order"
        )
    context = OrderContext.from_json(found.context)
    return {
        **explain_order(context, with_counterfactual=True),
        "source": found.source,
        "routed_at": found.routed_at.isoformat(),
    }
