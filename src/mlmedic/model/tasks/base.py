"""What a task is (#31): everything that differs between classification and regression, as one
object with one implementation per task — never a task name tested across the code.

A ``Task`` owns its metric and direction, the training target's form, the holdout split and
metrics, what a model answers (probabilities, or values as one column) and what a sane answer
is, the paired test of two models on the same rows, agreement between two models' answers, a
label sent as feedback, a booster's estimator, and the figures a replay reports. A third task
is one module here: a subclass, registered in ``mlmedic.model.tasks.TASKS`` (docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlmedic.core.evidence import OneSided
from mlmedic.data.contract import Kind

SEED = 42  # every seeded estimator and split of mlmedic's


def fit_pipeline(frame: pd.DataFrame, target: str, model: Any, weights: Any) -> Pipeline:
    """Ordinal-encoded categories (object columns) and numbers into ``model``, fitted."""
    features = frame.drop(columns=[target])
    categorical = [c for c in features.columns if features[c].dtype == object]
    numeric = [c for c in features.columns if c not in categorical]
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        dtype=np.float64,
    )
    prepare = ColumnTransformer(
        [("categories", encoder, categorical), ("numbers", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    model.set_params(categorical_features=list(range(len(categorical))) or None)
    pipeline = Pipeline([("prepare", prepare), ("model", model)])
    if weights is not None:
        return pipeline.fit(features, frame[target], model__sample_weight=weights)
    return pipeline.fit(features, frame[target])


class Task(ABC):
    """One kind of prediction problem."""

    name: ClassVar[str]
    metric: ClassVar[str]  # the score a window, a replay and the dashboard report
    higher_is_better: ClassVar[bool]
    target_kind: ClassVar[Kind]  # the data contract's kind for the target column
    default_trainer: ClassVar[str]
    model_methods: ClassVar[tuple[str, ...]]  # what a trained model must offer
    outputs_offered: ClassVar[tuple[str, ...]]  # the v2 outputs a model of this task answers
    probabilities: ClassVar[bool]  # whether its models answer class probabilities
    fast_path_rtol: ClassVar[float]  # how closely the serving fast path must agree

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # ------------------------------------------------------------------ training
    @abstractmethod
    def target_values(self, values: pd.Series) -> np.ndarray:
        """The target column as a trainer is given it."""

    @abstractmethod
    def stratify(self, labels: pd.Series) -> pd.Series | None:
        """What the holdout split is stratified by (None: a random split)."""

    @abstractmethod
    def naive(self, labels: pd.Series) -> float | None:
        """The naive baseline a model is compared with (a regression's training mean)."""

    @abstractmethod
    def scored(
        self, model: Any, holdout: pd.DataFrame, target: str, *, naive: float | None
    ) -> tuple[dict[str, float], np.ndarray]:
        """Holdout metrics, and per row what the paired test compares (``per_row``)."""

    @abstractmethod
    def booster(self, library: Any, name: str, params: dict[str, Any]) -> Any:
        """The estimator of ``library`` (``lightgbm`` or ``xgboost``) for this task."""

    # ------------------------------------------------------------------ answers
    @abstractmethod
    def outputs(self, model: Any, features: pd.DataFrame) -> np.ndarray:
        """A model's outputs: class probabilities, or a regression's values as one column."""

    @abstractmethod
    def answers(self, outputs: np.ndarray, classes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(the predictions, the outputs as the server returns them)."""

    @abstractmethod
    def canary_problem(self, row: np.ndarray, classes: list[Any]) -> str | None:
        """What is wrong with one row of outputs (None: a sane answer)."""

    @abstractmethod
    def feedback(self, value: Any, classes: list[Any]) -> str:
        """A true label sent as feedback, as the feedback log keeps it: one of ``classes``, or
        a number (``ValueError`` saying why it is neither)."""

    # ------------------------------------------------------------------ evidence
    @abstractmethod
    def per_row(self, predicted: Any, truth: Any) -> np.ndarray:
        """What the paired test compares, row by row: right or wrong, or the absolute error."""

    @abstractmethod
    def versus(self, a: np.ndarray, b: np.ndarray, *, confidence: float) -> OneSided:
        """Model A against model B on the same rows (``per_row`` of each)."""

    @abstractmethod
    def advantage_bound(self, a: np.ndarray, b: np.ndarray, z: float) -> float:
        """The one-sided lower bound of A's advantage over B (accuracy points, or the MAE
        reduction as a share of B's MAE) at the normal quantile ``z``."""

    @abstractmethod
    def agree(self, a: pd.Series, b: pd.Series) -> np.ndarray:
        """Row by row, whether two models gave the same answer."""

    def best(self, scores: Iterable[float]) -> float:
        """The best of ``scores`` by this task's direction."""
        return max(scores) if self.higher_is_better else min(scores)

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats ``b``."""
        return a > b if self.higher_is_better else a < b

    # ------------------------------------------------------------------ reports
    @abstractmethod
    def window_fields(self, score: float | None, baselines: dict[str, float | None]) -> dict:
        """A replay window's score fields (``WindowOutcome``)."""
