"""Campaigns: lock stock for a campaign, read its locks, release what is left."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminKey, OmsKey, PoolDep, RequestIdDep
from api.schemas import CampaignOut, Id, LockRequest

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post("/{campaign_id}/locks", response_model=CampaignOut, status_code=201)
def lock_stock(
    campaign_id: Id,
    body: LockRequest,
    pool: PoolDep,
    principal: AdminKey,
    request_id: RequestIdDep,
) -> CampaignOut:
    """Lock units per (node, sku) for the campaign over `[starts_at, ends_at)`; all rows or
    none. The units leave what other channels can sell at once."""
    view = pool.lock_stock(
        campaign_id,
        body.to_rows(),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        allow_pool=body.allow_pool,
        actor=principal.key_id,
        reason=body.reason,
        request_id=request_id,
    )
    return CampaignOut.of(view)


@router.get("/{campaign_id}", response_model=CampaignOut)
def get_campaign(campaign_id: Id, pool: PoolDep, _key: OmsKey) -> CampaignOut:
    """The campaign, its locks and what each has left."""
    return CampaignOut.of(pool.campaign(campaign_id))


@router.post("/{campaign_id}/release", response_model=CampaignOut)
def release_campaign(
    campaign_id: Id, pool: PoolDep, principal: AdminKey, request_id: RequestIdDep
) -> CampaignOut:
    """Return what is left of every active lock to the pool now (a repeat is a no-op)."""
    return CampaignOut.of(
        pool.release_campaign(campaign_id, actor=principal.key_id, request_id=request_id)
    )
