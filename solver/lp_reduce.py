"""A smaller LP with the same optimum: shipments of a single line candidate folded in.

In the linear relaxation of the assignment model (:mod:`solver.model`), a
shipment ``y[p]`` that carries one line candidate ``x[c]`` only (a one-line
order's shipment, or one line of an order at a node that holds no other) is
tied to it by the link row ``x[c] <= M y[p]`` (``M`` = the candidate's upper
bound). Every other row ``y[p]`` appears in (splits, a split cap, a node's daily
orders) and its cost (the shipment's) only push it down, so some LP optimum has
``y[p] = x[c] / M``: substituting it removes the column and its link row and
leaves the optimum unchanged. At 20,000 scarce orders two thirds of the
shipments are of this kind (a quarter of the columns, two fifths of the rows),
which the first-order LP solver (:mod:`solver.first_order_lp`) feels directly.

The reduced LP's value is the full LP's, so the weak-duality bound of any of
its dual vectors (:func:`solver.first_order_lp.dual_bound`) is a proven lower
bound of the batch; its answer expands back to the full model's columns, and
its row duals to the full model's rows (0 on the folded link rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from solver.mip import MipModel

PUSHED_DOWN = ("link", "split", "shipment_cap", "daily_orders")
"""Row groups in which a larger shipment variable only makes a row harder (or,
for ``link``, the one row that is folded)."""


@dataclass(frozen=True)
class ReducedLp:
    model: MipModel
    """The reduced LP (columns continuous)."""
    expand: sp.csr_matrix
    """(full columns, reduced columns): full x = expand @ reduced x."""
    kept_rows: np.ndarray
    """Rows of the full model kept, in order."""
    full_rows: int
    kept_cols: np.ndarray
    """Columns of the full model kept, in order (the folded shipments are gone)."""

    def full_x(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.expand @ x)

    def full_duals(self, duals: np.ndarray) -> np.ndarray:
        y = np.zeros(self.full_rows)
        y[self.kept_rows] = duals
        return y


def fold_single_shipments(model: MipModel, v, row_group: dict[str, slice]) -> ReducedLp:
    """The LP of ``model`` (built by :func:`solver.model.build_model` with vars
    ``v`` and row groups ``row_group``) with every foldable shipment folded."""
    n_rows, n_cols = model.A.shape
    link = row_group.get("link")
    identity = ReducedLp(
        MipModel(
            model.c, model.col_lo, model.col_hi, np.zeros(n_cols, dtype=bool), model.A,
            model.row_lo, model.row_hi, model.offset,
        ),
        sp.identity(n_cols, format="csr"),
        np.arange(n_rows),
        n_rows,
        np.arange(n_cols),
    )  # fmt: skip
    if link is None or v.num_y == 0 or model.col_lo[v.y0 : v.y0 + v.num_y].any():
        return identity
    csc = model.A.tocsc()
    y_cols = np.arange(v.y0, v.y0 + v.num_y)
    # the candidate of each link row (one per x column, in order) and its shipment
    link_rows = csc[link.start : link.stop, :]
    x_of_row = np.arange(v.num_x)
    coo = link_rows[:, v.y0 : v.y0 + v.num_y].tocoo()
    y_of_row = np.full(v.num_x, -1)
    m_of_row = np.zeros(v.num_x)
    y_of_row[coo.row] = coo.col
    m_of_row[coo.row] = -coo.data
    carried = np.bincount(y_of_row[y_of_row >= 0], minlength=v.num_y)
    # a shipment's other rows must all push it down
    allowed = np.zeros(n_rows, dtype=bool)
    for name in PUSHED_DOWN:
        if name in row_group:
            allowed[row_group[name]] = True
    y_block = csc[:, y_cols].tocoo()
    bad = np.zeros(v.num_y, dtype=bool)
    bad[y_block.col[~allowed[y_block.row]]] = True
    # and be pushed down in them: a negative entry in a >= row or positive in a <= row
    in_split = np.zeros(n_rows, dtype=bool)
    if "split" in row_group:
        in_split[row_group["split"]] = True
    other = ~in_split[y_block.row] & ~np.isin(y_block.row, np.arange(link.start, link.stop))
    wrong = other & ((y_block.data < 0) | np.isfinite(model.row_lo[y_block.row]))
    wrong |= in_split[y_block.row] & ((y_block.data > 0) | np.isfinite(model.row_hi[y_block.row]))
    bad[y_block.col[wrong]] = True
    bad |= model.c[y_cols] < 0
    fold_y = (carried == 1) & ~bad
    folded_rows = np.flatnonzero(fold_y[np.maximum(y_of_row, 0)] & (y_of_row >= 0))
    if folded_rows.size == 0:
        return identity
    # expand: kept columns map to themselves; a folded y[p] = x[c] / M
    keep_col = np.ones(n_cols, dtype=bool)
    keep_col[v.y0 + y_of_row[folded_rows]] = False
    new_index = np.cumsum(keep_col) - 1
    m = m_of_row[folded_rows]
    weight = np.divide(1.0, m, out=np.zeros_like(m), where=m > 0)
    rows = np.concatenate([np.flatnonzero(keep_col), v.y0 + y_of_row[folded_rows]])
    cols = np.concatenate([new_index[keep_col], new_index[x_of_row[folded_rows]]])
    vals = np.concatenate([np.ones(int(keep_col.sum())), weight])
    expand = sp.csr_matrix((vals, (rows, cols)), shape=(n_cols, int(keep_col.sum())))
    keep_row = np.ones(n_rows, dtype=bool)
    keep_row[link.start + folded_rows] = False
    kept_rows = np.flatnonzero(keep_row)
    a = sp.csr_matrix(model.A[kept_rows] @ expand)
    reduced = MipModel(
        np.asarray(expand.T @ model.c),
        model.col_lo[keep_col],
        model.col_hi[keep_col],
        np.zeros(int(keep_col.sum()), dtype=bool),
        a,
        model.row_lo[kept_rows],
        model.row_hi[kept_rows],
        model.offset,
    )
    return ReducedLp(reduced, expand, kept_rows, n_rows, np.flatnonzero(keep_col))
