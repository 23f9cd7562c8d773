"""Measure a window against a champion snapshot: drift of the features and of the predictions,
and performance — measured where labels are present, estimated where they are not.

Pure: reads the snapshot and the frame, writes nothing, decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmedic.core.config import Settings
from mlmedic.core.evidence import Paired, paired
from mlmedic.core.labels import label_key, match_labels
from mlmedic.data.drift import DriftReport, ReferenceProfile, compare
from mlmedic.heal.monitor.distributed import WindowSummary
from mlmedic.heal.monitor.snapshot import ChampionSnapshot
from mlmedic.heal.monitor.window_error import measure_errors
from mlmedic.model.performance import (
    Calibration,
    Performance,
    estimated,
    measured,
    shift_allowance,
)
from mlmedic.model.tasks import task_of
from mlmedic.model.training import model_frame


@dataclass
class Measurements:
    """What one window showed."""

    rows: int
    labelled: bool  # the window's own rows carry labels (not only labels arriving late)
    drift: DriftReport | None = None
    prediction_drift: DriftReport | None = None
    performance: Performance | None = None
    previous_performance: Performance | None = None
    # the champion (A) against previous (B) on the same labelled rows
    versus_previous: Paired | None = None
    estimate: Performance | None = None  # the label-free estimate of the window, always made
    estimate_error: float | None = None  # the estimate minus the measured accuracy, same rows

    @property
    def measured_rows(self) -> int:
        """Labelled rows the accuracy was measured on (0: estimated, or none)."""
        performance = self.performance
        return performance.rows if performance and not performance.estimated else 0


def _predicted(model_classes: list[object], probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(model_classes, dtype=object)[probabilities.argmax(axis=1)]


def measure(
    snapshot: ChampionSnapshot,
    frame: pd.DataFrame,
    *,
    settings: Settings,
    logged: bool = False,
    labelled: pd.DataFrame | None = None,
    summary: WindowSummary | None = None,
    errors: list[float] | None = None,
) -> Measurements:
    """Drift and performance of ``frame`` (a batch, or the prediction log when ``logged``).

    Performance is measured on ``labelled`` when given (rows whose labels arrived late: a
    replay's delayed labels), else on the rows of ``frame`` that carry a label, else estimated.
    The label-free estimate of the window is always made (``estimate``), its interval widened
    by ``errors`` (the estimate's errors on recent labelled windows, newest first; see
    ``performance.shift_allowance``); where labels are measured, the estimate's error on those
    same rows is returned (``estimate_error``) for the next passes.
    With ``summary`` (a window summarised on Dask), drift comes from its merged profiles and
    ``frame`` is its labelled rows or its sample.
    """
    detection = settings.self_healing.drift_detection
    target = snapshot.target
    has_labels = bool(
        target is not None and target in frame.columns and frame[target].notna().any()
    )
    late = labelled is not None and len(labelled) > 0
    rows = summary.rows if summary is not None else len(frame)
    result = Measurements(rows=rows, labelled=has_labels and not late)
    probabilities = np.empty((0, 0))
    task = task_of(snapshot.contract.task)
    features = pd.DataFrame()
    if len(frame):
        features = model_frame(frame, snapshot.contract)
        if detection.monitor_features:
            # each feature weighed by the champion's permutation importance and by how far it
            # moved (drift.compare), against the closest regime the version was trained for
            current = summary.features if summary is not None else features
            # a window profiled on Dask has the champion's own bin edges: compared with its
            # own profile only
            profiles = snapshot.profiles if summary is None else snapshot.profiles[:1]
            for position, profile in enumerate(profiles):
                report = compare(
                    profile,
                    current,
                    threshold=settings.drift_threshold,
                    min_samples=detection.min_samples_for_detection,
                    weights=snapshot.baseline.get("importance") or None,
                )
                if position:
                    report.notes.append(
                        "measured against an earlier regime this version was trained for "
                        f"({position} back): the closest"
                    )
                if result.drift is None or (report.score or 0.0) < (result.drift.score or 0.0):
                    result.drift = report
                if not result.drift.drift:
                    break
        probabilities = _outputs(snapshot, frame, features, logged=logged)
        if detection.monitor_predictions:
            result.prediction_drift = compare(
                ReferenceProfile.from_dict(snapshot.baseline["predictions"]),
                summary.predictions
                if summary is not None
                else pd.DataFrame({"probability": probabilities.max(axis=1)}),
                threshold=settings.drift_threshold,
                min_samples=detection.min_samples_for_detection,
            )
    confidence = settings.self_healing.model_validation.evidence_confidence
    if not task.probabilities:  # a regression: the labelled rows and the values (one column)
        values = probabilities[:, 0] if probabilities.size else np.empty(0)
        own = frame[target].notna().to_numpy() if has_labels and not late else None
        given = labelled if late else frame[own] if own is not None else None
        known = values[own] if own is not None and len(values) == len(frame) else None
        measure_errors(snapshot, features, values, given, result, errors, confidence, known)
        return result
    calibration = Calibration.from_dict(snapshot.baseline["calibration"])
    if probabilities.size:
        raw = estimated(calibration, probabilities)
        expected = snapshot.baseline.get("validation_accuracy")
        allowance = shift_allowance(
            errors or [],
            moved=None if expected is None else raw.accuracy - expected,
            drifted=result.drift is not None and result.drift.drift,
        )
        result.estimate = estimated(calibration, probabilities, allowance=allowance)
    scored = None
    if late:
        assert labelled is not None
        scored = _measure_on(snapshot, labelled, None, result, confidence)
    elif has_labels:
        scored = _measure_on(snapshot, frame, probabilities, result, confidence)
    else:
        result.performance = result.estimate
    performance = result.performance
    if scored is not None and len(scored) and performance is not None and performance.rows:
        result.estimate_error = estimated(calibration, scored).accuracy - performance.accuracy
    return result


def _outputs(
    snapshot: ChampionSnapshot, frame: pd.DataFrame, features: pd.DataFrame, *, logged: bool
) -> np.ndarray:
    """The champion's outputs on the window: class probabilities, or a regression's values as
    one column — from the log when ``logged`` (what the server answered), else predicted."""
    if logged:
        found = frame.filter(regex=r"^proba_\d+$").to_numpy(dtype=float)
        if found.size:
            return found
    return task_of(snapshot.contract.task).outputs(snapshot.model, features)


def _measure_on(
    snapshot: ChampionSnapshot,
    frame: pd.DataFrame,
    probabilities: np.ndarray | None,
    result: Measurements,
    confidence: float,
) -> np.ndarray:
    """Measured accuracy of the champion (and of ``previous``, with the paired comparison of the
    two on the same rows) on the labelled rows of ``frame``; returns the champion's
    probabilities on those rows."""
    target = snapshot.target
    assert target is not None
    rows = frame[target].notna().to_numpy()
    frame = frame.loc[rows]
    truth = frame[target].to_numpy()
    features = model_frame(frame, snapshot.contract)
    if probabilities is None:
        probabilities = np.asarray(snapshot.model.predict_proba(features))
    else:
        probabilities = probabilities[rows]
    classes = snapshot.classes
    predicted = _predicted(classes, probabilities)
    result.performance = measured(truth, predicted, probabilities, classes)
    previous = snapshot.previous()
    if previous is None:
        return probabilities
    _, other = previous
    try:
        other_probabilities = np.asarray(other.predict_proba(features))
        other_classes = list(other.classes_)
        other_predicted = _predicted(other_classes, other_probabilities)
        result.previous_performance = measured(
            truth, other_predicted, other_probabilities, other_classes
        )
    except Exception:  # the previous version may not fit today's data
        result.previous_performance = None
        return probabilities
    known, truth_keys = _known_truth(truth, classes)
    if known.sum():
        result.versus_previous = paired(
            _keys(predicted[known]) == truth_keys,
            _keys(other_predicted[known]) == truth_keys,
            confidence=confidence,
        )
    return probabilities


def _known_truth(truth: np.ndarray, classes: list[object]) -> tuple[np.ndarray, np.ndarray]:
    """(the rows whose label names a class of the model, those labels as comparison keys)."""
    matched, _ = match_labels(list(truth), classes)
    known = np.asarray([m is not None for m in matched], dtype=bool)
    return known, _keys(np.asarray([m for m in matched if m is not None], dtype=object))


def _keys(values: np.ndarray) -> np.ndarray:
    """Labels as comparable keys across two models (whose classes may be 1 and 1.0)."""
    keys = []
    for value in values:
        key = label_key(value)
        keys.append(key if key is not None else repr(value))
    return np.asarray(keys, dtype=object)
