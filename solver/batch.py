"""Joint routing of a batch of orders: the ``optimize`` strategy.

The batch objective is a sum over orders; orders interact only through stock
and node capacity. The method exploits that:

1. **Each order alone.** Every order is routed exactly as if it were alone in
   the pool (:func:`solver.order_dp.solve_order`). The sum of these costs is a
   lower bound (dropping other orders only enlarges each order's choices). If
   the plans fit the stock and capacity together, they are optimal: done.
2. **Contested part.** Orders whose plan uses an over-demanded (node, SKU) or
   an over-loaded node are *contested*, and so is every order whose plan holds
   stock or capacity that the contested orders could want and are short of.
   All other orders keep their own optimum; the colliding ones are first
   re-routed greedily, and the one-unit orders among them exactly by a min-cost
   flow (:mod:`solver.unit_flow`), which gives a feasible incumbent at once.
3. **Tiny batches** (:class:`solver.params.OptimizeParams`, measured): one MIP
   over every candidate, to the proven optimum.
4. **Joint LP** (:mod:`solver.joint_lp`). Otherwise one LP of the whole batch
   (or of the contested part, when the batch's model is too big), by HiGHS or,
   when it is big, PDLP, gives one global price vector for scarce stock and
   capacity and, by weak duality, a proven bound. Its whole-unit routings are
   kept where they fit together, the LP solved again for the rest, the rest
   repaired (:mod:`solver.lp_rounding`) and re-decided by MIPs with their
   neighbours (:mod:`solver.relax_fix`).
5. **Proven bound** (:mod:`solver.bound`, :mod:`solver.lagrange`). At the LP's
   prices, every order alone priced, minus the prices times the limits, is a
   Lagrangian bound, valid for any nonnegative prices; a price search on the
   vectorised oracle (:mod:`solver.pricing`) improves it.
6. **Finish.** A big contested part is improved block by block (relax and fix
   in geographic blocks), the bound by more price steps; a moderate one is
   solved as one MIP over more candidates. Given an executor
   (:mod:`solver.executor`), a scarce batch's blocks at the joint LP's prices
   are independent tasks run by it (:mod:`solver.parallel_blocks`).

Every step only accepts answers that are feasible and cheaper, so the answer
is always feasible and the reported gap is a proof, not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from solver.alone import (
    route_each_order_alone,
)
from solver.blocks import geographic_blocks
from solver.bound import Prices, lagrangian_bound
from solver.budget import part_abs_gap, remaining, within
from solver.child import PATIENCE, InChild, can_fork, stop_event
from solver.column_generation import added_candidates, priced_candidates
from solver.contention import (
    orders_using,
    overused,
    reroute_greedily,
    with_neighbours,
)
from solver.cost import (
    CostBreakdown,
    evaluate,
    keep_unmodelled_rules,
    orders_left,
    within_channel_shares,
    within_shipment_caps,
)
from solver.executor import Executor
from solver.greedy import greedy_units
from solver.joint_lp import solve_joint_lp, start_joint_lp
from solver.lagrange import Oracle, dense_prices, floored_value, search_prices, start_search
from solver.lp_rounding import guided_shipment_costs, keep_whole_units, repair
from solver.mip import MipParams
from solver.order_moves import improve_orders
from solver.parallel_blocks import improve_in_parallel
from solver.parallel_pricing import PricingData, price_orders_with
from solver.params import Clock, OptimizeParams, Progress, stop_requested
from solver.polish import polish, solve_exactly, start_exact_mip
from solver.pricing import Priced, PricingStructure, build_structure, price_orders
from solver.regions import regional_sweeps
from solver.relax_fix import fix_the_rest, relax_and_fix
from solver.slope_scaling import slope_scaling
from solver.support_mip import improve_on_support, lp_units, solve_on_support
from solver.unit_flow import priced_flow, route_lines_by_flow, route_single_units_by_flow

EXACT_PRICING_SECONDS = 1e-3
"""Seconds to price one order with a short candidate exactly (measured 0.8 ms
on a 20,000-order scarce batch: 3,325 such orders in 2.6 s)."""


@dataclass(frozen=True)
class RoutingResult:
    strategy: str
    status: str
    """``optimal`` (proven within the gap), ``feasible``, or ``time_limit``."""
    units: np.ndarray
    """(C,) units per line candidate of the problem."""
    cost: CostBreakdown
    lower_bound: float | None
    stats: dict = field(default_factory=dict)
    prices: Prices | None = None
    """The stock and capacity prices of the best Lagrangian bound found (from the
    joint LP's duals and the price search), when the solve computed any: the
    marginal value of one more unit at a (node, SKU) and at a node's capacity."""

    @property
    def gap(self) -> float | None:
        if self.lower_bound is None or self.cost.total_cost <= 0:
            return None if self.lower_bound is None else 0.0
        return max(0.0, (self.cost.total_cost - self.lower_bound) / self.cost.total_cost)


def solve_greedy(problem) -> RoutingResult:
    """The rule-engine baseline (:mod:`solver.greedy`) as a result."""
    units = keep_unmodelled_rules(problem, greedy_units(problem))
    return RoutingResult("greedy", "feasible", units, evaluate(problem, units), None)


def optimize(
    problem,
    params: OptimizeParams,
    clock: Clock,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> RoutingResult:
    """Route the whole batch jointly; the answer is always feasible.

    The phases, each in its own module: every order alone (its optimum and the
    first bound); the contested part with a greedy and min-cost-flow incumbent;
    a tiny batch is then one MIP to the proven optimum; otherwise the joint LP
    gives global prices, a proven bound, a rounded answer (dive and repair)
    and the Lagrangian bound's starting prices; the orders it left undecided go
    to MIPs with their neighbours; a big contested part is then improved block
    by block, a moderate one by one MIP over the whole part.

    ``executor`` (default: none) runs a scarce batch's blocks at the joint LP's
    prices as independent tasks (:mod:`solver.parallel_blocks`), e.g. on a Ray
    cluster; without one, they are re-routed one after another in this process.
    What it ran is recorded in the result's ``stats["executor"]``.
    """
    result = _optimize(problem, params, clock, progress, executor)
    if executor is not None:
        result.stats["executor"] = executor.stats()
    return result


def _optimize(problem, params, clock, progress, executor) -> RoutingResult:
    emit = progress or (lambda _phase, _details: None)
    if progress is not None and executor is not None:
        # every event also says how many tasks the executor has done
        emit = lambda phase, details: progress(phase, {**details, "tasks": executor.tasks})  # noqa: E731
    stats: dict = {}

    emit("each order alone", {})
    alone = route_each_order_alone(problem, background=params.alone_in_background)
    stats["orders_exact_alone"] = int(alone.exact.sum())
    over_stock, over_capacity = overused(problem, alone.units)
    left = orders_left(problem, alone.units)
    if left is not None:  # a profile's daily orders limit: a node short of orders
        over_capacity = over_capacity | (left < 0)
    if (
        not over_stock.any()
        and not over_capacity.any()
        and within_channel_shares(problem, alone.units)
    ):
        cost = evaluate(problem, alone.units)
        bound = min(alone.bound, cost.total_cost)
        if within(cost.total_cost, bound, params.rel_gap):
            status = "optimal"
        else:
            status = "time_limit" if clock() >= params.time_limit else "feasible"
        stats["contested_orders"] = 0
        return RoutingResult("optimize", status, alone.units, cost, bound, stats)

    emit("contested part", {})
    colliding = orders_using(problem, alone.units, over_stock, over_capacity)
    contested = with_neighbours(problem, alone.units, colliding)
    stats["colliding_orders"] = int(colliding.sum())
    stats["contested_orders"] = int(contested.sum())
    scarce = colliding.sum() > params.joint_lp_colliding_share * problem.num_orders
    tiny = (
        problem.cand_line.size <= params.exact_candidates
        or problem.num_orders <= params.exact_orders
    )
    # A feasible incumbent from the start: without the colliding orders no
    # stock or capacity is over-used, so every other order keeps its own
    # optimum. When most of the batch collides, the contested lines are routed
    # by one min-cost flow (which lines get the scarce units, jointly); else
    # the colliding orders greedily on what is left, the one-unit ones by a flow.
    early, rerouted, flow_prices = None, None, None
    if scarce and not tiny and problem.churn is None:
        if params.exact_mip_columns < _model_columns(problem) <= params.whole_lp_columns:
            # The whole batch's LP needs nothing from the incumbent: started
            # now, on the other core, it runs while the incumbent is built. (A
            # contested part's LP waits for it: the flow's candidates, where
            # the stock is, are part of that LP; without them its prices are
            # too high, measured at 100,000 orders.)
            early = _start_joint_lp(problem, params, clock, alone.units, contested)
        try:
            if _flow_capped(problem, params, contested):
                # A capped flow keeps each line's few cheapest arcs: where a
                # network has thousands of stores, those are all stores near
                # the customer, and the warehouses' stock is out of its reach.
                # The colliding orders re-routed greedily go first, and the
                # flow keeps their arcs too, so it fills at least what they do
                # (5,000 stores, 30 warehouses, 100,000 orders: 4,231,959
                # without them, 3,945,276 with, 3,924,638 uncapped; greedy
                # 4,526,311). Their answer is offered as well.
                rerouted = reroute_greedily(problem, alone.units, colliding)
            pricing_ends = params.flow_pricing_share * params.time_limit
            flowed = priced_flow(
                problem, alone.units, contested, also=rerouted, **_flow_cap(params),
                pricing_rounds=params.flow_pricing_rounds,
                more=lambda: clock() < pricing_ends,
            )  # fmt: skip
        except BaseException:
            if early is not None:
                early.close()
            raise
        if flowed is not None:
            flowed, flow_prices = flowed
            if flow_prices is not None:
                stats["flow_pricing"] = {"rounds": flow_prices.rounds, "arcs": flow_prices.arcs}
            if not within_shipment_caps(problem, flowed):
                flowed = None
    else:
        flowed = None
    if flowed is not None:
        search = _Search(problem, flowed, alone.bound)
        stats["flow_cost"] = round(search.best, 2)
        if rerouted is not None:
            search.offer(rerouted)
            stats["best_after_greedy_reroute"] = round(search.best, 2)
        del rerouted  # (570 MB at national size; the search keeps it if it is best)
    else:
        search = _Search(problem, reroute_greedily(problem, alone.units, colliding), alone.bound)
        search.offer(route_single_units_by_flow(problem, search.units, colliding))
    search.executor = executor
    emit("contested part", {"best": search.best})

    if tiny:
        # A tiny batch: one MIP over every candidate proves the optimum
        # (HiGHS's own default gap at most), no decomposition first.
        emit("exact MIP", {"best": search.best})
        _exact_mip(problem, params, clock, search, rel_gap=min(params.rel_gap, 1e-4))
        return search.result(params, clock, stats)

    if not scarce:
        # Few orders collide (plentiful stock): the contested part's LP is
        # small and nearly integral for HiGHS, and relax and fix settles it;
        # measured better there than the joint LP's path (README, Results).
        if contested.sum() <= params.block_orders:
            _small(problem, params, clock, search, alone, contested, emit, stats)
        else:
            _improve_by_blocks(problem, params, clock, search, contested, emit, stats)
            _prove(problem, params, clock, search, alone, Prices(problem), stats, share=0.5)
        return search.result(params, clock, stats)

    if _model_columns(problem) <= params.exact_mip_columns and problem.churn is None:
        _within_reach(problem, params, clock, search, alone, contested, emit, stats)
        return search.result(params, clock, stats)

    if early is None and _national(problem, params, contested):
        # (the list is the flow's answer's only reference: freed after the moves)
        moves_from = [flowed]
        del flowed
        _national_batch(
            problem, params, clock, search, alone, contested, moves_from, flow_prices, emit, stats
        )
        return search.result(params, clock, stats)

    emit("joint LP", {"best": search.best})
    pending = early or _start_joint_lp(problem, params, clock, search.units, contested)
    joint, legs = None, []
    best_prices, best_value = None, float("-inf")
    try:
        if pending.in_background:
            # The LP runs in a child on both cores: meanwhile, this one builds
            # the price search's index arrays, which the bound needs next, and
            # then waits. (Single-order moves here were always superseded by
            # the LP-guided answer, and slowed the LP: measured, README.)
            tight = search.structure(exact_short=True)
            if tight.loop_orders.size > params.exact_pricing_orders and not pending.ready():
                search.structure(exact_short=False)
        answer = pending.result()
        # A contested part's LP models each line's cheapest candidates only:
        # the candidates its prices say pay are added and it goes on.
        rounds = params.column_generation_rounds if _grows(problem, params) else 0
        while answer is not None:
            joint = answer
            legs.append((joint.seconds, joint.converged))
            search.raise_bound(joint.bound)
            more = bool(pending.legs_left) and not joint.converged
            grown, value = None, None
            if rounds and not more:
                rounds -= 1
                grown, value = _extended_lp(
                    problem, params, clock, search, alone, contested, joint, stats
                )
            if more or best_prices is not None or value is not None:
                # Which leg's prices bound best is not always the last's (a
                # converged LP of the contested part's cheapest candidates may
                # price its stock too high for the rest): each is evaluated.
                if value is None:
                    value = _lagrangian_at(problem, search, alone, joint.prices)
                search.raise_bound(value)
                if value > best_value:
                    best_prices, best_value = joint.prices, value
            if grown is not None:
                pending.close()
                pending, more = grown, True
            emit("joint LP", {"best": search.best, "bound": search.bound})
            # An answer from every leg; the moves only from the last (while
            # the LP goes on, both cores are its).
            _guided_flow(problem, params, clock, search, alone, contested, joint, stats, not more)
            emit("joint LP: guided flow", {"best": search.best})
            answer = pending.result() if more else None
    finally:
        pending.close()
    if flow_prices is not None:
        # The first flow's prices (its potentials) price every contested line
        # at once; the joint LP's, only its part's cheapest candidates (when
        # not the whole batch's). The better start for the price search is kept.
        # (Measured: the flow's bound 595,696 at 20,000 scarce orders against
        # the whole LP's 609,668; 3,516,978 at 100,000 against the part's
        # LP's 3,348,688 before column generation, 3,550,852 after.)
        prices = Prices(problem)
        prices.record_flow(flow_prices)
        value = _lagrangian_at(problem, search, alone, prices)
        search.raise_bound(value)
        stats["flow_bound"] = round(value, 2)
        if joint is not None and best_prices is None:
            best_value = _lagrangian_at(problem, search, alone, joint.prices)
            search.raise_bound(best_value)
        if value > best_value:
            best_prices, best_value = prices, value
    if joint is None:
        # no LP answer in time: what single-order moves can do in what is left
        _moves(problem, params, clock, search, alone, contested, stats)
    prices = best_prices or (Prices(problem) if joint is None else joint.prices)
    search.timed_out |= joint is None
    # The bound, from the joint LP's prices: cheap, and owed in any case.
    emit("lower bound", {"best": search.best})
    _prove(problem, params, clock, search, alone, prices, stats, share=0.05)
    emit("lower bound", {"best": search.best, "bound": search.bound})

    if joint is not None:
        stats["joint_lp"] = _lp_stats(joint, legs)
        rounded, undecided = search.units, np.zeros(problem.num_orders, dtype=bool)
        if (
            joint.converged
            and remaining(params, clock, 0.0) > params.bound_share * params.time_limit
        ):
            # (an unconverged LP's units are no guide: its shipments were used
            # above; nor is a dive that cannot finish in time)
            rounded, undecided = _dive(problem, params, clock, search, contested, joint, stats)
            emit("joint LP: rounded", {"best": search.best})
        # A MIP over thousands of undecided orders would not finish: those are
        # left to the block sweeps below.
        if search.units is rounded and 0 < undecided.sum() <= params.polish_orders:
            started = clock()
            deadline = started + remaining(params, clock, 0.25 * params.time_limit)
            fixed = fix_the_rest(
                problem,
                rounded,
                undecided,
                contested,
                params,
                deadline,
                search.best,
                clock,
                stats,
                search.proven_units(params),
                start=rounded,
            )
            search.offer(fixed)
            stats["joint_lp"]["fix_seconds"] = round(clock() - started, 2)
            emit("joint LP: fixed", {"best": search.best})

    if not search.proven(params) and clock() < params.time_limit:
        _prove(problem, params, clock, search, alone, prices, stats, share=0.1)
        emit("lower bound", {"best": search.best, "bound": search.bound})

    if joint is not None and not search.proven(params):
        _support_blocks(problem, params, clock, search, contested, joint, emit, stats, executor)

    if contested.sum() > params.block_orders:
        _improve_by_blocks(problem, params, clock, search, contested, emit, stats)
        _prove(problem, params, clock, search, alone, prices, stats, share=0.5)
        emit("lower bound", {"best": search.best, "bound": search.bound})
    elif not search.proven(params) and contested.sum() <= params.polish_orders:
        emit("joint MIP polish", {"best": search.best, "bound": search.bound})
        _polish(problem, params, clock, search, contested, emit, stats, reserve=0.0)
    return search.result(params, clock, stats)


def _lp_stats(joint, legs) -> dict:
    """What the answer's details say of the joint LP."""
    return {
        "solver": joint.solver,
        "seconds": joint.seconds,
        "columns": joint.columns,
        "converged": joint.converged,
        "legs": legs,
    }


def _grows(problem, params) -> bool:
    """Is the joint LP of this scarce batch refined by column generation? A
    contested part's LP is (a whole batch's has every candidate already)."""
    return params.column_generation_rounds > 0 and _model_columns(problem) > params.whole_lp_columns


def _national(problem, params, contested) -> bool:
    """Is this scarce batch a national one: too big for the whole batch's LP, and
    with more contested orders than a contested part's LP may have?"""
    return (
        _model_columns(problem) > params.whole_lp_columns
        and contested.sum() > params.joint_lp_orders
    )


def _national_batch(
    problem, params, clock, search, alone, contested, moves_from, flow_prices, emit, stats
):
    """A national batch (see :func:`_national`): no joint LP of the whole
    contested part. Regional sweeps (:mod:`solver.regions`: each region's LP,
    its guided flow and moves; ``params.region_sweeps`` 0: single-order moves
    over the whole part instead) improve the flow's answer (``moves_from``: a
    list holding it or ``None``, emptied here) on this core (it fills more
    units than the colliding orders re-routed greedily, though it may cost more
    before its lines are gathered: at 1,000,000 orders 45,641,040 against
    43,413,618, and 42,388,155 against 43,024,070 after moves), then
    slope-scaled flows, while the price search,
    started at the flow's prices, raises the bound in a forked child on the
    other; the rest of the time goes on with the search here.

    An LP of an even sample of the contested part (100,000 of 993,840 at
    1,000,000 orders) was tried first: on what the others' plans leave, most
    scarce keys leave the sample nothing, and their rows took any dual in a
    wide range; the Lagrangian at its prices was -52.3 million (every order
    alone: 11.2 million), and -1.3 million at 10% of a 100,000-order batch
    (alone: 1.28 million), no better with the sample given its share of the
    stock. The flow prices every contested line at once, and the moves gather
    what it spread (measured: benchmarks/README, the national batch)."""
    prices = Prices(problem)
    if flow_prices is not None:
        prices.record_flow(flow_prices)
    search.exact_short_pricing = False  # hundreds of thousands of short orders
    emit("moves and lower bound", {"best": search.best})
    share = params.national_moves_share
    improve_end = clock() + remaining(
        params, clock, params.national_bound_share * params.time_limit
    )
    bounding, done = None, None
    if search.executor is None and can_fork():
        # (with an executor, the search's pricing runs on it, after the moves)
        bounding, done = _search_in_child(problem, clock, search, alone, prices, improve_end)
    try:
        # (whole units: the moves never fill what the others hold)
        start = moves_from.pop()
        if start is not None and int(start.sum()) <= int(search.units.sum()):
            start = None
        if params.region_sweeps > 0 and problem.churn is None:
            _regions(problem, params, clock, search, alone, contested, stats, improve_end, start)
            emit("regional sweeps", {"best": search.best})
        else:
            _moves(
                problem, params, clock, search, alone, contested, stats, share=share, start=start
            )
            emit("moves", {"best": search.best})
        del start
        arcs = None if flow_prices is None else flow_prices.arc_cands
        _slope_scaling(problem, params, clock, search, alone, contested, stats, improve_end, arcs)
        emit("slope scaling", {"best": search.best})
        if bounding is not None:
            done.set()  # the search ends its step and answers
            found = bounding.result()
            if found is not None:
                _record_search(problem, search, prices, stats, *found)
    finally:
        if bounding is not None:
            bounding.close()
    emit("lower bound", {"best": search.best, "bound": search.bound})
    _prove(problem, params, clock, search, alone, prices, stats, share=1.0)
    emit("lower bound", {"best": search.best, "bound": search.bound})


def _search_in_child(problem, clock, search: _Search, alone, prices: Prices, deadline: float):
    """The price search from ``prices`` until ``deadline`` or until the event
    returned is set, in a forked child (:mod:`solver.child`): its answer is
    (best value, its key and node prices, iterations, trajectory, seconds)."""
    structure = search.structure(exact_short=False)
    upper = search.best
    done = stop_event()

    def produce():
        started = clock()
        state = start_search(structure, prices.unit_price(), prices.node)
        until = lambda: deadline if done.is_set() else clock()  # noqa: E731
        search_prices(problem, structure, state, alone.cost, upper, until, deadline)
        yield (
            state.best_value,
            state.best_key_price,
            state.best_node_price,
            state.iterations,
            state.trajectory,
            clock() - started,
        )

    child = InChild(produce, [max(deadline - clock(), 0.0) + PATIENCE], background=True)
    return child, done


def _record_search(problem, search: _Search, prices: Prices, stats, value, key, node,
                   iterations, trajectory, seconds) -> None:  # fmt: skip
    """A price search's answer into the bound, ``prices`` and the details."""
    search.raise_bound(value)
    details = stats.setdefault("bound", {"seconds": 0.0, "iterations": 0, "trajectory": []})
    details["iterations"] += iterations
    details["trajectory"] += trajectory[:: max(1, len(trajectory) // 10)]
    details["seconds"] = round(details["seconds"] + seconds, 2)
    if key is not None and node is not None:
        structure = search.structure(exact_short=False)
        prices.key, prices.node = dense_prices(problem, structure, key, node)


def _start_joint_lp(problem, params, clock, incumbent, contested):
    """The joint LP of a big scarce batch (of the whole batch when its model
    allows, else of the contested part on what ``incumbent`` leaves), started
    on the other core for its share of the time; an unconverged LP goes on
    (a second leg) while its first answer is rounded. A contested part's LP
    stops at the looser first-leg tolerance instead: column generation
    refines it (see :func:`_extended_lp`)."""
    first_leg = remaining(params, clock, params.after_lp_share * params.time_limit)
    whole = _model_columns(problem) <= params.whole_lp_columns
    if _grows(problem, params):
        # its refinement is the larger LP (column generation, see _optimize):
        # this one only needs to be good enough to price the missing candidates
        return start_joint_lp(
            problem, incumbent, contested, params, clock, first_leg,
            rel_tol=params.first_leg_tolerance,
        )  # fmt: skip
    return start_joint_lp(
        problem,
        incumbent,
        contested,
        params,
        clock,
        first_leg,
        whole=whole,
        refine=max(
            remaining(params, clock, params.after_refine_share * params.time_limit) - first_leg, 0.0
        ),
    )


class _Search:
    """The incumbent (always feasible), its cost, the best proven bound, and
    whether a step was cut short by the time limit."""

    def __init__(self, problem, units: np.ndarray, bound: float) -> None:
        self.problem = problem
        units = keep_unmodelled_rules(problem, units)
        self.units = units
        self.best = evaluate(problem, units).total_cost
        self.bound = bound
        self.timed_out = False
        self.prices: Prices | None = None
        self._structures: dict[bool, PricingStructure] = {}
        self.executor: Executor | None = None
        """Runs independent tasks (blocks, pricing chunks) when the caller gave one."""
        self._pricing_data: dict[bool, PricingData] = {}
        self.exactly_priced: set[tuple[bytes, bytes]] = set()
        """Prices at which the Lagrangian was already evaluated with the short orders exact."""
        self.exact_short_pricing = True
        """Price the orders with a short candidate exactly when the time allows
        (off for a national batch: too many, and a second pricing structure)."""

    def structure(self, exact_short: bool) -> PricingStructure:
        """The pricing oracle's index arrays, built once per solve."""
        if exact_short not in self._structures:
            self._structures[exact_short] = build_structure(self.problem, exact_short)
        return self._structures[exact_short]

    def oracle(self, exact_short: bool) -> Oracle:
        """Every order alone at given prices: in this process, or in chunks on the
        executor (:mod:`solver.parallel_pricing`: the same value, to the bit)."""
        structure = self.structure(exact_short)
        if self.executor is None:
            return lambda key, node: price_orders(self.problem, structure, key, node)
        if exact_short not in self._pricing_data:
            self._pricing_data[exact_short] = PricingData(self.problem, structure)
        data, executor = self._pricing_data[exact_short], self.executor
        return lambda key, node: price_orders_with(executor, data, key, node)

    def offer(self, units: np.ndarray | None) -> None:
        """Keep ``units`` (feasible by construction) if cheaper; the split cap of a
        routing profile is checked here, as not every step models it, and a ship group
        (a kit's components) a step broke is left unfilled first."""
        if units is not None:
            units = keep_unmodelled_rules(self.problem, units)
        if units is None or not within_shipment_caps(self.problem, units):
            return
        cost = evaluate(self.problem, units).total_cost
        if cost < self.best - 1e-9:
            self.units, self.best = units, cost

    def raise_bound(self, bound: float) -> None:
        self.bound = max(self.bound, bound)

    def proven(self, params: OptimizeParams) -> bool:
        return within(self.best, self.bound, params.rel_gap)

    def proven_units(self, params: OptimizeParams):
        """A test: would these units be proven within the gap by the bound so far?"""
        return lambda units: within(
            evaluate(self.problem, units).total_cost, self.bound, params.rel_gap
        )

    def result(self, params: OptimizeParams, clock: Clock, stats: dict) -> RoutingResult:
        cost = evaluate(self.problem, self.units)
        bound = min(self.bound, cost.total_cost)
        if within(cost.total_cost, bound, params.rel_gap):
            status = "optimal"
        elif self.timed_out or clock() >= params.time_limit:
            status = "time_limit"
        else:
            status = "feasible"
        return RoutingResult("optimize", status, self.units, cost, bound, stats, self.prices)


def _prove(problem, params, clock, search: _Search, alone, prices: Prices, stats, share: float):
    """Raise the bound by a price search from ``prices`` for ``share`` of the time left.

    Every step evaluates the Lagrangian on the vectorised oracle: while at most
    ``exact_pricing_orders`` orders have a short candidate, with those priced
    exactly (near the exact Lagrangian); beyond, all relaxed (fast, looser),
    and, if there is time, once with them exact at the starting prices (the
    joint LP's: measured the best there is on a 20,000-order scarce batch, where
    that lifted the bound from the LP's 609,637 to 611,221) and at the best
    prices found. Every value is a proven bound; the best prices replace ``prices``.
    """
    search.prices = prices
    if search.proven(params) or clock() >= params.time_limit:
        return
    started = clock()
    details = stats.setdefault("bound", {"seconds": 0.0, "iterations": 0, "trajectory": []})
    # Pricing the orders with a short candidate exactly makes each step nearly
    # the exact Lagrangian, at about a millisecond per such order: worth it
    # only while they are few.
    small = (
        search.exact_short_pricing
        and search.structure(exact_short=True).loop_orders.size <= params.exact_pricing_orders
    )
    structure = search.structure(exact_short=small)
    state = start_search(structure, prices.unit_price(), prices.node)
    if not small:
        _exact_lagrangian(params, clock, search, alone, state.key_price, state.node_price, details)
    deadline = clock() + max(share * remaining(params, clock, 0.0), 0.05)
    search_prices(
        problem,
        structure,
        state,
        alone.cost,
        search.best,
        clock,
        deadline,
        oracle=search.oracle(exact_short=small),
    )
    search.raise_bound(state.best_value)
    details["iterations"] += state.iterations
    details["trajectory"] += state.trajectory[:: max(1, len(state.trajectory) // 10)]
    if state.best_key_price is not None and state.best_node_price is not None:
        prices.key, prices.node = dense_prices(
            problem, structure, state.best_key_price, state.best_node_price
        )
        if not small:
            _exact_lagrangian(
                params, clock, search, alone, state.best_key_price, state.best_node_price, details
            )
    details["seconds"] = round(details["seconds"] + clock() - started, 2)


def _exact_lagrangian(params, clock, search: _Search, alone, key_price, node_price, details):
    """The Lagrangian at these prices with the orders that have a short candidate
    priced exactly (about a millisecond each), the rest vectorised: once per
    price vector, when the time left allows. (Both pricing structures number
    the stock keys alike.)"""
    if not search.exact_short_pricing:
        return
    tight = search.structure(exact_short=True)
    seen = (key_price.tobytes(), node_price.tobytes())
    if (
        seen in search.exactly_priced
        or remaining(params, clock, 0.0) <= EXACT_PRICING_SECONDS * tight.loop_orders.size
    ):
        return
    search.exactly_priced.add(seen)
    priced = search.oracle(exact_short=True)(key_price, node_price)
    search.raise_bound(floored_value(priced, alone.cost))
    details["trajectory"].append((round(clock(), 2), round(search.bound, 4)))


def _lagrangian_at(problem, search: _Search, alone, prices: Prices) -> float:
    """The Lagrangian bound at ``prices`` on the fast (relaxed) oracle: proven."""
    return floored_value(_priced_at(search, prices), alone.cost)


def _priced_at(search: _Search, prices: Prices) -> Priced:
    """Every order alone at ``prices`` on the fast (relaxed) oracle."""
    structure = search.structure(exact_short=False)
    state = start_search(structure, prices.unit_price(), prices.node)
    return search.oracle(exact_short=False)(state.key_price, state.node_price)


def _extended_lp(problem, params, clock, search: _Search, alone, contested, joint, stats):
    """Column generation, one round (:mod:`solver.column_generation`): the joint
    LP of the contested part again, with the candidates of every order's plan
    at its prices, warm-started from it, while time allows (``None`` when
    nothing is added or no time is left); and the Lagrangian at ``joint``'s
    prices, a proven bound."""
    priced = _priced_at(search, joint.prices)
    value = floored_value(priced, alone.cost)
    also = priced_candidates(problem, joint, priced.units)
    added = added_candidates(joint, also)
    seconds = remaining(params, clock, params.after_refine_share * params.time_limit)
    details = stats.setdefault("column_generation", {"added": [], "seconds": []})
    details["added"].append(added)
    # (a later round needs about as long as the last LP: from a warm start it
    # has a few new candidates more to settle)
    first = len(details["added"]) == 1
    if (
        added == 0
        or seconds < params.extended_lp_share * params.time_limit
        or (not first and seconds < joint.seconds)
    ):
        return None, value
    details["seconds"].append(round(seconds, 2))
    grown = start_joint_lp(
        problem, search.units, contested, params, clock, seconds, also=also, warm=joint
    )
    return grown, value


def _flow_cap(params) -> dict:
    """The arcs a contested lines' flow keeps when it is big (see ``OptimizeParams.flow_arcs``)."""
    return {
        "max_arcs": params.flow_arcs,
        "per_line": params.flow_candidates_per_line,
        "spare_per_line": params.flow_spare_per_line,
    }


def _flow_capped(problem, params, contested) -> bool:
    """Whether the contested lines' flow has more than ``params.flow_arcs`` candidates."""
    lines = problem.order_line_start
    cands = problem.line_cand_start[lines[1:]] - problem.line_cand_start[lines[:-1]]
    return int(cands[contested].sum()) > params.flow_arcs


def _model_columns(problem) -> int:
    """Columns of the unpruned model: units, shipments, unfilled units, splits."""
    return int(
        problem.cand_line.size + problem.pair_order.size + problem.num_lines + problem.num_orders
    )


def _small(problem, params, clock, search: _Search, alone, contested, emit, stats) -> None:
    """A contested part of at most ``block_orders`` with few collisions: relax and fix
    over the whole part (its LP is the joint LP; the Lagrangian at its duals
    tells when the neighbourhood step is not needed), the bound by a price
    search from its prices, then the whole part as one MIP over more candidates."""
    emit("joint LP", {"orders": int(contested.sum())})
    prices = Prices(problem)

    def good_enough(units) -> bool:
        # relax_and_fix has recorded its LP's duals in ``prices`` by now
        search.raise_bound(lagrangian_bound(problem, alone, prices))
        return within(evaluate(problem, units).total_cost, search.bound, params.rel_gap)

    started = clock()
    candidate, fractional = relax_and_fix(
        problem,
        search.units,
        contested,
        params,
        remaining(params, clock, 0.1 * params.time_limit),
        prices,
        clock,
        stats,
        params.candidates_per_line,
        good_enough,
    )
    stats["joint_lp"] = {
        "solver": "highs",
        "seconds": round(clock() - started, 2),
        "fractional_orders": fractional,
    }
    search.timed_out |= candidate is None
    search.offer(candidate)
    emit("joint LP", {"best": search.best})
    emit("lower bound", {"best": search.best})
    search.raise_bound(lagrangian_bound(problem, alone, prices))
    _prove(problem, params, clock, search, alone, prices, stats, share=0.25)
    emit("lower bound", {"best": search.best, "bound": search.bound})
    if not search.proven(params) and contested.sum() <= params.polish_orders:
        emit("joint MIP polish", {"best": search.best, "bound": search.bound})
        _polish(problem, params, clock, search, contested, emit, stats, reserve=0.0)


def _within_reach(problem, params, clock, search: _Search, alone, contested, emit, stats):
    """A scarce batch whose unpruned MIP is within HiGHS's reach, on both cores.

    The joint LP of the whole batch (its bound is the batch's) guides a first
    answer (:func:`_guided_flow`); from it, the unpruned MIP runs on the other
    core (:func:`solver.polish.start_exact_mip`) for the rest of the time, for
    its answer and its proven bound, while this one raises the Lagrangian bound
    and solves the MIP over the LP's support (:mod:`solver.support_mip`), which
    is a fraction of the size and finds good answers sooner.
    """
    emit("joint LP", {"best": search.best})
    started = clock()
    joint = solve_joint_lp(
        problem,
        search.units,
        contested,
        params,
        clock,
        remaining(params, clock, params.after_lp_share * params.time_limit),
        whole=True,
    )
    prices = Prices(problem)
    if joint is not None:
        prices = joint.prices
        search.raise_bound(joint.bound)
        stats["joint_lp"] = {
            "solver": joint.solver,
            "seconds": round(clock() - started, 2),
            "columns": joint.columns,
            "converged": joint.converged,
        }
        emit("joint LP", {"best": search.best, "bound": search.bound})
        _guided_flow(problem, params, clock, search, alone, contested, joint, stats)
        emit("joint LP: guided flow", {"best": search.best})
    if search.proven(params) or clock() >= params.time_limit:
        return
    # (it answers a little before the limit: its units travel back and are checked)
    mip_params = MipParams(
        rel_gap=params.rel_gap / 4,
        abs_gap=part_abs_gap(params, search.best),
        seed=params.seed,
    )
    exact = start_exact_mip(
        problem, search.units, mip_params, lambda: remaining(params, clock, params.child_margin)
    )
    started = clock()
    try:
        emit("unpruned MIP (other core); lower bound", {"best": search.best})
        _prove(problem, params, clock, search, alone, prices, stats, share=0.1)
        emit("lower bound", {"best": search.best, "bound": search.bound})
        if joint is not None and not search.proven(params) and not exact.ready():
            emit("support MIP", {"best": search.best, "bound": search.bound})
            support_started = clock()
            support = solve_on_support(
                problem,
                search.units,
                lp_units(problem, joint.part, joint.vars, joint.x),
                contested,
                params,
                replace(mip_params, time_limit=remaining(params, clock, params.child_margin)),
                # the unpruned MIP's answer is back: it finished, or the time is up
                lambda: stop_requested(clock)() or exact.ready(),
            )
            search.offer(support)
            stats["support_mip"] = {
                "cost": None
                if support is None
                else round(evaluate(problem, support).total_cost, 2),
                "seconds": round(clock() - support_started, 2),
            }
            emit("support MIP", {"best": search.best, "bound": search.bound})
        stop = stop_requested(clock)
        # (a MIP past its limit by more than the margin is not waited for)
        answer = exact.result(lambda: stop() or clock() > params.time_limit + params.child_margin)
    finally:
        exact.close()
    finished = False
    if answer is not None:
        units, bound, finished = answer
        search.offer(units)
        search.raise_bound(bound)
        stats["unpruned_mip"] = {
            "cost": None if units is None else round(evaluate(problem, units).total_cost, 2),
            "bound": round(bound, 4),
            "finished": finished,
            "seconds": round(clock() - started, 2),
        }
    search.timed_out |= not finished and not search.proven(params)


def _support_blocks(
    problem, params, clock, search: _Search, contested, joint, emit, stats, executor=None
):
    """With time left after the joint LP's rounding: geographic blocks re-routed by
    MIPs over the LP's support (:func:`solver.support_mip.improve_on_support`), or,
    given an executor, as independent tasks on their own allowances
    (:func:`solver.parallel_blocks.improve_in_parallel`); leaving a little time for
    the bound."""
    deadline = params.time_limit - params.bound_share * params.time_limit
    if deadline - clock() < params.support_block_seconds:
        return
    emit("support blocks", {"best": search.best, "bound": search.bound})
    started = clock()
    lp = lp_units(problem, joint.part, joint.vars, joint.x)
    if executor is None:
        units, details = improve_on_support(
            problem, search.units, lp, contested, params, clock, deadline
        )
    else:
        units, details = improve_in_parallel(
            problem, search.units, lp, contested, params, clock, deadline, executor
        )
        details["tasks"] = executor.stats()["tasks"]
    search.offer(units)
    stats["support_blocks"] = {**details, "seconds": round(clock() - started, 2)}
    emit("support blocks", {"best": search.best, "bound": search.bound})


def _dive(problem, params, clock, search: _Search, contested, joint, stats):
    """Round the joint LP: keep its whole-unit routings; solve the LP again for
    the orders it left undecided, on what the kept ones leave (at most
    ``dive_rounds`` times, while that is worth it); repair the rest.
    Returns (the rounded answer, the orders the LPs never decided)."""
    kept, undecided = keep_whole_units(
        problem, search.units, joint.part, joint.vars, joint.x, joint.converged
    )
    rounds = [int(undecided.sum())]
    deadline = clock() + remaining(params, clock, 0.4 * params.time_limit)
    for _round in range(params.dive_rounds):
        if undecided.sum() < 20 or clock() >= deadline:
            break
        again = solve_joint_lp(problem, kept, undecided, params, clock, deadline - clock())
        if again is None or not again.converged:
            break  # an unfinished LP's near-zero routing would look whole
        kept, still = keep_whole_units(problem, kept, again.part, again.vars, again.x)
        if still.sum() >= undecided.sum():
            undecided = still
            break
        undecided = still
        rounds.append(int(undecided.sum()))
    stats["joint_lp"]["undecided_orders"] = rounds
    movable = np.zeros(problem.num_orders, dtype=bool)
    movable[joint.part.orders] = True
    rounded = repair(problem, kept, undecided, movable, joint.prices.unit_price())
    search.offer(rounded)
    return rounded, undecided


def _moves(
    problem, params, clock, search: _Search, alone, contested, stats, share=None, start=None
):
    """Single-order moves from the incumbent, or from ``start`` (a feasible
    answer), (:mod:`solver.order_moves`) for at most their share of the time
    (default ``params.moves_share``)."""
    if problem.churn is not None:
        return
    started = clock()
    before = search.best if start is None else evaluate(problem, start).total_cost
    share = params.moves_share if share is None else share
    deadline = clock() + min(share * params.time_limit, remaining(params, clock, 0.0))
    start = search.units if start is None else start
    moved, details = improve_orders(problem, start, contested, alone.cost, clock, deadline)
    search.offer(moved)
    stats["moves"] = {
        "before": round(before, 2),
        "after": round(search.best, 2),
        "moved": details["moved"],
        "seconds": round(clock() - started, 2),
    }


def _regions(problem, params, clock, search: _Search, alone, contested, stats, until, start):
    """Regional sweeps (:mod:`solver.regions`) from ``start`` (a feasible answer;
    default the incumbent) until clock ``until``."""
    started = clock()
    start = search.units if start is None else start
    before = evaluate(problem, start).total_cost
    swept, details = regional_sweeps(
        problem, start, contested, alone.cost, params, clock, until,
        accept=lambda units: within_shipment_caps(problem, units),
    )  # fmt: skip
    search.offer(swept)
    stats["regional_sweeps"] = {
        "before": round(before, 2),
        **details,
        "seconds": round(clock() - started, 2),
    }


def _slope_scaling(problem, params, clock, search: _Search, alone, contested, stats, until,
                   arcs=None):  # fmt: skip
    """Slope-scaled flows from the incumbent (:mod:`solver.slope_scaling`), then
    single-order moves from their answer, until clock ``until``. ``arcs``: the
    first flow's (a capped one's arcs and those priced in), kept with the
    incumbent's instead of capping every candidate again."""
    if problem.churn is not None or clock() >= until:
        return
    started, before = clock(), search.best
    scaled, details = slope_scaling(
        problem, search.units, contested, clock, until, rounds=params.slope_rounds,
        accept=lambda units: within_shipment_caps(problem, units), **_flow_cap(params),
        arcs=arcs,
    )  # fmt: skip
    if details["costs"] and min(details["costs"]) < before:
        moved, passes = improve_orders(problem, scaled, contested, alone.cost, clock, until)
        details["moved"] = passes["moved"]
        search.offer(moved)
    stats["slope_scaling"] = {
        **details,
        "before": round(before, 2),
        "after": round(search.best, 2),
        "seconds": round(clock() - started, 2),
    }


def _guided_flow(
    problem, params, clock, search: _Search, alone, contested, joint, stats, moves: bool = True
):
    """Round the joint LP by its shipments: one min-cost flow over the contested
    lines where the LP's shipments are cheap (:func:`solver.lp_rounding.guided_shipment_costs`),
    then (with ``moves``) single-order moves."""
    if problem.churn is not None:
        return
    started = clock()
    per_unit = guided_shipment_costs(
        problem, joint.part, joint.vars, joint.x, params.open_shipment_threshold
    )
    flowed = route_lines_by_flow(problem, search.units, contested, per_unit, **_flow_cap(params))
    if flowed is None:
        return
    flow_cost = evaluate(problem, flowed).total_cost
    if not moves:
        search.offer(flowed)
        stats.setdefault("guided_flow", []).append(
            {"flow_cost": round(flow_cost, 2), "seconds": round(clock() - started, 2)}
        )
        return
    # the moves leave a little time for the bound at the LP's prices
    reserve = params.bound_share * params.time_limit
    deadline = clock() + min(
        params.moves_share * params.time_limit, remaining(params, clock, reserve)
    )
    moved, details = improve_orders(problem, flowed, contested, alone.cost, clock, deadline)
    search.offer(moved)
    stats.setdefault("guided_flow", []).append(
        {
            "flow_cost": round(flow_cost, 2),
            "cost": round(evaluate(problem, moved).total_cost, 2),
            "moved": details["moved"],
            "seconds": round(clock() - started, 2),
        }
    )


def _polish(problem, params, clock, search: _Search, contested, emit, stats, reserve: float):
    """The contested part as one MIP (see :func:`solver.polish.polish`), leaving
    ``reserve`` of the time left to later steps."""
    started = clock()
    polished, finished = polish(
        problem,
        search.units,
        contested,
        params,
        clock,
        emit,
        reserve=reserve * remaining(params, clock, 0.0),
    )
    stats["polish_seconds"] = round(clock() - started, 2)
    search.offer(polished)
    search.timed_out |= not finished and not search.proven(params)


def _exact_mip(problem, params, clock, search: _Search, rel_gap=None) -> None:
    """One MIP over every candidate from the incumbent; its bound is the batch's."""
    units, bound, finished = solve_exactly(
        problem, search.units, params, clock, search.best, rel_gap=rel_gap
    )
    search.offer(units)
    search.raise_bound(bound)
    search.timed_out |= not finished and not search.proven(params)


def _improve_by_blocks(problem, params, clock, search, contested, emit, stats):
    """Relax and fix, block by block, from the incumbent (each step only improves)."""
    blocks = geographic_blocks(problem, contested, params.block_orders)
    # Big parts: fewer candidates per line keep each block's LP fast enough
    # for a second pass, whose shifted blocks re-decide the first's borders.
    per_line = params.candidates_per_line if len(blocks) == 1 else params.block_candidates_per_line
    schedule = [(1, b) for b in blocks]
    if len(blocks) > 1:
        schedule += [
            (2, b) for b in geographic_blocks(problem, contested, params.block_orders, shift=0.5)
        ]
    stats["blocks"] = len(blocks)
    stats["lp_fractional_orders"] = 0

    def good_enough(units) -> bool:
        """Already proven within the gap? (Only asked when one block covers all.)"""
        if len(blocks) > 1 or clock() >= params.time_limit:
            return False
        return within(evaluate(problem, units).total_cost, search.bound, params.rel_gap)

    for step, (sweep, block) in enumerate(schedule):
        if search.proven(params):
            break
        # The first sweep's blocks share the time; the second, shifted sweep
        # only uses what is left (a block whose LP cannot finish is wasted).
        steps_left = len(blocks) - step if sweep == 1 else len(schedule) - step
        left = remaining(params, clock, 0.2 * params.time_limit)
        share = left / steps_left
        # A block's LP and MIP need seconds (measured: about 2 s + 2 ms per order,
        # more on big blocks); a sliver of time would only be wasted. When the
        # blocks cannot all get that, the first ones get it and the others what
        # is left: some blocks improved beat none.
        need = 2.0 + 2e-3 * block.sum()
        if clock() >= 0.8 * params.time_limit or left < need:
            break
        share = max(share, need)
        label = f"sweep {sweep}, block {step % len(blocks) + 1}/{len(blocks)}"
        emit(f"{label}: linear relaxation", {"orders": int(block.sum())})
        started = clock()
        # The blocks' own duals go to a scratch price table: the joint LP's
        # global prices stay the ones the bound starts from.
        candidate, fractional = relax_and_fix(
            problem,
            search.units,
            block,
            params,
            share,
            Prices(problem),
            clock,
            stats,
            per_line,
            good_enough,
        )
        stats.setdefault("block_seconds", []).append(round(clock() - started, 2))
        stats["lp_fractional_orders"] += fractional
        search.offer(candidate)
        emit(f"{label}: joint MIP", {"best": search.best})
