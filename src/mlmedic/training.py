"""Training: the trainer protocol, the default scikit-learn pipelines, holdout metrics.

A trainer is any function ``(frame, target) -> fitted estimator`` whose estimator has ``predict``
(and, for classification, ``predict_proba``); a user names theirs as ``package.module:function``.
The defaults are scikit-learn Pipelines: ordinal-encoded categories and numeric columns into a
HistGradientBoostingClassifier (classification) or HistGradientBoostingRegressor (regression),
with fixed seeds so results reproduce. The task is the contract's (``regression``).

Examples:
    >>> from mlmedic.datasets import make_churn, TARGET
    >>> from mlmedic.data.contract import DataContract
    >>> frame = make_churn(600, seed=1)
    >>> contract = DataContract(target=TARGET).fit(frame)
    >>> result = train(frame, contract, seed=0)
    >>> sorted(result.metrics)
    ['accuracy', 'f1', 'roc_auc']
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlmedic.data.contract import DataContract
from mlmedic.errors import TrainingError
from mlmedic.regression import metrics as regression_metrics

DEFAULT_TRAINER = "mlmedic.training:default_trainer"
DEFAULT_REGRESSOR = "mlmedic.training:default_regressor"
BUILT_IN = (DEFAULT_TRAINER, DEFAULT_REGRESSOR)
SEED = 42
MIN_ROWS = 20
HOLDOUT_SHARE = 0.2

# The exact types the default pipeline stores beyond skops' built-in safe list, found with
# skops.io.get_untrusted_types on a fitted pipeline (a test keeps this list honest).
DEFAULT_SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


class Classifier(Protocol):
    """What a trained model must offer."""

    def predict(self, X: pd.DataFrame) -> Any: ...

    def predict_proba(self, X: pd.DataFrame) -> Any: ...


class Trainer(Protocol):
    """A training function: the training frame (features and target) and the target's name. A
    trainer that also takes ``sample_weight`` (one weight per row) can train the
    ``recency_weighted`` retraining recipe; one that does not is skipped for it."""

    def __call__(self, frame: pd.DataFrame, target: str) -> Classifier: ...


def takes_weights(function: Any, name: str = "sample_weight") -> bool:
    """Whether a trainer accepts ``sample_weight`` (or ``name``: ``task`` — classification or
    regression), by name or through ``**kwargs``."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


@dataclass
class TrainResult:
    """A fitted model, its holdout metrics, and what it was trained on."""

    model: Classifier
    metrics: dict[str, float]
    features: list[str]
    holdout: pd.DataFrame
    train_rows: int
    trainer: str
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    naive: float | None = None  # a regression's training mean (its naive baseline)


def model_features(contract: DataContract) -> list[str]:
    """The columns a model sees: numeric and categorical features (not time, text or target,
    nor the time column however it is written)."""
    return [
        name
        for name, spec in contract.columns_.items()
        if not spec.is_target
        and spec.kind in ("numeric", "categorical")
        and name != contract.time_column
    ]


def model_frame(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """Features in model form: whole-number columns as int64 (as clients send them), other
    numbers as float64, categories as strings."""
    columns: dict[str, Any] = {}
    for name in model_features(contract):
        spec = contract.columns_[name]
        series = frame[name]
        if spec.kind == "numeric":
            values = pd.to_numeric(series, errors="coerce").astype(np.float64)
            whole = spec.integer and values.notna().all() and (values == values.round()).all()
            columns[name] = values.astype(np.int64) if whole else values
        else:
            columns[name] = series.map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    return pd.DataFrame(columns, index=frame.index)


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


def default_trainer(
    frame: pd.DataFrame, target: str, sample_weight: np.ndarray | None = None
) -> Pipeline:
    """Ordinal-encoded categories + numbers into a HistGradientBoostingClassifier (seeded);
    ``sample_weight``: one weight per row (the recency-weighted retraining recipe)."""
    model = HistGradientBoostingClassifier(random_state=SEED)
    return fit_pipeline(frame, target, model, sample_weight)


def default_regressor(
    frame: pd.DataFrame, target: str, sample_weight: np.ndarray | None = None
) -> Pipeline:
    """The same pipeline into a HistGradientBoostingRegressor (squared error, seeded)."""
    model = HistGradientBoostingRegressor(random_state=SEED)
    return fit_pipeline(frame, target, model, sample_weight)


def load_trainer(path: str | None, task: str = "classification") -> tuple[str, Trainer]:
    """Import ``package.module:function`` (None: the task's default); a clear
    ``TrainingError`` if it cannot be used."""
    if path in (None, *BUILT_IN):
        path = DEFAULT_REGRESSOR if task == "regression" else DEFAULT_TRAINER
    assert path is not None
    if path in ("lightgbm", "xgboost"):  # built in, with the optional extra of their name
        from mlmedic import boosters

        boosters.require(path)
        return path, getattr(boosters, f"{path}_trainer")
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise TrainingError(f"trainer '{path}': expected the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TrainingError(
            f"trainer '{path}': cannot import module '{module_name}' ({type(exc).__name__}: {exc})"
        ) from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise TrainingError(
            f"trainer '{path}': module '{module_name}' has no function '{attribute}'"
        )
    return path, function


def _check_trainable(
    frame: pd.DataFrame, target: str, *, split: bool = True, regression: bool = False
) -> None:
    if target not in frame.columns:
        raise TrainingError(f"target column '{target}' not found in the training data")
    labels = frame[target]
    if labels.isna().any():
        raise TrainingError(f"target column '{target}' has missing values")
    counts = labels.value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "nothing"
        raise TrainingError(
            f"target column '{target}' is constant ({only!r} in every row): nothing to learn"
        )
    if len(frame) < MIN_ROWS:
        raise TrainingError(
            f"too few rows to train and validate: {len(frame)} (at least {MIN_ROWS} needed)"
        )
    if not split or regression:
        return
    holdout = max(1, round(len(frame) * HOLDOUT_SHARE))
    if counts.min() < 2 or holdout < len(counts):
        raise TrainingError(
            f"too few rows to split into training and holdout data stratified by '{target}': "
            f"the rarest label has {int(counts.min())} row(s)"
        )


def split(
    frame: pd.DataFrame, target: str, *, seed: int = SEED, regression: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training / holdout split (80/20), seeded; stratified by the label for classification."""
    _check_trainable(frame, target, regression=regression)
    train_part, holdout = train_test_split(
        frame,
        test_size=HOLDOUT_SHARE,
        random_state=seed,
        stratify=None if regression else frame[target],
    )
    return train_part, holdout


def evaluate(
    model: Classifier, holdout: pd.DataFrame, target: str, *, naive: float | None = None
) -> dict[str, float]:
    """Accuracy, F1 (binary: of the positive, later-sorted label; else macro) and ROC AUC; for
    a regression (``naive``: the training mean) RMSE, MAE, R² and the naive baseline's RMSE."""
    return scored(model, holdout, target, naive=naive)[0]


def scored(
    model: Classifier, holdout: pd.DataFrame, target: str, *, naive: float | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """``evaluate``'s metrics and, per row, whether it was predicted right — or, for a
    regression (``naive`` given), its absolute error (for paired tests)."""
    features = holdout.drop(columns=[target])
    if naive is not None:
        truth_values = holdout[target].to_numpy(dtype=float)
        values = np.asarray(model.predict(features), dtype=float)
        return regression_metrics(truth_values, values, naive), np.abs(values - truth_values)
    truth = holdout[target].to_numpy()
    predicted = np.asarray(model.predict(features))
    probabilities = np.asarray(model.predict_proba(features))
    labels = np.asarray(getattr(model, "classes_", np.unique(truth)))
    metrics = {"accuracy": float(accuracy_score(truth, predicted))}
    # ROC AUC needs both sides of a comparison: undefined (NaN, not a warning) when the rows
    # hold a single class — a small holdout of the newest rows can
    several = len(pd.unique(truth)) > 1
    if len(labels) == 2:
        metrics["f1"] = float(f1_score(truth, predicted, pos_label=labels[1], zero_division=0))
        try:
            positive = truth == labels[1]
            metrics["roc_auc"] = (
                float(roc_auc_score(positive, probabilities[:, 1]))
                if several and positive.any() and not positive.all()
                else float("nan")
            )
        except ValueError:
            metrics["roc_auc"] = float("nan")
    else:
        metrics["f1"] = float(f1_score(truth, predicted, average="macro", zero_division=0))
        try:
            metrics["roc_auc"] = (
                float(roc_auc_score(truth, probabilities, multi_class="ovr", labels=labels))
                if several
                else float("nan")
            )
        except ValueError:
            metrics["roc_auc"] = float("nan")
    return metrics, np.asarray(predicted == truth, dtype=bool)


def positive_rate(model: Classifier, truth: pd.Series) -> float | None:
    """The share of the positive (later-sorted) class among ``truth`` for a binary model
    (None otherwise): the prevalence the gate's F1 floor follows."""
    labels = list(getattr(model, "classes_", []))
    if len(labels) != 2 or not len(truth):
        return None
    return float(np.mean(np.asarray(truth == labels[1], dtype=bool)))


def train(
    frame: pd.DataFrame,
    contract: DataContract,
    *,
    trainer: str | None = None,
    seed: int = SEED,
    retries: int = 0,
    on_retry: Callable[[int, BaseException], None] | None = None,
    holdout: pd.DataFrame | None = None,
    sample_weight: np.ndarray | None = None,
) -> TrainResult:
    """Split, fit with the trainer (retrying up to ``retries`` times), evaluate on the holdout.

    ``holdout``: labelled rows to evaluate on instead of a random 20 % of ``frame`` (a retrain's
    newest rows, held out by time); the model then learns from every row of ``frame``.
    ``sample_weight``: a weight per row of ``frame`` (the trainer must accept it)."""
    target = contract.target
    if target is None:
        raise TrainingError("the data contract has no target column; pass --target")
    regression = contract.task == "regression"
    name, function = load_trainer(trainer, contract.task)
    if sample_weight is not None and not takes_weights(function):
        raise TrainingError(f"trainer '{name}' takes no sample_weight: it cannot weigh rows")
    data = model_frame(frame, contract)
    data[target] = (
        pd.to_numeric(frame[target]).to_numpy(dtype=float)
        if regression
        else frame[target].to_numpy()
    )
    weights = None
    if holdout is None:
        if sample_weight is not None:
            data["__weight__"] = np.asarray(sample_weight, dtype=float)
        train_part, held = split(data, target, seed=seed, regression=regression)
        if sample_weight is not None:
            weights = train_part.pop("__weight__").to_numpy()
            held = held.drop(columns="__weight__")
    else:
        _check_trainable(data, target, split=False)
        train_part = data
        held = model_frame(holdout, contract)
        held[target] = (
            pd.to_numeric(holdout[target]).to_numpy(dtype=float)
            if regression
            else holdout[target].to_numpy()
        )
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    start = time.perf_counter()
    attempt = 0
    told: dict[str, Any] = {"task": contract.task} if takes_weights(function, "task") else {}
    if weights is not None:
        told["sample_weight"] = weights  # checked by takes_weights above
    while True:
        attempt += 1
        try:
            model = function(train_part.copy(), target, **told)
            break
        except Exception as exc:
            if attempt > retries:
                raise TrainingError(
                    f"trainer '{name}' failed after {attempt} attempt(s): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if on_retry is not None:
                on_retry(attempt, exc)
    for method in ("predict",) if regression else ("predict", "predict_proba"):
        if not callable(getattr(model, method, None)):
            raise TrainingError(f"trainer '{name}' returned a model without {method}()")
    naive = float(train_part[target].mean()) if regression else None
    try:
        metrics = evaluate(model, held, target, naive=naive)
    except Exception as exc:
        raise TrainingError(
            f"trainer '{name}': its model fails on the holdout ({type(exc).__name__}: {exc})"
        ) from exc
    return TrainResult(
        model=model,
        metrics=metrics,
        features=[c for c in data.columns if c not in (target, "__weight__")],
        holdout=held,
        train_rows=len(train_part),
        trainer=name,
        seconds=time.perf_counter() - start,
        naive=naive,
        params={
            "trainer": name,
            "task": contract.task,
            "seed": seed,
            "train_rows": len(train_part),
            "holdout_rows": len(held),
            "holdout": "random" if holdout is None else "newest rows",
            "weighted": sample_weight is not None,
            "attempts": attempt,
        },
    )
