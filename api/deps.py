"""Dependencies shared by the routers: the pool, the caller's key and role, the request id."""

from __future__ import annotations

from typing import Annotated

from asgi_correlation_id import correlation_id
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.metrics import Metrics
from router.geocode import AddressGeocoder
from router.pool import Pool
from router.pool.keys import Principal

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: <key>")


# Dependencies are ``async def`` although they do not await: FastAPI runs a plain
# ``def`` dependency in the thread pool, one hop per dependency per request.


async def get_pool(request: Request) -> Pool:
    return request.app.state.pool


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_geocoder(request: Request) -> AddressGeocoder:
    return request.app.state.geocoder


async def get_request_id() -> str | None:
    return correlation_id.get()


async def get_principal(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    key = bearer.credentials if bearer is not None else api_key
    if not key:
        raise HTTPException(
            401,
            "an API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = pool.cached_principal(key)
    if principal is None:
        principal = await run_in_threadpool(pool.authenticate, key)
    if principal is None:
        raise HTTPException(401, "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    request.scope.setdefault("state", {})["key_id"] = principal.key_id
    return principal


def _require(role: str):
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.may(role):
            raise HTTPException(
                403, f"this needs a key with role {role!r}; yours is {principal.role!r}"
            )
        return principal

    return check


PoolDep = Annotated[Pool, Depends(get_pool)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
GeocoderDep = Annotated[AddressGeocoder, Depends(get_geocoder)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
AnyKey = Annotated[Principal, Depends(get_principal)]
OmsKey = Annotated[Principal, Depends(_require("oms"))]
AdminKey = Annotated[Principal, Depends(_require("admin"))]
