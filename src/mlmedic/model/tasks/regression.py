"""Regression: quantities, MAE (lower is better), values answered as one column, the
paired test of absolute errors, and the label-free error estimate.

- **Metrics.** RMSE, MAE, R² and the RMSE of the naive baseline (the training mean for every
  row), on the same rows.
- **The label-free estimate** (as NannyML's DLE): a model of the absolute error, fitted on the
  version's holdout from the features and the prediction, predicts each row's error; their mean
  estimates the MAE. Its 95 % interval: the sampling error of a window's MAE and of the holdout
  it was fitted on (the holdout's spread of absolute errors), widened by the same shift
  allowance as the classification estimate (``performance.shift_allowance``).
- **Evidence.** A window's error against validation: a one-sided Welch test of the mean
  absolute error (``rise``, an ``evidence.Shortfall`` as a drop in accuracy is). Two models on
  the same rows: a paired one-sided t-test of their absolute errors (``paired_errors``, the
  Diebold-Mariano test with absolute loss).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import skops.io
from scipy import stats
from sklearn.ensemble import HistGradientBoostingRegressor

from mlmedic.core.evidence import OneSided, Shortfall
from mlmedic.data.contract import Kind
from mlmedic.model.tasks.base import SEED, Task, fit_pipeline

ERROR_MODEL_ROWS = 5000  # holdout rows from which the model of the error gets its full size
# the exact types the stored model of the error needs beyond skops' safe list (a test keeps
# this honest, for both sizes)
ERROR_MODEL_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


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


def rise(
    observed: float,
    spread: float,
    rows: int,
    expected: float,
    expected_spread: float,
    expected_rows: int,
    *,
    confidence: float,
) -> Shortfall:
    """Whether the MAE ``observed`` (absolute errors of standard deviation ``spread`` on
    ``rows`` rows) is significantly above ``expected`` (validation's): one-sided Welch z-test.

    >>> rise(1.3, 1.0, 400, 1.0, 1.0, 400, confidence=0.95).significant
    True
    >>> rise(1.3, 1.0, 20, 1.0, 1.0, 400, confidence=0.95).significant
    False
    """
    size = (observed - expected) / expected if expected > 0 else math.inf  # 0.1: a tenth more
    if rows <= 1 or not math.isfinite(observed) or not math.isfinite(expected):
        return Shortfall(observed, rows, expected, expected_rows, 1.0, False, size)
    variance = spread**2 / rows + (expected_spread**2 / expected_rows if expected_rows else 0.0)
    if variance <= 0:
        p = 0.0 if observed > expected else 1.0
    else:
        p = float(stats.norm.sf((observed - expected) / math.sqrt(variance)))
    return Shortfall(observed, rows, expected, expected_rows, p, p < 1.0 - confidence, size)


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
        return {
            "skops": base64.b64encode(skops.io.dumps(self.model)).decode("ascii"),
            "mae": self.mae,
            "rmse": self.rmse,
            "spread": self.spread,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorModel:
        model = skops.io.loads(base64.b64decode(data["skops"]), trusted=ERROR_MODEL_TYPES)
        return cls(
            model, float(data["mae"]), float(data["rmse"]), float(data["spread"]), int(data["rows"])
        )


class Regression(Task):
    name: ClassVar[str] = "regression"
    metric: ClassVar[str] = "mae"
    higher_is_better: ClassVar[bool] = False
    target_kind: ClassVar[Kind] = "numeric"
    default_trainer: ClassVar[str] = "mlmedic.model.training:default_regressor"
    model_methods: ClassVar[tuple[str, ...]] = ("predict",)
    outputs_offered: ClassVar[tuple[str, ...]] = ("predict",)
    probabilities: ClassVar[bool] = False
    fast_path_rtol: ClassVar[float] = 1e-12

    # ------------------------------------------------------------------ training
    def target_values(self, values: pd.Series) -> np.ndarray:
        return pd.to_numeric(values).to_numpy(dtype=float)

    def stratify(self, labels: pd.Series) -> pd.Series | None:
        return None

    def naive(self, labels: pd.Series) -> float | None:
        return float(labels.astype(float).mean())

    def scored(
        self, model: Any, holdout: pd.DataFrame, target: str, *, naive: float | None
    ) -> tuple[dict[str, float], np.ndarray]:
        """RMSE, MAE, R² and the naive baseline's RMSE, and per row the absolute error."""
        truth = holdout[target].to_numpy(dtype=float)
        values = np.asarray(model.predict(holdout.drop(columns=[target])), dtype=float)
        baseline = float(truth.mean()) if naive is None and len(truth) else naive or 0.0
        return metrics(truth, values, baseline), np.abs(values - truth)

    def booster(self, library: Any, name: str, params: dict[str, Any]) -> Any:
        estimator = {"lightgbm": "LGBMRegressor", "xgboost": "XGBRegressor"}[name]
        return getattr(library, estimator)(random_state=SEED, **params)

    # ------------------------------------------------------------------ answers
    def outputs(self, model: Any, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(features), dtype=float).reshape(-1, 1)

    def answers(self, outputs: np.ndarray, classes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(outputs, dtype=float).reshape(-1, 1)
        return values[:, 0], values

    def canary_problem(self, row: np.ndarray, classes: list[Any]) -> str | None:
        if row.shape != (1,) or not np.all(np.isfinite(row)):
            return "canary prediction is not a number"
        return None

    def feedback(self, value: Any, classes: list[Any]) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ValueError(f"{value!r} is not a number (a regression)")
        if abs(value) == float("inf"):
            raise ValueError(f"{value!r} is not a finite number")
        return repr(float(value))

    # ------------------------------------------------------------------ evidence
    def per_row(self, predicted: Any, truth: Any) -> np.ndarray:
        return np.abs(np.asarray(predicted, dtype=float) - np.asarray(truth, dtype=float))

    def versus(self, a: np.ndarray, b: np.ndarray, *, confidence: float) -> OneSided:
        return paired_errors(a, b, confidence=confidence)

    def advantage_bound(self, a: np.ndarray, b: np.ndarray, z: float) -> float:
        """The lower bound of the MAE reduction (B's error less A's), as a share of B's MAE."""
        gap = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)  # positive: A is closer
        spread = float(np.std(gap, ddof=1)) if len(gap) > 1 else 0.0
        scale = max(float(np.mean(b)), 1e-12)
        return float((gap.mean() - z * spread / math.sqrt(len(gap))) / scale)

    def agree(self, a: pd.Series, b: pd.Series) -> np.ndarray:
        return np.isclose(a.astype(float), b.astype(float))

    # ------------------------------------------------------------------ reports
    def window_fields(self, score: float | None, baselines: dict[str, float | None]) -> dict:
        return {
            "accuracy": None,
            "never_heal_accuracy": None,
            "retrain_every_window_accuracy": None,
            "mae": score,
        }


REGRESSION = Regression()
