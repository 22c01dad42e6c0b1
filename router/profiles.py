"""Routing profiles: per-channel routing rules, parsed, validated and compiled.

A *profile* says how one sales channel's orders may be routed beyond the base
format's rules (docs/profiles.md): which nodes may serve the channel, priority
tiers as a cost per shipment, node calendars, delivery promise bands and the
nodes' daily workload. This module holds the whole rule set, once:

- :func:`parse_profile` validates one profile document (a preset plus
  overrides) and returns a :class:`Profile`; a broken field raises
  :class:`ProfileError` naming its path (``tiers.store: must be a number >= 0``);
- :func:`load_profiles` reads the optional ``profiles.json`` of a scenario
  folder;
- :func:`compile_rules` turns a profile, the nodes and an evaluation time into
  :class:`NodeRules` arrays;
- :func:`order_candidates` applies those arrays to a block of orders. Both
  the batch path (``router.problem.build_problem``) and the single-order path
  (``router.pool.routing``) call it, so a rule gives the same decision in both.

Nothing here solves anything; the solvers only see the candidates and costs.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from router.modes import FIELDS as MODE_FIELDS
from router.modes import Modes, check_fields, compile_modes
from router.profile_fields import ProfileError
from router.profile_fields import json_object as _object
from router.profile_fields import number as _number

FILE = "profiles.json"
FORMAT = "omniroute-profiles/1"
DEFAULT_CHANNEL = "default"
NODE_KINDS = ("warehouse", "store")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CHANNEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

PRESETS: dict[str, dict[str, Any]] = {
    # Cost alone, as the base format: no extra term.
    "lowest_cost": {},
    # Every km of a shipment costs one more unit: the nearest node wins unless a
    # farther one is cheaper by more than the extra distance.
    "nearest": {"per_km_cost": 1.0},
    # Every shipment costs 25 more: an order splits only to save more than that.
    "fewest_splits": {"per_shipment_cost": 25.0},
    # Stores before warehouses: a warehouse shipment costs one tier (10) more.
    "store_first": {"tiers": {"store": 0, "warehouse": 1}, "tier_cost": 10.0},
    # Aging stock first: a unit from a (node, SKU) holding more than 8 weeks of
    # sales earns a credit of 2.
    "clearance": {"clearance": {"weeks_of_supply": 8.0, "credit_per_unit": 2.0}},
}
"""Starting points: a profile may name one (``"preset"``) and override any field."""

FIELDS = (
    "preset",
    "version",
    "node_kinds",
    "node_groups",
    "nodes",
    "exclude_nodes",
    "tiers",
    "tier_cost",
    "per_shipment_cost",
    "per_km_cost",
    "calendars",
    "daily_limits",
    "promise",
    "clearance",
    "max_shipments",
    *MODE_FIELDS,
    "split_kits",
    "channel_share",
    "reserved",
    "low_stock_threshold",
)


# --- the profile ------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """When the nodes it applies to take new orders, in their local time zone.

    ``hours[d]`` is ``(open, close)`` minutes after local midnight of weekday d
    (0 = Monday), or ``None`` when closed all day; a weekday not listed is open
    all day. ``cutoff``: minutes after midnight from which no new order is taken
    that day. ``closed_dates``: local dates closed all day.
    """

    timezone: str = "UTC"
    hours: tuple[tuple[int, int] | None, ...] = (None,) * 7
    listed: tuple[bool, ...] = (False,) * 7
    closed_dates: frozenset[date] = frozenset()
    cutoff: int | None = None

    def takes_orders(self, local: datetime) -> bool:
        if local.date() in self.closed_dates:
            return False
        minute = local.hour * 60 + local.minute
        if self.cutoff is not None and minute >= self.cutoff:
            return False
        day = local.weekday()
        if not self.listed[day]:
            return True
        hours = self.hours[day]
        return hours is not None and hours[0] <= minute < hours[1]


@dataclass(frozen=True)
class PromiseBand:
    max_km: float
    """The band covers distances up to this (``inf``: any distance)."""
    days: dict[str, int]
    """Delivery days per node kind."""


@dataclass(frozen=True)
class Profile:
    """One channel's validated rules. ``document`` is the normalised JSON form
    (preset expanded) that is stored and returned by the API."""

    document: dict[str, Any]

    def get(self, name: str, default=None):
        return self.document.get(name, default)


def parse_profile(raw: Any, where: str = "") -> Profile:
    """Validate one profile; the preset's fields are merged under the given ones.

    ``where`` prefixes every error's field path (``profiles.web``).
    """

    def path(*parts: str) -> str:
        return ".".join(p for p in (where, *parts) if p)

    if not isinstance(raw, dict):
        raise ProfileError(where, "must be a JSON object")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ProfileError(path(unknown[0]), f"unknown field (expected one of {', '.join(FIELDS)})")
    doc: dict[str, Any] = {}
    preset = raw.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ProfileError(
                path("preset"), f"must be one of {', '.join(PRESETS)} (got {preset!r})"
            )
        doc.update(copy.deepcopy(PRESETS[preset]))
        doc["preset"] = preset
    for key, value in raw.items():
        if key != "preset":
            doc[key] = value
    doc.pop("version", None)  # versions are assigned by the store, not by the document
    _check_names(doc, "node_kinds", path, allowed=NODE_KINDS)
    for key in ("node_groups", "nodes", "exclude_nodes"):
        _check_names(doc, key, path)
    for key in ("tier_cost", "per_shipment_cost", "per_km_cost"):
        if key in doc:
            _number(doc[key], path(key))
    if "tiers" in doc:
        tiers = _object(doc["tiers"], path("tiers"))
        for selector, tier in tiers.items():
            _selector(selector, path("tiers", selector))
            _number(tier, path("tiers", selector))
    if "calendars" in doc:
        for selector, cal in _object(doc["calendars"], path("calendars")).items():
            _selector(selector, path("calendars", selector))
            _calendar(cal, path("calendars", selector))
    if "daily_limits" in doc:
        for selector, limit in _object(doc["daily_limits"], path("daily_limits")).items():
            _selector(selector, path("daily_limits", selector))
            limit = _object(limit, path("daily_limits", selector))
            if not limit:
                raise ProfileError(path("daily_limits", selector), "must set units or orders")
            for key, value in limit.items():
                if key not in ("units", "orders"):
                    raise ProfileError(
                        path("daily_limits", selector, key),
                        "unknown field (expected units, orders)",
                    )
                _number(value, path("daily_limits", selector, key), integer=True)
    if "promise" in doc:
        _promise(doc["promise"], path("promise"))
    if "max_shipments" in doc:
        cap = doc["max_shipments"]
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ProfileError(path("max_shipments"), f"must be an integer >= 1 (got {cap!r})")
    _channel_stock_fields(doc, path)
    if "split_kits" in doc and not isinstance(doc["split_kits"], bool):
        raise ProfileError(path("split_kits"), f"must be true or false (got {doc['split_kits']!r})")
    if "clearance" in doc:
        clearance = _object(doc["clearance"], path("clearance"))
        for key in sorted(set(clearance) | {"weeks_of_supply", "credit_per_unit"}):
            if key not in ("weeks_of_supply", "credit_per_unit"):
                raise ProfileError(
                    path("clearance", key),
                    "unknown field (expected weeks_of_supply, credit_per_unit)",
                )
            if key not in clearance:
                raise ProfileError(path("clearance", key), "required")
            _number(clearance[key], path("clearance", key))
    check_fields(doc, path)  # fulfilment modes (router.modes)
    return Profile(doc)


def _channel_stock_fields(doc: dict, path) -> None:
    """Channel shares (router/channels.py): ``channel_share`` in [0, 1], ``reserved``
    {sku: units}, ``low_stock_threshold`` units or {sku or "*": units}."""
    if "channel_share" in doc:
        share = _number(doc["channel_share"], path("channel_share"))
        if share > 1:
            raise ProfileError(
                path("channel_share"), f"must be a number >= 0 and <= 1 (got {share!r})"
            )
    if "reserved" in doc:
        for sku, units in _object(doc["reserved"], path("reserved")).items():
            _number(units, path("reserved", sku), integer=True)
    if "low_stock_threshold" in doc:
        threshold = doc["low_stock_threshold"]
        if isinstance(threshold, dict):
            for sku, units in threshold.items():
                _number(units, path("low_stock_threshold", sku), integer=True)
        else:
            _number(threshold, path("low_stock_threshold"), integer=True)


def _check_names(doc: dict, key: str, path, allowed: tuple[str, ...] | None = None) -> None:
    if key not in doc or doc[key] is None:
        doc.pop(key, None)
        return
    value = doc[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProfileError(path(key), "must be a list of non-empty strings (or null)")
    if allowed is not None:
        for i, v in enumerate(value):
            if v not in allowed:
                raise ProfileError(
                    path(f"{key}[{i}]"), f"must be one of {', '.join(allowed)} (got {v!r})"
                )


def _selector(selector: str, where: str) -> None:
    """Which nodes a keyed entry applies to: a kind, ``group:NAME`` or ``node:ID``."""
    if selector in NODE_KINDS or selector == "*":
        return
    prefix, _, name = selector.partition(":")
    if prefix in ("group", "node") and name:
        return
    raise ProfileError(where, "key must be '*', a node kind, 'group:NAME' or 'node:ID'")


def _clock(value: Any, where: str) -> int:
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ProfileError(where, f"must be a time HH:MM (got {value!r})")
    return int(value[:2]) * 60 + int(value[3:])


def _calendar(raw: Any, where: str) -> Calendar:
    raw = _object(raw, where)
    unknown = sorted(set(raw) - {"timezone", "hours", "closed_dates", "cutoff"})
    if unknown:
        raise ProfileError(
            f"{where}.{unknown[0]}",
            "unknown field (expected timezone, hours, closed_dates, cutoff)",
        )
    tz = raw.get("timezone", "UTC")
    try:
        ZoneInfo(tz) if isinstance(tz, str) and tz else None
    except (ZoneInfoNotFoundError, ValueError):
        tz = None
    if not isinstance(tz, str) or not tz:
        raise ProfileError(f"{where}.timezone", f"unknown time zone (got {raw.get('timezone')!r})")
    hours: list[tuple[int, int] | None] = [None] * 7
    listed = [False] * 7
    for day, span in _object(raw.get("hours", {}), f"{where}.hours").items():
        if day not in WEEKDAYS:
            raise ProfileError(f"{where}.hours.{day}", f"must be one of {', '.join(WEEKDAYS)}")
        d = WEEKDAYS.index(day)
        listed[d] = True
        if span is None:
            continue
        if not isinstance(span, list) or len(span) != 2:
            raise ProfileError(f"{where}.hours.{day}", 'must be ["HH:MM", "HH:MM"] or null')
        opens, closes = (_clock(s, f"{where}.hours.{day}") for s in span)
        if closes <= opens:
            raise ProfileError(f"{where}.hours.{day}", "must close after it opens")
        hours[d] = (opens, closes)
    closed: set[date] = set()
    dates = raw.get("closed_dates", [])
    if not isinstance(dates, list):
        raise ProfileError(f"{where}.closed_dates", "must be a list of dates YYYY-MM-DD")
    for i, text in enumerate(dates):
        try:
            closed.add(date.fromisoformat(text))
        except (TypeError, ValueError):
            raise ProfileError(
                f"{where}.closed_dates[{i}]", f"must be a date YYYY-MM-DD (got {text!r})"
            ) from None
    cutoff = raw.get("cutoff")
    return Calendar(
        timezone=tz,
        hours=tuple(hours),
        listed=tuple(listed),
        closed_dates=frozenset(closed),
        cutoff=None if cutoff is None else _clock(cutoff, f"{where}.cutoff"),
    )


def _promise(raw: Any, where: str) -> list[PromiseBand]:
    raw = _object(raw, where)
    unknown = sorted(set(raw) - {"bands"})
    if unknown:
        raise ProfileError(f"{where}.{unknown[0]}", "unknown field (expected bands)")
    bands = raw.get("bands")
    if not isinstance(bands, list) or not bands:
        raise ProfileError(f"{where}.bands", "must be a non-empty list of bands")
    out, previous = [], -1.0
    for i, band in enumerate(bands):
        here = f"{where}.bands[{i}]"
        band = _object(band, here)
        max_km = band.get("max_km")
        limit = math.inf if max_km is None else _number(max_km, f"{here}.max_km")
        if limit <= previous:
            raise ProfileError(f"{here}.max_km", "bands must be listed by increasing max_km")
        previous = limit
        days = {}
        for key, value in band.items():
            if key == "max_km":
                continue
            if key not in NODE_KINDS:
                raise ProfileError(
                    f"{here}.{key}", "unknown field (expected max_km, warehouse, store)"
                )
            days[key] = int(_number(value, f"{here}.{key}", integer=True))
        out.append(PromiseBand(limit, days))
    return out


# --- a set of profiles (one per channel) -----------------------------------------------


@dataclass(frozen=True)
class ProfileSet:
    """The profiles of a scenario: ``profiles[channel]``; ``as_of``: the evaluation
    time of calendars and promises (UTC)."""

    profiles: dict[str, Profile]
    as_of: datetime

    def of(self, channel: str) -> Profile:
        """The channel's profile; a channel without one uses ``default`` (or no rules)."""
        return self.profiles.get(channel) or self.profiles.get(DEFAULT_CHANNEL) or Profile({})


def parse_time(value: Any, where: str) -> datetime:
    """An ISO 8601 date-time with an offset (or ``Z``), as UTC."""
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ProfileError(where, f"must be an ISO 8601 date-time (got {value!r})") from None
    if when.tzinfo is None:
        raise ProfileError(where, f"must carry a time zone offset or Z (got {value!r})")
    return when.astimezone(UTC)


def parse_profile_set(raw: Any) -> ProfileSet:
    """Validate a whole ``profiles.json`` document."""
    if not isinstance(raw, dict):
        raise ProfileError("", "must be a JSON object")
    if raw.get("format") != FORMAT:
        raise ProfileError("format", f"must be {FORMAT!r} (got {raw.get('format')!r})")
    unknown = sorted(set(raw) - {"format", "as_of", "profiles"})
    if unknown:
        raise ProfileError(unknown[0], "unknown key (expected format, as_of, profiles)")
    if "as_of" not in raw:
        raise ProfileError("as_of", "required: the time calendars and promises are evaluated at")
    as_of = parse_time(raw["as_of"], "as_of")
    profiles = {}
    for channel, body in _object(raw.get("profiles", {}), "profiles").items():
        if not _CHANNEL.match(channel):
            raise ProfileError(f"profiles.{channel}", "channel must be 1-64 of A-Z a-z 0-9 _ . -")
        profiles[channel] = parse_profile(body, f"profiles.{channel}")
    check_workload_owner(profiles)
    return ProfileSet(profiles, as_of)


def check_workload_owner(profiles: dict[str, Profile]) -> None:
    """A node's workload is shared by every channel: only ``default`` may limit it."""
    for channel, profile in profiles.items():
        if channel == DEFAULT_CHANNEL and profile.get("reserved"):
            raise ProfileError(
                f"profiles.{channel}.reserved",
                "units are reserved for a named channel, not for the default profile",
            )
        if channel != DEFAULT_CHANNEL and profile.get("daily_limits"):
            raise ProfileError(
                f"profiles.{channel}.daily_limits",
                "only the default profile sets a node's daily workload (shared by all channels)",
            )


def load_profiles(folder: Path) -> ProfileSet | None:
    """The scenario's ``profiles.json``, or ``None`` when the folder has none."""
    from router.scenario import ScenarioError

    path = folder / FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(FILE, f"not valid JSON ({exc})") from None
    try:
        return parse_profile_set(raw)
    except ProfileError as exc:
        raise ScenarioError(FILE, str(exc)) from None


# --- compiled: the rules as arrays over the nodes -------------------------------------


@dataclass(frozen=True)
class NodeRules:
    """One profile over N nodes at one moment.

    ``eligible`` (N,): may take the channel's new orders now (kinds, groups,
    node lists, calendars); ``shipment_cost`` (N,): extra cost of a shipment
    from the node (tier x tier_cost + per_shipment_cost); ``per_km_cost``: extra
    cost per km of a delivery shipment; ``daily_units`` (N,): the node's units
    per local day (``inf``: no limit); ``daily_orders`` (N,): the orders
    (shipments) it takes per local day; ``promise_*``: the delivery bands.
    """

    eligible: np.ndarray
    shipment_cost: np.ndarray
    per_km_cost: float
    daily_units: np.ndarray
    band_max_km: np.ndarray
    band_days: np.ndarray
    """(B, 2) days per band for (warehouse, store); empty: no promise rule."""
    timezone: np.ndarray
    """(N,) the node's time zone name (its calendar's, else UTC)."""
    clearance_weeks: float = math.inf
    """Weeks of sales a (node, SKU) may hold before its units earn the credit."""
    clearance_credit: float = 0.0
    """Credit per unit allocated from a (node, SKU) above that target."""
    max_shipments: float = math.inf
    """The split cap: most shipments an order of the channel may use."""
    daily_orders: np.ndarray | None = None
    """(N,) orders (shipments) the node takes per local day (``inf``: no limit)."""
    modes: Modes = field(default_factory=Modes)
    """The fulfilment modes (``router.modes``): transfers, same-city, endless aisle."""

    def credit(self, available: np.ndarray, weekly_sales: np.ndarray) -> np.ndarray:
        """The clearance credit per unit of (node, SKU) pairs holding ``available`` units
        and selling ``weekly_sales`` a week (NaN: unknown, no credit): the one
        definition used by both paths and the checker."""
        if self.clearance_credit <= 0:
            return np.zeros(np.shape(available))
        sales = np.asarray(weekly_sales, dtype=float)
        target = self.clearance_weeks * np.nan_to_num(sales, nan=np.inf)
        above = ~np.isnan(sales) & (np.asarray(available, dtype=float) > target)
        return np.where(above, self.clearance_credit, 0.0)

    def restricted(self, nodes: np.ndarray) -> NodeRules:
        """The rules of the nodes at positions ``nodes`` only."""
        return replace(
            self,
            eligible=self.eligible[nodes],
            shipment_cost=self.shipment_cost[nodes],
            daily_units=self.daily_units[nodes],
            daily_orders=None if self.daily_orders is None else self.daily_orders[nodes],
            timezone=self.timezone[nodes],
        )

    @property
    def has_promise(self) -> bool:
        return self.band_max_km.size > 0

    def delivery_days(self, km: np.ndarray, is_store: np.ndarray) -> np.ndarray:
        """Days from now to delivery for a shipment of ``km`` from a node (``inf``
        beyond the last band or for a kind the band does not list)."""
        band = np.searchsorted(self.band_max_km, np.nan_to_num(km, nan=0.0), side="left")
        inside = band < self.band_max_km.size
        days = np.full(np.shape(km), np.inf)
        kind = np.broadcast_to(is_store.astype(np.int64), np.shape(km))
        days[inside] = self.band_days[band[inside], kind[inside]]
        return days


def _selected(selector: str, node_id, kind, group) -> np.ndarray:
    if selector == "*":
        return np.ones(node_id.size, dtype=bool)
    if selector in NODE_KINDS:
        return kind == selector
    prefix, _, name = selector.partition(":")
    return (group == name) if prefix == "group" else (node_id == name)


def _by_selector(entries: dict, node_id, kind, group, default):
    """Per node, the value of the most specific entry (node > group > kind > '*')."""
    out = [default] * node_id.size
    rank = np.full(node_id.size, -1)
    for selector, value in entries.items():
        level = (
            3
            if selector.startswith("node:")
            else 2
            if selector.startswith("group:")
            else (1 if selector in NODE_KINDS else 0)
        )
        hit = _selected(selector, node_id, kind, group) & (rank < level)
        for i in np.flatnonzero(hit):
            out[i] = value
        rank[hit] = level
    return out


def compile_rules(
    profile: Profile,
    node_id: np.ndarray,
    kind: np.ndarray,
    group: np.ndarray,
    as_of: datetime,
    workload: Profile | None = None,
) -> NodeRules:
    """The profile as arrays over the nodes, at the UTC time ``as_of``.

    ``workload``: the profile whose ``daily_limits`` apply (the default one).
    """
    doc = profile.document
    node_id = np.asarray(node_id, dtype=object)
    kind = np.asarray(kind, dtype=object)
    group = np.asarray(group, dtype=object)
    n = node_id.size
    eligible = np.ones(n, dtype=bool)
    if "node_kinds" in doc:
        eligible &= np.isin(kind, doc["node_kinds"])
    if "node_groups" in doc:
        eligible &= np.isin(group, doc["node_groups"])
    if "nodes" in doc:
        eligible &= np.isin(node_id, doc["nodes"])
    if "exclude_nodes" in doc:
        eligible &= ~np.isin(node_id, doc["exclude_nodes"])
    calendars = {s: _calendar(c, f"calendars.{s}") for s, c in doc.get("calendars", {}).items()}
    per_node_calendar = _by_selector(calendars, node_id, kind, group, None)
    zones = np.array([c.timezone if c else "UTC" for c in per_node_calendar], dtype=object)
    for i, cal in enumerate(per_node_calendar):
        if cal is not None and not cal.takes_orders(as_of.astimezone(ZoneInfo(cal.timezone))):
            eligible[i] = False
    tiers = np.array(_by_selector(doc.get("tiers", {}), node_id, kind, group, 0.0), dtype=float)
    shipment_cost = tiers * float(doc.get("tier_cost", 1.0)) + float(
        doc.get("per_shipment_cost", 0.0)
    )
    limits = (workload.document if workload else doc).get("daily_limits", {})
    daily = _by_selector(limits, node_id, kind, group, {})
    daily_units = np.array([float(d.get("units", math.inf)) for d in daily])
    daily_orders = np.array([float(d.get("orders", math.inf)) for d in daily])
    bands = _promise(doc["promise"], "promise") if "promise" in doc else []
    band_days = np.array(
        [[b.days.get("warehouse", math.inf), b.days.get("store", math.inf)] for b in bands],
        dtype=float,
    ).reshape(len(bands), 2)
    return NodeRules(
        eligible=eligible,
        shipment_cost=shipment_cost,
        per_km_cost=float(doc.get("per_km_cost", 0.0)),
        daily_units=daily_units if n else np.zeros(0),
        band_max_km=np.array([b.max_km for b in bands], dtype=float),
        band_days=band_days,
        timezone=zones,
        clearance_weeks=float(doc.get("clearance", {}).get("weeks_of_supply", math.inf)),
        clearance_credit=float(doc.get("clearance", {}).get("credit_per_unit", 0.0)),
        max_shipments=float(doc.get("max_shipments", math.inf)),
        daily_orders=daily_orders if n else np.zeros(0),
        modes=compile_modes(doc),
    )


def promised_days(promised: date | None, as_of: datetime) -> float:
    """Days left until a promised delivery date (``inf``: no promise)."""
    if promised is None:
        return math.inf
    return float((promised - as_of.date()).days)


@dataclass(frozen=True)
class Candidates:
    """What a profile leaves of a block of orders' nodes.

    ``allowed`` (B, N): the nodes each order may use; ``extra_cost`` (B, N): the
    profile's cost of a shipment (tier, per shipment, per km); ``late`` (B,):
    the order has a promise that no allowed node holding its goods can meet, so
    it is routed without the promise and flagged.
    """

    allowed: np.ndarray
    extra_cost: np.ndarray
    late: np.ndarray


def order_candidates(
    rules: NodeRules,
    allowed: np.ndarray,
    km: np.ndarray,
    is_store: np.ndarray,
    holds: np.ndarray,
    days_left: np.ndarray,
    pickup: np.ndarray,
    nodes: np.ndarray | None = None,
    fixed_days: np.ndarray | None = None,
) -> Candidates:
    """Apply a profile to a block of B orders over N nodes: the one place of the
    eligibility, tier, calendar and promise rules for both paths.

    ``allowed`` (B, N): the base format's reach / pickup rule; ``km`` (B, N)
    distances; ``holds`` (B, N): the node holds any of the order's SKUs;
    ``days_left`` (B,): days until the promised date (``inf``: none);
    ``pickup`` (B,): a pickup order (no promise, no distance cost); ``nodes``: the
    node indices of the N columns when they are not all the nodes of ``rules``;
    ``fixed_days`` (B, N): a pair's delivery days set by its fulfilment mode (NaN:
    the bands').
    """
    if nodes is not None:
        rules = rules.restricted(nodes)
    allowed = allowed & rules.eligible[None, :]
    extra = rules.shipment_cost[None, :] + np.where(
        pickup[:, None], 0.0, rules.per_km_cost * np.nan_to_num(km, nan=0.0)
    )
    late = np.zeros(allowed.shape[0], dtype=bool)
    promised = np.isfinite(days_left) & ~pickup
    if rules.has_promise and promised.any():
        days = rules.delivery_days(km, is_store[None, :])
        if fixed_days is not None:
            days = np.where(np.isnan(fixed_days), days, fixed_days)
        meets = days <= days_left[:, None]
        usable = allowed & holds
        can_meet = (usable & meets).any(axis=1)
        restrict = promised & can_meet
        allowed = np.where(restrict[:, None], allowed & meets, allowed)
        late = promised & ~can_meet & usable.any(axis=1)
    return Candidates(allowed, np.broadcast_to(extra, allowed.shape), late)


def local_day(as_of: datetime, zone: str) -> str:
    """The node's local date at ``as_of`` (its daily workload counts reset at midnight)."""
    return as_of.astimezone(ZoneInfo(zone)).date().isoformat()


def midnight_after(as_of: datetime, zone: str) -> datetime:
    """The next local midnight of ``zone`` after ``as_of``, in UTC."""
    local = as_of.astimezone(ZoneInfo(zone))
    nxt = datetime.combine(local.date() + timedelta(days=1), time(0), ZoneInfo(zone))
    return nxt.astimezone(UTC)


def _default_rules(profiles: ProfileSet, nodes):
    """The default profile's rules (with its daily limits) over a nodes frame."""
    rules = compile_rules(
        profiles.of(DEFAULT_CHANNEL),
        nodes["node_id"].to_numpy(dtype=object),
        nodes["kind"].to_numpy(dtype=object),
        nodes["group"].to_numpy(dtype=object),
        profiles.as_of,
        workload=profiles.profiles.get(DEFAULT_CHANNEL),
    )
    return rules


def daily_capacity(profiles: ProfileSet, nodes) -> np.ndarray:
    """(N,) units each node may take in a day under the default profile's daily
    limits (``inf``: no limit): a batch tightens its capacity with it. ``nodes``:
    a scenario's nodes frame (with its ``group`` column); a ``daily_units_left``
    column of ``nodes`` (a live snapshot: what is left today) takes precedence."""
    if "daily_units_left" in nodes:
        return nodes["daily_units_left"].to_numpy(dtype=float)
    return _default_rules(profiles, nodes).daily_units


def daily_orders(profiles: ProfileSet, nodes) -> np.ndarray:
    """(N,) orders (shipments) each node may take in a day under the default
    profile's daily limits (``inf``: no limit); a ``daily_orders_left`` column of
    ``nodes`` (a live snapshot: what is left today) takes precedence."""
    if "daily_orders_left" in nodes:
        return nodes["daily_orders_left"].to_numpy(dtype=float)
    rules = _default_rules(profiles, nodes)
    assert rules.daily_orders is not None
    return rules.daily_orders
