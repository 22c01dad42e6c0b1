"""Geographic blocks: a big contested part cut along a Morton curve of the customers."""

from __future__ import annotations

import numpy as np


def geographic_blocks(problem, contested, block_orders, shift: float = 0.0) -> list[np.ndarray]:
    """Split the contested orders into geographic blocks of at most ``block_orders``.

    Stores reach only nearby customers, so most contention is local: orders
    sorted along a Morton (Z-order) curve of their location and cut into
    consecutive runs keep neighbours together.
    """
    orders = np.flatnonzero(contested)
    if orders.size <= block_orders:
        return [contested]
    lat = ((problem.order_lat[orders] + 90.0) / 180.0 * 65535).astype(np.uint64)
    lon = ((problem.order_lon[orders] + 180.0) / 360.0 * 65535).astype(np.uint64)
    code = interleave_bits(lat) | (interleave_bits(lon) << np.uint64(1))
    ordered = orders[np.argsort(code, kind="stable")]
    count = -(-orders.size // block_orders)
    # ``shift`` moves the borders by a fraction of a block (wrapping around).
    ordered = np.roll(ordered, -int(shift * orders.size / count))
    blocks = []
    for chunk in np.array_split(ordered, count):
        mask = np.zeros(problem.num_orders, dtype=bool)
        mask[chunk] = True
        blocks.append(mask)
    return blocks


def interleave_bits(v: np.ndarray) -> np.ndarray:
    """Spread the 16 low bits of v to the even bit positions."""
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
    return (v | (v << np.uint64(1))) & np.uint64(0x55555555)
