"""The policy: from a window's drift and performance to one action — retrain, roll back, alert,
or nothing — with the retraining cooldown counted from the event store (so it survives restarts).

Rules (``drift_detection`` and ``model_validation``):
- alert on drift (score > ``drift_threshold``) and on an accuracy drop (below
  ``min_accuracy_threshold``, or more than ``performance_degradation_threshold`` below the
  champion's validation accuracy);
- on an accuracy drop where ``previous`` scores better on the same labelled window: roll back;
- otherwise, on drift or a drop: retrain if ``auto_retrain_enabled`` and the cooldown
  (``retraining_cooldown_hours`` since the last retrain, whatever the gate said) has passed;
  else record "cooldown active, next retrain allowed at …".

Examples:
    >>> from mlmedic.config import Settings
    >>> decide(None, None, settings=Settings(), last_retrain_at=None, now=0.0).action
    'none'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlmedic.clock import to_iso
from mlmedic.config import Settings
from mlmedic.drift import DriftReport
from mlmedic.performance import Performance


@dataclass
class Decision:
    """What to do about a window, and why."""

    action: str  # "retrain" | "rollback" | "alert" | "none"
    alerts: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    next_retrain_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        why = "; ".join(self.reasons) if self.reasons else "nothing to do"
        return f"{self.action}: {why}"


def decide(
    drift: DriftReport | None,
    performance: Performance | None,
    *,
    settings: Settings,
    last_retrain_at: float | None,
    now: float,
    validation_accuracy: float | None = None,
    previous_performance: Performance | None = None,
) -> Decision:
    detection = settings.self_healing.drift_detection
    validation = settings.self_healing.model_validation
    decision = Decision(action="none")
    drifted = drift is not None and drift.drift
    if drifted and drift is not None:
        decision.reasons.append(f"data drift: {drift.summary()}")
        if detection.alert_on_drift:
            decision.alerts.append(f"data drift detected: {drift.summary()}")
    dropped = False
    if performance is not None and performance.rows > 0:
        floor = validation.min_accuracy_threshold
        if validation_accuracy is not None:
            floor = max(floor, validation_accuracy - validation.performance_degradation_threshold)
        if performance.accuracy < floor:
            dropped = True
            decision.reasons.append(
                f"accuracy drop: {performance.summary()} < {floor:.3f}"
                + (f" (validation {validation_accuracy:.3f})" if validation_accuracy else "")
            )
            decision.alerts.append(f"accuracy drop: {performance.summary()}")
    if (
        dropped
        and performance is not None
        and not performance.estimated
        and previous_performance is not None
        and previous_performance.accuracy > performance.accuracy
    ):
        decision.action = "rollback"
        decision.reasons.append(
            f"previous version scores better on the same window "
            f"({previous_performance.accuracy:.3f} > {performance.accuracy:.3f})"
        )
        return decision
    if (drifted or dropped) and settings.auto_retrain_enabled:
        cooldown = settings.retraining_cooldown_hours * 3600.0
        allowed_at = None if last_retrain_at is None else last_retrain_at + cooldown
        if allowed_at is None or now >= allowed_at:
            decision.action = "retrain"
        else:
            decision.action = "alert" if decision.alerts else "none"
            decision.next_retrain_at = allowed_at
            decision.reasons.append(
                f"cooldown active, next retrain allowed at {to_iso(allowed_at)}"
            )
        return decision
    if decision.alerts:
        decision.action = "alert"
    return decision
