from __future__ import annotations

import time

import pytest

from mlmedic.core.clock import (
    Clock,
    SimulatedClock,
    SystemClock,
    parse_duration,
    parse_time,
    to_iso,
)


def test_system_clock_reads_wall_time() -> None:
    clock = SystemClock()
    assert isinstance(clock, Clock)
    assert abs(clock.now() - time.time()) < 5


def test_simulated_clock_moves_only_when_told() -> None:
    clock = SimulatedClock(start=1_000.0)
    assert isinstance(clock, Clock)
    assert clock.now() == 1_000.0
    clock.sleep(6 * 3600)
    assert clock.now() == 1_000.0 + 21_600
    assert clock.advance(30) == 1_000.0 + 21_630
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("30m", 1800.0), ("6h", 21600.0), ("7d", 604800.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_parse_time_accepts_iso_and_durations() -> None:
    assert parse_time("1h", now=10_000.0) == 6_400.0
    assert parse_time("1970-01-01T01:00:00", now=0.0) == 3600.0
    assert to_iso(3600.0).startswith("1970-01-01T01:00:00")
    with pytest.raises(ValueError, match="neither a time"):
        parse_time("yesterday-ish", now=0.0)
