"""What the event store remembers of earlier retrains, for the policy: when a retrain last
deployed a version (the cooldown), the newest refused attempt after it and what it waits for
(the back-off), and whether the champion is a retrained version still on probation (until its
cooldown ends, and at least until its first labelled window: a window where the version it
replaced does significantly better undoes the heal).

Read in data time: the events of a replay or a backfill carry the time of the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlmedic.heal.monitor import labelled
from mlmedic.heal.policy import Decision, RetrainHistory
from mlmedic.model.performance import RECENT_ERRORS
from mlmedic.store.events import EventKind, EventLog, Outcome


def retrain_history(events: EventLog, state_dir: Path, *, arriving: int = 0) -> RetrainHistory:
    """The ``RetrainHistory`` now; ``arriving``: labelled rows this pass brings (not kept yet)."""
    deployed = events.last(EventKind.RETRAIN, outcome=Outcome.SUCCESS)
    last = events.last(EventKind.RETRAIN)
    deployed_at = None if deployed is None else deployed.ended_at
    if last is None or last.outcome == Outcome.SUCCESS:
        return RetrainHistory(deployed_at=deployed_at)
    refused_at = last.started_at
    return RetrainHistory(
        deployed_at=deployed_at,
        refused_at=refused_at,
        rows_needed=int(last.details.get("rows_needed") or 0),
        rows_since=labelled.count_after(state_dir, refused_at) + arriving,
    )


def refused_in_a_row(events: EventLog) -> int:
    """How many retrains were refused (or failed) since the last one that deployed."""
    count = 0
    for event in events.query(kind=EventKind.RETRAIN, newest_first=True, limit=50):
        if event.outcome == Outcome.SUCCESS:
            break
        count += 1
    return count


def expected_accuracy(
    events: EventLog, version: int, baseline: dict[str, Any], *, min_rows: int
) -> tuple[float | None, int]:
    """(the accuracy a window is tested against, the rows it rests on). A retrained version's
    validation was measured on a small holdout of the newest rows, on which it was also chosen
    among the candidates — an optimistic figure: its first labelled window with at least
    ``min_rows`` rows confirms it (the two pooled). Other versions: their validation."""
    accuracy = baseline.get("validation_accuracy")
    rows = int(
        baseline.get("validation_rows")
        or (baseline.get("calibration") or {}).get("holdout_rows", 0)
        or 0
    )
    if accuracy is None:
        return None, rows
    return _pooled(events, version, float(accuracy), rows, "measured_accuracy", min_rows)


def expected_error(
    events: EventLog, version: int, baseline: dict[str, Any], *, min_rows: int
) -> dict[str, Any] | None:
    """``expected_accuracy`` for a regression: its validation error (``mae``, ``spread``,
    ``rows``), the MAE pooled with a retrained version's first labelled window (None: not a
    regression)."""
    error = baseline.get("validation_error")
    if error is None:
        return None
    mae, rows = _pooled(
        events, version, float(error["mae"]), int(error.get("rows") or 0), "measured_mae", min_rows
    )
    return {**error, "mae": mae, "rows": rows}


def _pooled(
    events: EventLog, version: int, value: float, rows: int, key: str, min_rows: int
) -> tuple[float, int]:
    """``value`` on ``rows`` pooled with ``key`` of the first monitoring pass of ``version`` with
    at least ``min_rows`` measured rows since a retrain deployed it (else as it is)."""
    deployed = events.last(EventKind.RETRAIN, outcome=Outcome.SUCCESS)
    if deployed is None or deployed.details.get("candidate") != version:
        return value, rows
    for event in events.query(kind=EventKind.MONITOR, since=deployed.started_at):
        measured = event.details.get("measured_rows") or 0
        seen = event.details.get(key)
        if event.model_version == str(version) and measured >= min_rows and seen is not None:
            return (value * rows + float(seen) * measured) / (rows + measured), rows + measured
    return value, rows


def on_probation(
    events: EventLog, version: int, *, min_rows: int, now: float, cooldown: float
) -> bool:
    """Whether ``version`` is a retrained champion on probation: deployed by a retrain, and
    still inside the cooldown its deployment started — or not yet measured on ``min_rows``
    labelled rows. A labelled window in which ``previous`` is significantly better undoes it."""
    deployed = events.last(EventKind.RETRAIN, outcome=Outcome.SUCCESS)
    if deployed is None or deployed.details.get("candidate") != version:
        return False
    if now < deployed.ended_at + cooldown:
        return True
    for event in events.query(kind=EventKind.MONITOR, since=deployed.started_at):
        measured = event.details.get("measured_rows") or 0
        if event.model_version == str(version) and measured >= min_rows:
            return False
    return True


def recent_errors(events: EventLog) -> list[float]:
    """The label-free estimate's errors on the newest labelled windows, newest first."""

    found = []
    for event in events.query(
        kind=EventKind.PERFORMANCE_CHECK, limit=3 * RECENT_ERRORS, newest_first=True
    ):
        error = event.details.get("estimate_error")
        if error is not None:
            found.append(float(error))
    return found[:RECENT_ERRORS]


def mark(decision: Decision) -> str:
    """How a pass's labelled rows are marked for the next retrain's current regime."""
    if {"measured_drop", "estimated_drop"} & set(decision.triggers):
        return "drop"
    return "drift" if decision.data_drift else ""
