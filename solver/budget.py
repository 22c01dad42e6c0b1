"""Time and gap budgets shared by the steps of the batch method."""

from __future__ import annotations

from solver.params import Clock, OptimizeParams


def part_abs_gap(params: OptimizeParams, batch_cost: float) -> float:
    """A part's MIP may stop within a quarter of the batch's gap budget: a gap
    relative to the part alone would chase cents on a batch of millions."""
    return max(params.rel_gap * batch_cost / 4.0, 1e-4)


def within(cost: float, bound: float, rel_gap: float) -> bool:
    return cost <= 0 or (cost - bound) / cost <= rel_gap + 1e-12


def remaining(params: OptimizeParams, clock: Clock, reserve: float) -> float:
    """Seconds left for a step, keeping ``reserve`` and a margin for writing
    the answer (HiGHS checks its own limit only now and then)."""
    margin = 0.03 * params.time_limit + 0.2
    return max(params.time_limit - margin - clock() - reserve, 0.05)
