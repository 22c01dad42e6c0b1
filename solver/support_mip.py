"""MIPs over the joint LP's support.

Where the unpruned MIP of a scarce batch is within HiGHS's reach but slow to
close (thousands of orders fighting over stock), the same model restricted to
the candidates the joint LP uses (plus the incumbent's) is a fraction of its
size and nearly as good: the LP has already said which nodes matter for each
line (:func:`solve_on_support`). Beyond that reach, the same restriction makes
geographic blocks of about a thousand orders quick MIPs on what the other
orders leave, a large neighbourhood search guided by the LP
(:func:`improve_on_support`). Each is solved from the incumbent, so it can only
improve on it; they prove nothing about the batch (the unpruned MIP and the
Lagrangian do that).
"""

from __future__ import annotations

import numpy as np

from solver.blocks import geographic_blocks
from solver.candidates import model_part
from solver.cost import evaluate
from solver.mip import MipParams, solve_mip
from solver.model import build_model, start_vector
from solver.part_mip import solve_part

SUPPORT = 1e-6
"""LP units above this make a candidate part of the support."""


def lp_units(problem, part, v, x: np.ndarray) -> np.ndarray:
    """(C,) the LP's units per line candidate of the problem (0 outside ``part``)."""
    units = np.zeros(problem.cand_line.size)
    units[part.cands] = x[: v.num_x]
    return units


def solve_on_support(
    problem, incumbent: np.ndarray, lp: np.ndarray, orders, params, mip_params: MipParams, stop
):
    """The masked ``orders`` as one MIP over the candidates with LP units ``lp``
    above :data:`SUPPORT` or used by ``incumbent``, on what the other orders
    leave, from ``incumbent``: new units, or ``None`` when the MIP returned none."""
    part, start = model_part(
        problem, incumbent, orders, params, start=incumbent, per_line=0, also=lp > SUPPORT
    )
    model, v, _keys, _rows = build_model(problem, part)
    mip = solve_mip(model, mip_params, start=start_vector(problem, part, v, start), stop=stop)
    if mip.x is None:
        return None
    units = incumbent.copy()
    units[part.cands] = v.extract(mip.x)
    return units


def improve_on_support(
    problem, units: np.ndarray, lp: np.ndarray, contested, params, clock, deadline: float
) -> tuple[np.ndarray, dict]:
    """``units`` improved block by block: the contested orders cut into geographic
    blocks of ``params.support_block_orders`` (a second sweep with shifted
    borders re-decides the first's), each re-routed by a MIP over the LP's
    support (LP units ``lp``) and the incumbent's candidates, on what the other
    orders leave, each for at most ``params.support_block_seconds``, until
    ``deadline``. Returns the units and (blocks solved, blocks improved)."""
    also = lp > SUPPORT
    best = evaluate(problem, units).total_cost
    solved = improved = 0
    for shift in (0.0, 0.5):
        for block in geographic_blocks(problem, contested, params.support_block_orders, shift):
            left = deadline - clock()
            if left < 1.0:
                return units, {"blocks": solved, "improved": improved}
            candidate, _status = solve_part(
                problem,
                units,
                block,
                params,
                min(params.support_block_seconds, left),
                best,
                clock,
                start=units,
                per_line=0,
                also=also,
            )
            solved += 1
            cost = evaluate(problem, candidate).total_cost
            if cost < best - 1e-9:
                units, best = candidate, cost
                improved += 1
    return units, {"blocks": solved, "improved": improved}
