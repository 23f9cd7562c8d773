"""The policy: from a window's drift and performance to one action — retrain, roll back, alert,
or nothing — with every decision's evidence.

Rules (``drift_detection`` and ``model_validation``):
- **A drop is significant and large enough.** Measured accuracy counts only on at least
  ``min_samples_for_detection`` labelled rows; it is a drop when it is significantly below the
  champion's validation accuracy (one-sided, at ``evidence_confidence``, the validation holdout's
  own sampling error included) by at least ``performance_degradation_threshold``, or
  significantly below ``min_accuracy_threshold``. An *estimated* accuracy counts only when its
  whole 95 % interval is below the floor (an estimate never rolls back).
- **Roll back on evidence that the model is at fault:** a drop where ``previous`` is
  significantly better on the same labelled rows (McNemar) and clears the floor there itself; or
  — *a heal that hurts* — while a retrained champion is on probation (its first labelled window,
  and every one until the cooldown its deployment started ends), a window shows ``previous``
  significantly better on the same rows. Once: the rolled-back version is out of the running.
- **Retrain on evidence of harm** (``retrain_on: "impact"``, the default): a measured drop, an
  estimated drop beyond its uncertainty, or drift that matters to the model (the drift score,
  weighted by importance and magnitude, above ``drift_threshold``) when no labels say otherwise —
  labels that show no drop outweigh drift. ``retrain_on: "drift"`` keeps the original rule.
- **Alerts are for harm, and for drift no labels can judge** (performance first, as NannyML
  argues against alert fatigue): drift is alerted when the champion's inputs begin to drift and
  no labels measured on the window's own rows show its accuracy holding; while the drift goes on
  (the previous pass saw it too, on the same champion) it is reported in every pass, not alerted
  again.
- **The cooldown is spent by deployments.** ``retraining_cooldown_hours`` run from the last
  retrain that *deployed* a version. A refused retrain backs off: the next attempt waits for one
  monitoring interval and for as many new labelled rows as the refused one was judged on (its
  holdout of newest rows; at least ``min_samples_for_detection``), doubled for each refusal in a
  row since the last deployment. ``retrain_allowed`` is the one rule,
  used here and again by the action under the project lock.

Examples:
    >>> from mlmedic.core.config import Settings
    >>> decide(None, None, settings=Settings(), last_retrain_at=None, now=0.0).action
    'none'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlmedic.core.clock import to_iso
from mlmedic.core.config import Settings
from mlmedic.core.evidence import Paired, drop
from mlmedic.data.drift import DriftReport
from mlmedic.model.performance import Performance
from mlmedic.model.tasks.regression import rise


@dataclass
class Decision:
    """What to do about a window, and why."""

    action: str  # "retrain" | "rollback" | "alert" | "none"
    alerts: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    next_retrain_at: float | None = None
    evidence: list[str] = field(default_factory=list)  # what the action rests on
    policy: str = "impact"
    # the kinds of evidence: measured_drop, estimated_drop, important_drift, drift, heal_hurts
    triggers: list[str] = field(default_factory=list)
    data_drift: bool = False  # the features drifted (whatever the action)
    # the measured drop's test (observed, expected, p-value, size), when labels were measured
    drop_test: dict[str, Any] | None = None
    waiting: str = ""  # why a retrain the evidence asks for waits (cooldown, back-off)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        why = "; ".join(self.reasons) if self.reasons else "nothing to do"
        if self.action in ("retrain", "rollback") and self.evidence:
            why += f" [evidence: {'; '.join(self.evidence)}]"
        return f"{self.action}: {why}"


@dataclass(frozen=True)
class RetrainHistory:
    """What the event store says about earlier retrains: the cooldown runs from
    ``deployed_at``; after a refused attempt (``refused_at``), the next waits for ``rows_needed``
    new labelled rows (``rows_since`` have arrived)."""

    deployed_at: float | None = None
    refused_at: float | None = None
    rows_needed: int = 0
    rows_since: int = 0


@dataclass(frozen=True)
class Allowance:
    """Whether a retrain may start now, and if not, why and until when."""

    allowed: bool
    why: str = ""
    next_at: float | None = None


def retrain_allowed(history: RetrainHistory, now: float, settings: Settings) -> Allowance:
    """The one rule for when a retrain may start (see the module docstring)."""
    cooldown = settings.retraining_cooldown_hours * 3600.0
    if history.deployed_at is not None:
        allowed_at = history.deployed_at + cooldown
        if now < allowed_at:
            return Allowance(
                False,
                f"cooldown active, next retrain allowed at {to_iso(allowed_at)} (a retrained "
                f"version was deployed at {to_iso(history.deployed_at)})",
                allowed_at,
            )
    refused = history.refused_at
    if refused is not None and (history.deployed_at is None or refused >= history.deployed_at):
        interval = settings.monitoring.monitoring_interval_hours * 3600.0
        if now < refused + interval:
            return Allowance(
                False,
                f"backing off: a retrain was refused at {to_iso(refused)}; at most one attempt "
                f"per monitoring interval (next from {to_iso(refused + interval)})",
                refused + interval,
            )
        if history.rows_since < history.rows_needed:
            return Allowance(
                False,
                f"backing off: a retrain was refused at {to_iso(refused)}; the next waits for "
                f"{history.rows_needed:,} new labelled rows ({history.rows_since:,} so far)",
            )
    return Allowance(True)


def decide(
    drift: DriftReport | None,
    performance: Performance | None,
    *,
    settings: Settings,
    now: float,
    last_retrain_at: float | None = None,
    history: RetrainHistory | None = None,
    validation_accuracy: float | None = None,
    validation_rows: int = 0,
    versus_previous: Paired | None = None,
    previous_performance: Performance | None = None,
    probation: bool = False,
    drift_ongoing: bool = False,
    estimate: Performance | None = None,
    validation_error: dict[str, Any] | None = None,
) -> Decision:
    """One action for a window.

    ``last_retrain_at`` (a shorthand for ``history``): when a retrain last deployed a version;
    ``validation_rows``: how many holdout rows ``validation_accuracy`` was measured on (0: taken
    as exact); ``versus_previous``: the champion (A) against ``previous`` (B) on the window's
    labelled rows; ``previous_performance``: ``previous``'s metrics there; ``probation``: the
    champion is a retrained version on probation (``monitor.history.on_probation``);
    ``drift_ongoing``: the previous pass saw the same champion's inputs drift (already alerted);
    ``estimate``: the window's own label-free estimate when ``performance`` was measured on
    other rows (labels that arrived late describe earlier rows: they cannot say the window is
    fine, and its estimate still counts); ``validation_error``: a regression's validation
    error (``mae``, ``spread``, ``rows``): its windows are judged on error (``_errors``).
    """
    detection = settings.self_healing.drift_detection
    history = history or RetrainHistory(deployed_at=last_retrain_at)
    decision = Decision(action="none", policy=detection.retrain_on)
    drifted = drift is not None and drift.drift
    decision.data_drift = drifted
    floor = _floor(validation_accuracy, settings)

    def judge(found: Performance | None) -> tuple[bool, bool, bool]:
        if validation_error is not None:
            return _errors(found, decision, settings, validation_error)
        return _performance(found, decision, settings, validation_accuracy, validation_rows, floor)

    measured_drop, estimated_drop, labels_say_fine = judge(performance)
    if estimate is not None:  # the labels were of earlier rows
        labels_say_fine = False
        if not measured_drop:
            _, estimated_drop, _ = judge(estimate)
    if validation_error is not None:  # previous "clears the floor": no more error than allowed
        floor = -_ceiling(validation_error, settings)
    findings, decision.reasons = decision.reasons, []  # the drift's reasons come first
    if drifted and drift is not None:
        decision.reasons.append(
            f"data drift{' continues' if drift_ongoing else ''}: {drift.summary()}"
        )
        # alerts are for harm, and for drift no labels can judge: labels measured on the
        # window's own rows that show no drop vouch for the model (the drift is reported)
        if detection.alert_on_drift and not drift_ongoing and not labels_say_fine:
            decision.alerts.insert(0, f"data drift detected: {drift.summary()}")
    decision.reasons += findings
    if _rollback(decision, measured_drop, versus_previous, previous_performance, probation, floor):
        return decision
    if detection.retrain_on == "drift":
        if drifted and drift is not None:
            decision.triggers.append("drift")
            decision.evidence.append(f"drift score {drift.score:.2f} > {drift.threshold}")
        harm = drifted or measured_drop
    else:
        important = drifted and drift is not None and drift.weighted
        if important and labels_say_fine:
            decision.reasons.append(
                "drift in the features the model relies on, but the labels measured on this "
                "window show no drop: reported, not acted on (retrain_on: impact)"
            )
        elif important and drift is not None:
            decision.triggers.append("important_drift")
            decision.evidence.append(
                f"drift in the features the model relies on: {drift.summary()}"
            )
        elif drifted:
            decision.reasons.append(
                "drift without evidence of harm: alert only (retrain_on: impact)"
            )
        harm = measured_drop or estimated_drop or (important and not labels_say_fine)
    if harm and settings.auto_retrain_enabled:
        allowance = retrain_allowed(history, now, settings)
        if allowance.allowed:
            decision.action = "retrain"
        else:
            decision.action = "alert" if decision.alerts else "none"
            decision.next_retrain_at = allowance.next_at
            decision.waiting = allowance.why
            decision.reasons.append(allowance.why)
        return decision
    if decision.alerts:
        decision.action = "alert"
    return decision


def _floor(validation_accuracy: float | None, settings: Settings) -> float:
    """The accuracy below which a window is harmed: the absolute floor, or the validation
    accuracy less the smallest drop that counts, whichever is higher."""
    validation = settings.self_healing.model_validation
    floor = validation.min_accuracy_threshold
    if validation_accuracy is not None:
        floor = max(floor, validation_accuracy - validation.performance_degradation_threshold)
    return floor


def _performance(
    performance: Performance | None,
    decision: Decision,
    settings: Settings,
    validation_accuracy: float | None,
    validation_rows: int,
    floor: float,
) -> tuple[bool, bool, bool]:
    """(measured drop, estimated drop, labels show no drop) — with the reasons and evidence
    written into ``decision``."""
    detection = settings.self_healing.drift_detection
    validation = settings.self_healing.model_validation
    confidence = validation.evidence_confidence
    if performance is None or performance.rows <= 0:
        return False, False, False
    if performance.estimated:
        if performance.accuracy >= floor:
            return False, False, False
        if performance.high is None or performance.high < floor:
            decision.triggers.append("estimated_drop")
            decision.evidence.append(
                f"estimated accuracy drop beyond its uncertainty: {performance.summary()} "
                f"< {floor:.3f}"
            )
            decision.reasons.append(f"accuracy drop: {performance.summary()} < {floor:.3f}")
            decision.alerts.append(f"accuracy drop: {performance.summary()}")
            return False, True, False
        decision.reasons.append(
            f"estimated accuracy {performance.accuracy:.3f} below {floor:.3f} but within "
            f"its uncertainty [{performance.low:.3f}, {performance.high:.3f}]: not acted on"
        )
        return False, False, False
    minimum = detection.min_samples_for_detection
    if performance.rows < minimum:
        decision.reasons.append(
            f"insufficient labels: {performance.rows:,} labelled rows < {minimum:,} "
            "(min_samples_for_detection); accuracy not used"
        )
        return False, False, False
    accuracy, rows = performance.accuracy, performance.rows
    below_floor = drop(accuracy, rows, validation.min_accuracy_threshold, 0, confidence=confidence)
    found = below_floor if below_floor.significant else None
    if found is None and validation_accuracy is not None:
        test = drop(accuracy, rows, validation_accuracy, validation_rows, confidence=confidence)
        decision.drop_test = test.to_dict()
        if test.significant and test.size >= validation.performance_degradation_threshold:
            found = test
    elif found is not None:
        decision.drop_test = found.to_dict()
    if found is None:
        return False, False, True
    decision.triggers.append("measured_drop")
    against = (
        f"validation {found.expected:.3f}"
        if found is not below_floor
        else f"min_accuracy_threshold {found.expected:.2f}"
    )
    decision.evidence.append(
        f"measured accuracy drop: {performance.summary()} is {found.size:.3f} below {against} "
        f"(p = {found.p_value:.2g} < {1 - confidence:.2g})"
    )
    decision.reasons.append(
        f"accuracy drop: {performance.summary()} < {against}"
        + (f" (floor {floor:.3f})" if validation_accuracy is not None else "")
    )
    decision.alerts.append(f"accuracy drop: {performance.summary()}")
    return True, False, False


def _rollback(
    decision: Decision,
    measured_drop: bool,
    versus_previous: Paired | None,
    previous_performance: Performance | None,
    probation: bool,
    floor: float,
) -> bool:
    """Decide a rollback (written into ``decision``); True when rolling back."""
    if versus_previous is None or not versus_previous.worse:
        return False
    numbers = versus_previous.summary("the champion", "previous")
    if probation:
        decision.action = "rollback"
        decision.triggers.append("heal_hurts")
        decision.reasons.append(
            f"a heal that hurts: on probation since a retrain deployed it, {numbers}"
        )
        decision.evidence.append(decision.reasons[-1])
        return True
    clears = previous_performance is not None and (
        previous_performance.accuracy >= floor
        if previous_performance.mae is None
        else -previous_performance.mae >= floor  # a regression's floor is its ceiling negated
    )
    if measured_drop and clears:
        # rolling back to a version that fails the same floor heals nothing: retrain instead
        decision.action = "rollback"
        decision.reasons.append(f"previous version scores significantly better: {numbers}")
        decision.evidence.append(decision.reasons[-1])
        return True
    return False


def _ceiling(validation_error: dict[str, Any], settings: Settings) -> float:
    """The MAE above which a regression's window is harmed: validation's, plus the smallest
    rise that counts (``max_error_increase``)."""
    increase = settings.self_healing.model_validation.max_error_increase
    return float(validation_error["mae"]) * (1.0 + increase)


def _errors(
    performance: Performance | None,
    decision: Decision,
    settings: Settings,
    validation_error: dict[str, Any],
) -> tuple[bool, bool, bool]:
    """``_performance`` for a regression: a window's error against validation's. Measured: a
    rise significant at ``evidence_confidence`` (``tasks.regression.rise``) by at least
    ``max_error_increase``; estimated: the whole interval above the ceiling."""
    validation = settings.self_healing.model_validation
    if performance is None or performance.rows <= 0 or performance.mae is None:
        return False, False, False
    ceiling = _ceiling(validation_error, settings)
    if performance.estimated:
        if performance.mae <= ceiling:
            return False, False, False
        if performance.low is None or performance.low > ceiling:
            decision.triggers.append("estimated_drop")
            decision.evidence.append(
                f"estimated error rise beyond its uncertainty: {performance.summary()} > "
                f"{ceiling:.4g}"
            )
            decision.reasons.append(f"error rise: {performance.summary()} > {ceiling:.4g}")
            decision.alerts.append(f"error rise: {performance.summary()}")
            return False, True, False
        decision.reasons.append(
            f"estimated MAE {performance.mae:.4g} above {ceiling:.4g} but within its "
            f"uncertainty [{performance.low:.4g}, {performance.high:.4g}]: not acted on"
        )
        return False, False, False
    minimum = settings.self_healing.drift_detection.min_samples_for_detection
    if performance.rows < minimum:
        decision.reasons.append(
            f"insufficient labels: {performance.rows:,} labelled rows < {minimum:,} "
            "(min_samples_for_detection); error not used"
        )
        return False, False, False
    test = rise(
        performance.mae,
        performance.spread or 0.0,
        performance.rows,
        float(validation_error["mae"]),
        float(validation_error.get("spread") or 0.0),
        int(validation_error.get("rows") or 0),
        confidence=validation.evidence_confidence,
    )
    decision.drop_test = test.to_dict()
    if not (test.significant and test.size >= validation.max_error_increase):
        return False, False, True
    decision.triggers.append("measured_drop")
    decision.evidence.append(
        f"measured error rise: {performance.summary()} is {test.size:.1%} above validation "
        f"{test.expected:.4g} (p = {test.p_value:.2g} < {1 - validation.evidence_confidence:.2g})"
    )
    decision.reasons.append(f"error rise: {performance.summary()} > validation {test.expected:.4g}")
    decision.alerts.append(f"error rise: {performance.summary()}")
    return True, False, False
