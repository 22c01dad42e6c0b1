"""The batch's MIP over the joint LP's support.

Where the unpruned MIP of a scarce batch is within HiGHS's reach but slow to
close (thousands of orders fighting over stock), the same model restricted to
the candidates the joint LP uses (plus the incumbent's) is a fraction of its
size and nearly as good: the LP has already said which nodes matter for each
line. It is solved from the incumbent, so it can only improve on it; it proves
nothing about the batch (the unpruned MIP and the Lagrangian do that).
"""

from __future__ import annotations

import numpy as np

from solver.mip import MipParams, solve_mip
from solver.model import ModelInput, build_model, start_vector

SUPPORT = 1e-6
"""LP units above this make a candidate part of the support."""


def lp_units(problem, part, v, x: np.ndarray) -> np.ndarray:
    """(C,) the LP's units per line candidate of the problem (0 outside ``part``)."""
    units = np.zeros(problem.cand_line.size)
    units[part.cands] = x[: v.num_x]
    return units


def solve_on_support(problem, incumbent: np.ndarray, lp: np.ndarray, mip_params: MipParams, stop):
    """The whole batch as one MIP over the candidates with LP units ``lp`` above
    :data:`SUPPORT` or used by ``incumbent``, from ``incumbent``: new units, or
    ``None`` when the MIP returned none."""
    cands = np.flatnonzero((lp > SUPPORT) | (incumbent > 0))
    part = ModelInput(
        cands=cands,
        pairs=np.unique(problem.cand_pair[cands]),
        lines=np.arange(problem.num_lines),
        orders=np.arange(problem.num_orders),
        stock=problem.stock,
        capacity=problem.capacity,
    )
    model, v, _keys, _rows = build_model(problem, part)
    mip = solve_mip(
        model, mip_params, start=start_vector(problem, part, v, incumbent[cands]), stop=stop
    )
    if mip.x is None:
        return None
    units = np.zeros_like(incumbent)
    units[cands] = v.extract(mip.x)
    return units
