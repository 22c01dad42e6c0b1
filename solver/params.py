"""Parameters of the ``optimize`` strategy and the callables the caller passes in."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[str, dict], None]
"""Receives (phase, details) events: phase names and best cost / bound so far."""

Clock = Callable[[], float]
"""Seconds elapsed since the solve started (the caller owns the clock).

A caller that wants the solve to stop early (Ctrl-C, SIGTERM) makes its clock
return ``math.inf`` from then on: every step then sees its time up, and a
running HiGHS solve is stopped through :func:`stop_requested`."""


def stop_requested(clock: Clock) -> Callable[[], bool]:
    """The stop test for :func:`solver.mip.solve_mip`: true once ``clock`` returns inf."""
    return lambda: math.isinf(clock())


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
    exact_orders: int = 1000
    """Batches with at most this many orders, or line candidates, are *tiny*:
    solved at once as one unpruned MIP to the proven optimum (HiGHS's gap 1e-4
    at most), measured faster there than any decomposition."""
    polish_orders: int = 3000
    """Contested parts up to this size get a final MIP over the whole part."""
    exact_pricing_orders: int = 1500
    """While at most this many orders have a short candidate (a line wanting
    more than the node holds), every step of the price search prices them
    exactly (tighter steps; about a millisecond each)."""
    dive_rounds: int = 3
    """Most re-solves of the joint LP for the orders its rounding left undecided."""
    joint_lp_colliding_share: float = 0.5
    """Batches where more than this share of the orders collide (scarce stock,
    before a promotion) take the joint LP's path; the others relax and fix the
    contested part (block by block when it is big). Measured on both regimes."""
    exact_mip_columns: int = 100_000
    """Scarce batches whose unpruned model has at most this many columns are
    within HiGHS's reach: its MIP runs on the other core beside the MIP over
    the joint LP's support (``solver.batch._within_reach``), measured better
    there than the decomposition (a 2,000-order batch: 64,000 columns; at
    5,000 orders, 171,000, neither MIP improved on the guided flow in 40 s)."""
    flow_arcs: int = 8_000_000
    """A min-cost flow of the contested lines (:mod:`solver.unit_flow`) with
    more candidate arcs than this keeps only each line's ``flow_candidates_per_line``
    cheapest, the ones it uses or the colliding orders re-routed greedily use,
    and its ``flow_spare_per_line`` cheapest where stock is to spare
    (:func:`solver.unit_flow.capped_arcs`): the graph takes
    about a hundred bytes per arc, and a national batch's lines have tens of
    millions of candidates (measured at 1,000,000 orders: 8, the used ones and 2
    spare, 70.9 million candidates, were 5.5 GB in the flow solver)."""
    flow_candidates_per_line: int = 5
    flow_spare_per_line: int = 1
    flow_pricing_rounds: int = 2
    flow_pricing_share: float = 0.5
    """A capped flow's left-out candidates are priced at its prices and the
    cheaper ones added, then the flow solved again (``pricing_rounds`` of
    :func:`solver.unit_flow.priced_flow`), at most this many times and while
    less than ``flow_pricing_share`` of the time limit has gone: measured at
    100,000 orders over 5,000 stores (capping forced), the Lagrangian at the
    prices was 915,826 capped, 3,016,429 / 3,130,945 / 3,134,618 after 1 / 2 /
    3 rounds, 3,135,131 uncapped (1.17 million arcs against 7.06 million).
    Each round of a national batch's flow takes about two minutes, which the
    answer's slope scaling uses better than a third round."""
    support_block_orders: int = 1000
    support_block_seconds: float = 8.0
    """Geographic blocks re-routed by MIPs over the joint LP's support when a
    scarce batch has time left after its LP's rounding: orders per block and
    most seconds per block (measured at 5,000 orders: 3-8 s per block)."""
    child_margin: float = 1.0
    """Seconds before the time limit at which work on the other core answers."""
    whole_lp_columns: int = 1_500_000
    """Large batches whose unpruned model has at most this many columns get the
    joint LP over the whole batch (every order and candidate): its duals then
    prove a bound directly. Larger ones get the LP of the contested part."""
    joint_lp_orders: int = 100_000
    """Most contested orders in a joint LP of the contested part (its LP has
    about 1.9 million columns at 100,000 orders, 140 s on two threads). A
    national batch, with more, has none: its flow's prices start the bound
    (see ``solver.batch._national_batch``)."""
    after_lp_share: float = 0.35
    """Share of the time limit kept for the steps after a scarce batch's joint
    LP (its rounding, moves, bound and blocks); the LP may use the rest."""
    open_shipment_threshold: float = 0.5
    """The LP-guided flow keeps open the shipments the joint LP uses at least
    this much (and each order's most used one); measured on a 20,000-order
    scarce batch against 0.3, 0.7 and 0.9."""
    after_refine_share: float = 0.12
    """Share of the time limit kept after the joint LP's second leg (a
    first-order LP that had not converged goes on, warm-started, while its
    first answer is rounded; its better answer is rounded and bounds again)."""
    column_generation_rounds: int = 1
    """Most rounds of column generation (0: none). A contested part's joint LP
    (each line's cheapest candidates only) is solved again with the candidates
    every order's plan alone at its prices uses (:mod:`solver.column_generation`),
    warm-started; the first LP then stops at ``first_leg_tolerance``. Measured
    on a 100,000-order scarce batch (300 s): the Lagrangian at the prices 3.36
    million instead of 3.35, at the larger LP's 3.54 (it then bounds at 3.55),
    the answer's own gap 1.30% instead of 6.32%. A later round runs while the
    time left for it is at least what the last LP took; on the 20,000-order
    scarce batch's contested part, rounds 2 and 3 (2,158 and 1,294 candidates
    added) lowered the answer 0.06% and did not raise the bound; on the
    100,000-order batch a second round (6,305 added) lowered it 0.02%
    (3,596,720.83 against 3,597,468.89), the bound the same."""
    extended_lp_share: float = 0.1
    """The least share of the time limit worth a second, larger joint LP."""
    bound_share: float = 0.06
    """Share of the time limit the LP-guided moves leave for the bound's price search."""
    moves_share: float = 0.25
    """Most of the time limit for the flow and single-order moves of a scarce batch."""
    national_moves_share: float = 0.5
    """Most of the time limit for the single-order moves of a national batch
    (more than ``joint_lp_orders`` contested orders), made while its price
    search runs on the other core."""
    national_bound_share: float = 0.05
    """Share of the time limit a national batch keeps for its price search
    after the moves and slope scaling (it runs in a child during them)."""
    region_orders: int = 20_000
    """Contested orders per region of a national batch's regional sweeps
    (:mod:`solver.regions`): each region's LP, LP-guided flow and moves."""
    region_sweeps: int = 2
    """Most regional sweeps of a national batch (the second with shifted
    borders); 0: none (single-order moves from the flow instead)."""
    region_moves_share: float = 0.4
    """Share of a region's time its single-order moves may take at least (its LP
    gets the rest as a limit; the moves go on to the region's end)."""
    region_min_seconds: float = 5.0
    """A region is not started with less time than this left."""
    slope_rounds: int = 3
    """Most slope-scaled flows (:mod:`solver.slope_scaling`) after a national
    batch's moves; they stop at the first that does not lower the cost."""
    first_order_columns: int = 20000
    """Joint LPs with more columns are solved by PDLP instead of HiGHS."""
    lp_in_background: bool = True
    """Solve a big joint LP (PDLP) in a child process (:mod:`solver.lp_process`),
    which this one can stop at once when the time is up; off: the same LP, in
    this process."""
    alone_in_background: bool = True
    """Share the orders routed one by one in the first step (each order alone)
    with a child on the other core when they are many
    (:func:`solver.alone.route_each_order_alone`)."""
    first_order_threads: int = 2
    """PDLP's threads on a joint LP of more than ``threaded_lp_columns``
    columns. The process that started it waits for it (every answer built
    before it was superseded by the LP-guided one), so the LP gets both cores:
    measured on a 20,000-order scarce batch (876,568 columns), its 1e-3 leg in
    20 s instead of 33 s, converged (1e-4) at 40 s instead of not by 53 s."""
    threaded_lp_columns: int = 200_000
    """Smaller LPs get one thread: on the 2,000-order scarce batch's (63,738
    columns), 1.8 s with one, 3.4 s with two."""
    first_order_tolerance: float = 1e-4
    """PDLP's relative optimality tolerance."""
    first_leg_tolerance: float = 1e-3
    """A joint LP solved in two legs stops its first at this looser tolerance
    (sooner, and already a good guide), the second goes on to
    ``first_order_tolerance``."""
