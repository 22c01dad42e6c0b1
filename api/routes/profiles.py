"""Routing profiles: PUT a channel's new version, GET the current one and its history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from api.deps import AdminKey, AnyKey, PoolDep
from api.schemas import ProfileOut, ProfileVersions

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
ChannelPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.put("/{channel}", response_model=ProfileOut)
def put_profile(
    channel: ChannelPath,
    body: Annotated[dict[str, Any], Body(description="The profile (docs/profiles.md).")],
    pool: PoolDep,
    principal: AdminKey,
) -> ProfileOut:
    """Validate the profile and make it the channel's next version; a rejected profile
    (422, naming the field) leaves the previous version in force."""
    return ProfileOut.of(pool.put_profile(channel, body, actor=principal.key_id))


@router.get("/{channel}", response_model=ProfileOut)
def get_profile(channel: ChannelPath, pool: PoolDep, _key: AnyKey) -> ProfileOut:
    """The channel's profile in force, with its version."""
    return ProfileOut.of(pool.profile_versions(channel)[0])


@router.get("/{channel}/versions", response_model=ProfileVersions)
def list_versions(channel: ChannelPath, pool: PoolDep, _key: AnyKey) -> ProfileVersions:
    """Every version of the channel's profile, newest first."""
    return ProfileVersions(versions=[ProfileOut.of(v) for v in pool.profile_versions(channel)])
