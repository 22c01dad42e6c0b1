"""GET /v1/orders/{order_id}/explanation: why a routed order went where it went."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import OmsKey, PoolDep
from api.schemas_explain import ExplanationOut

router = APIRouter(prefix="/v1", tags=["explanations"])


@router.get("/orders/{order_id}/explanation", response_model=ExplanationOut)
def get_explanation(order_id: str, pool: PoolDep, _key: OmsKey) -> Response:
    """The chosen nodes with their costs, the best alternatives and how much more each
    costs, what took cheaper plans away (with the joint solve's prices for a wave
    order), the rule that ruled out each node of an unfilled line, and the smallest
    changes that would have routed the order differently (each verified by routing
    it again). 404 for an order never routed here."""
    explanation = pool.explanation(order_id)
    # Validated once against the documented schema, then dumped directly.
    return Response(
        ExplanationOut.model_validate(explanation).model_dump_json(),
        media_type="application/json",
    )
