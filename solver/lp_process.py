"""The first-order LP in a child process while this one goes on.

PDLP holds Python's global lock for its whole run, so a thread would not help:
the LP runs in a forked child process instead (:mod:`solver.child`), and the
caller goes on with work that needs no LP (a flow, the price search's arrays)
until it asks for the result, and can stop it at once when the time is up.
PDLP itself may use several threads (``threads``). Where ``fork`` is
unavailable or not wanted, the LP is solved right away in this process: the
same answer, only later.

The LP may be solved in *legs*: the child sends the answer of each leg, then
goes on from its iterates (PDLP warm-started) for the next, unless it has
converged; the caller uses an early answer while a better one is computed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import accumulate

from solver.child import PATIENCE, InChild
from solver.first_order_lp import FirstOrderResult, WarmStart, solve_lp_first_order
from solver.mip import MipModel


class PendingLp(InChild):
    """A first-order LP being solved; :meth:`result` gives its next leg's answer."""

    @property
    def legs_left(self) -> int:
        """Answers still to come (0 once the LP converged or the child is gone)."""
        return self.answers_left


def start_first_order_lp(
    model: MipModel,
    legs: float | Sequence[float],
    rel_tol: float,
    background: bool = True,
    first_tol: float | None = None,
    threads: int = 1,
    start: WarmStart | None = None,
) -> PendingLp:
    """Start PDLP on ``model``'s LP (see :func:`solver.first_order_lp.solve_lp_first_order`)
    for ``legs`` seconds (one number, or one per leg; a leg that ends early
    leaves its time to the next). With ``first_tol`` (looser than ``rel_tol``),
    the first leg stops at that tolerance: a usable answer sooner, which the
    next leg refines, warm-started, to ``rel_tol``. ``threads``: PDLP's. ``start``:
    the first leg's warm start (e.g. a smaller LP's answer, extended)."""
    legs = [legs] if isinstance(legs, int | float) else list(legs)
    ends = list(accumulate(legs))
    tolerances = [rel_tol] * len(legs)
    if first_tol is not None and len(legs) > 1:
        tolerances[0] = max(first_tol, rel_tol)

    def produce() -> Iterator[FirstOrderResult]:
        started = time.perf_counter()
        answer = start
        for end, tol in zip(ends, tolerances, strict=True):
            seconds = max(end - (time.perf_counter() - started), 0.1)
            answer = solve_lp_first_order(model, seconds, tol, threads=threads, start=answer)
            if answer.converged and tol > rel_tol:
                # met the loose tolerance only: the next leg goes on to rel_tol
                answer = replace(answer, converged=False)
            yield answer

    return PendingLp(
        produce,
        [end + PATIENCE for end in ends],
        background,
        last=lambda answer: answer.converged,
    )
