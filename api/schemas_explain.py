"""Response body of ``GET /v1/orders/{order_id}/explanation`` (built by ``router.explain``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ShipmentOut(BaseModel):
    node_id: str
    kind: str
    km: float | None = Field(description="Distance to the customer; null for a pickup.")
    units: int
    skus: dict[str, int]
    shipping: float
    handling: float


class CostOut(BaseModel):
    total: float
    shipping: float
    handling: float
    split: float
    unfilled: float
    splits: int
    unfilled_units: int


class BindingOut(BaseModel):
    rule: Literal["stock", "capacity", "reach"]
    node_id: str
    sku: str | None = None
    units_needed: int | None = None
    units_left: int | None = None
    capacity_left: int | None = None
    used_by_other_orders: int | None = None
    price: float | None = Field(None, description="The joint solve's LP price, if it had one.")
    km: float | None = None
    max_km: float | None = None


class PlanOut(BaseModel):
    nodes: list[str]
    units: list[int] = Field(description="Units from each node of `nodes`.")
    cost: float
    extra_cost: float = Field(description="Cost above the chosen plan (negative: cheaper).")
    binding: list[BindingOut] | None = None


class UnfilledLineOut(BaseModel):
    line_id: str
    sku: str
    unfilled_units: int
    nodes_holding_sku: int
    ruled_out: dict[str, list[dict]] = Field(
        description="Per rule (stock, capacity, reach, pickup, split_cap, cost), the nodes it "
        "ruled out."
    )


class CounterfactualOut(BaseModel):
    kind: Literal["stock", "capacity", "reach", "cost"]
    node_id: str
    text: str
    sku: str | None = None
    units: int | None = None
    max_km: float | None = None
    shipping_cut: float | None = None
    new_nodes: list[str]
    new_cost: float
    new_allocation: list[dict]
    verified: bool


class ExplanationOut(BaseModel):
    order_id: str
    source: Literal["route", "wave"]
    routed_at: str
    status: Literal["filled", "partial", "unfilled"]
    pickup_node: str | None
    alternatives_exact: bool
    cost: CostOut
    chosen: list[ShipmentOut]
    alternatives: list[PlanOut]
    taken_away: list[PlanOut]
    unfilled_lines: list[UnfilledLineOut]
    counterfactuals: list[CounterfactualOut]
