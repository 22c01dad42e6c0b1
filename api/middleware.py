"""One pure-ASGI middleware for what every request gets: a body-size limit, the
latency histogram, one JSON access-log line, and a problem+json 500 (with its
traceback logged on one line) for an unexpected error.

The request id itself comes from asgi-correlation-id's middleware, which wraps this
one (see ``api.app``): it takes a valid ``X-Request-ID`` or makes one, sets the
``correlation_id`` context variable and echoes the header.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from asgi_correlation_id import correlation_id
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import REQUEST_ID_HEADER
from api.metrics import Metrics
from api.problems import BodyTooLarge, problem

log = logging.getLogger("omniroute.access")
error_log = logging.getLogger("omniroute.api")

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

DEFAULT_BODY_LIMIT = 1 << 20  # 1 MiB: an order of 500 lines is well under 100 kB
FEED_BODY_LIMIT = 32 << 20  # 32 MiB: a 100,000-row stock feed is about 8 MB of JSON
FEED_PATHS = ("/v1/inventory/set", "/v1/inventory/adjust")


def body_limit_for(path: str) -> int:
    return FEED_BODY_LIMIT if path in FEED_PATHS else DEFAULT_BODY_LIMIT


def request_id_middleware_options() -> dict:
    """Options of ``CorrelationIdMiddleware``: keep a caller's id of up to 64 characters
    ``[A-Za-z0-9._:-]``, else make a 32-hex one."""
    return {
        "header_name": REQUEST_ID_HEADER,
        "generator": lambda: uuid.uuid4().hex,
        "validator": lambda value: _VALID_REQUEST_ID.fullmatch(value) is not None,
    }


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = correlation_id.get()
        response = {"status": 500, "started": False}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
            await send(message)

        limit = body_limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            too_large = declared is not None and int(declared) > limit
        except ValueError:
            too_large = False
        try:
            if too_large:
                await problem(
                    request_id,
                    413,
                    f"the request body exceeds {limit} bytes",
                    rule="body_size",
                    field="body",
                    instance=scope["path"],
                )(scope, receive, send_tracked)
                return
            received = 0

            async def receive_with_limit() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            try:
                await self.app(scope, receive_with_limit, send_tracked)
            except Exception:
                # One JSON line with the traceback and the request id; the caller gets
                # the id in a problem+json 500 (uvicorn would log plain text instead).
                error_log.exception(
                    "unhandled error", extra={"method": scope["method"], "path": scope["path"]}
                )
                if response["started"]:
                    raise  # too late for a 500: the server drops the connection
                await problem(
                    request_id,
                    500,
                    "internal error; see the log line of this request",
                    rule="internal",
                    instance=scope["path"],
                )(scope, receive, send_tracked)
        finally:
            self._finish(scope, int(response["status"]), started)

    def _finish(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            state = scope.get("state", {})
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "key_id": state.get("key_id"),
                },
            )
