"""Measure a window against a champion snapshot: drift of the features and of the predictions,
and performance — measured where labels are present, estimated where they are not.

Pure: reads the snapshot and the frame, writes nothing, decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmedic.config import Settings
from mlmedic.drift import DriftReport, ReferenceProfile, compare, weighted_score
from mlmedic.monitor.distributed import WindowSummary
from mlmedic.monitor.snapshot import ChampionSnapshot
from mlmedic.performance import Calibration, Performance, estimated, measured
from mlmedic.training import model_frame


@dataclass
class Measurements:
    """What one window showed."""

    rows: int
    labelled: bool
    drift: DriftReport | None = None
    prediction_drift: DriftReport | None = None
    performance: Performance | None = None
    previous_performance: Performance | None = None
    importance_drift: float | None = None  # drift weighted by the champion's importance


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
) -> Measurements:
    """Drift and performance of ``frame`` (a batch, or the prediction log when ``logged``).

    Performance is measured on ``labelled`` when given (rows whose labels arrived late: a
    replay's delayed labels), else on the rows of ``frame`` that carry a label, else estimated.
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
    result = Measurements(rows=rows, labelled=has_labels)
    probabilities = np.empty((0, 0))
    if len(frame):
        features = model_frame(frame, snapshot.contract)
        if detection.monitor_features:
            result.drift = compare(
                ReferenceProfile.from_dict(snapshot.baseline["features"]),
                summary.features if summary is not None else features,
                threshold=settings.drift_threshold,
                min_samples=detection.min_samples_for_detection,
            )
            importance = snapshot.baseline.get("importance")
            if importance:
                result.importance_drift = weighted_score(result.drift, importance)
        if logged:  # the log holds what the server answered: the champion's own probabilities
            probabilities = frame.filter(regex=r"^proba_\d+$").to_numpy(dtype=float)
        if probabilities.size == 0:
            probabilities = np.asarray(snapshot.model.predict_proba(features))
        if detection.monitor_predictions:
            result.prediction_drift = compare(
                ReferenceProfile.from_dict(snapshot.baseline["predictions"]),
                summary.predictions
                if summary is not None
                else pd.DataFrame({"probability": probabilities.max(axis=1)}),
                threshold=settings.drift_threshold,
                min_samples=detection.min_samples_for_detection,
            )
    if late:
        assert labelled is not None
        _measure_on(snapshot, labelled, None, result)
    elif has_labels:
        _measure_on(snapshot, frame, probabilities, result)
    elif len(frame):
        calibration = Calibration.from_dict(snapshot.baseline["calibration"])
        result.performance = estimated(calibration, probabilities)
    return result


def _measure_on(
    snapshot: ChampionSnapshot,
    frame: pd.DataFrame,
    probabilities: np.ndarray | None,
    result: Measurements,
) -> None:
    """Measured accuracy of the champion (and of ``previous``) on the labelled rows of
    ``frame``."""
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
    result.performance = measured(truth, _predicted(classes, probabilities), probabilities, classes)
    previous = snapshot.previous()
    if previous is None:
        return
    _, other = previous
    try:
        other_probabilities = np.asarray(other.predict_proba(features))
        other_classes = list(other.classes_)
        result.previous_performance = measured(
            truth,
            _predicted(other_classes, other_probabilities),
            other_probabilities,
            other_classes,
        )
    except Exception:  # the previous version may not fit today's data
        result.previous_performance = None
