from __future__ import annotations

from mlmedic.config import ModelValidationConfig
from mlmedic.gate import decide

CONFIG = ModelValidationConfig()


def test_good_candidate_without_champion_passes() -> None:
    decision = decide({"accuracy": 0.86, "f1": 0.8}, None, CONFIG)
    assert decision.passed and decision.reasons == []
    assert "PASS" in decision.summary()


def test_accuracy_below_threshold_fails_with_the_seed_message() -> None:
    decision = decide({"accuracy": 0.65, "f1": 0.9}, None, CONFIG)
    assert not decision.passed
    assert decision.reasons == ["Model accuracy 0.65 below threshold 0.70"]


def test_f1_below_threshold_fails() -> None:
    decision = decide({"accuracy": 0.75, "f1": 0.10}, None, CONFIG)
    assert decision.reasons == ["Model F1 0.10 below threshold 0.65"]


def test_regression_against_the_champion_beyond_the_allowance_fails() -> None:
    worse = decide({"accuracy": 0.80, "f1": 0.8}, {"accuracy": 0.86}, CONFIG, champion_version=4)
    assert not worse.passed
    assert "below champion v4's 0.860" in worse.reasons[0]
    within = decide({"accuracy": 0.82, "f1": 0.8}, {"accuracy": 0.86}, CONFIG, champion_version=4)
    assert within.passed
    assert within.champion == {"accuracy": 0.86}


def test_comparison_can_be_switched_off() -> None:
    config = ModelValidationConfig(rollback_on_degradation=False)
    decision = decide({"accuracy": 0.75, "f1": 0.7}, {"accuracy": 0.99}, config, champion_version=1)
    assert decision.passed and decision.champion is None


def test_nan_metrics_never_pass() -> None:
    assert not decide({"accuracy": float("nan"), "f1": 0.9}, None, CONFIG).passed


def test_a_candidate_under_the_floors_replaces_a_champion_that_fails_them_worse() -> None:
    config = ModelValidationConfig()
    worse, better = {"accuracy": 0.27}, {"accuracy": 0.66, "f1": 0.5}
    decision = decide(better, worse, config, champion_version=1, production_rows=True)
    assert decision.passed and "fails them worse" in decision.summary()
    # on the candidate's own holdout (new training data, maybe bad labels): the floors hold
    assert not decide(better, worse, config, champion_version=1).passed
    close = decide({"accuracy": 0.30, "f1": 0.5}, worse, config, production_rows=True)
    assert not close.passed  # not better by more than the allowed degradation
    assert not decide(better, {"accuracy": 0.64}, config, production_rows=True).passed
    off = ModelValidationConfig(replace_failing_champion=False)
    assert not decide(better, worse, off, production_rows=True).passed
