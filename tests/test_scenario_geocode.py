"""``omniroute geocode``, run as the real process, against a Nominatim-compatible stub
on loopback: orders with an address and no lat/lon get the geocoder's place (or a city
centroid), the result loads and solves as any scenario, and an address that cannot be
placed is one error line naming the file, row and column, with nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from router.scenario import load_scenario
from tests.nominatim_stub import nominatim
from tests.test_cli import COMMAND, ROOT

SOURCE = ROOT / "fixtures" / "capacity-binds"


def run(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **env},
    )


def with_addresses(tmp_path: Path, addresses: dict[str, str]) -> Path:
    """The fixture, its orders' lat/lon replaced by an address for the given orders."""
    folder = tmp_path / "in"
    shutil.copytree(SOURCE, folder)
    lines = (folder / "orders.csv").read_text().splitlines()
    out = [lines[0] + ",address"]
    for line in lines[1:]:
        cells = line.split(",")
        address = addresses.get(cells[0], "")
        if address:
            cells[4] = cells[5] = ""
        out.append(",".join(cells) + f',"{address}"')
    (folder / "orders.csv").write_text("\n".join(out) + "\n")
    return folder


def test_addresses_are_placed_and_the_scenario_loads(tmp_path):
    original = load_scenario(SOURCE).orders
    first = original.iloc[0]
    folder = with_addresses(tmp_path, {"O1": "1 Known Road, Shanghai", "O2": "9 Gone St, Paris"})
    with nominatim({"1 Known Road, Shanghai": (float(first.lat), float(first.lon))}) as stub:
        env = {
            "OMNIROUTE_GEOCODER_URL": stub.url,
            "OMNIROUTE_GEOCODER_MIN_DELAY_SECONDS": "0",
            "OMNIROUTE_GEOCODER_CACHE": str(tmp_path / "cache.sqlite"),
        }
        done = run("geocode", folder, "--out", tmp_path / "out", env=env)
        assert done.returncode == 0, done.stderr
        assert "placed 2 order(s) (1 from city_centroid, 1 from geocoder)" in done.stdout
        again = run("geocode", folder, "--out", tmp_path / "out", "--overwrite", env=env)
        assert "1 from cache" in again.stdout
    placed = load_scenario(tmp_path / "out").orders.set_index(["order_id", "line_id"])
    o1 = placed.loc[("O1", first.line_id)]
    assert (o1.lat, o1.lon) == (first.lat, first.lon)  # what the geocoder said
    paris = placed[placed.index.get_level_values(0) == "O2"].iloc[0]
    assert (paris.lat, paris.lon) == pytest.approx((48.85341, 2.3488))  # Paris, FR centroid
    # O1 once (then cached); O2 on each run: "found nothing" is not cached, so a
    # geocoder that learns the address later is asked again.
    assert [q for _, q in stub.asked] == ["1 known road, shanghai", *["9 gone st, paris"] * 2]


def test_an_address_that_cannot_be_placed_names_the_cell_and_writes_nothing(tmp_path):
    folder = with_addresses(tmp_path, {"O2": "over the rainbow"})
    done = run("geocode", folder, "--out", tmp_path / "out", env={"OMNIROUTE_GEOCODER_URL": ""})
    assert done.returncode == 2
    assert "orders.csv row 3, column address" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
