from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmedic.core.errors import ContractError, SchemaError
from mlmedic.data.checks import run_checks
from mlmedic.data.contract import UNSEEN, DataContract
from mlmedic.data.datasets import TARGET, Defects, inject_defects, make_churn
from mlmedic.data.repair import REASON, SOURCE_ROW, Repairer

_rng = np.random.default_rng(5)
REFERENCE = pd.DataFrame(
    {
        "x": _rng.normal(0, 10, 1000).round(3),
        "n": _rng.integers(0, 50, 1000),
        "c": _rng.choice(["a", "b", "c"], 1000),
        "y": _rng.integers(0, 2, 1000),
    }
)
CONTRACT = DataContract(target="y").fit(REFERENCE)
SPEC_X, SPEC_N = CONTRACT.columns_["x"], CONTRACT.columns_["n"]


def _repair(frame: pd.DataFrame, **options: object):  # type: ignore[no-untyped-def]
    return Repairer(**options).fit(CONTRACT).transform(frame)  # type: ignore[arg-type]


def test_each_rule_repairs_and_is_audited() -> None:
    batch = pd.DataFrame(
        {
            "x": [1.0, np.nan, 1e6, 2.0, 2.0],
            "n": [1, 2, 3, 4, 4],
            "c": ["a", "zzz", None, "b", "b"],
            "y": [0, 1, 0, 1, 1],
        }
    )
    result = _repair(batch)
    data = result.data
    assert list(data.index) == [0, 1, 2, 3]
    assert data.loc[1, "x"] == pytest.approx(SPEC_X.median)
    assert data.loc[2, "x"] == SPEC_X.upper_fence
    assert data.loc[1, "c"] == UNSEEN
    assert data.loc[2, "c"] == CONTRACT.columns_["c"].mode
    assert result.removed_duplicates == [(4, 3)]
    rules = {(r.rule, r.column): r.rows_touched for r in result.rules}
    assert rules == {
        ("impute_missing", "x"): 1,
        ("cap_outliers", "x"): 1,
        ("impute_missing", "c"): 1,
        ("map_unseen_category", "c"): 1,
        ("drop_duplicates", None): 1,
    }
    assert run_checks(data, CONTRACT).passed


def test_unrepairable_rows_go_to_quarantine_with_their_reason() -> None:
    batch = pd.DataFrame(
        {
            "x": ["1.5", "abc", None, "2"],
            "n": [1, 2, np.nan, 3],
            "c": ["a", "b", None, "c"],
            "y": [0, 1, 1, np.nan],
        }
    )
    result = _repair(batch)
    reasons = dict(zip(result.quarantine[SOURCE_ROW], result.quarantine[REASON], strict=True))
    assert reasons == {
        1: "column 'x': value is not a number",
        2: "more than 50% of its values missing",
        3: "missing target 'y'",
    }
    assert result.quarantine.loc[0, "x"] == "abc"  # the raw value is kept
    assert result.data["x"].tolist() == [1.5]
    assert str(result.data["y"].dtype) == "int64"


def test_rules_can_be_switched_off() -> None:
    batch = pd.DataFrame({"x": [np.nan, 1e6], "n": [1, 2], "c": ["a", "b"], "y": [0, 1]})
    result = _repair(batch, fix_missing_values=False, fix_outliers=False)
    assert result.data["x"].isna().sum() == 1
    assert result.data["x"].max() == 1e6
    assert not run_checks(result.data, CONTRACT).passed


def test_integer_columns_stay_integers() -> None:
    batch = pd.DataFrame({"x": [1.0, 2.0], "n": [np.nan, 10_000], "c": ["a", "b"], "y": [0, 1]})
    data = _repair(batch).data
    assert str(data["n"].dtype) == "int64"
    assert data["n"].tolist() == [round(SPEC_N.median), SPEC_N.upper_fence]


def test_extra_columns_are_dropped_and_audited() -> None:
    batch = REFERENCE.head(3).assign(comment="hi")
    result = _repair(batch)
    assert "comment" not in result.data
    assert [(r.rule, r.column) for r in result.rules] == [("drop_extra_column", "comment")]


def test_repair_needs_a_fitted_contract_and_common_columns() -> None:
    with pytest.raises(ContractError):
        Repairer().fit(DataContract())
    with pytest.raises(SchemaError):
        _repair(pd.DataFrame({"other": [1]}))


def test_statistics_come_from_the_reference_not_the_batch() -> None:
    batch = pd.DataFrame(
        {"x": [np.nan] + [500.0] * 20, "n": [1] * 21, "c": ["a"] * 21, "y": [0] * 21}
    )
    data = _repair(batch, fix_duplicates=False).data
    assert data.loc[0, "x"] == pytest.approx(SPEC_X.median)  # not the batch's median of 500
    assert Repairer().fit(CONTRACT).statistics()["fill_values"]["x"] == SPEC_X.median


def test_churn_batch_with_every_defect_heals(reference: pd.DataFrame, dirty: pd.DataFrame) -> None:
    contract = DataContract(target=TARGET).fit(reference)
    assert not run_checks(dirty, contract).passed
    result = Repairer().fit(contract).transform(dirty)
    assert run_checks(result.data, contract).passed
    rows = result.accounting()
    assert rows["output_rows"] + rows["quarantined_rows"] + rows["removed_duplicate_rows"] == len(
        dirty
    )
    assert rows["quarantined_rows"] > 0 and rows["removed_duplicate_rows"] > 0


# ----------------------------------------------------------------------------- properties
_x = st.one_of(
    st.floats(-60, 60, allow_nan=False).map(lambda v: round(v, 2)),
    st.just(np.nan),
    st.sampled_from([1e6, -1e6]),
    st.sampled_from(["1.5", " 7 ", "abc"]),
)
_row = st.tuples(
    _x,
    st.one_of(st.integers(0, 49), st.just(None), st.just(10_000)),
    st.sampled_from(["a", "b", "c", "zzz", None]),
    st.sampled_from([0, 1, None]),
)
_frames = st.lists(_row, min_size=1, max_size=40).map(
    lambda rows: pd.DataFrame(rows, columns=["x", "n", "c", "y"])
)
_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per column, which input cells already pass every check."""
    x = pd.to_numeric(frame["x"], errors="coerce").to_numpy(dtype=float)
    n = pd.to_numeric(frame["n"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return {
            "x": (x >= SPEC_X.lower_fence) & (x <= SPEC_X.upper_fence),
            "n": (n >= SPEC_N.lower_fence) & (n <= SPEC_N.upper_fence),
            "c": frame["c"].isin(["a", "b", "c"]).to_numpy(),
        }


@pytest.mark.slow
@_settings
@given(_frames)
def test_property_every_row_is_accounted_for(frame: pd.DataFrame) -> None:
    result = _repair(frame)
    out = list(result.data.index)
    quarantined = list(result.quarantine[SOURCE_ROW])
    duplicates = [row for row, _ in result.removed_duplicates]
    places = out + quarantined + duplicates
    assert sorted(places) == list(frame.index)  # each row in exactly one place
    assert out == sorted(out)  # order kept


@pytest.mark.slow
@_settings
@given(_frames)
def test_property_repair_is_idempotent(frame: pd.DataFrame) -> None:
    once = _repair(frame)
    twice = _repair(once.data)
    assert twice.rules == []
    assert len(twice.quarantine) == 0
    pd.testing.assert_frame_equal(twice.data, once.data)


@_settings
@given(_frames)
def test_property_valid_values_are_never_changed(frame: pd.DataFrame) -> None:
    result = _repair(frame)
    valid = _valid(frame)
    kept = result.data.index.to_numpy()
    for column in ("x", "n", "c"):
        mask = valid[column][kept]
        before = frame.loc[kept[mask], column]
        after = result.data.loc[kept[mask], column]
        if column == "c":
            assert before.tolist() == after.tolist()
        else:
            np.testing.assert_array_equal(
                pd.to_numeric(before).to_numpy(dtype=float), after.to_numpy(dtype=float)
            )


@_settings
@given(_frames)
def test_property_repaired_data_passes_the_checks(frame: pd.DataFrame) -> None:
    result = _repair(frame)
    if len(result.data):
        assert run_checks(result.data, CONTRACT).passed


def test_inject_defects_then_repair_on_many_seeds() -> None:
    contract = DataContract(target=TARGET).fit(make_churn(2000, seed=40))
    defects = Defects(0.05, 0.02, 0.03, 0.02, 0.02, 0.02)
    for seed in range(5):
        batch = inject_defects(make_churn(400, seed=seed), defects, seed=seed)
        result = Repairer().fit(contract).transform(batch)
        assert run_checks(result.data, contract).passed


def test_threaded_and_inline_repairs_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large frames repair column by column on two threads; the result must not depend on it."""
    from mlmedic.core import parallel as _parallel

    contract = DataContract(target=TARGET).fit(make_churn(2000, seed=50))
    batch = inject_defects(make_churn(3000, seed=51), Defects(0.05, 0.02, 0.03, 0.02, 0.02, 0.02))
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_ROWS", 10**12)
    inline = Repairer().fit(contract).transform(batch)
    inline_report = run_checks(batch, contract)
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_ROWS", 1)
    assert _parallel.worth_it(len(batch)) or _parallel._WORKERS == 1
    threaded = Repairer().fit(contract).transform(batch)
    pd.testing.assert_frame_equal(threaded.data, inline.data)
    pd.testing.assert_frame_equal(threaded.quarantine, inline.quarantine)
    assert threaded.rules == inline.rules
    assert threaded.removed_duplicates == inline.removed_duplicates
    assert run_checks(batch, contract).to_dict() == inline_report.to_dict()
