from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmedic.core.errors import ContractError
from mlmedic.data.contract import DataContract, allowed_count, category_keys
from mlmedic.data.datasets import TARGET


def test_learns_kinds_from_mixed_reference(reference: pd.DataFrame) -> None:
    contract = DataContract(target=TARGET).fit(reference)
    kinds = {name: spec.kind for name, spec in contract.columns_.items()}
    assert kinds["tenure_months"] == "numeric"
    assert kinds["contract_type"] == "categorical"
    assert kinds["signup_at"] == "datetime"
    assert kinds[TARGET] == "categorical"
    assert contract.columns_[TARGET].is_target
    assert contract.columns_[TARGET].categories == ["0", "1"]
    assert contract.columns_["age"].integer
    assert not contract.columns_["monthly_charges"].integer
    assert contract.feature_columns == [c for c in reference.columns if c != TARGET]


def test_numeric_fences_follow_the_iqr_rule() -> None:
    values = np.linspace(0.25, 30.5, 100)
    spec = DataContract(outlier_threshold_iqr=3.0).fit(pd.DataFrame({"x": values})).columns_["x"]
    q1, q3 = np.quantile(values, [0.25, 0.75])
    assert spec.lower_fence == pytest.approx(q1 - 3 * (q3 - q1))
    assert spec.upper_fence == pytest.approx(q3 + 3 * (q3 - q1))
    assert spec.median == pytest.approx(np.median(values))
    assert spec.missing_rate == 0.0


def test_constant_iqr_falls_back_to_the_observed_range() -> None:
    frame = pd.DataFrame({"flag": [0.0] * 90 + [1.0] * 10})
    spec = DataContract().fit(frame).columns_["flag"]
    assert (spec.lower_fence, spec.upper_fence) == (0.0, 1.0)


def test_numeric_strings_make_a_numeric_column() -> None:
    mostly_numbers = pd.DataFrame({"x": ["1.5", " 2 ", "3"] * 10 + ["oops"]})
    assert DataContract().fit(mostly_numbers).columns_["x"].kind == "numeric"
    mostly_words = pd.DataFrame({"x": ["1.5", "oops", "nope"] * 10})
    assert DataContract().fit(mostly_words).columns_["x"].kind == "categorical"


def test_high_cardinality_strings_are_text() -> None:
    frame = pd.DataFrame({"id": [f"user-{i}" for i in range(100)]})
    assert DataContract().fit(frame).columns_["id"].kind == "text"


def test_self_reference_holds_the_batch_to_a_clean_standard() -> None:
    # measurements, not codes: identical rows are not natural here
    frame = pd.DataFrame({"x": [1.5, None, 3.25, 3.25, 500.5] * 10})
    own = DataContract(self_reference=True).fit(frame)
    ref = DataContract().fit(frame)
    assert own.columns_["x"].missing_rate == 0.0 and own.duplicate_rate_ == 0.0
    assert ref.columns_["x"].missing_rate == pytest.approx(0.2)
    assert "its own reference" in own.describe_source()


def test_save_and_load_round_trip(tmp_path: Path, reference: pd.DataFrame) -> None:
    contract = DataContract(target=TARGET, source="reference.csv").fit(reference)
    loaded = DataContract.load(contract.save(tmp_path / "contract.json"))
    assert loaded.to_dict() == contract.to_dict()


@pytest.mark.parametrize(
    ("frame", "target", "problem"),
    [
        (
            pd.DataFrame({"x": np.arange(12.0), "empty": [np.nan] * 12}),
            None,
            "'empty' has no values",
        ),
        (pd.DataFrame({"x": np.arange(12.0)}), "y", "target column 'y' not found"),
        (pd.DataFrame({"x": []}), None, "0 row"),
        (pd.DataFrame({"x": [1.0]}), None, "1 row.* too few"),
        (
            pd.DataFrame({"x": [str(v) for v in range(60)] + ["n/a", "unknown"] * 20}),
            None,
            "column 'x' mixes numbers",
        ),
    ],
)
def test_unlearnable_references_are_clear_errors(
    frame: pd.DataFrame, target: str | None, problem: str
) -> None:
    with pytest.raises(ContractError, match=problem):
        DataContract(target=target).fit(frame)


def test_bad_contract_files(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="not found"):
        DataContract.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ContractError, match="not a JSON data contract"):
        DataContract.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": 1, "hello": 2}')
    with pytest.raises(ContractError, match="not a valid mlmedic data contract"):
        DataContract.load(tmp_path / "other.json")


def test_category_keys_unify_number_spellings() -> None:
    assert category_keys(pd.Series([1, 0])).tolist() == ["1", "0"]
    assert category_keys(pd.Series([1.0, np.nan])).tolist()[0] == "1"
    assert category_keys(pd.Series(["1", " a "])).tolist() == ["1", "a"]
    assert category_keys(pd.Series([True, False])).tolist() == ["True", "False"]


def test_labels_and_categories_are_keyed_by_one_rule() -> None:
    """The contract's categories and the model's labels agree on every spelling, booleans too
    (a boolean target's ``True`` is neither ``"1"`` nor a missing label)."""
    from mlmedic.core.labels import label_key

    values = [True, False, np.bool_(True), "True", 1, 1.0, "1", np.int64(1), "2.50", " a "]
    assert category_keys(pd.Series(values, dtype=object)).tolist() == [label_key(v) for v in values]
    assert [label_key(v) for v in (True, 1, "True")] == ["True", "1", "True"]


def test_allowed_count_is_zero_for_a_clean_reference() -> None:
    assert allowed_count(10_000, 0.0) == 0
    # three binomial standard deviations above the expected count, rounded down
    assert allowed_count(10_000, 0.01) == 129  # 100 + 3 * 9.95
    assert allowed_count(400, 0.25) == 125  # 100 + 3 * 8.66


def test_integer_columns_get_integer_fences() -> None:
    spec = DataContract().fit(pd.DataFrame({"n": np.arange(1, 101)})).columns_["n"]
    assert spec.integer
    assert spec.lower_fence == float(int(spec.lower_fence))
    assert spec.upper_fence == float(int(spec.upper_fence))


def test_a_contract_saved_with_the_retired_keys_still_loads(tmp_path: Path) -> None:
    """Contracts saved before #20 carry frequencies and a date range nothing read: they load."""
    frame = pd.DataFrame({"c": ["a", "b"] * 50, "t": [0, 1] * 50})
    saved = DataContract(target="t").fit(frame).to_dict()
    for column in saved["columns"]:
        column.update(frequencies={"a": 0.5}, earliest=None, latest=None)
    loaded = DataContract.from_dict(saved)
    assert loaded.columns_["c"].categories == ["a", "b"]
