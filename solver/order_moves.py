"""Local search by single-order moves: each order re-routed exactly on what the
others leave.

Take one order's units back into the pool; route it alone, exactly
(:func:`solver.order_dp.solve_order`), on the stock and capacity the other
orders leave; keep the new plan when it is cheaper. Each move is feasible by
construction and never raises the batch's cost, so passes can stop anywhere.
An order already at its optimum alone cannot improve and is skipped, as is
every order once a pass over them changed nothing.

This is what consolidates shipments after a flow has settled which lines get
the scarce units (:func:`solver.unit_flow.route_lines_by_flow`): one order's
lines, spread over nodes by the flow, are gathered where the order is cheapest
as a whole.
"""

from __future__ import annotations

import numpy as np

from solver.alone import order_problem, write_plan
from solver.cost import order_costs
from solver.order_dp import solve_order


def improve_orders(
    problem,
    units: np.ndarray,
    movable: np.ndarray,
    floor: np.ndarray,
    clock,
    deadline: float,
    passes: int = 3,
) -> tuple[np.ndarray, dict]:
    """``units`` improved by single-order moves of the orders of mask ``movable``.

    ``floor`` (O,) is each order's optimum alone (no move can go below it).
    Orders are visited by how far they are above it, largest first; a pass
    over them is repeated (at most ``passes`` times) while it improves, until
    ``deadline`` (clock seconds). Returns the new units and the
    orders moved in each pass.
    """
    units = units.copy()
    # (from the plans' nonzeros: no dense usage table beside the stock left)
    held = np.flatnonzero(units)
    nodes = problem.cand_node[held]
    stock_left = problem.stock.astype(np.int64)  # a copy
    np.subtract.at(stock_left, (nodes, problem.line_sku[problem.cand_line[held]]), units[held])
    capacity_left = problem.capacity - np.bincount(
        nodes, weights=units[held], minlength=problem.num_nodes
    )
    del held, nodes
    residual = problem.replace(stock=stock_left, capacity=capacity_left)
    cost = order_costs(problem, units)
    line_start = problem.order_line_start
    cand_start = problem.line_cand_start
    stats: dict = {"moved": []}
    for _pass in range(passes):
        excess = cost - floor
        orders = np.flatnonzero(movable & (excess > 1e-9))
        orders = orders[np.argsort(-excess[orders], kind="stable")]
        moved = 0
        for done, order in enumerate(orders.tolist()):
            if done % 64 == 0 and clock() >= deadline:
                break
            cands = slice(
                int(cand_start[line_start[order]]), int(cand_start[line_start[order + 1]])
            )
            nodes = problem.cand_node[cands]
            skus = problem.line_sku[problem.cand_line[cands]]
            mine = units[cands]
            np.add.at(stock_left, (nodes, skus), mine)
            np.add.at(capacity_left, nodes, mine)
            op, plan_nodes, _skus, sku_of_line = order_problem(residual, order)
            if plan_nodes.size:
                plan = solve_order(op)
                if plan.total_cost < cost[order] - 1e-9:
                    units[cands] = 0
                    write_plan(problem, order, plan.alloc, plan_nodes, sku_of_line, units)
                    cost[order] = plan.total_cost
                    moved += 1
            np.subtract.at(stock_left, (nodes, skus), units[cands])
            np.subtract.at(capacity_left, nodes, units[cands])
        stats["moved"].append(moved)
        if moved == 0 or clock() >= deadline:
            break
    return units, stats
