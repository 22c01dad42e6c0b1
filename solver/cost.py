"""The scenario cost formula over a solver's allocation vector.

Solvers describe an answer as ``units[c]``: the units given to each line
candidate ``c`` of a :class:`router.problem.Problem`. This module prices such a
vector exactly as ``omniroute-scenario/1`` defines cost. The independent
checker (``router.checker``) prices the written CSV again, from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CostBreakdown:
    total_cost: float
    shipping: float
    handling: float
    splits: int
    unfilled_units: int
    shipments: int


def evaluate(problem, units: np.ndarray) -> CostBreakdown:
    """Price ``units`` (C,) under the scenario cost formula."""
    units = np.asarray(units, dtype=np.int64)
    pair_units = np.bincount(problem.cand_pair, weights=units, minlength=problem.pair_order.size)
    used = pair_units > 0
    shipments_per_order = np.bincount(problem.pair_order[used], minlength=problem.num_orders)
    splits = int(np.maximum(shipments_per_order - 1, 0).sum())
    shipping = float(problem.pair_ship_cost[used].sum())
    handling = float((problem.handling[problem.cand_node] * units).sum())
    unfilled = int(problem.line_qty.sum() - units.sum())
    total = (
        shipping + handling + problem.split_penalty * splits + problem.unfilled_penalty * unfilled
    )
    return CostBreakdown(total, shipping, handling, splits, unfilled, int(used.sum()))
