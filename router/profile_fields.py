"""The checks every routing-profile field shares (``router.profiles``, ``router.modes``):
a broken field raises :class:`ProfileError` naming its dotted path and the rule."""

from __future__ import annotations

import math
from typing import Any


class ProfileError(ValueError):
    """A broken profile field: ``field`` is its dotted path, ``reason`` the rule."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}" if field else reason)


def json_object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ProfileError(where, "must be a JSON object")
    return value


def number(value: Any, where: str, *, integer: bool = False) -> float:
    """``value`` as a finite number >= 0 (an integer with ``integer``)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value >= 0
        and (not integer or float(value).is_integer())
    )
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ProfileError(where, f"must be {kind} >= 0 (got {value!r})")
    return float(value)
