"""``omniroute report``: the pictures of one answer, and one self-contained HTML page.

The answer folder (``assignments.csv``, ``summary.json``) and its scenario give
the KPI row (:func:`router.kpis.answer_kpis`, cost parts by the independent
checker) and four PNGs: the routing map, the cost breakdown, the distance
histogram and the node load. The HTML page embeds them as base64 data URIs
and has no script and no external resource, so it opens offline, from a mail
attachment or a ticket, exactly as written.
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from router import charts
from router.checker import check, load_assignments
from router.compare import TABLE_ROWS
from router.kpis import allocations, answer_kpis, node_load
from router.scenario import Scenario, ScenarioError, load_scenario

REPORT_FOLDER = "report"
PICTURES = (
    ("map.png", "Who is served from where"),
    ("cost_breakdown.png", "Cost breakdown"),
    ("distances.png", "Distance of allocated units"),
    ("node_load.png", "Node load"),
)


@dataclass(frozen=True)
class Answer:
    """An answer folder read back: its scenario, rows and summary."""

    folder: Path
    scenario: Scenario
    assignments: object
    summary: dict


def read_answer(out_dir: Path, scenario_dir: Path | None) -> Answer:
    """Read an answer folder; its scenario is ``scenario_dir`` or the one the
    summary names (``scenario_dir``, written by ``solve`` and ``compare``).

    Raises :class:`ScenarioError` naming the file and the rule when something
    is missing or the answer does not fit the scenario.
    """
    if not out_dir.is_dir():
        raise ScenarioError(str(out_dir), "answer folder not found")
    summary_path = out_dir / "summary.json"
    if not summary_path.is_file():
        raise ScenarioError(str(summary_path), "file not found (not an answer folder)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(summary_path), f"not valid JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise ScenarioError(str(summary_path), "must be a JSON object")
    if scenario_dir is None:
        recorded = summary.get("scenario_dir")
        if not isinstance(recorded, str):
            raise ScenarioError(
                str(summary_path),
                "names no scenario_dir: pass --scenario SCENARIO_DIR (the scenario it answers)",
            )
        scenario_dir = Path(recorded)
    scenario = load_scenario(scenario_dir)
    assignments = load_assignments(out_dir / "assignments.csv")
    report = check(scenario, assignments)
    if not report.feasible:
        raise ScenarioError(
            str(out_dir / "assignments.csv"),
            f"is not a feasible answer to the scenario in {scenario_dir}: "
            f"{report.violations[0].message}",
        )
    return Answer(out_dir, scenario, assignments, summary)


def draw_answer(answer: Answer, into: Path, title: str) -> dict:
    """Write the four PNGs of one answer into ``into``; return its KPI row."""
    rows = allocations(answer.scenario, answer.assignments)
    load = node_load(answer.scenario, answer.assignments)
    kpis = answer_kpis(answer.scenario, answer.assignments, answer.summary, variant=title)
    charts.routing_map(answer.scenario, {title: rows}, into / "map.png")
    charts.cost_breakdown([kpis], into / "cost_breakdown.png")
    charts.distance_histogram(rows, into / "distances.png")
    charts.node_utilisation(load, into / "node_load.png")
    return kpis


def write_report(answer: Answer) -> Path:
    """Draw the report of ``answer`` into ``<answer>/report/``; return the HTML page.

    The folder is written aside and moved in place, replacing an older report,
    so a reader never sees half of one.
    """
    target = answer.folder / REPORT_FOLDER
    staging = Path(tempfile.mkdtemp(prefix=".omniroute-report-", dir=answer.folder))
    staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be shared
    try:
        title = f"{answer.summary.get('strategy', 'answer')}"
        kpis = draw_answer(answer, staging, title)
        page = html_page(
            f"omniroute report: {answer.scenario.name}",
            _facts(answer),
            [kpis],
            [(staging / name, caption) for name, caption in PICTURES],
        )
        (staging / "report.html").write_text(page, encoding="utf-8")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".omniroute-old-", dir=answer.folder))
            os.replace(target, old / REPORT_FOLDER)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "report.html"


def _facts(answer: Answer) -> list[tuple[str, str]]:
    summary = answer.summary
    return [
        ("scenario", answer.scenario.name),
        ("answer", str(answer.folder.resolve())),
        ("strategy", str(summary.get("strategy"))),
        ("status", str(summary.get("status"))),
        (
            "orders",
            f"{summary.get('orders', '?')} orders, {summary.get('lines', '?')} lines, "
            f"{summary.get('units', '?')} units",
        ),
        (
            "penalties",
            f"split {answer.scenario.split_penalty:g}, unfilled {answer.scenario.unfilled_penalty:g}",
        ),
    ]


def png_data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI, so the page needs no other file."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
"""


def html_page(
    title: str,
    facts: list[tuple[str, str]],
    rows: list[dict],
    pictures: list[tuple[Path, str]],
) -> str:
    """One HTML page: facts, the KPI table (a column per row), the pictures inline."""
    esc = html.escape
    fact_lines = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    head = "".join(f"<th>{esc(str(row['variant']))}</th>" for row in rows)
    body = []
    for name, key, fmt in TABLE_ROWS:
        cells = "".join(
            f"<td>{'-' if row[key] is None else esc(fmt.format(row[key]))}</td>" for row in rows
        )
        body.append(f"<tr><th>{esc(name.strip())}</th>{cells}</tr>")
    kpi_lines = "\n".join(body)
    figures = "\n".join(
        f'<figure><img src="{png_data_uri(path)}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for path, caption in pictures
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<table class="facts">
{fact_lines}
</table>
<h2>Key figures</h2>
<table class="kpis">
<tr><th></th>{head}</tr>
{kpi_lines}
</table>
<h2>Pictures</h2>
{figures}
</body>
</html>
"""
