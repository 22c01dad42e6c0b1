"""One pure-ASGI middleware for what every request gets: a request id (header and
JSON log line), a body-size limit, and the latency histogram."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics
from api.problems import BodyTooLarge, problem

log = logging.getLogger("omniroute.access")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")

DEFAULT_BODY_LIMIT = 1 << 20  # 1 MiB: an order of 500 lines is well under 100 kB
FEED_BODY_LIMIT = 32 << 20  # 32 MiB: a 100,000-row stock feed is about 8 MB of JSON
FEED_PATHS = ("/v1/inventory/set", "/v1/inventory/adjust")


def body_limit_for(path: str) -> int:
    return FEED_BODY_LIMIT if path in FEED_PATHS else DEFAULT_BODY_LIMIT


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(REQUEST_ID_HEADER, b"")
        request_id = incoming.decode() if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500}
        rid_header = (REQUEST_ID_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        limit = body_limit_for(scope["path"])
        declared = headers.get(b"content-length")
        try:
            too_large = declared is not None and int(declared) > limit
        except ValueError:
            too_large = False
        if too_large:
            response = problem(
                request_id,
                413,
                f"the request body exceeds {limit} bytes",
                rule="body_size",
                field="body",
                instance=scope["path"],
            )
            await response(scope, receive, send_with_id)
        else:
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
                await self.app(scope, receive_with_limit, send_with_id)
            finally:
                self._finish(scope, request_id, status_holder["status"], started)
            return
        self._finish(scope, request_id, status_holder["status"], started)

    def _finish(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            state = scope.get("state", {})
            log.info(
                json.dumps(
                    {
                        "ts": time.time(),
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "key_id": state.get("key_id"),
                    }
                )
            )
