"""Labelled production rows, kept for the next retrain.

Every monitoring pass that sees labels writes those rows (in the champion's columns) to
``.mlmedic/labelled/`` with the time they were seen, in data time. A retrain draws its recipes
from them (``mlmedic.heal.monitor.recipes``) — bounded by ``monitoring.production_rows_max`` (the
most recent kept) and ``monitoring.production_rows_max_age_days`` — and holds the newest out to
judge its candidates and the champion on rows none of them trained on.

A pass whose window showed a change is marked in its file name: ``-drop`` (the accuracy dropped:
measured or estimated) or ``-drift`` (the inputs drifted, the accuracy did not drop). The
current regime — the rows the ``newest`` recipe learns from and the new version's drift reference
describes — is the newest run of passes with the newest pass's kind of change
(``mlmedic.heal.monitor.recipes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SEEN_AT = "_seen_at"
MARKS = ("drop", "drift")


def folder(state_dir: Path) -> Path:
    return Path(state_dir) / "labelled"


@dataclass(frozen=True)
class Pass:
    """One pass's labelled rows on disk."""

    path: Path
    seen_at: float
    mark: str  # "drop", "drift" or "" (no change)


def keep(
    state_dir: Path, rows: pd.DataFrame, *, now: float, version: int, mark: str = ""
) -> Path | None:
    """Store ``rows`` (already in the champion's columns, labels present) as seen at ``now``;
    ``mark``: the pass saw an accuracy ``drop`` or input ``drift``."""
    if not len(rows):
        return None
    if mark and mark not in MARKS:
        raise ValueError(f"unknown mark {mark!r}")
    target = folder(state_dir)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{now:017.3f}-v{version}{'-' + mark if mark else ''}.parquet"
    rows.assign(**{SEEN_AT: now}).reset_index(drop=True).to_parquet(path, index=False)
    return path


def passes(state_dir: Path, *, after: float | None = None) -> list[Pass]:
    """The stored passes, oldest first (only those seen after ``after``, when given)."""
    found = []
    for path in folder(state_dir).glob("*.parquet"):
        try:
            seen = float(path.name.split("-v", 1)[0])
        except ValueError:
            continue
        if after is None or seen >= after:
            mark = next((m for m in MARKS if path.stem.endswith("-" + m)), "")
            found.append(Pass(path, seen, mark))
    return sorted(found, key=lambda p: (p.seen_at, p.path.name))


def read(chosen: list[Pass]) -> pd.DataFrame:
    """The rows of ``chosen`` passes, oldest first, with the time each was seen (``SEEN_AT``)."""
    parts = [pd.read_parquet(p.path) for p in chosen]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def since(
    state_dir: Path,
    start: float | None,
    *,
    now: float,
    max_rows: int,
    max_age_days: float,
) -> pd.DataFrame:
    """The rows seen at or after ``start`` and within ``max_age_days`` of ``now``, oldest first,
    the newest ``max_rows`` of them, with the time each was seen (``SEEN_AT``)."""
    oldest = now - max_age_days * 86_400
    if start is not None:
        oldest = max(oldest, start)
    oldest -= 0.001  # file names hold the time to the millisecond, rounded
    rows = read(passes(state_dir, after=oldest))
    if not len(rows) or max_rows <= 0:
        return pd.DataFrame()
    return rows.tail(max_rows).reset_index(drop=True)


def count_after(state_dir: Path, moment: float) -> int:
    """How many labelled rows were seen strictly after ``moment`` (file metadata only)."""
    import pyarrow.parquet as pq

    total = 0
    for found in passes(state_dir, after=moment):
        if found.seen_at > moment + 0.0005:
            try:
                total += pq.read_metadata(found.path).num_rows
            except OSError:
                continue
    return total


def prune(state_dir: Path, *, before: float) -> None:
    """Forget rows seen before ``before`` (called with the age bound)."""
    for found in passes(state_dir):
        if found.seen_at < before:
            found.path.unlink(missing_ok=True)
