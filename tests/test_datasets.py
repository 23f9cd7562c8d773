from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from mlmedic.data.datasets import (
    CATEGORICAL,
    NUMERIC,
    TARGET,
    TIME_COLUMN,
    Defects,
    inject_defects,
    make_churn,
)


def test_table_is_mixed_and_seeded() -> None:
    frame = make_churn(500, seed=3)
    assert frame.columns.tolist() == [*NUMERIC, *CATEGORICAL, TIME_COLUMN, TARGET]
    assert pd.api.types.is_datetime64_any_dtype(frame[TIME_COLUMN])
    assert frame[TIME_COLUMN].is_monotonic_increasing
    assert set(frame[TARGET].unique()) == {0, 1}
    pd.testing.assert_frame_equal(frame, make_churn(500, seed=3))
    assert not frame.equals(make_churn(500, seed=4))


def test_a_gradient_boosted_model_learns_it_to_at_least_0_8() -> None:
    frame = make_churn(6000, seed=0)
    features = frame.drop(columns=[TARGET, TIME_COLUMN]).astype(
        {c: "category" for c in CATEGORICAL}
    )
    x_train, x_test, y_train, y_test = train_test_split(
        features, frame[TARGET], test_size=0.3, random_state=0, stratify=frame[TARGET]
    )
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    accuracy = model.fit(x_train, y_train).score(x_test, y_test)
    majority = max(y_test.mean(), 1 - y_test.mean())
    assert accuracy >= 0.8
    assert accuracy > majority + 0.05  # it learns something beyond the base rate


def test_drift_moves_the_distributions() -> None:
    base, drifted = make_churn(5000, seed=1), make_churn(5000, seed=1, drift=1.0)
    assert drifted["monthly_charges"].mean() > base["monthly_charges"].mean() + 8
    share = (drifted["contract_type"] == "month-to-month").mean()
    assert share > (base["contract_type"] == "month-to-month").mean() + 0.15


def test_defects_are_injected_as_asked() -> None:
    clean = make_churn(4000, seed=2)
    dirty = inject_defects(
        clean, Defects(missing_rate=0.05, duplicate_rate=0.02, bad_type_rate=0.02), seed=2
    )
    assert len(dirty) == 4080
    assert dirty.duplicated().sum() >= 70
    missing = dirty["region"].isna().mean()
    assert 0.03 < missing < 0.07
    texts = dirty["age"].map(lambda v: isinstance(v, str))
    assert texts.any() and (dirty["age"] == "#VALUE!").any()
    assert dirty[TARGET].notna().all()
    assert np.isclose(clean["age"].mean(), make_churn(4000, seed=2)["age"].mean())  # no mutation
