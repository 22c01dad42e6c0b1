"""The first-order LP on the second core while this one builds answers.

PDLP holds Python's global lock for its whole run, so a thread would not help:
the LP runs in a forked child process instead (:mod:`solver.child`), and the
caller goes on with work that needs no LP (a flow, single-order moves) until it
asks for the result. Where ``fork`` is unavailable or not wanted, the LP is
solved right away in this process: the same answer, only later.

The LP may be solved in *legs*: the child sends the answer of each leg, then
goes on from its iterates (PDLP warm-started) for the next, unless it has
converged; the caller uses an early answer while a better one is computed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import accumulate

from solver.child import PATIENCE, InChild
from solver.first_order_lp import FirstOrderResult, solve_lp_first_order
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
) -> PendingLp:
    """Start PDLP on ``model``'s LP (see :func:`solver.first_order_lp.solve_lp_first_order`)
    for ``legs`` seconds (one number, or one per leg)."""
    legs = [legs] if isinstance(legs, int | float) else list(legs)

    def produce() -> Iterator[FirstOrderResult]:
        answer = None
        for seconds in legs:
            answer = solve_lp_first_order(model, seconds, rel_tol, start=answer)
            yield answer

    return PendingLp(
        produce,
        [total + PATIENCE for total in accumulate(legs)],
        background,
        last=lambda answer: answer.converged,
    )
