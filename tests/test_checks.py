from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmedic.core.errors import SchemaError
from mlmedic.data._rows import find_duplicates
from mlmedic.data.checks import run_checks
from mlmedic.data.contract import UNSEEN, DataContract
from mlmedic.data.datasets import TARGET, make_churn


@pytest.fixture(scope="module")
def contract() -> DataContract:
    return DataContract(target=TARGET).fit(make_churn(3000, seed=21))


def _failed(report, check: str, column: str | None = None):  # type: ignore[no-untyped-def]
    return [r for r in report.failures if r.check == check and r.column == column]


def test_a_clean_batch_from_the_same_source_passes(contract: DataContract) -> None:
    report = run_checks(make_churn(2000, seed=22), contract)
    assert report.passed, report.failures


def test_missing_values_are_counted_with_examples(contract: DataContract) -> None:
    batch = make_churn(500, seed=23)
    batch["age"] = batch["age"].astype(float)
    batch.loc[[3, 10, 20], "age"] = np.nan
    [result] = _failed(run_checks(batch, contract), "missing", "age")
    assert result.count == 3
    assert result.examples == [3, 10, 20]


def test_outliers_beyond_the_reference_fences(contract: DataContract) -> None:
    batch = make_churn(500, seed=24)
    batch.loc[[5, 6], "monthly_charges"] = [1e6, -1e6]
    [result] = _failed(run_checks(batch, contract), "outliers", "monthly_charges")
    assert result.count == 2
    assert result.examples == [5, 6]
    assert "outside [" in result.detail


def test_strings_in_a_numeric_column_are_type_errors(contract: DataContract) -> None:
    batch = make_churn(200, seed=25)
    batch["tenure_months"] = batch["tenure_months"].astype(object)
    batch.loc[7, "tenure_months"] = "twelve"
    batch.loc[8, "tenure_months"] = "12"  # a numeric string is a number
    report = run_checks(batch, contract)
    [result] = _failed(report, "types", "tenure_months")
    assert (result.count, result.examples) == (1, [7])


def test_unseen_categories_and_unknown_labels(contract: DataContract) -> None:
    batch = make_churn(200, seed=26)
    batch.loc[4, "region"] = "atlantis"
    batch.loc[5, "region"] = UNSEEN  # the repair sentinel is a known value
    batch.loc[9, TARGET] = 7
    report = run_checks(batch, contract)
    [region] = _failed(report, "unseen_categories", "region")
    assert (region.count, region.examples) == (1, [4])
    assert "atlantis" in region.detail
    [label] = _failed(report, "unseen_categories", TARGET)
    assert label.examples == [9]


def test_duplicates_and_schema(contract: DataContract) -> None:
    batch = make_churn(100, seed=27)
    batch = pd.concat([batch, batch.iloc[[0, 5]]], ignore_index=True)
    batch = batch.drop(columns=["region"]).assign(notes="x")
    report = run_checks(batch, contract)
    [dups] = _failed(report, "duplicates")
    assert (dups.count, dups.examples) == (2, [100, 101])
    assert _failed(report, "missing_columns")[0].examples == ["region"]
    assert _failed(report, "extra_columns")[0].examples == ["notes"]


def test_empty_batch_fails_one_check(contract: DataContract) -> None:
    report = run_checks(make_churn(10, seed=1).iloc[0:0], contract)
    assert not report.passed
    assert [r.check for r in report.results] == ["empty"]


def test_no_common_columns_is_a_schema_error(contract: DataContract) -> None:
    with pytest.raises(SchemaError, match="no column in common"):
        run_checks(pd.DataFrame({"sepal_length": [1.0]}), contract)


def test_reference_rates_set_the_tolerance() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": np.where(rng.uniform(size=5000) < 0.1, np.nan, 1.0)})
    contract = DataContract().fit(reference)
    same = pd.DataFrame({"x": np.where(rng.uniform(size=5000) < 0.1, np.nan, 1.0)})
    worse = pd.DataFrame({"x": np.where(rng.uniform(size=5000) < 0.2, np.nan, 1.0)})
    assert run_checks(same, contract).passed
    assert not run_checks(worse, contract).passed


def test_checks_never_modify_the_batch(contract: DataContract) -> None:
    batch = make_churn(300, seed=28)
    batch.loc[1, "age"] = 10_000
    before = batch.copy()
    run_checks(batch, contract)
    pd.testing.assert_frame_equal(batch, before)


def test_duplicate_finder_matches_pandas() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, 3, 2000).astype(float),
            "b": rng.choice(["x", "y"], 2000),
            "c": np.where(rng.uniform(size=2000) < 0.3, np.nan, rng.integers(0, 2, 2000)),
            "d": rng.integers(0, 2, 2000),
        }
    )
    frame.loc[5, "a"] = -0.0
    positions, firsts = find_duplicates(frame)
    expected = np.flatnonzero(frame.duplicated().to_numpy())
    np.testing.assert_array_equal(positions, expected)
    pd.testing.assert_frame_equal(
        frame.iloc[positions].reset_index(drop=True), frame.iloc[firsts].reset_index(drop=True)
    )
    assert (firsts < positions).all()


def test_an_absurd_value_fails_even_when_the_reference_allows_a_few_outliers() -> None:
    """The reference's one mild outlier allows one here, but never 1e12."""
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": np.append(rng.normal(100, 10, 999), 170.0)})
    contract = DataContract().fit(reference)
    assert contract.columns_["x"].outlier_rate > 0
    mild = pd.DataFrame({"x": np.append(rng.normal(100, 10, 999), 175.0)})
    assert run_checks(mild, contract).passed
    absurd = pd.DataFrame({"x": np.append(rng.normal(100, 10, 999), 1e12)})
    report = run_checks(absurd, contract)
    [failure] = _failed(report, "outliers", "x")
    assert "far beyond the reference's range" in failure.message
