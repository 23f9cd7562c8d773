"""Live performance: measured when labels arrive, estimated from probabilities when they do not.

The estimate is confidence-based (as NannyML's CBPE): with calibrated probabilities, the expected
accuracy of a batch is the mean probability of the predicted class. Calibration is fitted on the
version's holdout at training time (isotonic regression of "the prediction was right" on the
predicted class's probability) and stored with the version, so the estimate needs no labels.
Estimates are always marked as estimates and carry a 95 % interval: the sampling error of the
window's expected accuracy (each row is right with its calibrated probability) and the error of
the calibration itself (fitted on ``holdout_rows`` rows) — and, because a calibration fitted
before a shift need not hold after it, a *shift allowance* (``shift_allowance``): the largest
error the estimate made on the recent windows whose labels arrived since (a window's estimate
against its measured accuracy), and, on a window whose inputs drifted, how far the estimate
itself moved from the validation accuracy. Sampling error alone covered the truth on 3 to 8 of
10 windows after real shifts; with the allowance the interval holds its coverage
(docs/benchmarks.md). No label-free estimate can see concept drift (the same inputs now meaning
another label) until labels show it, so the policy treats an estimate as weaker evidence than
labels: an estimated drop counts only when the whole interval is below the floor.
Measured accuracy carries a Wilson interval.

Labels are compared as the model's classes (``mlmedic.core.labels``): ``1``, ``1.0`` and ``"1"`` are
one class; a label the model has never seen is counted and left out, never a crash.

Examples:
    >>> import numpy as np
    >>> calibration = Calibration.fit(np.array([0.9, 0.8, 0.6, 0.95]), np.array([1, 1, 0, 1]))
    >>> [round(float(p), 2) for p in calibration.apply(np.array([0.6, 0.95]))]
    [0.0, 1.0]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from mlmedic.core.labels import label_key, match_labels


@dataclass
class Calibration:
    """A monotone map from the predicted class's probability to the chance of being right."""

    thresholds: list[float]
    values: list[float]
    holdout_rows: int = 0  # rows it was fitted on (0: unknown, e.g. an older version)

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> Calibration:
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float))
        return cls(
            thresholds=[float(x) for x in model.X_thresholds_],
            values=[float(y) for y in model.y_thresholds_],
            holdout_rows=len(confidence),
        )

    def apply(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(confidence, dtype=float), self.thresholds, self.values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            thresholds=list(data["thresholds"]),
            values=list(data["values"]),
            holdout_rows=int(data.get("holdout_rows", 0)),
        )


@dataclass
class Performance:
    """Metrics of the champion on a window: measured (labels) or estimated (no labels)."""

    accuracy: float
    estimated: bool
    rows: int
    f1: float | None = None
    roc_auc: float | None = None
    low: float | None = None  # 95 % interval of the accuracy
    high: float | None = None
    unknown_labels: int = 0  # labels that name no class of the model (left out)
    unknown_examples: list[str] = field(default_factory=list)
    allowance: float = 0.0  # of an estimate: the interval's widening for shifts (see above)
    # a regression's (accuracy is NaN): the mean absolute error (low/high: its interval), the
    # RMSE and the standard deviation of the absolute errors
    mae: float | None = None
    rmse: float | None = None
    spread: float | None = None

    def summary(self) -> str:
        kind = "estimated" if self.estimated else "measured"
        if self.mae is not None and self.rows:
            band = f" [{self.low:.4g}, {self.high:.4g}]" if self.low is not None else ""
            rmse = f", RMSE {self.rmse:.4g}" if self.rmse is not None else ""
            return f"MAE {self.mae:.4g}{band} ({kind} on {self.rows:,} rows{rmse})"
        if self.rows == 0:
            lost = (
                f" ({self.unknown_labels:,} name no class of the model)"
                if self.unknown_labels
                else ""
            )
            return f"accuracy not {kind}: no usable rows{lost}"
        extra = f", F1 {self.f1:.3f}" if self.f1 is not None else ""
        band = (
            f" [{self.low:.3f}, {self.high:.3f}]"
            if self.low is not None and self.high is not None
            else ""
        )
        unknown = (
            f"; {self.unknown_labels:,} labels the model does not know left out "
            f"(e.g. {', '.join(self.unknown_examples[:3])})"
            if self.unknown_labels
            else ""
        )
        return f"accuracy {self.accuracy:.3f}{band} ({kind} on {self.rows:,} rows{extra}){unknown}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def unmeasured(cls, lost: int, examples: list[str]) -> Performance:
        """Labels were given, but none of them can be scored (``lost`` of them; ``examples``)."""
        return cls(
            accuracy=float("nan"),
            estimated=False,
            rows=0,
            unknown_labels=lost,
            unknown_examples=examples,
        )


Z95 = 1.959963984540054


def wilson(successes: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson interval of a proportion.

    >>> [round(x, 3) for x in wilson(80, 100)]
    [0.711, 0.867]
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def measured(
    truth: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, classes: list[Any]
) -> Performance:
    """Accuracy, F1 and ROC AUC from true labels, matched to the model's classes (a label that
    names no class is counted and left out)."""
    matched, unknown = match_labels(list(truth), classes)
    known = np.asarray([m is not None for m in matched], dtype=bool)
    examples = sorted({str(v) for v in unknown if v is not None and v == v})[:5]
    truth_s = np.asarray([label_key(m) for m, k in zip(matched, known, strict=True) if k])
    predicted_s = np.asarray([label_key(p) for p in np.asarray(predicted, dtype=object)[known]])
    probabilities = np.asarray(probabilities)[known] if len(probabilities) else probabilities
    labels = [label_key(c) for c in classes]
    lost = int((~known).sum())
    if not len(truth_s):
        return Performance.unmeasured(lost, examples)
    accuracy = float(accuracy_score(truth_s, predicted_s))
    f1: float | None
    auc: float | None = None
    if len(labels) == 2:
        f1 = float(f1_score(truth_s, predicted_s, pos_label=labels[1], zero_division=0))
        if len(set(truth_s)) == 2:
            auc = float(roc_auc_score(truth_s == labels[1], probabilities[:, 1]))
    else:
        f1 = float(f1_score(truth_s, predicted_s, average="macro", zero_division=0))
    low, high = wilson(accuracy * len(truth_s), len(truth_s))
    return Performance(
        accuracy=accuracy,
        estimated=False,
        rows=len(truth_s),
        f1=f1,
        roc_auc=auc,
        low=low,
        high=high,
        unknown_labels=lost,
        unknown_examples=examples,
    )


RECENT_ERRORS = 6  # labelled windows whose estimate errors widen the next estimate's interval


def shift_allowance(
    errors: list[float], *, moved: float | None = None, drifted: bool = False
) -> float:
    """The widening of an estimate's interval: the largest of the newest ``RECENT_ERRORS``
    errors (estimate minus measured accuracy, newest first) and, when the window drifted, how
    far the estimate moved from the validation accuracy (``moved``).

    >>> shift_allowance([0.01, -0.03, 0.0]), shift_allowance([], moved=-0.02, drifted=True)
    (0.03, 0.02)
    """
    recent = [abs(e) for e in errors[:RECENT_ERRORS] if e == e]
    widest = max(recent, default=0.0)
    if drifted and moved is not None and moved == moved:
        widest = max(widest, abs(moved))
    return float(widest)


def estimated(
    calibration: Calibration, probabilities: np.ndarray, *, allowance: float = 0.0
) -> Performance:
    """The label-free estimate of accuracy (confidence-based, calibrated on the holdout), with
    its 95 % interval (see the module docstring) widened by ``allowance``."""
    confidence = np.asarray(probabilities).max(axis=1)
    rows = len(confidence)
    if not rows:
        return Performance(accuracy=float("nan"), estimated=True, rows=0)
    chance = calibration.apply(confidence)
    accuracy = float(np.mean(chance))
    sampling = float(np.sum(chance * (1 - chance))) / rows**2
    fitted_on = calibration.holdout_rows or 200  # unknown: assume a small holdout
    calibrating = accuracy * (1 - accuracy) / fitted_on
    half = Z95 * math.sqrt(sampling + calibrating) + allowance
    return Performance(
        accuracy=accuracy,
        estimated=True,
        rows=rows,
        low=max(0.0, accuracy - half),
        high=min(1.0, accuracy + half),
        allowance=allowance,
    )
