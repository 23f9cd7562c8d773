"""The task objects (#31 item 1): one generic suite over every ``Task`` implementation, then
what each one decides that the other does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmedic.core.evidence import Shortfall, drop
from mlmedic.model.tasks import CLASSIFICATION, REGRESSION, TASKS, Task, task_of
from mlmedic.model.tasks.base import fit_pipeline
from mlmedic.model.tasks.regression import rise
from mlmedic.model.training import default_regressor, default_trainer


def _data(task: Task, rows: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, rows)
    colour = rng.choice(["red", "blue"], rows).astype(object)
    y = (x > 0).astype(int) if task.probabilities else 3.0 * x + rng.normal(0.0, 0.1, rows)
    frame = pd.DataFrame({"x": x, "colour": colour, "y": y})
    frame["colour"] = frame["colour"].astype(object)  # as model_frame gives categories
    return frame


def _model(task: Task, frame: pd.DataFrame) -> object:
    trainer = default_trainer if task.probabilities else default_regressor
    return trainer(frame, "y")


@pytest.fixture(params=sorted(TASKS), ids=sorted(TASKS))
def task(request: pytest.FixtureRequest) -> Task:
    return TASKS[request.param]


# ---------------------------------------------------------------------- every task
def test_a_task_is_found_by_its_name_and_names_itself(task: Task) -> None:
    assert task_of(task.name) is task
    assert task.default_trainer.startswith("mlmedic.model.training:")
    assert set(task.outputs_offered) <= {"predict", "predict_proba"}
    assert "predict" in task.model_methods


def test_a_tasks_model_answers_are_sane_by_its_own_check(task: Task) -> None:
    frame = _data(task)
    model = _model(task, frame)
    outputs = task.outputs(model, frame.drop(columns=["y"]))
    classes = list(getattr(model, "classes_", []))
    predictions, answered = task.answers(outputs, classes)
    assert len(predictions) == len(frame) and answered.shape[0] == len(frame)
    assert task.canary_problem(answered[0], classes) is None
    assert task.canary_problem(np.array([np.nan] * answered.shape[1]), classes) is not None


def test_a_tasks_holdout_metric_and_per_row_evidence_agree(task: Task) -> None:
    frame = _data(task)
    model = _model(task, frame)
    metrics, rows = task.scored(model, frame, "y", naive=task.naive(frame["y"]))
    assert task.metric in metrics and len(rows) == len(frame)
    same = task.per_row(model.predict(frame.drop(columns=["y"])), frame["y"])
    assert np.allclose(np.asarray(same, dtype=float), np.asarray(rows, dtype=float))
    # a model against itself: no evidence either way, and a bound of its advantage near 0
    test = task.versus(rows, rows, confidence=0.95)
    assert not test.better and not test.worse
    assert task.advantage_bound(rows, rows, 1.645) == pytest.approx(0.0, abs=1e-9)


def test_a_tasks_direction_decides_the_best_score(task: Task) -> None:
    assert task.best([0.2, 0.8]) == (0.8 if task.higher_is_better else 0.2)
    assert task.better(0.8, 0.2) is task.higher_is_better


def test_a_tasks_feedback_refuses_what_it_cannot_hold(task: Task) -> None:
    with pytest.raises(ValueError):
        task.feedback(True, [0, 1])  # a boolean is never a class nor a number
    assert task.feedback(1, [0, 1]) == ("1" if task.probabilities else "1.0")


# ---------------------------------------------------------------------- what differs
def test_classification_splits_stratified_and_regression_does_not() -> None:
    labels = pd.Series([0, 1] * 10)
    assert CLASSIFICATION.stratify(labels) is labels
    assert REGRESSION.stratify(labels) is None
    assert CLASSIFICATION.naive(labels) is None and REGRESSION.naive(labels) == 0.5


def test_the_paired_evidence_is_mcnemar_for_classes_and_errors_for_numbers() -> None:
    a = np.array([True] * 90 + [False] * 10)
    b = np.array([True] * 70 + [False] * 30)
    assert CLASSIFICATION.versus(a, b, confidence=0.95).better
    assert CLASSIFICATION.versus(b, a, confidence=0.95).worse
    close = np.abs(np.random.default_rng(1).normal(0.0, 1.0, 200))
    assert REGRESSION.versus(close, close + 0.3, confidence=0.95).better
    # a regression's bound is a share of B's MAE: 0.3 less error on a MAE of ~1.1
    bound = REGRESSION.advantage_bound(close, close + 0.3, 1.645)
    assert 0.2 < bound < 0.3


def test_agreement_is_the_same_class_or_the_same_number() -> None:
    assert CLASSIFICATION.agree(pd.Series([1, "0"]), pd.Series(["1.0", 1])).tolist() == [
        True,
        False,
    ]
    assert REGRESSION.agree(pd.Series([1.0, 2.0]), pd.Series([1.0, 2.5])).tolist() == [
        True,
        False,
    ]


def test_a_window_against_validation_is_one_shortfall_for_both_tasks() -> None:
    """``Drop`` and ``Rise`` were field-for-field twins: one ``Shortfall`` now."""
    fell = drop(0.85, 2000, 0.92, 2000, confidence=0.95)
    rose = rise(1.3, 1.0, 400, 1.0, 1.0, 400, confidence=0.95)
    assert isinstance(fell, Shortfall) and isinstance(rose, Shortfall)
    assert fell.significant and fell.size == pytest.approx(0.07)
    assert rose.significant and rose.size == pytest.approx(0.3)
    assert set(fell.to_dict()) == set(rose.to_dict())


def test_a_booster_is_the_tasks_estimator() -> None:
    class Library:
        LGBMClassifier = LGBMRegressor = XGBClassifier = XGBRegressor = dict

    assert CLASSIFICATION.booster(Library, "lightgbm", {"n_jobs": 1}) == {
        "random_state": 42,
        "n_jobs": 1,
    }
    with pytest.raises(KeyError):
        REGRESSION.booster(Library, "catboost", {})


def test_an_unknown_task_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no task is named 'ranking'"):
        task_of("ranking")


def test_fit_pipeline_serves_both_tasks() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    frame = _data(REGRESSION)
    fitted = fit_pipeline(frame, "y", HistGradientBoostingRegressor(max_iter=5), None)
    assert len(fitted.predict(frame.drop(columns=["y"]))) == len(frame)
