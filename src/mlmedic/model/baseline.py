"""A version's baseline: what monitoring compares production with, stored with the version.

``drift_reference`` builds it from production-shaped rows — the rows the version is expected to
see — and the version's holdout: the feature profile (calibrated on windows of those rows), the
holdout's prediction profile, the calibration of confidence to accuracy for the label-free
estimate, each feature's permutation importance, and the validation accuracy with the number of
rows it was measured on (the policy tests a window's drop against it).

For a first version the rows are the training input without its quarantined rows; for a
retrained one, the newest labelled production rows — the current distribution — so the alarm
clears once the model has caught up with a shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.labels import match_labels
from mlmedic.data.contract import DataContract
from mlmedic.data.drift import ReferenceProfile
from mlmedic.model.performance import Calibration
from mlmedic.model.tasks.regression import ErrorModel
from mlmedic.model.training import TrainResult, model_features, model_frame


def drift_reference(
    frame: pd.DataFrame,
    contract: DataContract,
    result: TrainResult,
    *,
    window_rows: int | None = None,
) -> dict[str, Any]:
    """The version's drift reference.

    - ``features``: the profile of ``frame`` — production-shaped data (the input without its
      quarantined rows: no de-duplication, capping or filling), calibrated on consecutive windows
      of ``window_rows`` of it (default: the smaller of 1,000 rows and a tenth of it), so the
      reference's own variation never reads as drift;
    - ``predictions``: the predicted probabilities of the holdout (prediction drift);
    - ``calibration``: of confidence to accuracy, for the label-free estimate;
    - ``importance``: permutation importance of each feature on the holdout (drift in the
      features the model relies on is evidence of harm);
    - ``validation_accuracy``.
    """
    features = model_features(contract)
    kinds: dict[str, str] = {name: contract.columns_[name].kind for name in features}
    data = model_frame(frame, contract)
    feature_profile = ReferenceProfile().fit(data, kinds)
    window = window_rows or max(100, min(1000, len(data) // 10))
    feature_profile.calibrate(data, window)
    holdout = result.holdout
    if result.naive is not None:
        return {
            "features": feature_profile.to_dict(),
            **_regression_reference(result, contract.target),
            "importance": permutation_importance_of(result, contract.target),
        }
    probabilities = np.asarray(result.model.predict_proba(holdout[result.features]))
    predictions = pd.DataFrame({"probability": probabilities.max(axis=1)})
    prediction_profile = ReferenceProfile().fit(predictions, {"probability": "numeric"})
    classes = list(getattr(result.model, "classes_", []))
    truth, _ = match_labels(holdout[contract.target].tolist(), classes)
    predicted = [classes[i] for i in probabilities.argmax(axis=1)] if classes else truth
    correct = np.asarray([t is not None and t == p for t, p in zip(truth, predicted, strict=True)])
    calibration = Calibration.fit(probabilities.max(axis=1), correct.astype(float))
    return {
        "features": feature_profile.to_dict(),
        "predictions": prediction_profile.to_dict(),
        "calibration": calibration.to_dict(),
        "importance": permutation_importance_of(result, contract.target),
        "validation_accuracy": result.metrics.get("accuracy"),
        "validation_rows": len(holdout),
    }


def _regression_reference(result: TrainResult, target: str | None) -> dict[str, Any]:
    """A regression's baseline: the profile of the predicted values (prediction drift, kept
    under the name the prediction log gives them), the model of each row's absolute error (the
    label-free estimate) and the validation error."""
    holdout = result.holdout
    predicted = np.asarray(result.model.predict(holdout[result.features]), dtype=float)
    predictions = pd.DataFrame({"probability": predicted})
    errors = ErrorModel.fit(holdout[result.features], predicted, holdout[target].to_numpy())
    return {
        "predictions": ReferenceProfile().fit(predictions, {"probability": "numeric"}).to_dict(),
        "error_model": errors.to_dict(),
        "validation_accuracy": None,
        "validation_error": {
            "mae": errors.mae,
            "rmse": errors.rmse,
            "spread": errors.spread,
            "rows": errors.rows,
        },
        "validation_rows": len(holdout),
        "task": "regression",
    }


def permutation_importance_of(
    result: TrainResult, target: str | None, *, rows: int = 1000
) -> dict[str, float]:
    """Each feature's permutation importance (accuracy lost when it is shuffled) on up to
    ``rows`` holdout rows; negative values are noise and read as 0."""
    from sklearn.inspection import permutation_importance

    holdout = result.holdout.head(rows)
    if target is None or not len(holdout):
        return {}
    try:
        found = permutation_importance(
            result.model,
            holdout[result.features],
            holdout[target],
            n_repeats=2,
            random_state=0,
            scoring="neg_mean_absolute_error" if result.naive is not None else "accuracy",
        )
    except (ValueError, TypeError):  # a model that cannot be scored this way: no weights
        return {}
    means = np.asarray(found.importances_mean, dtype=float)
    return {
        str(name): float(max(0.0, value))
        for name, value in zip(result.features, means, strict=True)
    }
