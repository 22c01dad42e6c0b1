"""Channel shares: each channel's sellable quantities and its low-stock alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api.deps import OmsKey, PoolDep
from api.schemas import AlertsOut, ChannelAvailabilityOut, Id

router = APIRouter(prefix="/v1", tags=["channels"])
ChannelPath = Annotated[str, Path(min_length=1, max_length=64)]
State = Annotated[Literal["open", "cleared", "all"], Query(description="Which alerts.")]


@router.get("/channels/{channel}/availability", response_model=ChannelAvailabilityOut)
def channel_availability(
    channel: ChannelPath,
    pool: PoolDep,
    _key: OmsKey,
    sku: Annotated[
        list[Id] | None,
        Query(max_length=100, description="SKUs (repeat the parameter); default: every SKU."),
    ] = None,
) -> ChannelAvailabilityOut:
    """What the channel may sell of each SKU: its share of the pool plus its reservations."""
    return ChannelAvailabilityOut.of(channel, pool.channel_availability(channel, sku))


@router.get("/channels/{channel}/alerts", response_model=AlertsOut)
def channel_alerts(
    channel: ChannelPath, pool: PoolDep, _key: OmsKey, state: State = "open"
) -> AlertsOut:
    """The channel's low-stock alerts, newest first."""
    return AlertsOut.of(pool.alerts(channel=channel, state=state))


@router.get("/alerts", response_model=AlertsOut)
def alerts(pool: PoolDep, _key: OmsKey, state: State = "open") -> AlertsOut:
    """Every channel's low-stock alerts, newest first."""
    return AlertsOut.of(pool.alerts(state=state))
