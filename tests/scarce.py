"""Small generated batches with scarce stock, for the tests of the scale methods."""

from __future__ import annotations

from pathlib import Path

from router.generate import generate_scenario


def small_scarce_folder(tmp_path_factory, seed: int, orders: int = 120) -> Path:
    """A generated batch of ``orders`` orders over 15 stores, 3 warehouses and 30 SKUs
    with a third of the stock (most orders collide), in a new temporary folder."""
    folder = tmp_path_factory.mktemp(f"scarce-{seed}")
    generate_scenario(
        folder, orders=orders, stores=15, warehouses=3, skus=30, seed=seed, scarcity=3.0,
        overwrite=True,
    )  # fmt: skip
    return folder
