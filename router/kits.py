"""Kits and bundles: a kit SKU is sold as one line and shipped as its components.

A *kit* (docs/profiles.md, "Kits") lists its components and how many of each one
kit holds. This module holds the whole rule set, once, for both paths:

- :func:`parse_kit` validates one kit definition (``kits.csv`` rows of one kit,
  or a ``PUT /v1/kits/{kit_sku}`` body) and raises :class:`KitError` naming the
  field;
- :func:`expand_lines` turns the lines of one order into the lines the solvers
  see: a kit line becomes one line per component (``qty`` x the component's
  quantity, line id ``<kit line>/<component>``), and the components of one kit
  line form one ship group ``kit:<kit line>`` (served whole by one node, or not
  at all: ``ship_group_rule`` in ``solver/model.py``) unless the channel's profile
  sets ``split_kits``. The batch path (``router.scenario``) and the single-order
  path (``router.pool.service``) both call it before any array is built;
- :func:`kit_availability`: how many kits the components' stock makes.

A kit SKU is never stocked itself: its availability is derived from its components.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

KITS_FILE = "kits.csv"
KIT_COLUMNS = ("kit_sku", "component_sku", "quantity")
KIT_GROUP_PREFIX = "kit:"
"""A kit line's components ship in the group ``kit:<line id>``."""
MAX_COMPONENTS = 100
MAX_COMPONENT_QTY = 1_000_000
MAX_UNITS = 2**53
"""Most units a component line may order (exactly representable as a float)."""
_SKU = re.compile(r"^\S(.{0,126}\S)?$")


class KitError(ValueError):
    """A broken kit definition or kit line: ``field`` names where, ``reason`` the rule."""

    def __init__(self, field: str, reason: str, *, line: int | None = None):
        self.field, self.reason, self.line = field, reason, line
        super().__init__(f"{field}: {reason}" if field else reason)


Kit = tuple[tuple[str, int], ...]
"""A kit's components: ``((component_sku, quantity), ...)`` sorted by SKU."""


def parse_kit(kit_sku: str, components: Iterable[tuple[object, object]]) -> Kit:
    """Validate one kit: at least one component, each a SKU other than the kit with an
    integer quantity >= 1, no component twice. Raise :class:`KitError` naming the field
    (``components[1].quantity``)."""
    if not isinstance(kit_sku, str) or not _SKU.match(kit_sku):
        raise KitError("kit_sku", f"must be a non-empty SKU (got {kit_sku!r})")
    out: dict[str, int] = {}
    for i, (sku, qty) in enumerate(components):
        where = f"components[{i}]"
        if not isinstance(sku, str) or not _SKU.match(sku):
            raise KitError(f"{where}.component_sku", f"must be a non-empty SKU (got {sku!r})")
        if sku == kit_sku:
            raise KitError(f"{where}.component_sku", "a kit cannot contain itself")
        if sku in out:
            raise KitError(f"{where}.component_sku", f"component {sku!r} is listed twice")
        ok = (
            not isinstance(qty, bool)
            and isinstance(qty, int | float)
            and math.isfinite(qty)
            and float(qty).is_integer()
            and 1 <= qty <= MAX_COMPONENT_QTY
        )
        if not ok:
            raise KitError(
                f"{where}.quantity",
                f"must be an integer >= 1 and <= {MAX_COMPONENT_QTY} (got {qty!r})",
            )
        out[sku] = int(qty)  # type: ignore[call-overload]
    if not out:
        raise KitError("components", "a kit needs at least one component")
    if len(out) > MAX_COMPONENTS:
        raise KitError("components", f"a kit has at most {MAX_COMPONENTS} components")
    return tuple(sorted(out.items()))


def split_kits_of(profile) -> bool:
    """Whether a channel's profile lets a kit's components ship apart (``split_kits``)."""
    return bool(profile.get("split_kits", False))


def check_no_nesting(kits: Mapping[str, Kit]) -> None:
    """A component may not itself be a kit (kits expand one level)."""
    for kit_sku in sorted(kits):
        for i, (component, _qty) in enumerate(kits[kit_sku]):
            if component in kits:
                raise KitError(
                    f"{kit_sku}.components[{i}].component_sku",
                    f"{component!r} is itself a kit (kits do not nest)",
                )


@dataclass(frozen=True)
class ExpandedLine:
    """A line as the solvers see it. ``kit_line``/``kit_sku``: the kit line it comes
    from (``""`` for an ordinary line); ``source``: index of the order's line it comes from."""

    line_id: str
    sku: str
    qty: int
    ship_group: str
    kit_line: str
    kit_sku: str
    source: int


def expand_lines(
    lines: Sequence[tuple[str, str, int, str]],
    kits: Mapping[str, Kit],
    *,
    split_kits: bool = False,
) -> list[ExpandedLine]:
    """The lines of one order ``(line_id, sku, qty, ship_group)`` with every kit line
    replaced by its components.

    Each component line orders ``qty * quantity`` units. The components of a kit line
    ship together in the group ``kit:<line id>`` (or in the kit line's own ship group
    when it names one) unless ``split_kits``. Raises :class:`KitError` (``line`` = the
    order's line index) when a generated line id collides with a line of the order or
    a SKU would be in a ship group and also outside it (the ship-group rule).
    """
    out: list[ExpandedLine] = []
    for i, (line_id, sku, qty, group) in enumerate(lines):
        kit = kits.get(sku)
        if kit is None:
            out.append(ExpandedLine(line_id, sku, qty, group, "", "", i))
            continue
        if qty * max(per_kit for _sku, per_kit in kit) > MAX_UNITS:
            raise KitError(
                "qty", f"kit line {line_id!r} expands to more than {MAX_UNITS} units", line=i
            )
        kit_group = group or ("" if split_kits else KIT_GROUP_PREFIX + line_id)
        for component, per_kit in kit:
            out.append(
                ExpandedLine(
                    f"{line_id}/{component}", component, qty * per_kit, kit_group, line_id, sku, i
                )
            )
    if len(out) == len(lines):
        return out
    seen: dict[str, int] = {}
    group_of_sku: dict[str, tuple[str, int]] = {}
    for line in out:
        if seen.setdefault(line.line_id, line.source) != line.source:
            raise KitError(
                "line_id",
                f"line id {line.line_id!r} appears twice once kits are expanded "
                "(a kit's component lines are named <kit line id>/<component sku>)",
                line=max(line.source, seen[line.line_id]),
            )
        first = group_of_sku.setdefault(line.sku, (line.ship_group, line.source))
        if first[0] != line.ship_group:
            raise KitError(
                "sku",
                f"SKU {line.sku!r} would ship in ship group {line.ship_group or first[0]!r} "
                "and also outside it in this order (a kit's components ship together: "
                "order the SKU in one place, or let the profile split kits)",
                line=line.source,
            )
    return out


def kit_availability(kit: Kit, available: Mapping[str, np.ndarray | int]) -> np.ndarray:
    """Kits the components make: ``min over components of floor(available / quantity)``,
    elementwise (per node, or pooled when given totals). A missing component makes 0."""
    counts = [
        np.floor_divide(np.maximum(np.asarray(available.get(sku, 0), dtype=np.int64), 0), per_kit)
        for sku, per_kit in kit
    ]
    return np.minimum.reduce(np.broadcast_arrays(*counts)) if counts else np.zeros(0, np.int64)
