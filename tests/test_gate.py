from __future__ import annotations

import numpy as np
import pytest

from mlmedic.core.config import ModelValidationConfig
from mlmedic.core.evidence import Paired, paired
from mlmedic.model.gate import decide, f1_floor

CONFIG = ModelValidationConfig()


def test_good_candidate_without_champion_passes() -> None:
    decision = decide({"accuracy": 0.86, "f1": 0.8}, None, CONFIG)
    assert decision.passed and decision.reasons == []
    assert "PASS" in decision.summary()


def test_accuracy_below_threshold_fails_with_the_seed_message() -> None:
    decision = decide({"accuracy": 0.65, "f1": 0.9}, None, CONFIG)
    assert not decision.passed
    assert decision.reasons == [
        "Model accuracy 0.65 below threshold 0.70 (model_validation.min_accuracy_threshold)"
    ]


def test_f1_below_threshold_fails() -> None:
    decision = decide({"accuracy": 0.75, "f1": 0.10}, None, CONFIG)
    assert decision.reasons == [
        "Model F1 0.10 below threshold 0.65 (model_validation.min_f1_threshold)"
    ]
    assert decision.keys == ["model_validation.min_f1_threshold"]


def test_regression_against_the_champion_beyond_the_allowance_fails() -> None:
    worse = decide({"accuracy": 0.80, "f1": 0.8}, {"accuracy": 0.86}, CONFIG, champion_version=4)
    assert not worse.passed
    assert "below champion v4's 0.860" in worse.reasons[0]
    within = decide({"accuracy": 0.85, "f1": 0.8}, {"accuracy": 0.86}, CONFIG, champion_version=4)
    assert within.passed
    assert within.champion == {"accuracy": 0.86}
    assert worse.keys == ["model_validation.performance_degradation_threshold"]


def test_comparison_can_be_switched_off() -> None:
    config = ModelValidationConfig(rollback_on_degradation=False)
    decision = decide({"accuracy": 0.75, "f1": 0.7}, {"accuracy": 0.99}, config, champion_version=1)
    assert decision.passed and decision.champion is None


def test_nan_metrics_never_pass() -> None:
    assert not decide({"accuracy": float("nan"), "f1": 0.9}, None, CONFIG).passed


def _paired(a: int, b: int, both: int, neither: int) -> Paired:
    """The candidate (A) against the champion (B): a rows only A gets right, b only B."""
    right_a = np.array([1] * a + [0] * b + [1] * both + [0] * neither, dtype=bool)
    right_b = np.array([0] * a + [1] * b + [1] * both + [0] * neither, dtype=bool)
    return paired(right_a, right_b, confidence=0.95)


def test_a_candidate_under_the_floors_replaces_a_champion_that_fails_them_worse() -> None:
    """#19 item 3: candidate 0.708 against champion 0.692 on the same rows, the champion under
    the 0.70 floor, the candidate's F1 under 0.65: deployed when the win is significant."""
    config = ModelValidationConfig(f1_scaled_by_prevalence=False)
    # 4,000 rows: 224 only the candidate gets right, 160 only the champion (0.708 vs 0.692)
    versus = _paired(224, 160, 2608, 1008)
    better = {"accuracy": versus.accuracy_a, "f1": 0.59}
    worse = {"accuracy": versus.accuracy_b, "f1": 0.55}
    assert round(better["accuracy"], 3) == 0.708 and round(worse["accuracy"], 3) == 0.692
    decision = decide(
        better, worse, config, champion_version=1, production_rows=True, versus=versus
    )
    assert decision.passed and "significantly worse on the same rows" in decision.summary()
    assert "model_validation.replace_failing_champion" in decision.summary()
    # on the candidate's own holdout (new training data, maybe bad labels): the floors hold
    assert not decide(better, worse, config, champion_version=1, versus=versus).passed
    # the same accuracies on 400 rows are not evidence
    noise = _paired(22, 16, 261, 101)
    assert not decide(better, worse, config, production_rows=True, versus=noise).passed
    # a champion that clears the floors keeps its place
    fine = {"accuracy": 0.71, "f1": 0.7}
    assert not decide(better, fine, config, production_rows=True, versus=versus).passed
    off = ModelValidationConfig(replace_failing_champion=False, f1_scaled_by_prevalence=False)
    refused = decide(better, worse, off, production_rows=True, versus=versus)
    assert not refused.passed and refused.keys == ["model_validation.min_f1_threshold"]


def test_a_retrain_that_does_not_beat_the_champion_is_refused_and_says_which_key() -> None:
    versus = _paired(10, 12, 800, 178)
    candidate = {"accuracy": versus.accuracy_a, "f1": 0.9}
    champion = {"accuracy": versus.accuracy_b, "f1": 0.9}
    refused = decide(candidate, champion, CONFIG, production_rows=True, versus=versus)
    assert not refused.passed
    assert refused.keys == ["model_validation.retrain_must_beat_champion"]
    # a person's run is judged by the floors and the allowance, not by this rule
    assert decide(candidate, champion, CONFIG, versus=versus).passed


def test_the_degradation_rule_needs_significance_and_size() -> None:
    """A candidate refused only when significantly worse by at least the allowance."""
    small = _paired(40, 70, 800, 90)  # 3 points worse on 1,000 rows: significant
    assert small.worse and small.accuracy_b - small.accuracy_a == pytest.approx(0.03)
    champion = {"accuracy": small.accuracy_b, "f1": 0.9}
    candidate = {"accuracy": small.accuracy_a, "f1": 0.9}
    assert not decide(candidate, champion, CONFIG, versus=small).passed
    noisy = _paired(4, 7, 80, 9)  # the same 3 points on 100 rows: noise
    assert not noisy.worse
    assert decide(candidate, champion, CONFIG, versus=noisy).passed


def test_the_f1_floor_follows_the_positive_class_prevalence() -> None:
    """#19 item 3: a reasonable first model of a rare class (accuracy 0.81, F1 0.35 with 20 %
    positives) passes; the key that scaled the floor is named when it still refuses."""
    first = {"accuracy": 0.81, "f1": 0.35, "roc_auc": 0.75}
    assert decide(first, None, CONFIG, prevalence=0.2).passed
    assert not decide(first, None, CONFIG, prevalence=0.5).passed
    assert f1_floor(CONFIG, 0.2) == pytest.approx(0.325)
    weak = decide({"accuracy": 0.81, "f1": 0.2}, None, CONFIG, prevalence=0.2)
    assert weak.reasons == [
        "Model F1 0.20 below threshold 0.33 (model_validation.min_f1_threshold, scaled to a "
        "positive class of 20% by model_validation.f1_scaled_by_prevalence)"
    ]
    off = ModelValidationConfig(f1_scaled_by_prevalence=False)
    assert not decide(first, None, off, prevalence=0.2).passed


def test_every_gate_boundary_is_where_the_docs_put_it() -> None:
    """Each comparison at its exact boundary (values exact in binary, so no rounding decides):
    a floor met exactly passes; a drop of exactly the allowance is refused; a candidate equal to
    the champion is no drop at all even with no allowance; and on production rows an equal
    candidate does not beat the champion."""
    floors = ModelValidationConfig(min_accuracy_threshold=0.75, min_f1_threshold=0.5)
    assert decide({"accuracy": 0.75, "f1": 0.5}, None, floors).passed
    assert not decide({"accuracy": 0.75, "f1": 0.4999}, None, floors).passed
    assert not decide({"accuracy": 0.7499, "f1": 0.5}, None, floors).passed

    allowance = ModelValidationConfig(
        min_accuracy_threshold=0.5, min_f1_threshold=0.5, performance_degradation_threshold=0.25
    )
    at = decide({"accuracy": 0.5, "f1": 0.75}, {"accuracy": 0.75}, allowance, champion_version=2)
    assert not at.passed and at.keys == ["model_validation.performance_degradation_threshold"]
    under = decide({"accuracy": 0.5, "f1": 0.75}, {"accuracy": 0.7499}, allowance)
    assert under.passed

    none_allowed = ModelValidationConfig(
        min_accuracy_threshold=0.5, min_f1_threshold=0.5, performance_degradation_threshold=0.0
    )
    assert decide({"accuracy": 0.75, "f1": 0.75}, {"accuracy": 0.75}, none_allowed).passed

    must_beat = ModelValidationConfig(retrain_must_beat_champion=True)
    equal = decide(
        {"accuracy": 0.875, "f1": 0.875}, {"accuracy": 0.875}, must_beat, production_rows=True
    )
    assert equal.keys == ["model_validation.retrain_must_beat_champion"]
    better = decide(
        {"accuracy": 0.9, "f1": 0.9}, {"accuracy": 0.875}, must_beat, production_rows=True
    )
    assert better.passed
