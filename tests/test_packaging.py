"""What a plain ``pip install .`` gets: every code package, the runtime imports
declared as dependencies, and the scenario format and fixtures as package data."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from router.bundled import bundled, fixtures_dir, spec_path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CODE = ("router", "solver", "api", "benchmarks")


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement)[0]).lower()


REPORT_MODULES = (ROOT / "router" / "charts.py",)
"""The only modules that import the ``report`` extra (matplotlib), inside functions."""

RAY_MODULES = (ROOT / "router" / "ray_executor.py",)
"""The only module that imports the ``ray`` extra, inside functions."""


def _third_party_imports(
    package: str, *, skip: tuple[Path, ...] = REPORT_MODULES + RAY_MODULES
) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        if path in skip:
            continue
        found |= _imports_of(path)
    return found


def _imports_of(path: Path, *, top_level_only: bool = False) -> set[str]:
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in CODE:
                found.add(top)
    return found


def _distributions(modules: set[str]) -> set[str]:
    owners = metadata.packages_distributions()
    return {_name(owners[m][0]) for m in modules}


def test_every_code_package_is_listed_in_pyproject():
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in CODE
        for init in (ROOT / package).rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert listed - on_disk == {"router.docs", "router.fixtures"}


def test_runtime_imports_are_plain_dependencies():
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    runtime = set().union(*(_third_party_imports(p) for p in ("router", "solver", "api")))
    assert "highspy" in runtime and "pydantic" in runtime
    missing = _distributions(runtime) - declared
    assert not missing, f"imported at run time but not in [project].dependencies: {missing}"


def test_the_report_extra_is_imported_only_where_the_pictures_are_drawn():
    extras = PYPROJECT["project"]["optional-dependencies"]
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"] + extras["report"]}
    for module in REPORT_MODULES:
        imports = _imports_of(module)
        assert "matplotlib" in imports
        assert not _distributions(imports) - declared, module
        # Inside functions only: `omniroute compare` without the extra says which to install.
        assert "matplotlib" not in _imports_of(module, top_level_only=True), module
    assert {_name(r) for r in extras["report"]} == {"matplotlib"}
    assert "matplotlib" not in {_name(r) for r in PYPROJECT["project"]["dependencies"]}


def test_the_ray_extra_is_imported_only_by_the_ray_executor():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["ray"]} == {"ray"}
    assert "ray" not in {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert "omniroute[ray]" in extras["dev"]
    for module in RAY_MODULES:
        assert "ray" in _imports_of(module)
        # Inside functions only: `omniroute solve` without --workers never needs it.
        assert "ray" not in _imports_of(module, top_level_only=True), module
    # the solver never imports it: the executor is passed in
    assert "ray" not in _third_party_imports("solver", skip=())


def test_benchmark_imports_are_in_the_bench_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"] + extras["bench"]}
    missing = _distributions(_third_party_imports("benchmarks")) - declared
    assert not missing, f"imported by benchmarks/ but not declared: {missing}"


def test_the_postgres_driver_is_an_extra_not_a_dependency():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "psycopg" not in {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert {_name(r) for r in extras["postgres"]} == {"psycopg"}
    assert "omniroute[postgres,bench,report]" in extras["dev"]


def test_bundled_files_are_found_in_a_checkout():
    assert spec_path() == ROOT / "docs" / "scenario-format.md"
    assert spec_path().read_text(encoding="utf-8").startswith("# Scenario format")
    assert fixtures_dir() == ROOT / "fixtures"
    assert (fixtures_dir() / "greedy-trap" / "expected.json").is_file()
    with pytest.raises(ValueError, match="no bundled folder"):
        bundled("tests")


@pytest.mark.slow  # builds the wheel (~10 s)
def test_the_wheel_ships_the_spec_and_every_fixture_file(tmp_path):
    # Build from a copy of the tracked files, as .ci/install-check does: an in-tree
    # build/ folder would be reused, stale files included.
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    source = tmp_path / "src"
    for file in tracked:
        if (ROOT / file).is_file():
            (source / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / file, source / file)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("omniroute-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "router/docs/scenario-format.md" in names
    fixtures = [file for file in tracked if file.startswith("fixtures/")]
    assert fixtures, "no fixtures tracked by git"
    for file in fixtures:
        assert "router/" + file in names, file
    for migration in (ROOT / "router" / "pool" / "migrations" / "versions").glob("0*.py"):
        assert f"router/pool/migrations/versions/{migration.name}" in names
