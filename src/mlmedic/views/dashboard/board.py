"""The dashboard as data: its figures, health parts and timeline points (``Dashboard``, drawn
by ``render``, ``page`` and ``/metrics``), and the small helpers its queries share."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mlmedic.core.clock import to_iso
from mlmedic.store.events import EventLog

DAY = 86_400.0
WINDOWS = {"auto_fix": 30.0, "rollbacks": 7.0, "retrains": 30.0, "recoveries": 30.0}


@dataclass
class Figure:
    """One tile: its value, how it is shown, what it means, over which window."""

    key: str
    title: str
    value: float | None
    shown: str
    detail: str
    definition: str
    window: str


@dataclass
class HealthPart:
    name: str
    score: float | None  # 0..1; None: does not apply here
    why: str


@dataclass
class Point:
    """One point of a timeline."""

    at: float
    value: float | None
    label: str = ""
    kind: str = ""
    version: str | None = None
    estimated: bool = False


@dataclass
class Dashboard:
    """Everything the three views (terminal, HTML, JSON) show."""

    project: str
    generated_at: float
    since: float
    figures: list[Figure]
    health_parts: list[HealthPart]
    champion: dict[str, Any] | None
    last_pass: dict[str, Any] | None
    cooldown_until: float | None
    alerts: list[dict[str, Any]]
    drift: list[Point] = field(default_factory=list)
    accuracy: list[Point] = field(default_factory=list)
    error: list[Point] = field(default_factory=list)  # a regression's MAE per pass
    actions: list[Point] = field(default_factory=list)
    incidents: list[Point] = field(default_factory=list)
    heatmap: list[dict[str, Any]] = field(default_factory=list)
    drift_threshold: float = 0.5
    empty: bool = False
    recovery_seconds: list[float] = field(default_factory=list)  # of the recoveries' window
    releases: list[dict[str, Any]] = field(default_factory=list)  # the newest, newest first

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def query(store: EventLog, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return store.select(sql, params)


def num(value: Any) -> float | None:
    """A detail read with ``json_extract``: a number in SQLite, its text on Postgres."""
    return None if value is None else float(value)


def flag(value: Any) -> bool:
    """A JSON boolean read with ``json_extract``: 1/0 in SQLite, 'true'/'false' on Postgres."""
    return value in (1, True, "true")


def ratio(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,}"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else to_iso(timestamp)[:16].replace("T", " ")
