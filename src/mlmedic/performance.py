"""Live performance: measured when labels arrive, estimated from probabilities when they do not.

The estimate is confidence-based (as NannyML's CBPE): with calibrated probabilities, the expected
accuracy of a batch is the mean probability of the predicted class. Calibration is fitted on the
version's holdout at training time (isotonic regression of "the prediction was right" on the
predicted class's probability) and stored with the version, so the estimate needs no labels.
Estimates are always marked as estimates.

Examples:
    >>> import numpy as np
    >>> calibration = Calibration.fit(np.array([0.9, 0.8, 0.6, 0.95]), np.array([1, 1, 0, 1]))
    >>> round(calibration.expected_accuracy(np.array([0.9, 0.95])), 2)
    1.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score


@dataclass
class Calibration:
    """A monotone map from the predicted class's probability to the chance of being right."""

    thresholds: list[float]
    values: list[float]

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> Calibration:
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float))
        return cls(
            thresholds=[float(x) for x in model.X_thresholds_],
            values=[float(y) for y in model.y_thresholds_],
        )

    def apply(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(confidence, dtype=float), self.thresholds, self.values)

    def expected_accuracy(self, confidence: np.ndarray) -> float:
        return float(np.mean(self.apply(confidence))) if len(confidence) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(thresholds=list(data["thresholds"]), values=list(data["values"]))


@dataclass
class Performance:
    """Metrics of the champion on a window: measured (labels) or estimated (no labels)."""

    accuracy: float
    estimated: bool
    rows: int
    f1: float | None = None
    roc_auc: float | None = None

    def summary(self) -> str:
        kind = "estimated" if self.estimated else "measured"
        extra = f", F1 {self.f1:.3f}" if self.f1 is not None else ""
        return f"accuracy {self.accuracy:.3f} ({kind} on {self.rows:,} rows{extra})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measured(
    truth: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, classes: list[Any]
) -> Performance:
    """Accuracy, F1 and ROC AUC from true labels (compared as strings, as logs store them)."""
    truth_s = np.asarray([str(t) for t in truth])
    predicted_s = np.asarray([str(p) for p in predicted])
    labels = [str(c) for c in classes]
    accuracy = float(accuracy_score(truth_s, predicted_s))
    f1: float | None
    auc: float | None = None
    if len(labels) == 2:
        f1 = float(f1_score(truth_s, predicted_s, pos_label=labels[1], zero_division=0))
        if len(set(truth_s)) == 2:
            auc = float(roc_auc_score(truth_s == labels[1], probabilities[:, 1]))
    else:
        f1 = float(f1_score(truth_s, predicted_s, average="macro", zero_division=0))
    return Performance(accuracy=accuracy, estimated=False, rows=len(truth_s), f1=f1, roc_auc=auc)


def estimated(calibration: Calibration, probabilities: np.ndarray) -> Performance:
    """The label-free estimate of accuracy (confidence-based, calibrated on the holdout)."""
    confidence = np.asarray(probabilities).max(axis=1)
    return Performance(
        accuracy=calibration.expected_accuracy(confidence), estimated=True, rows=len(confidence)
    )
