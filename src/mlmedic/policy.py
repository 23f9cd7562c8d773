"""The policy: from a window's drift and performance to one action — retrain, roll back, alert,
or nothing — with the retraining cooldown counted from the event store (so it survives restarts).

Rules (``drift_detection`` and ``model_validation``):
- alert on drift (score > ``drift_threshold``) and on an accuracy drop (below
  ``min_accuracy_threshold``, or more than ``performance_degradation_threshold`` below the
  champion's validation accuracy);
- accuracy counts only on at least ``min_samples_for_detection`` labelled rows ("insufficient
  labels" below it); an *estimated* accuracy counts as a drop only when its whole 95 % interval
  is below the floor (an estimate is weaker evidence than labels, and never rolls back);
- on a measured drop where ``previous`` scores better on the same labelled window, and clears
  the floor there itself: roll back;
- retrain (if ``auto_retrain_enabled`` and the cooldown — ``retraining_cooldown_hours`` since
  the last retrain, whatever the gate said — has passed; else "cooldown active, next retrain
  allowed at …") when:
  - ``retrain_on: "impact"`` (default): there is evidence of harm — a measured drop, an estimated
    drop beyond its uncertainty, or drift concentrated in the features the model relies on (the
    permutation-importance-weighted drift score above the threshold). Drift alone only alerts.
  - ``retrain_on: "drift"``: the original rule — drift, or a measured drop.
Every decision lists the evidence it used.

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
    evidence: list[str] = field(default_factory=list)  # what the action rests on
    policy: str = "impact"
    # the kinds of evidence: measured_drop, estimated_drop, important_drift, drift
    triggers: list[str] = field(default_factory=list)
    data_drift: bool = False  # the features drifted (whatever the action)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        why = "; ".join(self.reasons) if self.reasons else "nothing to do"
        if self.action in ("retrain", "rollback") and self.evidence:
            why += f" [evidence: {'; '.join(self.evidence)}]"
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
    importance_drift: float | None = None,
) -> Decision:
    """One action for a window; ``importance_drift`` is the drift score weighted by the
    champion's permutation importance (None when the version stored none)."""
    detection = settings.self_healing.drift_detection
    validation = settings.self_healing.model_validation
    decision = Decision(action="none", policy=detection.retrain_on)
    drifted = drift is not None and drift.drift
    decision.data_drift = drifted
    if drifted and drift is not None:
        decision.reasons.append(f"data drift: {drift.summary()}")
        if detection.alert_on_drift:
            decision.alerts.append(f"data drift detected: {drift.summary()}")
    floor = validation.min_accuracy_threshold
    if validation_accuracy is not None:
        floor = max(floor, validation_accuracy - validation.performance_degradation_threshold)
    measured_drop = estimated_drop = False
    if performance is not None and performance.rows > 0:
        minimum = detection.min_samples_for_detection
        if not performance.estimated and performance.rows < minimum:
            decision.reasons.append(
                f"insufficient labels: {performance.rows:,} labelled rows < {minimum:,} "
                "(min_samples_for_detection); accuracy not used"
            )
        elif performance.accuracy < floor:
            if not performance.estimated:
                measured_drop = True
                decision.triggers.append("measured_drop")
                decision.evidence.append(
                    f"measured accuracy drop: {performance.summary()} < {floor:.3f}"
                )
            elif performance.high is None or performance.high < floor:
                estimated_drop = True
                decision.triggers.append("estimated_drop")
                decision.evidence.append(
                    f"estimated accuracy drop beyond its uncertainty: {performance.summary()} "
                    f"< {floor:.3f}"
                )
            else:
                decision.reasons.append(
                    f"estimated accuracy {performance.accuracy:.3f} below {floor:.3f} but within "
                    f"its uncertainty [{performance.low:.3f}, {performance.high:.3f}]: not acted on"
                )
            if measured_drop or estimated_drop:
                decision.reasons.append(
                    f"accuracy drop: {performance.summary()} < {floor:.3f}"
                    + (f" (validation {validation_accuracy:.3f})" if validation_accuracy else "")
                )
                decision.alerts.append(f"accuracy drop: {performance.summary()}")
    if (
        measured_drop
        and previous_performance is not None
        and previous_performance.rows >= detection.min_samples_for_detection
        and previous_performance.accuracy > (performance.accuracy if performance else 1.0)
        # rolling back to a version that fails the same floor heals nothing: retrain instead
        and previous_performance.accuracy >= floor
    ):
        decision.action = "rollback"
        decision.reasons.append(
            f"previous version scores better on the same window "
            f"({previous_performance.accuracy:.3f} > {performance.accuracy:.3f})"  # type: ignore[union-attr]
        )
        decision.evidence.append(decision.reasons[-1])
        return decision
    if detection.retrain_on == "drift":
        if drifted and drift is not None:
            decision.triggers.append("drift")
            decision.evidence.append(f"drift score {drift.score:.2f} > {drift.threshold}")
        harm = drifted or measured_drop
    else:
        important = (
            drifted
            and importance_drift is not None
            and drift is not None
            and importance_drift > drift.threshold
        )
        if important and drift is not None:
            decision.triggers.append("important_drift")
            decision.evidence.append(
                f"drift in the features the model relies on: importance-weighted score "
                f"{importance_drift:.2f} > {drift.threshold}"
            )
        elif drifted:
            weighted = (
                f" (importance-weighted score {importance_drift:.2f})"
                if importance_drift is not None
                else ""
            )
            decision.reasons.append(
                f"drift without evidence of harm{weighted}: alert only (retrain_on: impact)"
            )
        harm = measured_drop or estimated_drop or important
    if harm and settings.auto_retrain_enabled:
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
