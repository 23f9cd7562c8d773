"""#23: the decisions a regression rests on — the gate on error, the paired test of two models'
errors, a window's error rise, and the policy's rule on error. Each boundary and direction has a
case that fails when the comparison is flipped or the threshold moved."""

from __future__ import annotations

import numpy as np
import pytest

from mlmedic.core.config import ModelValidationConfig, Settings
from mlmedic.heal.policy import decide as policy_decide
from mlmedic.model.gate import decide
from mlmedic.model.performance import Performance
from mlmedic.model.tasks import REGRESSION
from mlmedic.model.tasks.regression import PairedErrors, paired_errors, rise

GOOD = {"rmse": 2.0, "mae": 1.5, "r2": 0.6, "baseline_rmse": 4.0, "rmse_ratio": 0.5}


def _versus(*, better: bool = False, worse: bool = False) -> PairedErrors:
    return PairedErrors(
        rows=100,
        mae_a=1.5,
        mae_b=1.5,
        a_only=50,
        b_only=50,
        p_a_better=0.01 if better else 0.5,
        p_b_better=0.01 if worse else 0.5,
        confidence=0.95,
    )


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"r2": 0.0}, None),  # at the floor (min_r2_threshold 0.0): passes
        ({"r2": -0.001}, "model_validation.min_r2_threshold"),
        ({"rmse_ratio": 1.0}, None),  # as good as the mean: passes at 1.0
        ({"rmse_ratio": 1.001}, "model_validation.max_rmse_ratio_to_baseline"),
    ],
)
def test_the_regression_gate_floors_hold_at_their_boundaries(
    changes: dict[str, float], key: str | None
) -> None:
    decision = decide({**GOOD, **changes}, None, ModelValidationConfig())
    assert decision.passed is (key is None), decision.reasons
    assert decision.keys == ([key] if key else [])
    assert "RMSE" in decision.summary() and "accuracy" not in decision.summary()


@pytest.mark.parametrize(
    ("champion_mae", "worse", "refused"),
    [
        (1.25, True, True),  # 1.375 is exactly 10 % more error, significant: refused
        (1.375 / 1.09, True, False),  # 9 % more: under max_error_increase
        (1.25, False, False),  # 10 % more, not significant: passes
        (1.6, True, False),  # less error than the champion: never a regression
    ],
)
def test_a_candidate_with_significantly_more_error_than_the_champion_is_refused(
    champion_mae: float, worse: bool, refused: bool
) -> None:
    champion = {**GOOD, "mae": champion_mae}
    decision = decide(
        {**GOOD, "mae": 1.375},
        champion,
        ModelValidationConfig(),
        champion_version=1,
        versus=_versus(worse=worse),
    )
    assert decision.passed is not refused, decision.reasons
    assert ("model_validation.max_error_increase" in decision.keys) is refused


@pytest.mark.parametrize("better", [True, False])
def test_a_regression_retrain_deploys_only_with_significantly_less_error(better: bool) -> None:
    decision = decide(
        GOOD,
        {**GOOD, "mae": 2.0},
        ModelValidationConfig(),
        champion_version=1,
        production_rows=True,
        versus=_versus(better=better),
    )
    assert decision.passed is better
    assert ("model_validation.retrain_must_beat_champion" in decision.keys) is not better


def test_the_paired_test_of_errors_points_the_right_way() -> None:
    rng = np.random.default_rng(3)
    small = np.abs(rng.normal(0, 1.0, 300))
    large = small + np.abs(rng.normal(0.2, 0.1, 300))
    found = paired_errors(small, large, confidence=0.95)
    assert found.better and not found.worse and found.a_only == 300
    assert found.mae_a < found.mae_b and found.difference > 0
    back = paired_errors(large, small, confidence=0.95)
    assert back.worse and not back.better
    same = paired_errors(small, small, confidence=0.95)
    assert not same.better and not same.worse


def test_an_error_rise_needs_significance_and_points_up() -> None:
    assert rise(1.3, 1.0, 400, 1.0, 1.0, 400, confidence=0.95).significant
    assert not rise(1.3, 1.0, 20, 1.0, 1.0, 400, confidence=0.95).significant  # too few rows
    assert not rise(0.7, 1.0, 400, 1.0, 1.0, 400, confidence=0.95).significant  # less error
    assert rise(1.3, 1.0, 400, 1.0, 1.0, 400, confidence=0.95).size == pytest.approx(0.3)


def _window(mae: float, *, estimated: bool, low: float, high: float) -> Performance:
    return Performance(
        accuracy=float("nan"),
        estimated=estimated,
        rows=400,
        low=low,
        high=high,
        mae=mae,
        rmse=mae * 1.3,
        spread=1.0,
    )


VALIDATION = {"mae": 1.0, "spread": 1.0, "rows": 400}


@pytest.mark.parametrize(
    ("mae", "action"),
    [(1.3, "retrain"), (1.05, "none"), (0.7, "none")],
)
def test_a_measured_error_rise_retrains(mae: float, action: str) -> None:
    """Significant and at least max_error_increase (10 %) above validation: retrain."""
    window = _window(mae, estimated=False, low=mae - 0.1, high=mae + 0.1)
    found = policy_decide(None, window, settings=Settings(), now=0.0, validation_error=VALIDATION)
    assert found.action == action, found.reasons
    assert ("measured_drop" in found.triggers) is (action == "retrain")


@pytest.mark.parametrize(("low", "acted"), [(1.11, True), (1.09, False)])
def test_an_estimated_error_rise_counts_only_beyond_its_interval(low: float, acted: bool) -> None:
    """The ceiling is validation's MAE plus 10 % (1.1): the whole interval must be above it."""
    window = _window(1.5, estimated=True, low=low, high=1.9)
    found = policy_decide(None, window, settings=Settings(), now=0.0, validation_error=VALIDATION)
    assert ("estimated_drop" in found.triggers) is acted, found.reasons
    assert found.action == ("retrain" if acted else "none")


@pytest.mark.parametrize("rows", [300, 5000])
def test_the_model_of_the_error_is_stored_with_exactly_the_types_it_needs(rows: int) -> None:
    """Both sizes (a small holdout's and a large one's) load with skops trusting exactly
    ``ERROR_MODEL_TYPES``, and answer as before they were stored."""
    import pandas as pd
    import skops.io

    from mlmedic.model.tasks.regression import ERROR_MODEL_TYPES, ErrorModel

    rng = np.random.default_rng(5)
    features = pd.DataFrame({"x": rng.normal(size=rows)})
    features["kind"] = pd.Series(rng.choice(["a", "b"], rows)).astype(object)
    truth = features["x"] * 2 + rng.normal(size=rows)
    model = ErrorModel.fit(features, np.zeros(rows), truth.to_numpy())
    stored = model.to_dict()
    found = skops.io.get_untrusted_types(data=skops.io.dumps(model.model))
    assert sorted(found) == sorted(ERROR_MODEL_TYPES)
    back = ErrorModel.from_dict(stored)
    head = features.head(20)
    assert np.array_equal(back.errors(head, np.zeros(20)), model.errors(head, np.zeros(20)))
    # far from zero, the error is larger: the model of the error learned where it is
    edges = model.errors(pd.DataFrame({"x": [-3.0, 0.0, 3.0], "kind": ["a"] * 3}), np.zeros(3))
    assert edges[0] > edges[1] < edges[2]


def test_a_retrained_regression_is_judged_on_validation_pooled_with_its_first_window(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """As for accuracy: a retrained version's validation MAE (optimistic: a small holdout of the
    newest rows) is pooled with its first labelled window of at least ``min_rows`` rows — not
    an earlier version's window, not a smaller one."""
    from mlmedic.heal.monitor.history import expected_error
    from mlmedic.store.events import EventKind, EventStore, Outcome

    baseline = {"validation_error": {"mae": 1.0, "spread": 0.5, "rows": 100}}
    with EventStore(tmp_path / "events.db") as events:
        assert expected_error(events, 2, baseline, min_rows=50)["mae"] == 1.0  # not retrained
        events.record(EventKind.RETRAIN, "retrain", Outcome.SUCCESS, details={"candidate": 2})
        for version, rows, mae in ((1, 300, 9.0), (2, 40, 9.0), (2, 300, 2.0), (2, 300, 5.0)):
            details = {"measured_rows": rows, "measured_mae": mae}
            events.record(EventKind.MONITOR, "pass", details=details, model_version=version)
        found = expected_error(events, 2, baseline, min_rows=50)
        assert found["mae"] == pytest.approx((1.0 * 100 + 2.0 * 300) / 400)
        assert found["rows"] == 400 and found["spread"] == 0.5
        assert expected_error(events, 2, {}, min_rows=50) is None  # a classifier's baseline


def test_a_regression_replay_counts_an_alert_as_needless_only_under_the_error_ceiling() -> None:
    """Replay's summary of a regression: the mean and worst (highest) MAE, and an alert is
    needless on a window whose error stayed within validation's MAE + max_error_increase
    (1.0 → 1.1): at 1.1 it is needless, above it it is not, without an alert it does not count."""
    from mlmedic.heal.replay import WindowOutcome, _summaries

    def window(index: int, mae: float, alerts: list[str]) -> WindowOutcome:
        return WindowOutcome(
            index, "", "", 10, None, [], "", alerts, "none", "", [], 1, None, None, None, None,
            baselines={"never heal": mae + 1.0}, mae=mae,
        )  # fmt: skip

    outcomes = [window(0, 1.1, ["drift"]), window(1, 1.3, ["error rise"]), window(2, 0.5, [])]
    mine, never = _summaries(outcomes, REGRESSION, None, Settings(), 0, 0, validation_mae=1.0)
    assert mine.needless_alerts == 1  # window 0 (at the ceiling); window 1 is above it
    assert mine.mean_mae == pytest.approx(0.9667, abs=1e-4) and mine.worst_mae == 1.3
    assert never.name == "never heal" and never.worst_mae == 2.3
