"""Column generation for a contested part's joint LP.

A big contested part's LP keeps each line's few cheapest candidates (plus
where the incumbent routes it): the whole batch's LP does not fit the time.
Its prices can then be far from the whole LP's: a stock key that few of the
kept candidates reach gets no row (price 0), and a key that many reach is
priced as if nothing else could serve those lines. Every order's best plan
alone at the LP's prices (the Lagrangian oracle, over *every* candidate) says
which missing candidates pay: those the plans use. The LP
again with them added (:func:`priced_candidates`), warm-started from the
first's answer (:func:`extended_start`), prices the stock for the whole batch.

Measured on a 100,000-order scarce batch (1,200 stores, 15 warehouses): the
first LP (1.88 million columns) is worth 3,549,961, the Lagrangian at its
prices 3,348,688; with the 20,489 candidates the plans add, the LP is worth
3,537,863 and the Lagrangian at its prices 3,545,427 (the order subproblems
are integral, so that bound may pass the LP's own value).
"""

from __future__ import annotations

import numpy as np

from solver.first_order_lp import WarmStart
from solver.support_mip import SUPPORT, lp_units


def priced_candidates(problem, joint, plans: np.ndarray) -> np.ndarray:
    """(C,) the candidates for the next LP: the plans' (units ``plans`` of every
    order alone at ``joint``'s prices) and the LP's support."""
    return (plans > 0) | (lp_units(problem, joint.part, joint.vars, joint.x) > SUPPORT)


def added_candidates(joint, also: np.ndarray) -> int:
    """How many candidates of mask ``also`` the LP ``joint`` did not model."""
    modelled = np.zeros(also.size, dtype=bool)
    modelled[joint.part.cands] = True
    return int((also & ~modelled).sum())


def extended_start(old, part, v, keys, rows, reduced) -> WarmStart:
    """``old``'s answer (a :class:`solver.joint_lp.JointLp`) as a start of the LP
    of ``part`` (its model's vars ``v``, keys and row groups ``rows``, solved
    folded as ``reduced``): every column and row the two models share keeps its
    value and dual, the new ones start at 0."""
    x = np.zeros(v.size)
    ov = old.vars
    for old_at, new_at, old_ids, new_ids in (
        (0, 0, old.part.cands, part.cands),
        (ov.y0, v.y0, old.part.pairs, part.pairs),
        (ov.u0, v.u0, old.part.lines, part.lines),
        (ov.z0, v.z0, old.part.orders, part.orders),
    ):
        into, outof = _shared(old_ids, new_ids)
        x[new_at + into] = old.x[old_at + outof]
    dual = np.zeros(reduced.full_rows)
    identities = {
        "line": (old.part.lines, part.lines),
        "link": (old.part.cands, part.cands),
        "split": (old.part.orders, part.orders),
        "stock": (_stock_ids(old.keys["stock"]), _stock_ids(keys["stock"])),
        "capacity": (old.keys["capacity"], keys["capacity"]),
    }
    for name, (old_ids, new_ids) in identities.items():
        if name not in rows or name not in old.rows:
            continue
        into, outof = _shared(old_ids, new_ids)
        dual[rows[name].start + into] = old.duals[old.rows[name].start + outof]
    return WarmStart(x[reduced.kept_cols], dual[reduced.kept_rows])


def _stock_ids(keys: np.ndarray) -> np.ndarray:
    """One sortable id per (node, sku) row key, in the rows' order (ascending)."""
    return (keys[:, 0].astype(np.int64) << 32) + keys[:, 1].astype(np.int64)


def _shared(old_ids: np.ndarray, new_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``new_ids`` and in ``old_ids`` (both sorted) of the ids in both."""
    if old_ids.size == 0 or new_ids.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(new_ids, old_ids), new_ids.size - 1)
    found = new_ids[at] == old_ids
    return at[found], np.flatnonzero(found)
