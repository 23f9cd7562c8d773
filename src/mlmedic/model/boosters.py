"""LightGBM and XGBoost as built-in trainers: ``--trainer lightgbm`` and ``--trainer xgboost``.

Optional extras (``pip install "mlmedic[lightgbm]"`` / ``"mlmedic[xgboost]"``); without the
library the trainer is refused before any work, with the line that says how to install it. Both
train on categorical features natively (pandas categoricals: LightGBM's categorical splits,
XGBoost's ``enable_categorical``), for a classification (binary or multiclass) or a regression,
with fixed seeds and one thread (a worker process is the unit of parallelism, as for the trees of
the default model). The model is a ``NativeBooster`` (``model.mlmedic_pyfunc``): the booster in
its own format (LightGBM's text model, XGBoost's UBJSON) with the features, categories and
classes, stored by skops as plain values — never pickled — and scored by plain MLflow through
the same small pyfunc as the default model.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.errors import TrainingError
from mlmedic.core.jsonvalues import plain
from mlmedic.model.mlmedic_pyfunc import NativeBooster
from mlmedic.model.tasks import task_of

LIBRARIES = {"lightgbm": "lightgbm", "xgboost": "xgboost"}


def require(library: str) -> Any:
    """Import ``library`` or refuse with the extra that installs it."""
    try:
        return importlib.import_module(library)
    except ImportError as exc:
        raise TrainingError(
            f"trainer '{library}' needs the {library} package: pip install "
            f'"mlmedic[{library}]" ({type(exc).__name__}: {exc})'
        ) from exc


def _prepared(
    frame: pd.DataFrame, target: str
) -> tuple[list[str], dict[str, list[Any]], pd.DataFrame]:
    features = [c for c in frame.columns if c != target]
    categories = {
        c: sorted({str(v) for v in frame[c].dropna()})
        for c in features
        if frame[c].dtype == object or isinstance(frame[c].dtype, pd.CategoricalDtype)
    }
    booster = NativeBooster.__new__(NativeBooster)  # only its frame(): no booster yet
    booster.features, booster.categories = features, categories
    return features, categories, booster.frame(frame)


def lightgbm_trainer(
    frame: pd.DataFrame,
    target: str,
    sample_weight: np.ndarray | None = None,
    task: str = "classification",
) -> NativeBooster:
    """A LightGBM model (100 trees, LightGBM's defaults otherwise), categories native."""
    lightgbm = require("lightgbm")
    features, categories, data = _prepared(frame, target)
    told = task_of(task)
    model = told.booster(lightgbm, "lightgbm", {"n_jobs": 1, "verbose": -1})
    model.fit(data, told.target_values(frame[target]), sample_weight=sample_weight)
    classes = [plain(c) for c in getattr(model, "classes_", [])]
    return NativeBooster(
        "lightgbm", model.booster_.model_to_string(), features, categories, classes
    )


def xgboost_trainer(
    frame: pd.DataFrame,
    target: str,
    sample_weight: np.ndarray | None = None,
    task: str = "classification",
) -> NativeBooster:
    """An XGBoost model (``hist``, 100 trees, XGBoost's defaults otherwise), categories native;
    class labels are encoded as 0..k-1 for it and kept in order."""
    xgboost = require("xgboost")
    features, categories, data = _prepared(frame, target)
    common = {"n_jobs": 1, "tree_method": "hist", "enable_categorical": True, "n_estimators": 100}
    told = task_of(task)
    model = told.booster(xgboost, "xgboost", common)
    labels = told.target_values(frame[target])
    classes: list[Any] = []
    if told.probabilities:  # XGBoost learns classes as 0..k-1: their labels kept in order
        found, labels = np.unique(labels, return_inverse=True)
        classes = [plain(c) for c in found]
    model.fit(data, labels, sample_weight=sample_weight)
    native = bytes(model.get_booster().save_raw(raw_format="ubj"))
    return NativeBooster("xgboost", native, features, categories, classes)
