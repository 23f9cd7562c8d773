"""Classification: class labels, accuracy (higher is better), class probabilities, McNemar's
exact test on the rows where one model is right (``evidence.paired``)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from mlmedic.core.evidence import OneSided, paired
from mlmedic.core.jsonvalues import plain
from mlmedic.core.labels import label_for, label_key
from mlmedic.data.contract import Kind
from mlmedic.model.tasks.base import SEED, Task


class Classification(Task):
    name: ClassVar[str] = "classification"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    target_kind: ClassVar[Kind] = "categorical"
    default_trainer: ClassVar[str] = "mlmedic.model.training:default_trainer"
    model_methods: ClassVar[tuple[str, ...]] = ("predict", "predict_proba")
    outputs_offered: ClassVar[tuple[str, ...]] = ("predict", "predict_proba")
    probabilities: ClassVar[bool] = True
    fast_path_rtol: ClassVar[float] = 0.0

    # ------------------------------------------------------------------ training
    def target_values(self, values: pd.Series) -> np.ndarray:
        return values.to_numpy()

    def stratify(self, labels: pd.Series) -> pd.Series | None:
        return labels

    def naive(self, labels: pd.Series) -> float | None:
        return None

    def scored(
        self, model: Any, holdout: pd.DataFrame, target: str, *, naive: float | None
    ) -> tuple[dict[str, float], np.ndarray]:
        """Accuracy, F1 (binary: of the positive, later-sorted label; else macro) and ROC AUC,
        and per row whether it was predicted right."""
        features = holdout.drop(columns=[target])
        truth = holdout[target].to_numpy()
        predicted = np.asarray(model.predict(features))
        probabilities = np.asarray(model.predict_proba(features))
        labels = np.asarray(getattr(model, "classes_", np.unique(truth)))
        metrics = {"accuracy": float(accuracy_score(truth, predicted))}
        # ROC AUC needs both sides of a comparison: undefined (NaN, not a warning) when the
        # rows hold a single class — a small holdout of the newest rows can
        several = len(pd.unique(truth)) > 1
        if len(labels) == 2:
            metrics["f1"] = float(f1_score(truth, predicted, pos_label=labels[1], zero_division=0))
            positive = truth == labels[1]
            metrics["roc_auc"] = _auc(
                lambda: roc_auc_score(positive, probabilities[:, 1]),
                several and bool(positive.any()) and not bool(positive.all()),
            )
        else:
            metrics["f1"] = float(f1_score(truth, predicted, average="macro", zero_division=0))
            metrics["roc_auc"] = _auc(
                lambda: roc_auc_score(truth, probabilities, multi_class="ovr", labels=labels),
                several,
            )
        return metrics, np.asarray(predicted == truth, dtype=bool)

    def booster(self, library: Any, name: str, params: dict[str, Any]) -> Any:
        estimator = {"lightgbm": "LGBMClassifier", "xgboost": "XGBClassifier"}[name]
        return getattr(library, estimator)(random_state=SEED, **params)

    # ------------------------------------------------------------------ answers
    def outputs(self, model: Any, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(features))

    def answers(self, outputs: np.ndarray, classes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(classes, dtype=object)[outputs.argmax(axis=1)], outputs

    def canary_problem(self, row: np.ndarray, classes: list[Any]) -> str | None:
        if row.shape[0] != len(classes) or not np.all(np.isfinite(row)):
            return "canary prediction is not a probability vector"
        if not math.isclose(float(row.sum()), 1.0, abs_tol=1e-6):
            return f"canary probabilities sum to {row.sum():.4f}"
        return None

    def feedback(self, value: Any, classes: list[Any]) -> str:
        label = label_for(value, classes)
        if label is None:
            known = ", ".join(repr(plain(c)) for c in classes)
            raise ValueError(
                f"{value!r} is not one of the model's classes ({known}), as its value or its text"
            )
        return label_key(label) or ""

    # ------------------------------------------------------------------ evidence
    def per_row(self, predicted: Any, truth: Any) -> np.ndarray:
        keys = pd.Series(truth).map(label_key).to_numpy()
        return np.asarray(pd.Series(predicted).map(label_key).to_numpy() == keys, dtype=bool)

    def versus(self, a: np.ndarray, b: np.ndarray, *, confidence: float) -> OneSided:
        return paired(a, b, confidence=confidence)

    def advantage_bound(self, a: np.ndarray, b: np.ndarray, z: float) -> float:
        """The paired accuracy difference's lower bound (McNemar's discordant counts)."""
        rows = len(a)
        better, worse = int(np.sum(a & ~b)), int(np.sum(~a & b))
        spread = math.sqrt(max(better + worse - (better - worse) ** 2 / rows, 0.0)) / rows
        return (better - worse) / rows - z * spread

    def agree(self, a: pd.Series, b: pd.Series) -> np.ndarray:
        return (a.map(label_key) == b.map(label_key)).to_numpy()

    # ------------------------------------------------------------------ reports
    def window_fields(self, score: float | None, baselines: dict[str, float | None]) -> dict:
        return {
            "accuracy": score,
            "never_heal_accuracy": baselines.get("never heal"),
            "retrain_every_window_accuracy": baselines.get("retrain every window"),
            "mae": None,
        }


def _auc(compute: Any, defined: bool) -> float:
    if not defined:
        return float("nan")
    try:
        return float(compute())
    except ValueError:
        return float("nan")


CLASSIFICATION = Classification()
