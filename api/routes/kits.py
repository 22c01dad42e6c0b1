"""Kits: PUT a kit's components, GET them (docs/profiles.md, Kits)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import AdminKey, AnyKey, PoolDep
from api.schemas import KitIn, KitOut

router = APIRouter(prefix="/v1/kits", tags=["kits"])
KitPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.put("/{kit_sku}", response_model=KitOut)
def put_kit(kit_sku: KitPath, body: KitIn, pool: PoolDep, principal: AdminKey) -> KitOut:
    """Define the kit (replacing its components); a rejected kit (422, naming the field)
    changes nothing."""
    return KitOut.of(pool.put_kit(kit_sku, body.components, actor=principal.key_id))


@router.get("/{kit_sku}", response_model=KitOut)
def get_kit(kit_sku: KitPath, pool: PoolDep, _key: AnyKey) -> KitOut:
    """The kit's components (404 for a SKU that is not a kit)."""
    return KitOut.of(pool.kit(kit_sku))
