from __future__ import annotations

from mlmedic.config import Settings
from mlmedic.drift import DriftReport
from mlmedic.performance import Performance
from mlmedic.policy import decide

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


def test_accuracy_drop_with_a_better_previous_version_rolls_back() -> None:
    worse = Performance(accuracy=0.62, estimated=False, rows=500)
    better = Performance(accuracy=0.88, estimated=False, rows=500)
    decision = decide(
        None,
        worse,
        settings=Settings(),
        last_retrain_at=None,
        now=0.0,
        validation_accuracy=0.9,
        previous_performance=better,
    )
    assert decision.action == "rollback"
    assert "previous version scores better" in decision.summary()


def test_accuracy_drop_without_a_better_previous_retrains() -> None:
    worse = Performance(accuracy=0.80, estimated=False, rows=500)
    decision = decide(
        None, worse, settings=Settings(), last_retrain_at=None, now=0.0, validation_accuracy=0.9
    )
    assert decision.action == "retrain"  # 0.80 < 0.9 - 0.05
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
