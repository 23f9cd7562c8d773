"""Labelled production rows, kept for the next retrain.

Every monitoring pass that sees labels writes those rows (in the champion's columns) to
``.mlmedic/labelled/`` with the time they were seen. A retrain learns from the reference plus the
rows seen since the champion was deployed — bounded by ``monitoring.production_rows_max`` (the
most recent kept) and ``monitoring.production_rows_max_age_days`` — so it does not forget what
production taught the last window (which is all a retrain used to see). The newest of them are
held out by time to gate the candidate against the champion on rows neither trained on.

Rows of a pass whose labels showed an accuracy drop are marked: when the labels say the concept
changed, a retrain learns from the rows since the drop began (the newest run of marked passes),
not from a reference that teaches the old concept.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SEEN_AT = "_seen_at"


def folder(state_dir: Path) -> Path:
    return Path(state_dir) / "labelled"


def keep(
    state_dir: Path, rows: pd.DataFrame, *, now: float, version: int, dropped: bool = False
) -> Path | None:
    """Store ``rows`` (already in the champion's columns, labels present) as seen at ``now``;
    ``dropped``: the champion's measured accuracy on them was below the floor."""
    if not len(rows):
        return None
    target = folder(state_dir)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{now:017.3f}-v{version}{'-drop' if dropped else ''}.parquet"
    rows.assign(**{SEEN_AT: now}).reset_index(drop=True).to_parquet(path, index=False)
    return path


def since(
    state_dir: Path,
    start: float | None,
    *,
    now: float,
    max_rows: int,
    max_age_days: float,
    drop_streak: bool = False,
) -> pd.DataFrame:
    """The rows seen at or after ``start`` and within ``max_age_days`` of ``now``, oldest first,
    the newest ``max_rows`` of them; with ``drop_streak``, only those of the newest run of
    passes marked as an accuracy drop (all of them when the newest pass is not marked)."""
    oldest = now - max_age_days * 86_400
    if start is not None:
        oldest = max(oldest, start)
    oldest -= 0.001  # file names hold the time to the millisecond, rounded
    chosen = []
    for path in sorted(folder(state_dir).glob("*.parquet")):
        try:
            seen = float(path.name.split("-v", 1)[0])
        except ValueError:
            continue
        if seen >= oldest:
            chosen.append(path)
    if drop_streak and chosen and chosen[-1].stem.endswith("-drop"):
        streak = []
        for path in reversed(chosen):
            if not path.stem.endswith("-drop"):
                break
            streak.append(path)
        chosen = list(reversed(streak))
    parts = [pd.read_parquet(path) for path in chosen]
    if not parts or max_rows <= 0:
        return pd.DataFrame()
    rows = pd.concat(parts, ignore_index=True)
    return rows.tail(max_rows).drop(columns=[SEEN_AT]).reset_index(drop=True)


def prune(state_dir: Path, *, before: float) -> None:
    """Forget rows seen before ``before`` (called with the age bound)."""
    for path in folder(state_dir).glob("*.parquet"):
        try:
            if float(path.name.split("-v", 1)[0]) < before:
                path.unlink(missing_ok=True)
        except ValueError:
            continue
