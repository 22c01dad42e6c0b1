"""Tests for router.report and ``omniroute report``: PNGs and one self-contained HTML page.

One test opens the page in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium; ``.ci/run`` installs them with
apt-get). It skips, saying why, on a machine without them.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import line_row, node_row
from tests.test_cli import ROOT, omniroute
from tests.test_compare import FIXTURES, assert_png

pytest.importorskip("matplotlib", reason="the report extra (pip install 'omniroute[report]')")

PICTURES = ("map.png", "cost_breakdown.png", "distances.png", "node_load.png")


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """greedy-trap solved by `omniroute solve`, then `omniroute report` on the answer."""
    out = tmp_path_factory.mktemp("report") / "answer"
    result = omniroute("solve", FIXTURES / "greedy-trap", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    report = omniroute("report", out)
    assert report.returncode == 0, report.stderr
    return out, report


def test_report_finds_its_scenario_from_the_summary(solved):
    out, report = solved
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario_dir"] == str((FIXTURES / "greedy-trap").resolve())
    assert report.stdout.strip() == str(out / "report" / "report.html")


def test_report_draws_four_pngs(solved):
    out, _ = solved
    for name in PICTURES:
        assert_png(out / "report" / name)


def test_the_html_page_embeds_every_picture_and_nothing_else(solved):
    out, _ = solved
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(PICTURES)
    for uri, name in zip(uris, PICTURES, strict=True):
        assert base64.b64decode(uri) == (out / "report" / name).read_bytes()
    # Self-contained: no script, no link, no URL to fetch.
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)
    # The KPI table: greedy-trap's optimum 21.7545 at full fill.
    assert "<td>21.75</td>" in page and "<td>100.00%</td>" in page


def test_report_with_an_explicit_scenario_replaces_the_old_report(solved, tmp_path):
    out, _ = solved
    copy = tmp_path / "answer"
    shutil.copytree(out, copy)
    summary = json.loads((copy / "summary.json").read_text())
    del summary["scenario_dir"]
    (copy / "summary.json").write_text(json.dumps(summary))
    (copy / "report" / "stale.png").write_bytes(b"old")
    result = omniroute("report", copy, "--scenario", FIXTURES / "greedy-trap")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (copy / "report").iterdir()) == sorted([*PICTURES, "report.html"])
    assert not [p for p in copy.iterdir() if p.name.startswith(".omniroute")]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing folder", "answer folder not found"),
        ("no summary", "summary.json: file not found (not an answer folder)"),
        ("no scenario", "names no scenario_dir: pass --scenario SCENARIO_DIR"),
        ("wrong scenario", "is not a feasible answer to the scenario in"),
    ],
)
def test_bad_report_input_is_one_line(solved, tmp_path, tiny_scenario_dir, case, message):
    out, _ = solved
    folder = tmp_path / "answer"
    args: list = []
    if case != "missing folder":
        shutil.copytree(out, folder)
        shutil.rmtree(folder / "report")
    if case == "no summary":
        (folder / "summary.json").unlink()
    elif case == "no scenario":
        summary = json.loads((folder / "summary.json").read_text())
        del summary["scenario_dir"]
        (folder / "summary.json").write_text(json.dumps(summary))
    elif case == "wrong scenario":
        # A scenario without greedy-trap's nodes: rule 1 (unknown node) fails.
        other = tiny_scenario_dir(
            nodes=[node_row("X")], inventory=["X,SKU-A,5"], orders=[line_row("O1", "L1", "SKU-A")]
        )
        args = ["--scenario", other]
    result = omniroute("report", folder, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (folder / "report").exists()


@pytest.mark.parametrize("command", ["compare", "report"])
def test_without_matplotlib_the_command_names_the_extra(tmp_path, command):
    # A real interpreter in which `import matplotlib` fails, as after `pip install omniroute`.
    args = [str(FIXTURES / "greedy-trap")] + (
        ["--out", str(tmp_path / "out")] if command == "compare" else []
    )
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from router.cli import main\n"
        f"main({[command, *args]!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: omniroute {command} draws its charts with matplotlib, which is not installed: "
        "pip install 'omniroute[report]'"
    )
    assert not (tmp_path / "out").exists()


def _browser() -> tuple[str, str] | None:
    """Debian's chromium and its driver, when installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def test_the_html_report_opens_in_a_headless_browser_without_errors(solved):
    found = _browser()
    if found is None:
        pytest.skip(
            "no chromium and chromedriver on this machine (.ci/run installs them with apt-get)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    out, _ = solved
    page = (out / "report" / "report.html").resolve()
    browser = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        browser.get(page.as_uri())
        assert browser.title == "omniroute report: greedy-trap"
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) == len(PICTURES)
        assert all(complete and width > 100 and height > 100 for complete, width, height in images)
        # Nothing fetched from anywhere (data: URIs are not resources) and nothing logged.
        assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
        assert [entry for entry in browser.get_log("browser") if entry["level"] != "INFO"] == []
    finally:
        browser.quit()
