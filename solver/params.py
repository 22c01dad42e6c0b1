"""Parameters of the ``optimize`` strategy and the callables the caller passes in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[str, dict], None]
"""Receives (phase, details) events: phase names and best cost / bound so far."""

Clock = Callable[[], float]
"""Seconds elapsed since the solve started (the caller owns the clock)."""


@dataclass(frozen=True)
class OptimizeParams:
    time_limit: float = 60.0
    """Seconds for the whole solve; the answer says when it was reached."""
    rel_gap: float = 1e-3
    """Stop the MIP once proven within this relative gap."""
    seed: int = 0
    candidates_per_line: int = 8
    """Cheapest line candidates kept per line in the joint MIP."""
    polish_candidates_per_line: int = 16
    """Cheapest line candidates kept per line in the final whole-part MIP."""
    block_candidates_per_line: int = 5
    """The same, when the contested part is cut into several blocks."""
    block_orders: int = 10000
    """Most contested orders re-routed in one LP (larger parts go block by block)."""
    lns_orders: int = 60
    """Orders re-solved together in one step of the large neighbourhood search."""
    lns_rounds: int = 3
    """Most rounds over the nodes in the large neighbourhood search."""
    exact_candidates: int = 5000
    """Batches with at most this many line candidates are solved as one
    unpruned MIP when the bound is not yet tight (tiny scenarios: proven optimum)."""
    polish_orders: int = 3000
    """Contested parts up to this size get a final MIP over the whole part."""
