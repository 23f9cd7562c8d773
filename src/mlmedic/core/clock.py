"""Injected time: the system clock, and a simulated clock that replays days in seconds.

Cooldowns, 6-hour schedules and MTTR all read time through a ``Clock`` so that tests and the demo
can run them on simulated time.

Examples:
    >>> clock = SimulatedClock(start=0.0)
    >>> clock.sleep(6 * 3600)
    >>> clock.now()
    21600.0
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Where time comes from: ``now()`` in seconds since the epoch (UTC), ``sleep(seconds)``."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SimulatedClock:
    """A clock that only moves when told to: ``sleep`` and ``advance`` jump forward instantly.

    Thread-safe, so a simulated monitor loop and a test can share it.
    """

    def __init__(self, start: float | datetime | None = None) -> None:
        if start is None:
            start = time.time()
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
            return self._now


def to_iso(timestamp: float) -> str:
    """Format epoch seconds as an ISO-8601 UTC string with millisecond precision."""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``6h``, ``7d`` or ``2w``.

    Examples:
        >>> parse_duration("6h")
        21600.0
    """
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"'{text}' is not a duration; use e.g. 30m, 6h, 7d") from None
    if not math.isfinite(seconds):
        raise ValueError(f"'{text}' is not a finite duration; use e.g. 30m, 6h, 7d")
    if seconds < 0:
        raise ValueError(f"'{text}': a duration cannot be negative")
    return seconds


def parse_time(text: str, *, now: float) -> float:
    """Epoch seconds from an ISO-8601 time (UTC unless it says otherwise) or a duration ago."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"'{text}' is neither a time (2026-11-27T08:00) nor a duration ago (24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def data_times(values: Any, *, what: str) -> Any:
    """Epoch seconds (a float array) of a time column: ISO-8601 or other date/time text,
    datetimes, or numbers of seconds since the epoch. ``ValueError`` naming ``what`` when a value
    is missing or does not read as a date/time — data time with holes cannot order a history.

    >>> data_times(__import__("pandas").Series(["2024-01-01T06:00Z"]), what="t").tolist()
    [1704088800.0]
    """
    import numpy as np
    import pandas as pd

    series = pd.Series(values)
    missing = int(series.isna().sum())
    if missing:
        raise ValueError(f"{what}: {missing:,} of {len(series):,} values are missing")
    if pd.api.types.is_bool_dtype(series):
        raise ValueError(f"{what}: true/false values are not times")
    if pd.api.types.is_numeric_dtype(series):
        seconds = series.to_numpy(dtype=float)
        bad = ~np.isfinite(seconds)
    else:
        if pd.api.types.is_datetime64_any_dtype(series):
            parsed = pd.to_datetime(series, utc=True)
        else:
            text = series.astype(str).str.strip()
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
            if parsed.isna().any():
                parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        bad = parsed.isna().to_numpy()
        epoch = pd.Timestamp(0, tz="UTC")
        seconds = ((parsed - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    if bad.any():
        example = series[bad].iloc[0]
        raise ValueError(
            f"{what}: {int(bad.sum()):,} of {len(series):,} values do not read as a date/time "
            f"(e.g. {str(example)!r})"
        )
    return seconds


class Timings(dict[str, float]):
    """Wall-clock seconds per named step (for reports and benchmarks, never for decisions).

    >>> timings = Timings()
    >>> with timings.step("read"):
    ...     pass
    >>> list(timings)
    ['read']
    """

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - started
