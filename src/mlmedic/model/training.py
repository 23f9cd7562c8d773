"""Training: the trainer protocol, the default scikit-learn pipelines, holdout metrics.

A trainer is any function ``(frame, target) -> fitted estimator`` whose estimator has ``predict``
(and, for classification, ``predict_proba``); a user names theirs as ``package.module:function``.
The defaults are scikit-learn Pipelines: ordinal-encoded categories and numeric columns into a
HistGradientBoostingClassifier (classification) or HistGradientBoostingRegressor (regression),
with fixed seeds so results reproduce. The task is the contract's (``regression``).

Examples:
    >>> from mlmedic.data.datasets import make_churn, TARGET
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
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from mlmedic.core.errors import TrainingError
from mlmedic.data.contract import DataContract
from mlmedic.model import boosters
from mlmedic.model.tasks import CLASSIFICATION, REGRESSION, SEED, Task, fit_pipeline, task_of

DEFAULT_TRAINER = CLASSIFICATION.default_trainer
DEFAULT_REGRESSOR = REGRESSION.default_trainer
BUILT_IN = (DEFAULT_TRAINER, DEFAULT_REGRESSOR)
# the names the built-in trainers had before the layers were folders (#31): a config file or a
# version's tag may still say them, so they are read as the names of today
FORMER_NAMES = {
    "mlmedic.training:default_trainer": DEFAULT_TRAINER,
    "mlmedic.training:default_regressor": DEFAULT_REGRESSOR,
}
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
    task: Task = CLASSIFICATION


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


def load_trainer(path: str | None, task: Task = CLASSIFICATION) -> tuple[str, Trainer]:
    """Import ``package.module:function`` (None: the task's default); a clear
    ``TrainingError`` if it cannot be used."""
    path = FORMER_NAMES.get(path or "", path)
    if path in (None, *BUILT_IN):
        path = task.default_trainer
    assert path is not None
    if path in ("lightgbm", "xgboost"):  # built in, with the optional extra of their name
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
    frame: pd.DataFrame, target: str, *, split: bool = True, task: Task = CLASSIFICATION
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
    if not split or task.stratify(labels) is None:
        return
    holdout = max(1, round(len(frame) * HOLDOUT_SHARE))
    if counts.min() < 2 or holdout < len(counts):
        raise TrainingError(
            f"too few rows to split into training and holdout data stratified by '{target}': "
            f"the rarest label has {int(counts.min())} row(s)"
        )


def split(
    frame: pd.DataFrame, target: str, *, seed: int = SEED, task: Task = CLASSIFICATION
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training / holdout split (80/20), seeded; stratified as the task says (by the label
    for classification)."""
    _check_trainable(frame, target, task=task)
    train_part, holdout = train_test_split(
        frame,
        test_size=HOLDOUT_SHARE,
        random_state=seed,
        stratify=task.stratify(frame[target]),
    )
    return train_part, holdout


def evaluate(
    model: Classifier,
    holdout: pd.DataFrame,
    target: str,
    *,
    task: Task = CLASSIFICATION,
    naive: float | None = None,
) -> dict[str, float]:
    """Accuracy, F1 (binary: of the positive, later-sorted label; else macro) and ROC AUC; for
    a regression (``naive``: the training mean) RMSE, MAE, R² and the naive baseline's RMSE."""
    return scored(model, holdout, target, task=task, naive=naive)[0]


def scored(
    model: Classifier,
    holdout: pd.DataFrame,
    target: str,
    *,
    task: Task = CLASSIFICATION,
    naive: float | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """``evaluate``'s metrics and, per row, what the paired test compares (``Task.per_row``:
    whether it was predicted right, or a regression's absolute error)."""
    return task.scored(model, holdout, target, naive=naive)


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
    task = task_of(contract.task)
    name, function = load_trainer(trainer, task)
    if sample_weight is not None and not takes_weights(function):
        raise TrainingError(f"trainer '{name}' takes no sample_weight: it cannot weigh rows")
    data = model_frame(frame, contract)
    data[target] = task.target_values(frame[target])
    weights = None
    if holdout is None:
        if sample_weight is not None:
            data["__weight__"] = np.asarray(sample_weight, dtype=float)
        train_part, held = split(data, target, seed=seed, task=task)
        if sample_weight is not None:
            weights = train_part.pop("__weight__").to_numpy()
            held = held.drop(columns="__weight__")
    else:
        _check_trainable(data, target, split=False)
        train_part = data
        held = model_frame(holdout, contract)
        held[target] = task.target_values(holdout[target])
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
    for method in task.model_methods:
        if not callable(getattr(model, method, None)):
            raise TrainingError(f"trainer '{name}' returned a model without {method}()")
    naive = task.naive(train_part[target])
    try:
        metrics = evaluate(model, held, target, task=task, naive=naive)
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
        task=task,
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
