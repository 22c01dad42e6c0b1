"""The Lagrangian oracle in chunks of orders: every order alone at given prices,
priced by independent tasks.

:func:`solver.pricing.price_orders` prices each order alone; orders interact only
through the prices, so any partition of the orders can be priced apart. Here the
oracle's pattern groups (kept whole: a group is one vectorised computation) and
its one-by-one orders are dealt into chunks of about equal work, each priced by a
task of the caller's executor (:mod:`solver.executor`); the coordinator writes
every chunk's order costs and plans back into the batch's arrays and sums them
exactly as the single-process oracle does, so the bound is the same number to the
last bit, at any prices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from solver.executor import Executor
from solver.pricing import Priced, PricingStructure, price_orders


@dataclass(frozen=True)
class PricingData:
    """What every pricing task reads: the problem and the oracle's index arrays.
    Built once per solve, so that an executor that caches its shared data by
    identity sends them once."""

    problem: Any
    structure: PricingStructure


@dataclass(frozen=True)
class PricingChunk:
    groups: tuple[int, ...]
    """Indices of the structure's pattern groups this chunk prices."""
    loop_orders: np.ndarray
    """The one-by-one orders it prices."""
    key_price: np.ndarray
    node_price: np.ndarray


@dataclass(frozen=True)
class ChunkPrices:
    orders: np.ndarray
    order_cost: np.ndarray
    cands: np.ndarray
    units: np.ndarray


def deal_chunks(
    structure: PricingStructure, parts: int
) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """The oracle's work dealt into at most ``parts`` chunks of about equal work:
    groups (weighed by rows times blocks) largest first to the lightest chunk, the
    one-by-one orders (about a millisecond each) spread evenly on top."""
    parts = max(1, parts)
    load = np.zeros(parts)
    groups: list[list[int]] = [[] for _ in range(parts)]
    weight = [g.rows.size * g.blocks.shape[1] for g in structure.groups]
    for index in np.argsort(weight, kind="stable")[::-1].tolist():
        lightest = int(np.argmin(load))
        groups[lightest].append(index)
        load[lightest] += weight[index]
    loops = np.array_split(structure.loop_orders, parts)
    chunks = [
        (tuple(sorted(g)), loop) for g, loop in zip(groups, loops, strict=True) if g or loop.size
    ]
    return chunks or [((), structure.loop_orders)]


def price_chunk(shared: PricingData, chunk: PricingChunk) -> ChunkPrices:
    """One chunk's orders alone at the chunk's prices: the task."""
    structure = shared.structure
    mine = replace(
        structure,
        groups=tuple(structure.groups[i] for i in chunk.groups),
        loop_orders=chunk.loop_orders,
        no_candidate_orders=np.zeros(0, dtype=np.int64),
    )
    priced = price_orders(shared.problem, mine, chunk.key_price, chunk.node_price)
    orders = np.concatenate(
        [structure.groups[i].orders for i in chunk.groups] + [chunk.loop_orders]
    ).astype(np.int64)
    cands = np.flatnonzero(priced.units)
    return ChunkPrices(orders, priced.order_cost[orders], cands, priced.units[cands])


def price_orders_with(
    executor: Executor,
    data: PricingData,
    key_price: np.ndarray,
    node_price: np.ndarray,
    chunks: list[tuple[tuple[int, ...], np.ndarray]] | None = None,
) -> Priced:
    """:func:`solver.pricing.price_orders` with the chunks (default: one per worker
    of ``executor``) priced as its tasks; the same order costs, plans and value."""
    problem, structure = data.problem, data.structure
    chunks = deal_chunks(structure, executor.workers) if chunks is None else chunks
    answers = executor.map(
        price_chunk,
        data,
        [PricingChunk(groups, loop, key_price, node_price) for groups, loop in chunks],
    )
    order_cost = np.zeros(problem.num_orders)
    units = np.zeros(problem.cand_line.size, dtype=np.int64)
    line_units = np.bincount(
        problem.line_order, weights=problem.line_qty, minlength=problem.num_orders
    )
    order_cost[structure.no_candidate_orders] = (
        problem.unfilled_penalty * line_units[structure.no_candidate_orders]
    )
    for answer in answers:
        order_cost[answer.orders] = answer.order_cost
        units[answer.cands] = answer.units
    # (as price_orders sums it, term for term)
    finite = np.isfinite(problem.capacity)
    node_price = np.where(finite, node_price, 0.0)
    value = float(order_cost.sum())
    value -= float(key_price @ structure.key_stock)
    value -= float(node_price[finite] @ problem.capacity[finite])
    return Priced(order_cost, units, value)
