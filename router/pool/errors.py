"""Errors of the pool: each names the field and the business rule it broke.

The API turns them into ``application/problem+json`` answers; ``status`` is
the HTTP status they map to, so the mapping lives next to the rule.
"""

from __future__ import annotations


class PoolError(Exception):
    """Base class: ``field`` is a JSON-pointer-like path, ``rule`` a short rule name."""

    status = 400
    title = "Bad request"

    def __init__(self, message: str, *, field: str | None = None, rule: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.rule = rule


class NotFound(PoolError):
    status = 404
    title = "Not found"


class InvalidInput(PoolError):
    """Well-formed input that breaks a rule of the pool (unknown SKU, bad quantity...)."""

    status = 422
    title = "Unprocessable content"


class Conflict(PoolError):
    """The request conflicts with the current state (version mismatch, closed reservation)."""

    status = 409
    title = "Conflict"


class Busy(PoolError):
    """Routing lost the race for stock more often than the retry bound allows."""

    status = 503
    title = "Service busy"
