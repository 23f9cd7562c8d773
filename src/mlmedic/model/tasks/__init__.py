"""The tasks (#31): classification and regression, each one ``Task`` object that owns all that
differs between them (``base.Task``); ``task_of`` finds one by the name a contract, a version's
tags or ``--task`` carry, and ``infer_task`` tells the task from the target.

- **Telling the task.** A numeric target with fractions and more than 20 distinct values, or
  whole numbers with more than 50 distinct values that are also over a tenth of the rows, holds
  quantities: regression. Anything else is class labels. ``--task`` overrides; a regression
  target must be numbers.

Adding a third task is one module: a ``Task`` subclass, and its instance in ``TASKS``.

Examples:
    >>> import pandas as pd
    >>> infer_task(pd.Series([0.5 * i for i in range(100)]), "y", "data.csv", None)
    'regression'
    >>> infer_task(pd.Series([0, 1] * 50), "y", "data.csv", None)
    'classification'
    >>> task_of("regression").metric, task_of(None).metric
    ('mae', 'accuracy')
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmedic.core.errors import TrainingError
from mlmedic.model.tasks.base import SEED, Task, fit_pipeline
from mlmedic.model.tasks.classification import CLASSIFICATION, Classification
from mlmedic.model.tasks.regression import REGRESSION, Regression

TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, REGRESSION)}
FRACTIONAL = 20  # distinct values of a target with fractions that mean regression
INTEGER = 50  # distinct whole numbers (and a tenth of the rows) that mean regression
NUMBERS_SHARE = 0.9  # a text column whose values are this share numbers is a broken numeric one


def task_of(name: str | None) -> Task:
    """The task named ``name`` (None or empty: classification, what a version registered
    before regression existed is). ``ValueError`` for a name no task has."""
    if not name:
        return CLASSIFICATION
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"no task is named {name!r} (one of {', '.join(TASKS)})") from None


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


__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "SEED",
    "TASKS",
    "Classification",
    "Regression",
    "Task",
    "fit_pipeline",
    "infer_task",
    "task_of",
]
