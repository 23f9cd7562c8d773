from __future__ import annotations

import numpy as np

from mlmedic.core.config import Settings
from mlmedic.core.evidence import Paired, paired
from mlmedic.data.drift import DriftReport
from mlmedic.heal.policy import RetrainHistory, decide, retrain_allowed
from mlmedic.model.performance import Performance

HOUR = 3600.0


def _drift(score: float) -> DriftReport:
    return DriftReport([], score, 0.5, score > 0.5, False, 1000)


def _drift_rule() -> Settings:
    """The original design's rule (``retrain_on: drift``): drift alone retrains."""
    settings = Settings()
    settings.self_healing.drift_detection.retrain_on = "drift"
    return settings


def test_drift_retrains_when_the_cooldown_has_passed() -> None:
    decision = decide(_drift(0.8), None, settings=_drift_rule(), last_retrain_at=0.0, now=25 * HOUR)
    assert decision.action == "retrain"
    assert decision.alerts and "data drift" in decision.alerts[0]


def test_drift_within_the_cooldown_waits_and_says_until_when() -> None:
    decision = decide(_drift(0.8), None, settings=_drift_rule(), last_retrain_at=0.0, now=6 * HOUR)
    assert decision.action == "alert"
    assert decision.next_retrain_at == 24 * HOUR
    assert "cooldown active, next retrain allowed at 1970-01-02T00:00:00" in decision.summary()


def test_no_drift_no_drop_does_nothing() -> None:
    fine = Performance(accuracy=0.9, estimated=True, rows=500)
    decision = decide(
        _drift(0.2),
        fine,
        settings=Settings(),
        last_retrain_at=None,
        now=0.0,
        validation_accuracy=0.91,
    )
    assert decision.action == "none" and decision.alerts == []


def _versus(champion_only: int, previous_only: int, both: int, neither: int) -> Paired:
    right_a = np.array([1] * champion_only + [0] * previous_only + [1] * both + [0] * neither)
    right_b = np.array([0] * champion_only + [1] * previous_only + [1] * both + [0] * neither)
    return paired(right_a.astype(bool), right_b.astype(bool), confidence=0.95)


def test_accuracy_drop_with_a_better_previous_version_rolls_back() -> None:
    versus = _versus(10, 140, 300, 50)  # 0.62 against 0.88 on the same 500 rows
    worse = Performance(accuracy=versus.accuracy_a, estimated=False, rows=500)
    better = Performance(accuracy=versus.accuracy_b, estimated=False, rows=500)
    decision = decide(
        None,
        worse,
        settings=Settings(),
        last_retrain_at=None,
        now=0.0,
        validation_accuracy=0.9,
        previous_performance=better,
        versus_previous=versus,
    )
    assert decision.action == "rollback"
    assert "previous version scores significantly better" in decision.summary()
    # the same accuracies without the row-by-row comparison are no evidence against the model
    unpaired = decide(
        None,
        worse,
        settings=Settings(),
        now=0.0,
        validation_accuracy=0.9,
        previous_performance=better,
    )
    assert unpaired.action == "retrain"


def test_accuracy_drop_without_a_better_previous_retrains() -> None:
    worse = Performance(accuracy=0.80, estimated=False, rows=500)
    decision = decide(
        None, worse, settings=Settings(), last_retrain_at=None, now=0.0, validation_accuracy=0.9
    )
    assert decision.action == "retrain"  # 0.80 < 0.9, significantly, by more than 0.02
    assert "accuracy drop" in decision.alerts[0]


def test_an_estimate_never_triggers_a_rollback() -> None:
    worse = Performance(accuracy=0.6, estimated=True, rows=500)
    better = Performance(accuracy=0.9, estimated=False, rows=500)
    decision = decide(
        None, worse, settings=Settings(), last_retrain_at=None, now=0.0, previous_performance=better
    )
    assert decision.action == "retrain"


def test_auto_retrain_disabled_only_alerts() -> None:
    settings = Settings.model_validate(
        {"monitoring": {"monitoring_interval_hours": 6, "enable_auto_retrain": False}}
    )
    decision = decide(_drift(0.9), None, settings=settings, last_retrain_at=None, now=0.0)
    assert decision.action == "alert"


# ---------------------------------------------------------------- issue 19: evidence has a size


def test_a_significant_three_point_drop_on_5000_rows_counts() -> None:
    """#19 item 6: 0.89 against a validation of 0.92 (10,000 holdout rows) on 5,000 labelled
    rows is a drop; the same on 50 rows is noise; a significant drop smaller than
    performance_degradation_threshold (0.02) is too small to act on."""
    kwargs = {"now": 0.0, "validation_accuracy": 0.92, "validation_rows": 10_000}
    big = decide(None, Performance(0.89, False, 5000), settings=Settings(), **kwargs)
    assert big.action == "retrain" and big.triggers == ["measured_drop"]
    assert big.drop_test is not None and big.drop_test["significant"]
    few = decide(None, Performance(0.89, False, 150), settings=Settings(), **kwargs)
    assert few.action == "none" and few.drop_test is not None and not few.drop_test["significant"]
    tiny = decide(None, Performance(0.905, False, 50_000), settings=Settings(), **kwargs)
    assert tiny.drop_test is not None and tiny.drop_test["significant"]
    assert tiny.action == "none"  # 1.5 points: significant, below the 0.02 minimum effect
    # exactly the minimum effect counts (binary fractions: the boundary is exact)
    quarter = Settings()
    quarter.self_healing.model_validation.performance_degradation_threshold = 0.25
    quarter.self_healing.model_validation.min_accuracy_threshold = 0.5
    at = {"now": 0.0, "validation_accuracy": 0.75, "validation_rows": 10_000}
    assert decide(None, Performance(0.5, False, 5000), settings=quarter, **at).action == "retrain"
    assert decide(None, Performance(0.5078125, False, 5000), settings=quarter, **at).action == (
        "none"
    )


def test_a_refused_retrain_does_not_start_the_cooldown_but_backs_off() -> None:
    """#19 item 4: the cooldown runs from the last *deployed* retrain; a refused attempt waits
    for new labelled rows and one monitoring interval."""
    settings = Settings()
    drop_ = Performance(0.60, False, 500)
    kwargs = {"validation_accuracy": 0.9}
    refused = RetrainHistory(refused_at=0.0, rows_needed=1000, rows_since=400)
    waiting = decide(None, drop_, settings=settings, now=7 * HOUR, history=refused, **kwargs)
    assert waiting.action == "alert" and "1,000 new labelled rows (400 so far)" in waiting.waiting
    enough = RetrainHistory(refused_at=0.0, rows_needed=1000, rows_since=1000)
    assert decide(
        None, drop_, settings=settings, now=7 * HOUR, history=enough, **kwargs
    ).action == ("retrain")
    soon = decide(None, drop_, settings=settings, now=5 * HOUR, history=enough, **kwargs)
    assert soon.action == "alert" and "one attempt per monitoring interval" in soon.waiting
    # a deployment after the refusal: the cooldown rules, the old refusal is forgotten
    deployed = RetrainHistory(deployed_at=HOUR, refused_at=0.0, rows_needed=10**9)
    assert decide(
        None, drop_, settings=settings, now=25 * HOUR, history=deployed, **kwargs
    ).action == ("retrain")


def test_the_cooldown_boundary_is_inclusive() -> None:
    history = RetrainHistory(deployed_at=0.0)
    settings = Settings()
    assert not retrain_allowed(history, 24 * HOUR - 1, settings).allowed
    assert retrain_allowed(history, 24 * HOUR, settings).allowed
    refused = RetrainHistory(refused_at=0.0, rows_needed=10, rows_since=10)
    assert not retrain_allowed(refused, 6 * HOUR - 1, settings).allowed
    assert retrain_allowed(refused, 6 * HOUR, settings).allowed
    assert not retrain_allowed(
        RetrainHistory(refused_at=0.0, rows_needed=10, rows_since=9), 7 * HOUR, settings
    ).allowed


def test_a_heal_that_hurts_is_undone_on_its_first_labelled_window() -> None:
    """#19 item 9: a retrained champion on probation, significantly worse than `previous` on the
    same rows, is rolled back — even above every floor; off probation, it is not."""
    versus = _versus(20, 60, 850, 70)  # 0.87 against 0.91 on the same 1,000 rows
    assert versus.worse
    kwargs = {
        "settings": Settings(),
        "now": 0.0,
        "validation_accuracy": 0.88,
        "validation_rows": 1000,
        "versus_previous": versus,
        "previous_performance": Performance(versus.accuracy_b, False, 1000),
    }
    champion = Performance(versus.accuracy_a, False, 1000)
    hurt = decide(None, champion, probation=True, **kwargs)
    assert hurt.action == "rollback" and hurt.triggers == ["heal_hurts"]
    assert "a heal that hurts" in hurt.summary()
    assert decide(None, champion, probation=False, **kwargs).action == "none"
    noise = _versus(2, 6, 85, 7)  # the same shares on 100 rows: not evidence
    assert not noise.worse
    assert (
        decide(None, champion, probation=True, **{**kwargs, "versus_previous": noise}).action
        == "none"
    )
