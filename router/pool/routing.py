"""Route one order over the pool and reserve its units in the same transaction.

The way through, per attempt:

1. read the availability of just the order's SKUs at active nodes (one query);
2. ``prepare_order_problem``: candidate nodes (active, within reach, holding at
   least one of the SKUs; only the pickup node for a pickup order) and the
   arrays of ``solver.order_dp.OrderProblem``;
3. ``solver.order_dp.solve_order`` (pure);
4. ``reserve_plan``: one conditional ``UPDATE`` per (node, sku) in a fixed
   order, so no unit is ever promised twice; if another transaction took the
   stock first an update matches no row, the attempt rolls back and the next
   one re-reads and re-routes.

An order of a campaign (``Order.campaign``) goes the same way with two solves of
the same problem (``plan_campaign_order``): first over the campaign's locked units
only, then, if the campaign allows, over the pool for what is left.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)

from router.geo import haversine_km
from router.kits import Kit
from router.modes import MODES, PICKUP, NodeArrays, shipment_modes, transfer_promise
from router.pool import channels as pool_channels
from router.pool import explanations, ledger, locks
from router.pool import profiles as pool_profiles
from router.pool.errors import Conflict, InvalidInput
from router.pool.nodes import NodeIndex
from router.pool.schema import balances, nodes, reservations, skus
from router.pool.schema import orders as orders_table
from router.profiles import DEFAULT_CHANNEL, NodeRules, order_candidates, promised_days
from solver.order_dp import OrderPlan, OrderProblem, order_cost, solve_order

MAX_LINES = 500
MAX_ROUTE_ATTEMPTS = 16


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    sku: str
    qty: int
    ship_group: str | None = None  # lines of one group ship whole from one node, or not
    kit_line: str | None = None  # the kit line this component line comes from (router.kits)


@dataclass(frozen=True)
class Order:
    """One order as the OMS sends it; ``lat``/``lon`` may be omitted for a pickup order."""

    order_id: str
    lines: tuple[OrderLine, ...]
    lat: float | None = None
    lon: float | None = None
    pickup_node: str | None = None
    channel: str = "web"
    campaign: str | None = None  # routes from the campaign's locked units first
    # Nodes that may not serve this order: those that rejected its line (rejections.py).
    excluded_nodes: tuple[str, ...] = ()
    # The date (YYYY-MM-DD) the customer was promised; its channel's profile decides
    # which nodes meet it (router.profiles).
    promised_date: str | None = None
    # Endless aisle: the store the order was taken in, shipped from elsewhere; its
    # channel's profile may exclude or prefer it (router.modes).
    origin_store: str | None = None

    def fingerprint(self) -> str:
        """Stable hash of the order, to tell an idempotent retry from a reused key."""
        data = asdict(self)
        if data["campaign"] is None:
            del data["campaign"]  # fingerprints stored before campaigns existed stay valid
        if not data["excluded_nodes"]:
            del data["excluded_nodes"]
        if data["promised_date"] is None:
            del data["promised_date"]
        if data["origin_store"] is None:
            del data["origin_store"]
        for line in data["lines"]:
            if line["ship_group"] is None:
                del line["ship_group"]
            if line["kit_line"] is None:
                del line["kit_line"]
        body = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class RoutingPolicy:
    split_penalty: float = 6.0
    unfilled_penalty: float = 150.0
    profiles: pool_profiles.ProfileBook | None = field(default=None, compare=False)
    """Each channel's routing profile (``router.pool.profiles``); ``None``: none."""
    kits: dict[str, Kit] | None = field(default=None, compare=False)
    """Each kit's components (``router.pool.kits``); ``None``: no kits."""

    def rules(self, order: Order, index: NodeIndex, now: datetime | None) -> NodeRules | None:
        """The order's channel's compiled profile at ``now`` (naive UTC), if any."""
        if self.profiles is None or now is None:
            return None
        return self.profiles.rules(order.channel, index, now)

    def workload_rules(self, index: NodeIndex, now: datetime | None) -> NodeRules | None:
        """The default profile's rules: a node's daily workload is shared by every channel."""
        if self.profiles is None or now is None:
            return None
        return self.profiles.rules(DEFAULT_CHANNEL, index, now)


@dataclass(frozen=True)
class PreparedOrder:
    """The solver's problem plus what is needed to map its answer back."""

    problem: OrderProblem
    sku_list: tuple[str, ...]  # row k of the problem
    candidates: np.ndarray  # (N,) positions in the NodeIndex
    distance_km: np.ndarray  # (N,) NaN for a pickup order
    promise_late: bool = False  # the profile's promise could not be met (router.profiles)
    profile_cost: np.ndarray | None = None  # (N,) the profile's part of ship_cost
    mode: np.ndarray | None = None  # (N,) each candidate's fulfilment mode (router.modes)
    withheld: int = 0  # units beyond the channel's sellable quantity: unfilled (router.channels)


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    node_id: str
    qty: int
    reservation_id: str | None = None


@dataclass(frozen=True)
class LineResult:
    line_id: str
    sku: str
    qty: int
    allocations: list[Allocation]
    unfilled: int
    kit_line: str | None = None  # the kit line a component line serves (router.kits)


@dataclass(frozen=True)
class Shipment:
    node_id: str
    kind: str
    distance_km: float | None
    units: int
    shipping_cost: float
    handling_cost: float
    mode: str | None = None  # the fulfilment mode (router.modes.MODES)


@dataclass(frozen=True)
class CostBreakdown:
    shipping: float
    handling: float
    splits: int
    split_penalty: float
    unfilled_units: int
    unfilled_penalty: float
    total: float


@dataclass(frozen=True)
class RouteResult:
    order_id: str
    status: str  # filled | partial | unfilled
    quote_only: bool
    exact: bool
    lines: list[LineResult]
    shipments: list[Shipment]
    cost: CostBreakdown
    hold_expires_at: datetime | None
    attempts: int
    replayed: bool = False
    locked_units: int = 0  # units taken from the campaign's locks
    promise_late: bool = False  # no allowed node could meet the promised date
    origin_store: str | None = None  # endless aisle: the store the order was taken in

    def to_json(self) -> str:
        # The same document as ``asdict``, built directly: ``asdict`` deep-copies every
        # value and cost a millisecond per order, the bulk of reserving a wave.
        data = {
            **vars(self),
            "lines": [
                {**vars(line), "allocations": [dict(vars(a)) for a in line.allocations]}
                for line in self.lines
            ],
            "shipments": [dict(vars(s)) for s in self.shipments],
            "cost": dict(vars(self.cost)),
            "hold_expires_at": self.hold_expires_at.isoformat() if self.hold_expires_at else None,
        }
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RouteResult:
        data = json.loads(text)
        return cls(
            order_id=data["order_id"],
            status=data["status"],
            quote_only=data["quote_only"],
            exact=data["exact"],
            lines=[
                LineResult(**{**ln, "allocations": [Allocation(**a) for a in ln["allocations"]]})
                for ln in data["lines"]
            ],
            shipments=[Shipment(**s) for s in data["shipments"]],
            cost=CostBreakdown(**data["cost"]),
            hold_expires_at=(
                datetime.fromisoformat(data["hold_expires_at"]) if data["hold_expires_at"] else None
            ),
            attempts=data["attempts"],
            replayed=True,
            locked_units=data.get("locked_units", 0),
            promise_late=data.get("promise_late", False),
            origin_store=data.get("origin_store"),
        )


@dataclass
class _Availability:
    """Rows of the availability read: (node_pk, sku, available, capacity left or None)."""

    rows: list[tuple[int, str, int, int | None]] = field(default_factory=list)


class LostRace(Exception):
    """Another transaction took stock or capacity between our read and our update."""


# --- step 1: read ----------------------------------------------------------------------

_AVAILABLE = (
    balances.c.on_hand
    - balances.c.unsellable
    - balances.c.safety_stock
    - balances.c.reserved
    - balances.c.locked
)
_READ_AVAILABILITY = (
    select(
        balances.c.node_pk,
        balances.c.sku,
        _AVAILABLE.label("available"),
        (nodes.c.capacity_units - nodes.c.backlog_units).label("capacity_left"),
    )
    .join(nodes, nodes.c.pk == balances.c.node_pk)
    .where(
        balances.c.node_pk.in_(bindparam("node_pks", expanding=True)),
        balances.c.sku.in_(bindparam("skus", expanding=True)),
        # Repeated on the node side so that the planner starts from a handful of nodes
        # even when its statistics of pool_nodes are stale.
        nodes.c.pk.in_(bindparam("node_pks", expanding=True)),
        nodes.c.status == "active",
        _AVAILABLE > 0,
    )
)


def read_availability(
    conn: Connection, sku_list: tuple[str, ...], node_pks: list[int]
) -> _Availability:
    """Positive availability of the SKUs at the given nodes, if those nodes are active."""
    if not node_pks:
        return _Availability([])
    rows = conn.execute(_READ_AVAILABILITY, {"skus": list(sku_list), "node_pks": node_pks}).all()
    return _Availability([(r[0], r[1], r[2], r[3]) for r in rows])


def check_known_skus(conn: Connection, order: Order, found: set[str]) -> None:
    """Raise for the first line whose SKU the pool has never heard of.

    Only called when some SKU had no available row, so the common path costs no query.
    """
    missing = sorted({ln.sku for ln in order.lines} - found)
    known = set(conn.execute(select(skus.c.sku).where(skus.c.sku.in_(missing))).scalars())
    for i, line in enumerate(order.lines):
        if line.sku not in found and line.sku not in known:
            raise InvalidInput(
                f"sku {line.sku!r} is not in the pool", field=f"lines[{i}].sku", rule="known_sku"
            )


# --- step 2: prepare -------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """Nodes that may serve the order by location alone, with distance and shipping cost."""

    positions: np.ndarray  # (M,) positions in the NodeIndex
    distance_km: np.ndarray  # (M,) NaN for a pickup order
    ship_cost: np.ndarray  # (M,) the shipping of the node's fulfilment mode
    mode: np.ndarray | None = None  # (M,) that mode (router.modes); None without a profile
    extra: np.ndarray | None = None  # (M,) a mode's profile cost (endless aisle preference)
    fixed_days: np.ndarray | None = None  # (M,) a mode's delivery days (NaN: the bands')


_NODE_ARRAYS: list[tuple[NodeIndex, NodeArrays]] = []


def _node_arrays(index: NodeIndex) -> NodeArrays:
    """What the fulfilment modes read of the nodes, kept for the current read model."""
    if _NODE_ARRAYS and _NODE_ARRAYS[0][0] is index:
        return _NODE_ARRAYS[0][1]
    arrays = NodeArrays(
        index.lat, index.lon, index.kind == "store", index.ship_fixed, index.ship_per_km
    )
    _NODE_ARRAYS[:] = [(index, arrays)]
    return arrays


def reachable_nodes(order: Order, index: NodeIndex, rules: NodeRules | None = None) -> Reach:
    """The reach rule (delivery) or the pickup rule, on the in-memory node arrays, less
    the nodes the order excludes (``excluded_nodes``: they rejected its line) and, with
    a profile, the nodes it does not allow now (``NodeRules.eligible``) and its
    fulfilment modes (``router.modes.shipment_modes``, as the batch: transfers to the
    pickup store, same-city delivery, the endless aisle's origin store).

    Status and stock are not known here; they come with the availability read.
    """
    transfers = rules is not None and rules.modes.transfer
    if order.pickup_node is not None:
        pickup_allowed = rules is None or rules.eligible[index.index_of_id[order.pickup_node]]
        if order.pickup_node in order.excluded_nodes or not pickup_allowed:
            return Reach(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
        pickup = index.index_of_id[order.pickup_node]
        if not transfers:
            mode = None if rules is None else np.array([PICKUP], dtype=np.int8)
            extra = None if rules is None else np.zeros(1)
            return Reach(
                np.array([pickup], dtype=np.int64), np.full(1, np.nan), np.zeros(1), mode, extra
            )
        distance = np.full(index.size, np.nan)
        within = np.zeros(index.size, dtype=bool)
        within[pickup] = True
    else:
        distance = haversine_km(order.lat, order.lon, index.lat, index.lon)
        within = np.isnan(index.max_km) | (distance <= index.max_km)
    for node_id in order.excluded_nodes:
        if node_id in index.index_of_id:
            within[index.index_of_id[node_id]] = False
    if rules is None:
        positions = np.flatnonzero(within)
        distance = distance[positions]
        ship_cost = index.ship_fixed[positions] + index.ship_per_km[positions] * distance
        return Reach(positions, distance, ship_cost)
    origin = -1 if order.origin_store is None else index.index_of_id[order.origin_store]
    modes = shipment_modes(
        rules.modes,
        within[None, :],
        distance[None, :],
        np.array([index.index_of_id[order.pickup_node] if order.pickup_node else -1]),
        np.array([origin]),
        _node_arrays(index),
        rules.eligible,
    )
    positions = np.flatnonzero(modes.allowed[0] & rules.eligible)
    for node_id in order.excluded_nodes:  # a transfer source that rejected the line, too
        if node_id in index.index_of_id:
            positions = positions[positions != index.index_of_id[node_id]]
    return Reach(
        positions,
        distance[positions],
        modes.ship_cost[0, positions],
        modes.mode[0, positions],
        modes.extra[0, positions],
        modes.fixed_days[0, positions],
    )


def prepare_order_problem(
    order: Order,
    index: NodeIndex,
    reach: Reach,
    available: _Availability,
    policy: RoutingPolicy,
    rules: NodeRules | None = None,
    now: datetime | None = None,
    units_left: np.ndarray | None = None,
    weekly_sales: dict[tuple[int, str], float] | None = None,
    sellable: np.ndarray | None = None,
) -> PreparedOrder:
    """Build the solver's arrays: candidates are reachable nodes holding any of the SKUs.

    With a profile (``rules``, evaluated at ``now``), ``router.profiles.order_candidates``
    keeps the nodes it allows and adds its shipment costs, exactly as the batch does;
    ``units_left`` (per reach position) caps capacity by the nodes' daily workload;
    ``weekly_sales`` ((node_pk, sku) -> units a week) gives the clearance credit;
    ``sellable`` (per SKU of the order) is what its channel may sell
    (``router.channels``): the units beyond it are left unfilled, as the batch's
    ``channel_share_rule`` leaves them (a ship group short of them, whole).
    """
    sku_list = tuple(dict.fromkeys(ln.sku for ln in order.lines))
    row_of_sku = {s: k for k, s in enumerate(sku_list)}
    qty = np.zeros(len(sku_list), dtype=np.int64)
    for ln in order.lines:
        qty[row_of_sku[ln.sku]] += ln.qty

    slot_of_position = {int(p): i for i, p in enumerate(reach.positions)}
    holding = {slot_of_position[index.index_of_pk[pk]] for pk, *_ in available.rows}
    late = False
    extra = np.zeros(reach.positions.size)
    if rules is not None:
        holds = np.zeros((1, reach.positions.size), dtype=bool)
        holds[0, sorted(holding)] = True
        pickup = order.pickup_node is not None
        promised = date.fromisoformat(order.promised_date) if order.promised_date else None
        days_left = (
            np.array([promised_days(promised, now.replace(tzinfo=UTC))])
            if now
            else np.array([np.inf])
        )
        cands = order_candidates(
            rules,
            np.ones((1, reach.positions.size), dtype=bool),
            reach.distance_km[None, :],
            index.kind[reach.positions] == "store",
            holds,
            days_left,
            np.array([pickup]),
            nodes=reach.positions,
            fixed_days=None if reach.fixed_days is None else reach.fixed_days[None, :],
        )
        kept, transfer_late = cands.allowed, np.zeros(1, dtype=bool)
        if reach.mode is not None:
            kept, transfer_late = transfer_promise(
                rules.modes, cands.allowed, reach.mode[None, :], holds, days_left
            )
        holding &= set(np.flatnonzero(kept[0]).tolist())
        extra = cands.extra_cost[0]
        if reach.extra is not None:
            extra = extra + reach.extra
        late = bool(cands.late[0] or transfer_late[0])
    slots = sorted(holding)
    column_of_slot = {slot: j for j, slot in enumerate(slots)}
    candidates = reach.positions[slots]
    stock = np.zeros((len(sku_list), len(slots)), dtype=np.int64)
    capacity = np.full(len(slots), np.inf)
    for pk, sku, units, capacity_left in available.rows:
        j = column_of_slot.get(slot_of_position[index.index_of_pk[pk]], -1)
        if j < 0:
            continue  # a node the profile does not allow for this order
        stock[row_of_sku[sku], j] = units
        if capacity_left is not None:
            capacity[j] = max(0, capacity_left)
    if units_left is not None and slots:
        capacity = np.minimum(capacity, units_left[slots])
    unit_cost = np.broadcast_to(
        index.handling_per_unit[candidates], (len(sku_list), len(slots))
    ).copy()
    if rules is not None and rules.clearance_credit > 0 and weekly_sales is not None:
        pks = index.pk[candidates]
        sales = np.array(
            [[weekly_sales.get((int(pk), sku), np.nan) for pk in pks] for sku in sku_list]
        ).reshape(stock.shape)
        unit_cost -= rules.restricted(candidates).credit(stock, sales)
    # Ship groups bind where profiles do (as in a batch, where they come with
    # profiles.json): the order's channel has rules; a kit's components always do.
    binding = [ln for ln in order.lines if ln.ship_group and (rules is not None or ln.kit_line)]
    groups = sorted({str(ln.ship_group) for ln in binding})
    sku_group = None
    if groups:
        sku_group = np.full(len(sku_list), -1, dtype=np.int64)
        for ln in binding:
            sku_group[row_of_sku[ln.sku]] = groups.index(str(ln.ship_group))
    withheld = 0
    if sellable is not None:
        cut = np.maximum(qty - sellable, 0)
        if sku_group is not None:
            short = np.isin(sku_group, sku_group[(cut > 0) & (sku_group >= 0)])
            cut[short & (sku_group >= 0)] = qty[short & (sku_group >= 0)]
        withheld = int(cut.sum())
        qty = qty - cut
    problem = OrderProblem(
        qty=qty,
        stock=stock,
        ship_cost=reach.ship_cost[slots] + extra[slots],
        unit_cost=unit_cost,
        capacity=capacity,
        split_penalty=policy.split_penalty,
        unfilled_penalty=policy.unfilled_penalty,
        max_shipments=None
        if rules is None or not np.isfinite(rules.max_shipments)
        else int(rules.max_shipments),
        sku_group=sku_group,
    )
    return PreparedOrder(
        problem,
        sku_list,
        candidates,
        reach.distance_km[slots],
        promise_late=late,
        profile_cost=extra[slots] if rules is not None else None,
        mode=None if reach.mode is None else reach.mode[slots],
        withheld=withheld,
    )


# --- step 4: reserve -------------------------------------------------------------------

_RESERVE_STOCK = (
    update(balances)
    .where(
        and_(
            balances.c.node_pk == bindparam("b_node"),
            balances.c.sku == bindparam("b_sku"),
            bindparam("units") <= _AVAILABLE,
        )
    )
    .values(reserved=balances.c.reserved + bindparam("units"))
)
_RESERVE_CAPACITY = (
    update(nodes)
    .where(
        and_(
            nodes.c.pk == bindparam("b_node"),
            nodes.c.status == "active",
            or_(
                nodes.c.capacity_units.is_(None),
                nodes.c.backlog_units + bindparam("units") <= nodes.c.capacity_units,
            ),
        )
    )
    .values(backlog_units=nodes.c.backlog_units + bindparam("units"))
)


def _plan_moves(prepared: PreparedOrder, plan: OrderPlan, index: NodeIndex):
    """(node_pk, sku, units) of the plan, sorted: the fixed lock order."""
    moves = []
    for k, j in zip(*np.nonzero(plan.alloc), strict=True):
        pos = int(prepared.candidates[j])
        moves.append((int(index.pk[pos]), prepared.sku_list[k], int(plan.alloc[k, j])))
    moves.sort()
    return moves


def reserve_plan(conn: Connection, moves: list[tuple[int, str, int]]) -> None:
    """Take the plan's stock and node capacity, or raise ``LostRace`` (caller rolls back).

    Each statement runs once per row (executemany); both drivers report the summed
    row count, so fewer matched rows than parameter sets means a condition failed.
    """
    if not moves:
        return
    stock = [{"b_node": pk, "b_sku": sku, "units": units} for pk, sku, units in moves]
    if conn.execute(_RESERVE_STOCK, stock).rowcount != len(stock):
        raise LostRace("stock changed since it was read")
    _reserve_capacity(conn, moves)


def _reserve_capacity(conn: Connection, moves: list[tuple[int, str, int]]) -> None:
    """Add the plan's units to each node's backlog, within its capacity, or raise ``LostRace``."""
    if not moves:
        return
    per_node: dict[int, int] = {}
    for node_pk, _sku, units in moves:
        per_node[node_pk] = per_node.get(node_pk, 0) + units
    load = [{"b_node": pk, "units": per_node[pk]} for pk in sorted(per_node)]
    if conn.execute(_RESERVE_CAPACITY, load).rowcount != len(load):
        raise LostRace("capacity or status of a node changed since it was read")


# --- campaign orders: locked units first ----------------------------------------------------


@dataclass(frozen=True)
class LockUse:
    """Units of a campaign order taken from one of the campaign's locks."""

    lock_id: str
    node_pk: int
    sku: str
    units: int


def complete_from_pool(
    problem: OrderProblem, taken: np.ndarray, pool_stock: np.ndarray
) -> OrderProblem:
    """The problem of routing what ``taken`` left unfilled, from ``pool_stock``.

    Its cost is exactly what the combined allocation costs beyond ``taken``: a node
    already shipping adds no shipment, a new node adds its shipment and one split
    (so the split penalty moves into the shipping cost of the new nodes).
    """
    left = problem.qty - taken.sum(axis=1)
    used_per_node = taken.sum(axis=0)
    if not used_per_node.any():
        return replace(problem, qty=left, stock=pool_stock)
    if problem.max_shipments is not None:
        # The split cap over both solves: counting a reused node as new is safe; with
        # no new shipment left, only the nodes already shipping may complete it.
        room = problem.max_shipments - int((used_per_node > 0).sum())
        if room <= 0:
            pool_stock = np.where(used_per_node[None, :] > 0, pool_stock, 0)
        problem = replace(problem, max_shipments=None if room <= 0 else room)
    return replace(
        problem,
        qty=left,
        stock=pool_stock,
        ship_cost=np.where(used_per_node > 0, 0.0, problem.ship_cost + problem.split_penalty),
        capacity=problem.capacity - used_per_node,
        split_penalty=0.0,
    )


def plan_campaign_order(
    conn: Connection, order: Order, index: NodeIndex, policy: RoutingPolicy, now: datetime
) -> tuple[PreparedOrder, OrderPlan, list[LockUse]]:
    """Route a campaign's order from its locked units first, then (if allowed) from the pool.

    One problem, two solves: ``prepare_order_problem`` builds the order's arrays over
    every reachable node holding locked or pool units, then ``solve_order`` runs on

    1. the campaign's in-window locked units only (the problem with ``stock`` replaced);
    2. if the campaign allows pool stock and units are still unfilled, the pool's
       available units, completing the first allocation (``complete_from_pool``).

    This is a lexicographic rule, not a price: the campaign spends its own units
    before it touches what other channels could sell, even where a pool unit would
    be a little cheaper; the cost reported is that of the combined allocation.
    """
    assert order.campaign is not None
    allow_pool = locks.allow_pool_of(conn, order.campaign)
    sku_list = tuple(dict.fromkeys(ln.sku for ln in order.lines))
    rules = policy.rules(order, index, now)
    reach = reachable_nodes(order, index, rules)
    node_pks = index.pk[reach.positions].tolist()
    locked = locks.read_locked(conn, order.campaign, sku_list, node_pks, now)
    pool = read_availability(conn, sku_list, node_pks) if allow_pool else _Availability([])
    found = {sku for _, sku, _, _ in pool.rows} | {lk.sku for lk in locked}
    if len(found) < len(sku_list):
        check_known_skus(conn, order, found)
    units: dict[tuple[int, str], int] = {}
    capacity_left: dict[int, int | None] = {}
    for pk, sku, available, cap in pool.rows:
        units[(pk, sku)] = units.get((pk, sku), 0) + available
        capacity_left[pk] = cap
    for lk in locked:
        units[(lk.node_pk, lk.sku)] = units.get((lk.node_pk, lk.sku), 0) + lk.remaining
        capacity_left[lk.node_pk] = lk.capacity_left
    both = _Availability([(pk, sku, u, capacity_left[pk]) for (pk, sku), u in units.items()])
    workload = policy.workload_rules(index, now)
    units_left = None
    if workload is not None:
        units_left = pool_profiles.units_left_today(conn, workload, reach.positions, index, now)
    prepared = prepare_order_problem(
        order, index, reach, both, policy, rules=rules, now=now, units_left=units_left
    )
    problem = prepared.problem
    column = {int(index.pk[pos]): j for j, pos in enumerate(prepared.candidates)}
    row = {sku: k for k, sku in enumerate(prepared.sku_list)}
    lock_stock = np.zeros_like(problem.stock)
    lock_at: dict[tuple[int, int], str] = {}
    for lk in locked:
        if lk.node_pk not in column:
            continue  # a node the channel's profile does not allow now
        k, j = row[lk.sku], column[lk.node_pk]
        lock_stock[k, j] = lk.remaining
        lock_at[(k, j)] = lk.lock_id
    first = solve_order(replace(problem, stock=lock_stock))
    alloc, exact = first.alloc, first.exact
    if allow_pool and (first.alloc.sum(axis=1) < problem.qty).any():
        second = solve_order(complete_from_pool(problem, first.alloc, problem.stock - lock_stock))
        alloc, exact = first.alloc + second.alloc, first.exact and second.exact
    uses = [
        LockUse(
            lock_at[(k, j)],
            int(index.pk[prepared.candidates[j]]),
            prepared.sku_list[k],
            int(first.alloc[k, j]),
        )
        for k, j in zip(*np.nonzero(first.alloc), strict=True)
    ]
    uses.sort(key=lambda u: (u.node_pk, u.sku))
    return prepared, OrderPlan(alloc, order_cost(problem, alloc), bool(exact)), uses


def reserve_campaign_plan(
    conn: Connection, moves: list[tuple[int, str, int]], uses: list[LockUse], now: datetime
) -> None:
    """Like ``reserve_plan``, with the units of ``uses`` taken from the campaign's locks.

    Lock rows first, then every pair in (node, sku) order: its locked units move to
    reserved, the rest is reserved from the pool under the usual availability check.
    """
    if not locks.take_from_locks(conn, [(u.lock_id, u.units) for u in uses], now):
        raise LostRace("a campaign lock changed since it was read")
    from_lock = {(u.node_pk, u.sku): u.units for u in uses}
    for node_pk, sku, units in moves:
        locked_units = from_lock.get((node_pk, sku), 0)
        if locked_units and not locks.move_locked_to_reserved(conn, node_pk, sku, locked_units):
            raise LostRace("locked stock changed since it was read")
        if units > locked_units:
            params = {"b_node": node_pk, "b_sku": sku, "units": units - locked_units}
            if conn.execute(_RESERVE_STOCK, params).rowcount != 1:
                raise LostRace("stock changed since it was read")
    _reserve_capacity(conn, moves)


# --- explain ---------------------------------------------------------------------------


def explain(
    order: Order,
    prepared: PreparedOrder,
    plan: OrderPlan,
    index: NodeIndex,
    *,
    quote_only: bool,
    attempts: int,
    hold_expires_at: datetime | None = None,
) -> RouteResult:
    """Spread each SKU's units over its lines (in line order) and itemise the cost."""
    problem = prepared.problem
    remaining = {
        sku: [
            (int(prepared.candidates[j]), int(plan.alloc[k, j]))
            for j in np.nonzero(plan.alloc[k])[0]
        ]
        for k, sku in enumerate(prepared.sku_list)
    }
    lines = []
    for line in order.lines:
        want, allocations = line.qty, []
        queue = remaining[line.sku]
        while want > 0 and queue:
            pos, units = queue[0]
            take = min(want, units)
            node_id = str(index.node_id[pos])
            allocations.append(Allocation(node_id, take))
            want -= take
            if take == units:
                queue.pop(0)
            else:
                queue[0] = (pos, units - take)
        lines.append(LineResult(line.line_id, line.sku, line.qty, allocations, want, line.kit_line))

    shipments = []
    for j in np.nonzero(plan.alloc.sum(axis=0))[0]:
        pos = int(prepared.candidates[j])
        units = int(plan.alloc[:, j].sum())
        dist = prepared.distance_km[j]
        shipments.append(
            Shipment(
                node_id=str(index.node_id[pos]),
                kind=str(index.kind[pos]),
                distance_km=None if np.isnan(dist) else round(float(dist), 3),
                units=units,
                shipping_cost=float(problem.ship_cost[j]),
                handling_cost=float((problem.unit_cost[:, j] * plan.alloc[:, j]).sum()),
                mode=_mode_name(prepared, int(j), order, str(index.kind[pos])),
            )
        )
    unfilled = sum(ln.unfilled for ln in lines)
    splits = max(0, len(shipments) - 1)
    ordered = sum(ln.qty for ln in order.lines)
    cost = CostBreakdown(
        shipping=sum(s.shipping_cost for s in shipments),
        handling=sum(s.handling_cost for s in shipments),
        splits=splits,
        split_penalty=problem.split_penalty * splits,
        unfilled_units=unfilled,
        unfilled_penalty=problem.unfilled_penalty * unfilled,
        total=float(plan.total_cost) + problem.unfilled_penalty * prepared.withheld,
    )
    status = "filled" if unfilled == 0 else ("unfilled" if unfilled == ordered else "partial")
    return RouteResult(
        order_id=order.order_id,
        status=status,
        quote_only=quote_only,
        exact=bool(plan.exact),
        lines=lines,
        shipments=shipments,
        cost=cost,
        hold_expires_at=hold_expires_at,
        attempts=attempts,
        promise_late=prepared.promise_late,
        origin_store=order.origin_store,
    )


def _mode_name(prepared: PreparedOrder, j: int, order: Order, kind: str) -> str:
    """The fulfilment mode of candidate ``j`` (without a profile: the format's modes)."""
    if prepared.mode is not None:
        return MODES[int(prepared.mode[j])]
    return "pickup" if order.pickup_node is not None else f"{kind}_ship"


# --- one attempt -----------------------------------------------------------------------


def validate_order(order: Order, index: NodeIndex) -> None:
    """Rules the request schema cannot see (they need the pool)."""
    if order.pickup_node is not None and order.pickup_node not in index.index_of_id:
        raise InvalidInput(
            f"pickup node {order.pickup_node!r} does not exist",
            field="pickup_node",
            rule="known_node",
        )
    if order.origin_store is not None and (
        order.origin_store not in index.index_of_id
        or index.kind[index.index_of_id[order.origin_store]] != "store"
    ):
        raise InvalidInput(
            f"origin store {order.origin_store!r} is not a store of the pool",
            field="origin_store",
            rule="known_store",
        )
    if order.pickup_node is None and (order.lat is None or order.lon is None):
        raise InvalidInput(
            "a delivery order needs the customer's lat and lon",
            field="customer",
            rule="required_for_delivery",
        )
    if not order.lines:
        raise InvalidInput("an order needs at least one line", field="lines", rule="min_length")
    if len(order.lines) > MAX_LINES:
        raise InvalidInput(
            f"an order has at most {MAX_LINES} lines", field="lines", rule="max_length"
        )
    group_of_sku: dict[str, str | None] = {}
    for i, line in enumerate(order.lines):
        if group_of_sku.setdefault(line.sku, line.ship_group) != line.ship_group:
            raise InvalidInput(
                f"sku {line.sku!r} is on lines of different ship groups (or of none)",
                field=f"lines[{i}].ship_group",
                rule="one_ship_group_per_sku",
            )
    seen = set()
    for i, line in enumerate(order.lines):
        if line.qty < 1:
            raise InvalidInput("qty must be >= 1", field=f"lines[{i}].qty", rule="minimum")
        if line.line_id in seen:
            raise InvalidInput(
                f"line_id {line.line_id!r} appears twice",
                field=f"lines[{i}].line_id",
                rule="unique_line_id",
            )
        seen.add(line.line_id)


def plan_order(
    conn: Connection,
    order: Order,
    index: NodeIndex,
    policy: RoutingPolicy,
    now: datetime | None = None,
) -> tuple[PreparedOrder, OrderPlan]:
    """Steps 1-3: read, prepare, solve (no write). ``now`` (naive UTC) evaluates the
    channel's profile (calendars, promise, daily workload); ``None``: no profile."""
    sku_list = tuple(dict.fromkeys(ln.sku for ln in order.lines))
    rules = policy.rules(order, index, now)
    reach = reachable_nodes(order, index, rules)
    available = read_availability(conn, sku_list, index.pk[reach.positions].tolist())
    found = {sku for _, sku, _, _ in available.rows}
    if len(found) < len(sku_list):
        check_known_skus(conn, order, found)
    units_left = None
    workload = policy.workload_rules(index, now)
    if workload is not None and now is not None:
        units_left = pool_profiles.units_left_today(conn, workload, reach.positions, index, now)
    weekly_sales = None
    if rules is not None and rules.clearance_credit > 0:
        weekly_sales = pool_profiles.read_weekly_sales(conn, sku_list, available)
    sellable = None
    if now is not None:
        sellable = pool_channels.sellable_for(conn, policy.profiles, order.channel, sku_list)
    prepared = prepare_order_problem(
        order,
        index,
        reach,
        available,
        policy,
        rules=rules,
        now=now,
        units_left=units_left,
        weekly_sales=weekly_sales,
        sellable=sellable,
    )
    return prepared, solve_order(prepared.problem)


_INSERT_RESERVATIONS = insert(reservations)
_HAS_HOLDS: Select = (
    select(literal_column("1"))
    .select_from(reservations)
    .where(reservations.c.order_id == bindparam("order_id"), reservations.c.status == "held")
    .limit(1)
)


_LOCK_ORDER_ID = text("SELECT pg_advisory_xact_lock(hashtext(:order_id))")


def lock_order(conn: Connection, order_id: str) -> None:
    """Serialize the routings of one order id across processes (PostgreSQL).

    A transaction-scoped advisory lock: a second routing of the same order waits until
    the first commits, then sees its holds and its idempotency record (READ COMMITTED
    takes a new snapshot per statement). SQLite's writers are serialized already.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_ORDER_ID, {"order_id": order_id})


def order_has_holds(conn: Connection, order_id: str) -> bool:
    return conn.execute(_HAS_HOLDS, {"order_id": order_id}).first() is not None


def route_and_reserve(
    conn: Connection,
    order: Order,
    index: NodeIndex,
    policy: RoutingPolicy,
    *,
    now: datetime,
    hold_seconds: int,
    attempt: int,
    actor: str,
    idempotency_key: str | None,
    request_id: str | None,
) -> RouteResult:
    """One attempt inside the caller's write transaction; raises ``LostRace`` to retry."""
    if order_has_holds(conn, order.order_id):
        raise Conflict(
            f"order {order.order_id!r} already holds reservations; release them first "
            "or retry with the same Idempotency-Key",
            field="order_id",
            rule="one_open_routing_per_order",
        )
    uses: list[LockUse] = []
    if order.campaign is None:
        prepared, plan = plan_order(conn, order, index, policy, now)
    else:
        prepared, plan, uses = plan_campaign_order(conn, order, index, policy, now)
    return reserve_routing(
        conn,
        order,
        index,
        prepared,
        plan,
        rules=policy.workload_rules(index, now),
        uses=uses,
        now=now,
        hold_seconds=hold_seconds,
        attempt=attempt,
        actor=actor,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


@dataclass(frozen=True)
class Reserving:
    """What reserving a decided plan writes: the stock moves (node_pk, sku, units) in lock
    order, the answer with its reservation ids, the reservation rows, the ledger entries."""

    moves: list[tuple[int, str, int]]
    result: RouteResult
    rows: list[dict]
    entries: list[ledger.Entry]
    explanation: dict
    """The order's ``pool_explanations`` row (``router.pool.explanations``)."""


def reserving(
    order: Order,
    index: NodeIndex,
    prepared: PreparedOrder,
    plan: OrderPlan,
    *,
    now: datetime,
    hold_seconds: int,
    attempt: int,
    uses: list[LockUse] | None = None,
    context: str | None = None,
    source: str = "route",
) -> Reserving:
    """The writes of a decided plan, prepared without touching the database.

    ``reserve_routing`` runs them for one order; a wave runs many at once (one
    conditional update per (node, sku) of their summed moves). ``context``: the
    order's ``router.explain.OrderContext`` JSON when the caller has a richer one
    than the plan's own (a wave's joint solve).
    """
    moves = _plan_moves(prepared, plan, index)
    expires = now + timedelta(seconds=hold_seconds)
    result = explain(
        order,
        prepared,
        plan,
        index,
        quote_only=False,
        attempts=attempt,
        hold_expires_at=expires if moves else None,
    )
    # Where the order ships, kept on each reservation so that a rejected part can be
    # re-routed to the same place (router.pool.rejections).
    destination = {
        "dest_lat": order.lat,
        "dest_lon": order.lon,
        "pickup_node": order.pickup_node,
        "campaign": order.campaign,
    }
    rows, lines = [], []
    for line in result.lines:
        allocations = []
        for alloc in line.allocations:
            rid = uuid.uuid4().hex
            allocations.append(replace(alloc, reservation_id=rid))
            rows.append(
                {
                    "reservation_id": rid,
                    "order_id": order.order_id,
                    "line_id": line.line_id,
                    "node_pk": int(index.pk[index.index_of_id[alloc.node_id]]),
                    "sku": line.sku,
                    "qty": alloc.qty,
                    "status": "held",
                    "created_at": now,
                    "expires_at": expires,
                    **destination,
                }
            )
        lines.append(replace(line, allocations=allocations))
    # A campaign order's units from its locked stock move locked -> reserved.
    from_lock = {(u.node_pk, u.sku): u.units for u in uses or ()}
    entries = []
    for pk, sku, units in moves:
        locked_units = from_lock.get((pk, sku), 0)
        if locked_units:
            entries.append(
                ledger.Entry(
                    pk,
                    sku,
                    "lock_use",
                    d_locked=-locked_units,
                    d_reserved=locked_units,
                    ref=order.order_id,
                )
            )
        if units > locked_units:
            entries.append(
                ledger.Entry(
                    pk, sku, "reserve", d_reserved=units - locked_units, ref=order.order_id
                )
            )
    result = replace(result, lines=lines, locked_units=sum(from_lock.values()))
    if context is None:
        context = explanations.route_context(order, prepared, plan, index).to_json()
    why = explanations.row(order.order_id, source, context, now)
    return Reserving(moves, result, rows, entries, why)


def write_reservations(conn: Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(_INSERT_RESERVATIONS, rows)


def _line_record(line: OrderLine) -> list:
    """A line as ``pool_orders`` keeps it: ``[line_id, sku, qty]``, then its ship group
    and kit line when it has them."""
    record: list = [line.line_id, line.sku, line.qty]
    if line.ship_group or line.kit_line:
        record.append(line.ship_group or "")
    if line.kit_line:
        record.append(line.kit_line)
    return record


def record_orders(conn: Connection, routed: list[Order], now: datetime) -> None:
    """Keep the orders behind the reservations just written (``pool_orders``), as a
    re-optimization needs them: where they go, which lines, channel and campaign.

    An order id routed again (after a release) replaces its earlier record.
    """
    if not routed:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(orders_table)
    statement = statement.on_conflict_do_update(
        index_elements=[orders_table.c.order_id],
        set_={
            name: statement.excluded[name]
            for name in ("channel", "campaign", "lat", "lon", "pickup_node", "lines", "routed_at")
        },
    )
    conn.execute(
        statement,
        [
            {
                "order_id": order.order_id,
                "channel": order.channel,
                "campaign": order.campaign,
                "lat": order.lat,
                "lon": order.lon,
                "pickup_node": order.pickup_node,
                "lines": json.dumps([_line_record(ln) for ln in order.lines]),
                "routed_at": now,
            }
            for order in routed
        ],
    )


def reserve_routing(
    conn: Connection,
    order: Order,
    index: NodeIndex,
    prepared: PreparedOrder,
    plan: OrderPlan,
    *,
    now: datetime,
    hold_seconds: int,
    attempt: int,
    actor: str,
    idempotency_key: str | None,
    request_id: str | None,
    uses: list[LockUse] | None = None,
    context: str | None = None,
    source: str = "route",
    rules: NodeRules | None = None,
) -> RouteResult:
    """Reserve a decided plan (one order's, or its part of a wave) and record it.

    ``rules``: the default profile's, whose daily limits count the plan's units;
    ``uses``: the campaign's locked units the plan takes (a campaign order);
    ``context``, ``source``: what its explanation row keeps (see ``reserving``).

    Raises ``LostRace`` when the stock or capacity the plan counts on is gone; the
    caller rolls back (a wave rolls back to a savepoint and repairs the order).
    """
    writes = reserving(
        order,
        index,
        prepared,
        plan,
        now=now,
        hold_seconds=hold_seconds,
        attempt=attempt,
        uses=uses,
        context=context,
        source=source,
    )
    if order.campaign is None:
        reserve_plan(conn, writes.moves)
    else:
        reserve_campaign_plan(conn, writes.moves, uses or [], now)
    if not pool_profiles.take_units_today(conn, rules, writes.moves, index, now):
        raise LostRace("a node's daily workload changed since it was read")
    write_reservations(conn, writes.rows)
    if writes.rows:
        record_orders(conn, [order], now)
    explanations.record(conn, [writes.explanation])
    ledger.append(
        conn,
        writes.entries,
        now=now,
        actor=actor,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    return writes.result


def quote(
    conn: Connection, order: Order, index: NodeIndex, policy: RoutingPolicy, now: datetime
) -> RouteResult:
    if order.campaign is None:
        prepared, plan = plan_order(conn, order, index, policy, now)
        return explain(order, prepared, plan, index, quote_only=True, attempts=1)
    prepared, plan, uses = plan_campaign_order(conn, order, index, policy, now)
    result = explain(order, prepared, plan, index, quote_only=True, attempts=1)
    return replace(result, locked_units=sum(u.units for u in uses))
