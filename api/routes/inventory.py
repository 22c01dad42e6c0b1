"""Inventory: stock feeds (set, adjust), availability, ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminKey, OmsKey, PoolDep, RequestIdDep
from api.schemas import (
    AdjustFeed,
    AvailabilityOut,
    FeedOut,
    Id,
    LedgerEntryOut,
    LedgerOut,
    QueryInt,
    SetFeed,
)

router = APIRouter(prefix="/v1", tags=["inventory"])


@router.post("/inventory/set", response_model=FeedOut)
def set_stock(
    body: SetFeed, pool: PoolDep, principal: AdminKey, request_id: RequestIdDep
) -> FeedOut:
    """Absolute stock per (node, sku); all rows apply or none. `expected_version` makes a
    row compare-and-set."""
    result = pool.set_stock(
        body.to_rows(), actor=principal.key_id, reason=body.reason, request_id=request_id
    )
    return FeedOut.model_validate(result, from_attributes=True)


@router.post("/inventory/adjust", response_model=FeedOut)
def adjust_stock(
    body: AdjustFeed, pool: PoolDep, principal: AdminKey, request_id: RequestIdDep
) -> FeedOut:
    """Relative changes per (node, sku); all rows apply or none."""
    result = pool.adjust_stock(
        body.to_rows(), actor=principal.key_id, reason=body.reason, request_id=request_id
    )
    return FeedOut.model_validate(result, from_attributes=True)


@router.get("/availability", response_model=AvailabilityOut)
def availability(
    pool: PoolDep,
    _key: OmsKey,
    sku: Annotated[
        list[Id],
        Query(min_length=1, max_length=100, description="One or more SKUs (repeat the parameter)."),
    ],
) -> AvailabilityOut:
    """Per-node layers and pooled availability (over active nodes) of each SKU."""
    return AvailabilityOut.of(pool.availability(sku))


@router.get("/inventory/{node_id}/{sku}/ledger", response_model=LedgerOut)
def ledger(
    node_id: Id,
    sku: Id,
    pool: PoolDep,
    _key: AdminKey,
    after: Annotated[QueryInt, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LedgerOut:
    """Movements of one (node, sku), oldest first; page with `after=<next_after>`."""
    entries = pool.ledger(node_id, sku, after=after, limit=limit)
    return LedgerOut(
        node_id=node_id,
        sku=sku,
        entries=[LedgerEntryOut.model_validate(e, from_attributes=True) for e in entries],
        next_after=entries[-1].entry_id if len(entries) == limit else None,
    )
