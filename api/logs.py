"""Logging of the service: every record is one JSON line on stderr.

python-json-logger formats the records (a traceback becomes the ``exc_info`` field of
the same line); asgi-correlation-id's filter adds the id of the request being served
(``request_id``), also to uvicorn's own records and to the expiry sweep's, which runs
outside any request and so has ``request_id: null``.
"""

from __future__ import annotations

import logging.config
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"


def log_config(level: str = "info", uvicorn_level: str = "warning") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict; ``serve`` passes it to uvicorn as ``log_config``
    (so every worker process configures itself the same way)."""
    handler = {"handlers": ["stderr"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "asgi_correlation_id.CorrelationIdFilter"}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
                "timestamp": "ts",  # RFC 3339 in UTC
                "rename_fields": {
                    "levelname": "level",
                    "name": "logger",
                    "correlation_id": "request_id",
                },
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            "omniroute": {**handler, "level": level.upper()},
            "asgi_correlation_id": {**handler, "level": "WARNING"},
            "uvicorn": {**handler, "level": uvicorn_level.upper()},
            "uvicorn.error": {**handler, "level": uvicorn_level.upper()},
            "uvicorn.access": {**handler, "level": uvicorn_level.upper()},
        },
    }


def configure_unless_configured() -> None:
    """JSON logging for an app created outside ``omniroute serve``, unless the host
    application already configured logging itself."""
    if not logging.getLogger("omniroute").handlers and not logging.getLogger().handlers:
        logging.config.dictConfig(log_config())
