"""RFC 9457 problem details: every error answer of the API is one of these.

Each problem names the rule that was broken (``rule``, also the last part of
``type``) and, where there is one, the field (``field``, a path such as
``lines[2].qty``), plus the request id that is also in the log line.
"""

from __future__ import annotations

from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.pool.errors import Busy, PoolError

PROBLEM_TYPE = "urn:omniroute:problem:"
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 1

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class BodyTooLarge(Exception):
    """Raised while reading a request body that exceeds the endpoint's limit."""

    def __init__(self, limit: int):
        super().__init__(f"the request body exceeds {limit} bytes")
        self.limit = limit


def problem(
    request_id: str | None,
    status: int,
    detail: str,
    *,
    rule: str,
    field: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + rule,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "rule": rule,
    }
    if field is not None:
        body["field"] = field
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "lines", 2, "qty")`` -> ``lines[2].qty``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        source, parts = parts[0], parts[1:]
        if not parts:
            return source
        if source == "header":
            return "-".join(w.capitalize() for w in str(parts[0]).split("-"))
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _request_id(_request: Request) -> str | None:
    return correlation_id.get()


async def _on_pool_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PoolError)
    # A busy pool (routing lost the race too often) is worth retrying a moment later.
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, Busy) else None
    return problem(
        _request_id(request),
        exc.status,
        exc.message,
        rule=exc.rule or "invalid",
        field=exc.field,
        instance=request.url.path,
        headers=headers,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": "body" if e["type"] == "json_invalid" else field_path(e["loc"]),
            "rule": e["type"],
            "message": e["msg"],
        }
        for e in exc.errors()
    ]
    malformed = any(e["rule"] in ("json_invalid", "model_attributes_type") for e in errors)
    first: dict[str, Any] = (
        errors[0] if errors else {"field": None, "rule": "invalid", "message": "invalid"}
    )
    status = 400 if malformed else 422
    detail = str(f"{first['field']}: {first['message']}" if first["field"] else first["message"])
    return problem(
        _request_id(request),
        status,
        detail,
        rule=str(first["rule"]),
        field=first["field"],
        instance=request.url.path,
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, BodyTooLarge):
        return problem(
            _request_id(request),
            413,
            str(exc.__cause__),
            rule="body_size",
            field="body",
            instance=request.url.path,
        )
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI could not decode the body: not UTF-8, or nested too deep for json.
        cause = exc.__cause__
        rule, detail = (
            ("utf8", "the request body is not UTF-8")
            if isinstance(cause, UnicodeDecodeError)
            else ("json_depth", "the request body's JSON is nested too deep")
            if isinstance(cause, RecursionError)
            else ("json_invalid", "the request body is not valid JSON")
        )
        return problem(
            _request_id(request), 400, detail, rule=rule, field="body", instance=request.url.path
        )
    rule = {401: "api_key", 403: "role", 404: "known_path", 405: "method"}.get(
        exc.status_code, "http"
    )
    headers = getattr(exc, "headers", None)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    field = "Authorization" if exc.status_code in (401, 403) else None
    return problem(
        _request_id(request),
        exc.status_code,
        detail,
        rule=rule,
        field=field,
        instance=request.url.path,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(PoolError, _on_pool_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
