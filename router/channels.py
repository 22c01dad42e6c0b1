"""Channel shares: how much of the pooled stock of a SKU each sales channel may sell.

A channel's profile (docs/profiles.md, "Channel shares") may set

- ``channel_share``: the fraction of the pool's *unreserved* available units of every
  SKU the channel sees (default 1: all of it);
- ``reserved``: ``{sku: units}`` held for the channel alone: no other channel sells
  them (only a named channel's profile may reserve);
- ``low_stock_threshold``: units, or ``{sku or "*": units}``: a low-stock alert
  fires when the channel's sellable quantity of a SKU falls below it.

For SKU s with ``pooled`` available units (over the nodes routing may use), ``R`` the
units every channel reserves and ``R_c`` channel c's own:

    sellable[c, s] = min(pooled - (R - R_c), floor(share_c * max(0, pooled - R)) + R_c)

(clipped at 0). With shares summing to 1 and reservations within the pool, the
channels' sellable quantities sum to the pool (less the rounding down of each share).

The batch (``router.problem.build_problem``: the rule ``channel_share_rule`` of
``solver/model.py`` over ``Problem.line_share`` / ``Problem.share_cap``) and the single
order (``router.pool.routing``) both call :func:`sellable`; nothing here solves
anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from router.profiles import DEFAULT_CHANNEL, Profile

_EPS = 1e-9
"""Slack on ``share * free`` before rounding down, so 0.29 * 100 is 29, not 28."""


@dataclass(frozen=True)
class ChannelStock:
    """The share rules of a set of profiles (one per channel, ``default`` for the rest)."""

    profiles: Mapping[str, Profile]

    def profile(self, channel: str) -> Profile:
        return self.profiles.get(channel) or self.profiles.get(DEFAULT_CHANNEL) or Profile({})

    @property
    def binds(self) -> bool:
        """Whether any profile limits a channel's stock (a share < 1 or a reservation)."""
        return any(
            float(p.get("channel_share", 1.0)) < 1.0 or any(p.get("reserved", {}).values())
            for p in self.profiles.values()
        )

    def share(self, channel: str) -> float:
        return float(self.profile(channel).get("channel_share", 1.0))

    def reserved(self, channel: str, skus: Sequence[str]) -> np.ndarray:
        """(S,) units of each SKU reserved for ``channel`` (its own profile only)."""
        own = self.profiles.get(channel)
        table = own.get("reserved", {}) if own is not None else {}
        return np.array([int(table.get(s, 0)) for s in skus], dtype=np.int64)

    def reserved_total(self, skus: Sequence[str]) -> np.ndarray:
        """(S,) units of each SKU reserved by every channel."""
        total = np.zeros(len(skus), dtype=np.int64)
        for channel in self.profiles:
            total += self.reserved(channel, skus)
        return total

    def threshold(self, channel: str, sku: str) -> int | None:
        """The channel's low-stock threshold for ``sku`` (``None``: no alert)."""
        raw = self.profile(channel).get("low_stock_threshold")
        if raw is None:
            return None
        if isinstance(raw, dict):
            value = raw.get(sku, raw.get("*"))
            return None if value is None else int(value)
        return int(raw)

    @property
    def alerting_channels(self) -> list[str]:
        """Channels with a low-stock threshold (``default`` stands for the channels
        without a profile of their own)."""
        return sorted(
            c for c, p in self.profiles.items() if p.get("low_stock_threshold") is not None
        )

    def sellable(self, channel: str, skus: Sequence[str], pooled: Iterable[int]) -> np.ndarray:
        """(S,) units of each SKU the channel may sell out of ``pooled`` available units."""
        return sellable(
            np.asarray(list(pooled), dtype=np.int64),
            self.share(channel),
            self.reserved(channel, skus),
            self.reserved_total(skus),
        )


def sellable(
    pooled: np.ndarray, share: float, reserved_own: np.ndarray, reserved_all: np.ndarray
) -> np.ndarray:
    """(S,) ``min(pooled - others' reservations, floor(share * unreserved) + own)``, >= 0."""
    pooled = np.maximum(np.asarray(pooled, dtype=np.int64), 0)
    free = np.maximum(pooled - reserved_all, 0)
    shared = np.floor(share * free + _EPS).astype(np.int64)
    room = np.maximum(pooled - (reserved_all - reserved_own), 0)
    return np.minimum(room, shared + reserved_own)


def share_caps(
    rules: ChannelStock,
    line_channel: np.ndarray,
    line_sku: np.ndarray,
    line_qty: np.ndarray,
    sku_ids: np.ndarray,
    pooled: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The batch's binding (channel, SKU) pairs: ``line_share`` (L,) the pair of each
    line (-1: none, or its pair cannot bind) and ``share_cap`` (K,) its sellable units;
    ``None`` when no pair's sellable quantity is below its lines' demand."""
    line_share = np.full(line_sku.size, -1, dtype=np.int64)
    caps: list[int] = []
    for channel in np.unique(line_channel):
        mine = np.flatnonzero(line_channel == channel)
        skus, inverse = np.unique(line_sku[mine], return_inverse=True)
        cap = rules.sellable(str(channel), [str(s) for s in sku_ids[skus]], pooled[skus])
        demand = np.bincount(inverse, weights=line_qty[mine], minlength=skus.size)
        binding = cap < demand
        key = np.full(skus.size, -1, dtype=np.int64)
        key[binding] = len(caps) + np.arange(int(binding.sum()))
        caps += cap[binding].tolist()
        line_share[mine] = key[inverse]
    if not caps:
        return None
    return line_share, np.asarray(caps, dtype=np.float64)
