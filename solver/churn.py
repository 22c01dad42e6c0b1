"""The churn rule of a re-optimization: held orders are re-decided jointly, but
moving one away from its current routing has a price, and a limit.

An order is *moved* when its units per line candidate differ in any way from
its current ones (another node, another split, more or fewer units). The rule
is part of the problem (``Problem.churn``): :func:`solver.cost.evaluate` adds
``move_cost`` per moved order to the cost, and :func:`solver.model.move_rule`
adds it, and the ``max_moves`` limit, to every model built on the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Churn:
    current: np.ndarray
    """(C,) units per line candidate the orders hold now (feasible on the stock)."""
    move_cost: float = 0.0
    """Cost of each moved order, added to the objective."""
    max_moves: int | None = None
    """At most this many orders may move (``None``: no limit)."""

    def __post_init__(self) -> None:
        if not np.isfinite(self.move_cost) or self.move_cost < 0:
            raise ValueError(f"move_cost must be a finite number >= 0, not {self.move_cost!r}")
        if self.max_moves is not None and self.max_moves < 0:
            raise ValueError(f"max_moves must be >= 0, not {self.max_moves!r}")


def moved_orders(problem, units: np.ndarray) -> np.ndarray:
    """(O,) mask of the orders whose units differ from their current ones."""
    churn = problem.churn
    if churn is None:
        return np.zeros(problem.num_orders, dtype=bool)
    differs = np.asarray(units) != churn.current
    mask = np.zeros(problem.num_orders, dtype=bool)
    mask[problem.line_order[problem.cand_line[differs]]] = True
    return mask
