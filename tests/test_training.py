from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.datasets import load_wine

from mlmedic.core.errors import TrainingError
from mlmedic.data.contract import DataContract
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.model.training import (
    DEFAULT_SKOPS_TRUSTED_TYPES,
    DEFAULT_TRAINER,
    load_trainer,
    model_features,
    model_frame,
    train,
)


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, DataContract]:
    frame = make_churn(3000, seed=5)
    return frame, DataContract(target=TARGET).fit(frame)


def test_default_trainer_learns_and_reproduces(churn: tuple[pd.DataFrame, DataContract]) -> None:
    frame, contract = churn
    first = train(frame, contract)
    second = train(frame, contract)
    assert first.metrics == second.metrics
    assert first.metrics["accuracy"] >= 0.8
    assert set(first.metrics) == {"accuracy", "f1", "roc_auc"}
    assert first.trainer == DEFAULT_TRAINER
    assert first.train_rows == 2400 and len(first.holdout) == 600
    assert first.holdout[TARGET].mean() == pytest.approx(frame[TARGET].mean(), abs=0.02)


def test_model_sees_numbers_and_categories_only(churn: tuple[pd.DataFrame, DataContract]) -> None:
    frame, contract = churn
    features = model_features(contract)
    assert "signup_at" not in features and TARGET not in features
    prepared = model_frame(frame, contract)
    assert prepared["age"].dtype == np.int64
    assert prepared["monthly_charges"].dtype == np.float64
    assert prepared["region"].dtype == object


def test_skops_trusted_types_are_exactly_what_the_pipeline_needs(
    churn: tuple[pd.DataFrame, DataContract],
) -> None:
    frame, contract = churn
    model = train(frame, contract).model
    needed = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    assert sorted(needed) == sorted(DEFAULT_SKOPS_TRUSTED_TYPES)


def test_multiclass_metrics_on_real_data() -> None:
    frame = load_wine(as_frame=True).frame
    result = train(frame, DataContract(target="target").fit(frame))
    assert result.metrics["accuracy"] > 0.85
    assert 0.0 <= result.metrics["f1"] <= 1.0 and result.metrics["roc_auc"] > 0.9


def _write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")


def test_user_trainer_by_dotted_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, churn: tuple[pd.DataFrame, DataContract]
) -> None:
    _write_module(
        tmp_path,
        "my_trainers",
        """
        from sklearn.linear_model import LogisticRegression

        def numeric_only(frame, target):
            features = frame.drop(columns=[target]).select_dtypes("number").columns
            class Model:
                def fit(self):
                    model = LogisticRegression(max_iter=500)
                    self.inner = model.fit(frame[features], frame[target])
                    self.classes_ = self.inner.classes_
                    return self
                def predict(self, X):
                    return self.inner.predict(X[features])
                def predict_proba(self, X):
                    return self.inner.predict_proba(X[features])
            return Model().fit()
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    frame, contract = churn
    result = train(frame, contract, trainer="my_trainers:numeric_only")
    assert result.trainer == "my_trainers:numeric_only"
    assert result.metrics["accuracy"] > 0.7


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("no_such_module_xyz:train", "cannot import module 'no_such_module_xyz'"),
        ("mlmedic.model.training:nope", "has no function 'nope'"),
        ("just_a_name", "expected the form package.module:function"),
    ],
)
def test_unusable_trainer_paths(path: str, problem: str) -> None:
    with pytest.raises(TrainingError, match=problem):
        load_trainer(path)


def test_the_built_in_trainers_former_names_still_load() -> None:
    """A config or a version's tag written before the layers were folders (#31) names
    ``mlmedic.training:...``: the same trainer, under today's name."""
    from mlmedic.model.tasks import REGRESSION

    assert (
        load_trainer("mlmedic.training:default_trainer")[0]
        == "mlmedic.model.training:default_trainer"
    )
    name, _ = load_trainer("mlmedic.training:default_regressor", REGRESSION)
    assert name == "mlmedic.model.training:default_regressor"


def test_a_failing_trainer_is_retried_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, churn: tuple[pd.DataFrame, DataContract]
) -> None:
    _write_module(
        tmp_path,
        "flaky_trainers",
        """
        CALLS = []

        def flaky(frame, target):
            CALLS.append(1)
            if len(CALLS) < 3:
                raise MemoryError("transient")
            from mlmedic.model.training import default_trainer
            return default_trainer(frame, target)

        def broken(frame, target):
            raise RuntimeError("GPU on fire")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    frame, contract = churn
    retried: list[int] = []
    result = train(
        frame,
        contract,
        trainer="flaky_trainers:flaky",
        retries=3,
        on_retry=lambda n, exc: retried.append(n),
    )
    assert retried == [1, 2] and result.params["attempts"] == 3
    with pytest.raises(
        TrainingError, match=r"failed after 3 attempt\(s\): RuntimeError: GPU on fire"
    ):
        train(frame, contract, trainer="flaky_trainers:broken", retries=2)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (make_churn(200, seed=1).assign(churned=1), "is constant"),
        (make_churn(12, seed=1), "too few rows"),
        (make_churn(200, seed=1).assign(churned=[1] + [0] * 199), "the rarest label has 1 row"),
    ],
)
def test_untrainable_data(frame: pd.DataFrame, problem: str) -> None:
    contract = DataContract(target=TARGET).fit(frame)
    with pytest.raises(TrainingError, match=problem):
        train(frame, contract)


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ([0.5 + i for i in range(20)] * 3, False),  # 20 distinct with fractions: classes
        ([0.5 + i for i in range(21)] * 3, True),  # 21: quantities
        (list(range(50)) * 8, False),  # 50 whole numbers in 400 rows
        (list(range(51)) * 8, True),  # 51 in 408 rows (over 50 and over a tenth)
        (list(range(51)) * 20, False),  # 51 in 1,020 rows: under a tenth of the rows
        (list(range(104)) * 9, True),  # 104 in 936 rows: over both
        ([1.0, 2.0, 3.0] * 30, False),  # class codes read back as floats
        ([True, False] * 40, False),
        ([f"c{i}" for i in range(300)], False),  # text labels are always classes
    ],
)
def test_a_target_of_quantities_is_told_from_class_labels(
    values: list[object], refused: bool
) -> None:
    """The boundaries of ``infer_task`` (#23): quantities are a regression, codes are classes;
    moving a boundary or flipping a comparison fails a case here."""
    from mlmedic.model.tasks import infer_task

    expected = "regression" if refused else "classification"
    assert infer_task(pd.Series(values), "y", "data.csv", None) == expected
    # --task overrides whatever the values say, for numbers
    if not isinstance(values[0], str | bool):
        assert infer_task(pd.Series(values), "y", "data.csv", "classification") == "classification"
        assert infer_task(pd.Series(values), "y", "data.csv", "regression") == "regression"


@pytest.mark.parametrize(
    ("values", "task", "problem"),
    [
        ([3.5] * 40, None, "is constant (3.5 in every row)"),
        ([None] * 3 + [7] * 37, "regression", "is constant (7 in every row that has one)"),
        (["Europe", "Japan", "USA"] * 20, "regression", "these are class labels"),
        ([f"{i}.5" for i in range(95)] + ["n/a"] * 5, None, "5 of 100 values are not numbers"),
        ([f"{i}.5" for i in range(95)] + ["n/a"] * 5, "regression", "e.g. 'n/a'"),
        ([1.5, 2.5], "ordinal", "--task must be classification or regression"),
    ],
)
def test_a_target_nothing_can_be_learned_from_is_refused_with_one_line(
    values: list[object], task: str | None, problem: str
) -> None:
    """#23's bad input: one value, a regression target with text, ``--task regression`` on
    labels — each one ``TrainingError`` (exit 2) naming the problem."""
    from mlmedic.core.errors import TrainingError
    from mlmedic.model.tasks import infer_task

    with pytest.raises(TrainingError) as found:
        infer_task(pd.Series(values, dtype=object), "y", "data.csv", task)
    assert problem in str(found.value) and "\n" not in str(found.value)
