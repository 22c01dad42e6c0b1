"""``omniroute geocode``: fill the lat/lon of orders that carry only an address.

The scenario format stays coordinates-only for ``solve`` and ``check`` (so every
checker reads the same numbers); an ``address`` column in ``orders.csv`` is read here
only. A row with empty ``lat`` and ``lon`` and an ``address`` is placed by
``router.geocode.AddressGeocoder`` (one place per order: its first line's address);
the scenario is written to a new folder, validated before anything lands there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from router.geocode import AddressGeocoder
from router.pool.errors import InvalidInput
from router.scenario import ORDER_COLUMNS, Findings, ScenarioError, load_scenario, read_table

ADDRESS = "address"


@dataclass(frozen=True)
class GeocodeReport:
    orders_placed: int
    by_source: dict[str, int]  # geocoder | cache | city_centroid


def geocode_scenario(folder: Path, out: Path, geocoder: AddressGeocoder) -> GeocodeReport:
    """Copy the scenario in ``folder`` to ``out`` with every address placed; raise
    ``ScenarioError`` (file, row, column ``address``) for one that cannot be placed."""
    path = folder / "orders.csv"
    frame = read_table(path, ORDER_COLUMNS)  # the file's own errors first
    header = pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8", index_col=False)
    if ADDRESS in {str(c).strip() for c in header.columns}:
        frame = read_table(path, (*ORDER_COLUMNS, ADDRESS))
    else:
        frame[ADDRESS] = ""
    found = Findings(path.name)
    unplaced = ((frame["lat"] == "") & (frame["lon"] == "")).to_numpy()
    found.flag(
        frame,
        unplaced & (frame[ADDRESS] == "").to_numpy(),
        ADDRESS,
        "a line without lat/lon needs an address",
    )
    found.raise_if_any()
    sources: Counter[str] = Counter()
    placed: dict[str, tuple[str, str]] = {}
    for i in unplaced.nonzero()[0]:
        order_id, address = frame.at[i, "order_id"], frame.at[i, ADDRESS]
        if order_id not in placed:
            try:
                place = geocoder.place(address, field=ADDRESS)
            except InvalidInput as error:
                raise ScenarioError(
                    path.name, error.message, row=int(i) + 2, column=ADDRESS
                ) from None
            placed[order_id] = (repr(place.lat), repr(place.lon))
            sources[place.source] += 1
        frame.at[i, "lat"], frame.at[i, "lon"] = placed[order_id]
    _write_validated(folder, out, frame)
    return GeocodeReport(len(placed), dict(sources))


def _write_validated(folder: Path, out: Path, orders: pd.DataFrame) -> None:
    """Write the scenario to a scratch folder, load it (every rule of the format), then
    move it to ``out``: a scenario that would not load is never written."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        staged = Path(scratch)
        for name in ("scenario.json", "nodes.csv", "inventory.csv"):
            if not (folder / name).is_file():
                raise ScenarioError(name, "file not found")
            shutil.copyfile(folder / name, staged / name)
        orders.to_csv(staged / "orders.csv", index=False)
        load_scenario(staged)
        for name in ("scenario.json", "nodes.csv", "inventory.csv", "orders.csv"):
            (staged / name).replace(out / name)
