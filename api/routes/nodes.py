"""Nodes: create, update, list, pause, resume, close."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status

from api.deps import AdminKey, PoolDep, RequestIdDep
from api.schemas import Id, NodeIn, NodeList, NodeOut, NodePatch

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])
NEW_STATUS = {"pause": "paused", "resume": "active", "close": "closed"}


@router.post("", response_model=NodeOut, status_code=status.HTTP_201_CREATED)
def create_node(body: NodeIn, pool: PoolDep, _key: AdminKey) -> NodeOut:
    return NodeOut.of(pool.create_node(body.to_spec()))


@router.get("", response_model=NodeList)
def list_nodes(
    pool: PoolDep, _key: AdminKey, status: Literal["active", "paused", "closed"] | None = None
) -> NodeList:
    return NodeList(nodes=[NodeOut.of(r) for r in pool.list_nodes(status=status)])


@router.get("/{node_id}", response_model=NodeOut)
def get_node(node_id: Id, pool: PoolDep, _key: AdminKey) -> NodeOut:
    return NodeOut.of(pool.node(node_id))


@router.patch("/{node_id}", response_model=NodeOut)
def update_node(
    node_id: Id, body: NodePatch, pool: PoolDep, principal: AdminKey, request_id: RequestIdDep
) -> NodeOut:
    """Change attributes; a new `default_safety_stock` applies to the node's balances
    that have no explicit safety stock."""
    return NodeOut.of(
        pool.update_node(node_id, body.changes(), actor=principal.key_id, request_id=request_id)
    )


@router.post("/{node_id}/{action}", response_model=NodeOut)
def change_status(
    node_id: Id, action: Literal["pause", "resume", "close"], pool: PoolDep, _key: AdminKey
) -> NodeOut:
    """A paused or closed node gets no new orders; its held reservations stay."""
    return NodeOut.of(pool.set_node_status(node_id, NEW_STATUS[action]))
