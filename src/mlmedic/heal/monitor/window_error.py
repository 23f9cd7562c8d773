"""A regression's window: its error measured from labels, and estimated without them.

The estimate is the version's model of each row's absolute error (``tasks.regression.ErrorModel``,
fitted on its holdout, as NannyML's DLE): the mean of the rows' expected errors is the window's
estimated MAE; the RMSE is estimated at the holdout's ratio of RMSE to MAE. Its 95 % interval is
the sampling error of a window's MAE and of the holdout's, widened by the shift allowance
(``performance.shift_allowance``: the estimate's recent errors against labels, and how far it
moved on a drifted window). Measured error carries the normal interval of a mean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.model.performance import Z95, Performance, shift_allowance
from mlmedic.model.tasks.regression import ErrorModel, paired_errors
from mlmedic.model.training import model_frame


def as_numbers(truth: np.ndarray) -> np.ndarray:
    """Labels as floats; one that is not a number is NaN."""
    return pd.to_numeric(pd.Series(list(truth), dtype=object), errors="coerce").to_numpy(float)


def measured_errors(truth: np.ndarray, predicted: np.ndarray) -> Performance:
    """MAE (with its interval), RMSE and the spread of the absolute errors on labelled rows;
    labels that are not numbers are counted and left out."""
    values = as_numbers(truth)
    known = np.isfinite(values)
    lost = int((~known).sum())
    examples = sorted({str(v) for v in np.asarray(truth, dtype=object)[~known] if v == v})[:5]
    error = np.abs(np.asarray(predicted, dtype=float)[known] - values[known])
    rows = len(error)
    if not rows:
        return Performance.unmeasured(lost, examples)
    mae = float(error.mean())
    spread = float(error.std(ddof=1)) if rows > 1 else 0.0
    half = Z95 * spread / math.sqrt(rows)
    return Performance(
        accuracy=float("nan"),
        estimated=False,
        rows=rows,
        low=max(0.0, mae - half),
        high=mae + half,
        unknown_labels=lost,
        unknown_examples=examples,
        mae=mae,
        rmse=float(np.sqrt(np.mean(error**2))),
        spread=spread,
    )


def estimated_errors(
    model: ErrorModel, expected: np.ndarray, *, allowance: float = 0.0
) -> Performance:
    """The label-free estimate of a window's error from its rows' ``expected`` absolute errors
    (``ErrorModel.errors``; see the module docstring)."""
    rows = len(expected)
    if not rows:
        return Performance(accuracy=float("nan"), estimated=True, rows=0)
    mae = float(np.mean(expected))
    half = Z95 * model.spread * math.sqrt(1 / rows + 1 / max(model.rows, 1)) + allowance
    return Performance(
        accuracy=float("nan"),
        estimated=True,
        rows=rows,
        low=max(0.0, mae - half),
        high=mae + half,
        allowance=allowance,
        mae=mae,
        rmse=mae * model.rmse / model.mae if model.mae > 0 else None,
        spread=model.spread,
    )


def measure_errors(
    snapshot: Any,
    features: pd.DataFrame,
    predicted: np.ndarray,
    labelled: pd.DataFrame | None,
    result: Any,
    errors: list[float] | None,
    confidence: float,
    labelled_values: np.ndarray | None = None,
) -> None:
    """Fill ``result`` (``Measurements``) for a regression: the estimate of every row of the
    window; measured error, ``previous``'s on the same rows and the paired test of the two,
    when ``labelled`` (the rows with labels) is given — ``labelled_values``: the champion's
    predictions of those rows when they are already known (the window's own rows)."""
    model = snapshot.error_model
    validation = (snapshot.baseline.get("validation_error") or {}).get("mae")
    if len(features):
        expected = model.errors(features, predicted)  # once: the allowance only widens it
        raw = estimated_errors(model, expected)
        drifted = result.drift is not None and result.drift.drift
        # the allowance in MAE units: errors are the estimate minus the measured MAE
        moved = None if validation is None or raw.mae is None else raw.mae - validation
        allowance = shift_allowance(errors or [], moved=moved, drifted=drifted)
        result.estimate = estimated_errors(model, expected, allowance=allowance)
    if labelled is None or not len(labelled):
        result.performance = result.estimate
        return
    rows = model_frame(labelled, snapshot.contract)
    values = (
        np.asarray(snapshot.model.predict(rows), dtype=float)
        if labelled_values is None
        else np.asarray(labelled_values, dtype=float)
    )
    truth = labelled[snapshot.target].to_numpy()
    result.performance = measured_errors(truth, values)
    performance = result.performance
    if performance.rows and performance.mae is not None:
        estimate = estimated_errors(model, model.errors(rows, values))
        if estimate.mae is not None:
            result.estimate_error = estimate.mae - performance.mae
    previous = snapshot.previous()
    if previous is None:
        return
    try:
        other = np.asarray(previous[1].predict(rows), dtype=float)
    except Exception:  # the previous version may not fit today's data
        return
    result.previous_performance = measured_errors(truth, other)
    numbers = as_numbers(truth)
    known = np.isfinite(numbers)
    if known.sum() >= 2:
        result.versus_previous = paired_errors(
            values[known] - numbers[known], other[known] - numbers[known], confidence=confidence
        )
