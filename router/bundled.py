"""Files shipped with omniroute: the scenario format and the bundled fixtures.

In a checkout they are the repository's ``docs/`` and ``fixtures/`` folders; an
installed package carries the same files as package data (``router.docs`` and
``router.fixtures``, mapped from those folders in ``pyproject.toml``), so the
CLI, the benchmark runner and ``make demo`` find them either way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def bundled(folder: str) -> Path:
    """The ``docs`` or ``fixtures`` folder: the checkout's, else the installed copy."""
    if folder not in ("docs", "fixtures"):
        raise ValueError(f"no bundled folder {folder!r}: expected 'docs' or 'fixtures'")
    checkout = _CHECKOUT / folder
    # pyproject.toml marks a checkout (site-packages has none, maybe a stray docs/).
    if (_CHECKOUT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    # The installed copy: router/docs and router/fixtures beside this module. A wheel
    # installs package data as plain files, so the traversable is a real path.
    return Path(str(resources.files("router") / folder))


def fixtures_dir() -> Path:
    """The bundled scenarios (hand-checked ones with ``expected.json``, and cn-2000)."""
    return bundled("fixtures")


def spec_path() -> Path:
    """The scenario format specification, ``scenario-format.md``."""
    return bundled("docs") / "scenario-format.md"
