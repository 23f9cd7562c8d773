"""Regression: the task told from the target, error metrics, the label-free error estimate, and
the tests behind every decision on error.

- **The task.** A numeric target with fractions and more than 20 distinct values, or whole
  numbers with more than 50 distinct values that are also over a tenth of the rows, holds
  quantities: regression. Anything else is class labels. ``--task`` overrides; a regression
  target must be numbers.
- **Metrics.** RMSE, MAE, R² and the RMSE of the naive baseline (the training mean for every
  row), on the same rows.
- **The label-free estimate** (as NannyML's DLE): a model of the absolute error, fitted on the
  version's holdout from the features and the prediction, predicts each row's error; their mean
  estimates the MAE. Its 95 % interval: the sampling error of a window's MAE and of the holdout
  it was fitted on (the holdout's spread of absolute errors), widened by the same shift
  allowance as the classification estimate (``performance.shift_allowance``).
- **Evidence.** A window's error against validation: a one-sided Welch test of the mean
  absolute error (``rise``). Two models on the same rows: a paired one-sided t-test of their
  absolute errors (``paired_errors``, the Diebold-Mariano test with absolute loss).

Examples:
    >>> import pandas as pd
    >>> infer_task(pd.Series([0.5 * i for i in range(100)]), "y", "data.csv", None)
    'regression'
    >>> infer_task(pd.Series([0, 1] * 50), "y", "data.csv", None)
    'classification'
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlmedic.errors import TrainingError
from mlmedic.evidence import OneSided

TASKS = ("classification", "regression")
FRACTIONAL = 20  # distinct values of a target with fractions that mean regression
INTEGER = 50  # distinct whole numbers (and a tenth of the rows) that mean regression
NUMBERS_SHARE = 0.9  # a text column whose values are this share numbers is a broken numeric one
ERROR_MODEL_ROWS = 5000  # holdout rows from which the model of the error gets its full size
# the exact types the stored model of the error needs beyond skops' safe list (a test keeps
# this honest, for both sizes)
ERROR_MODEL_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


def _quantities(values: pd.Series) -> tuple[bool, int, bool]:
    """(whether numbers are quantities, distinct values, whether they have fractions)."""
    distinct = int(values.nunique())
    fractional = bool((values % 1 != 0).any()) if len(values) else False
    many = distinct > FRACTIONAL if fractional else distinct > max(INTEGER, len(values) // 10)
    return many, distinct, fractional


def infer_task(labels: pd.Series, target: str, source: str, requested: str | None) -> str:
    """The task of ``labels`` (``requested`` overrides: ``classification`` or ``regression``);
    a ``TrainingError`` for a target nothing can be learned from — one value, or numbers mixed
    with text where regression is asked for or evident. Raised before any work is done."""
    if requested not in (None, "auto", *TASKS):
        raise TrainingError(f"--task must be classification or regression, not {requested!r}")
    present = labels.dropna()
    distinct = present.astype(str).nunique() if len(present) else 0
    if distinct < 2:
        first = present.iloc[0] if len(present) else None
        only = repr(first.item() if isinstance(first, np.generic) else first)
        raise TrainingError(
            f"{source}: target column '{target}' is constant ({only} in every row"
            f"{'' if len(present) == len(labels) else ' that has one'}): nothing to learn"
        )
    boolean = pd.api.types.is_bool_dtype(labels)
    if pd.api.types.is_numeric_dtype(labels) and not boolean:
        if requested in TASKS:
            return str(requested)
        return "regression" if _quantities(present.astype(float))[0] else "classification"
    numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    text = present[numbers.isna()]
    mostly = numbers.notna().mean() >= NUMBERS_SHARE and _quantities(numbers.dropna())[0]
    if requested == "regression" or (requested in (None, "auto") and mostly and not boolean):
        examples = ", ".join(repr(v) for v in pd.unique(text.astype(str))[:3])
        what = f"{len(text):,} of {len(present):,} values are not numbers (e.g. {examples})"
        raise TrainingError(
            f"{source}: target column '{target}' cannot be a regression target: {what}"
            + (
                "; fix them, or pass --task classification for class labels"
                if mostly
                else "; these are class labels: pass --task classification or leave --task out"
            )
        )
    return "classification"


def metrics(truth: np.ndarray, predicted: np.ndarray, naive: float) -> dict[str, float]:
    """RMSE, MAE, R² of ``predicted`` and the RMSE of predicting ``naive`` for every row (the
    training mean), with the ratio of the two.

    >>> m = metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]), 2.0)
    >>> round(m["rmse"], 3), round(m["mae"], 3), round(m["baseline_rmse"], 3)
    (0.577, 0.333, 0.816)
    """
    truth = np.asarray(truth, dtype=float)
    error = np.asarray(predicted, dtype=float) - truth
    rmse = float(np.sqrt(np.mean(error**2))) if len(truth) else float("nan")
    baseline = float(np.sqrt(np.mean((truth - naive) ** 2))) if len(truth) else float("nan")
    spread = float(np.sum((truth - truth.mean()) ** 2)) if len(truth) else 0.0
    r2 = 1.0 - float(np.sum(error**2)) / spread if spread > 0 else float("nan")
    return {
        "rmse": rmse,
        "mae": float(np.mean(np.abs(error))) if len(truth) else float("nan"),
        "r2": r2,
        "baseline_rmse": baseline,
        "rmse_ratio": rmse / baseline if baseline > 0 else float("nan"),
    }


@dataclass(frozen=True)
class PairedErrors(OneSided):
    """Two models' absolute errors on the same rows: MAEs, how many rows each is closer on,
    and the one-sided p-values of a paired t-test in each direction; ``better`` and ``worse``
    as ``Paired``'s (``evidence.OneSided``), so the gate and the policy read either."""

    rows: int
    mae_a: float
    mae_b: float
    a_only: int  # rows A is closer on
    b_only: int  # rows B is closer on
    p_a_better: float
    p_b_better: float
    confidence: float

    @property
    def difference(self) -> float:
        return self.mae_b - self.mae_a  # positive: A's error is smaller

    def summary(self, a: str = "A", b: str = "B") -> str:
        return (
            f"{a} MAE {self.mae_a:.4g} vs {b} {self.mae_b:.4g} on the same {self.rows:,} rows "
            f"({self.a_only:,} closer by {a}, {self.b_only:,} by {b}; "
            f"p = {min(self.p_a_better, self.p_b_better):.3g})"
        )


def paired_errors(error_a: np.ndarray, error_b: np.ndarray, *, confidence: float) -> PairedErrors:
    """A paired one-sided t-test of two models' absolute errors on the same rows.

    >>> a = np.abs(np.random.default_rng(0).normal(0, 1.0, 200))
    >>> paired_errors(a, a + 0.3, confidence=0.95).better
    True
    """
    a = np.abs(np.asarray(error_a, dtype=float))
    b = np.abs(np.asarray(error_b, dtype=float))
    if a.shape != b.shape:
        raise ValueError("paired_errors() needs the two models' errors on the same rows")
    gap = b - a  # positive: A is closer
    rows = len(gap)
    p_a = p_b = 1.0
    if rows >= 2 and np.std(gap) > 0:
        t = float(np.mean(gap) / (np.std(gap, ddof=1) / math.sqrt(rows)))
        p_a = float(stats.t.sf(t, rows - 1))
        p_b = float(stats.t.sf(-t, rows - 1))
    return PairedErrors(
        rows=rows,
        mae_a=float(a.mean()) if rows else float("nan"),
        mae_b=float(b.mean()) if rows else float("nan"),
        a_only=int(np.sum(gap > 0)),
        b_only=int(np.sum(gap < 0)),
        p_a_better=p_a,
        p_b_better=p_b,
        confidence=confidence,
    )


@dataclass(frozen=True)
class Rise:
    """A window's mean absolute error against validation's: the rise and its one-sided p."""

    observed: float
    rows: int
    expected: float
    expected_rows: int
    p_value: float
    significant: bool

    @property
    def size(self) -> float:
        """The rise relative to the validation MAE (0.10: a tenth more error)."""
        return (self.observed - self.expected) / self.expected if self.expected > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": self.size}


def rise(
    observed: float,
    spread: float,
    rows: int,
    expected: float,
    expected_spread: float,
    expected_rows: int,
    *,
    confidence: float,
) -> Rise:
    """Whether the MAE ``observed`` (absolute errors of standard deviation ``spread`` on
    ``rows`` rows) is significantly above ``expected`` (validation's): one-sided Welch z-test.

    >>> rise(1.3, 1.0, 400, 1.0, 1.0, 400, confidence=0.95).significant
    True
    >>> rise(1.3, 1.0, 20, 1.0, 1.0, 400, confidence=0.95).significant
    False
    """
    if rows <= 1 or not math.isfinite(observed) or not math.isfinite(expected):
        return Rise(observed, rows, expected, expected_rows, 1.0, False)
    variance = spread**2 / rows + (expected_spread**2 / expected_rows if expected_rows else 0.0)
    if variance <= 0:
        p = 0.0 if observed > expected else 1.0
    else:
        p = float(stats.norm.sf((observed - expected) / math.sqrt(variance)))
    return Rise(observed, rows, expected, expected_rows, p, p < 1.0 - confidence)


PREDICTION = "__prediction__"


@dataclass
class ErrorModel:
    """The model of each row's absolute error (DLE), with the holdout's error statistics."""

    model: Any
    mae: float
    rmse: float
    spread: float  # standard deviation of the holdout's absolute errors
    rows: int

    @classmethod
    def fit(cls, features: pd.DataFrame, predicted: np.ndarray, truth: np.ndarray) -> ErrorModel:
        from sklearn.ensemble import HistGradientBoostingRegressor

        from mlmedic.training import SEED, fit_pipeline

        error = np.abs(np.asarray(predicted, dtype=float) - np.asarray(truth, dtype=float))
        frame = features.copy()
        frame[PREDICTION] = np.asarray(predicted, dtype=float)
        frame["__error__"] = error
        # a small holdout: few, small trees; a large one: many slow-learning trees, all of them
        # (no early stopping) — docs/benchmarks.md has the settings tried against NannyML's DLE
        size = (
            {"max_iter": 50, "max_leaf_nodes": 15, "min_samples_leaf": 20}
            if len(frame) < ERROR_MODEL_ROWS
            else {"max_iter": 300, "learning_rate": 0.05, "early_stopping": False}
        )
        estimator = HistGradientBoostingRegressor(random_state=SEED, **size)
        model = fit_pipeline(frame, "__error__", estimator, None)
        return cls(
            model=model,
            mae=float(error.mean()),
            rmse=float(np.sqrt(np.mean(error**2))),
            spread=float(error.std(ddof=1)) if len(error) > 1 else 0.0,
            rows=len(error),
        )

    def errors(self, features: pd.DataFrame, predicted: np.ndarray) -> np.ndarray:
        """Each row's expected absolute error."""
        frame = features.copy()
        frame[PREDICTION] = np.asarray(predicted, dtype=float)
        return np.clip(np.asarray(self.model.predict(frame), dtype=float), 0.0, None)

    def to_dict(self) -> dict[str, Any]:
        import skops.io

        return {
            "skops": base64.b64encode(skops.io.dumps(self.model)).decode("ascii"),
            "mae": self.mae,
            "rmse": self.rmse,
            "spread": self.spread,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorModel:
        import skops.io

        model = skops.io.loads(base64.b64decode(data["skops"]), trusted=ERROR_MODEL_TYPES)
        return cls(
            model, float(data["mae"]), float(data["rmse"]), float(data["spread"]), int(data["rows"])
        )
