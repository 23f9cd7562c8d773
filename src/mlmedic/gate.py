"""The validation gate: deploy a candidate only if it is good enough, no worse than the champion.

Three rules, from ``model_validation``: accuracy ≥ ``min_accuracy_threshold`` (0.70), F1 ≥
``min_f1_threshold`` (0.65), and, when ``rollback_on_degradation`` is on, accuracy no more than
``performance_degradation_threshold`` (0.05) below the champion's on the same holdout rows.

A healer must not keep a champion that is worse than its replacement: when the gate scores both
on the newest labelled production rows (a monitor's retrain), the candidate fails only the
absolute floors, the champion scores below the accuracy floor on those rows too, and the candidate
beats it by more than ``performance_degradation_threshold``, the candidate passes
(``replace_failing_champion``, on by default) and the decision says why. Never on the candidate's
own holdout: new training data with bad labels would make any champion look failing there.

Examples:
    >>> from mlmedic.config import ModelValidationConfig
    >>> decision = decide({"accuracy": 0.65, "f1": 0.7}, None, ModelValidationConfig())
    >>> decision.passed, decision.reasons
    (False, ['Model accuracy 0.65 below threshold 0.70'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlmedic.config import ModelValidationConfig


@dataclass
class GateDecision:
    """The verdict and every number behind it."""

    passed: bool
    reasons: list[str]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    champion_version: int | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        accuracy = self.candidate.get("accuracy", float("nan"))
        f1 = self.candidate.get("f1", float("nan"))
        numbers = f"accuracy {accuracy:.3f}, F1 {f1:.3f}"
        if self.champion is not None:
            numbers += (
                f"; champion v{self.champion_version} on the same holdout: "
                f"accuracy {self.champion.get('accuracy', float('nan')):.3f}"
            )
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.reasons)
        if self.passed and self.notes:
            verdict += " (" + "; ".join(self.notes) + ")"
        return f"{numbers} -> {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    config: ModelValidationConfig,
    *,
    champion_version: int | None = None,
    production_rows: bool = False,
) -> GateDecision:
    """Apply the gate to a candidate's holdout metrics (and the champion's, on the same rows);
    ``production_rows``: the rows are the newest labelled production rows, held out by time."""
    floors: list[str] = []
    accuracy = candidate.get("accuracy", 0.0)
    f1 = candidate.get("f1", 0.0)
    if not accuracy >= config.min_accuracy_threshold:
        floors.append(
            f"Model accuracy {accuracy:.2f} below threshold {config.min_accuracy_threshold:.2f}"
        )
    if not f1 >= config.min_f1_threshold:
        floors.append(f"Model F1 {f1:.2f} below threshold {config.min_f1_threshold:.2f}")
    degraded: list[str] = []
    compared = champion if config.rollback_on_degradation else None
    if compared is not None:
        drop = compared.get("accuracy", 0.0) - accuracy
        if drop > config.performance_degradation_threshold:
            degraded.append(
                f"Model accuracy {accuracy:.3f} is {drop:.3f} below champion "
                f"v{champion_version}'s {compared['accuracy']:.3f} on the same holdout "
                f"(allowed {config.performance_degradation_threshold:.2f})"
            )
    notes: list[str] = []
    champion_accuracy = champion.get("accuracy", 1.0) if champion is not None else 1.0
    if (
        floors
        and not degraded
        and config.replace_failing_champion
        and production_rows
        and champion is not None
        and champion_accuracy < config.min_accuracy_threshold
        and accuracy > champion_accuracy + config.performance_degradation_threshold
    ):
        notes.append(
            f"below the floors, but champion v{champion_version} fails them worse on the same "
            f"rows ({champion_accuracy:.3f} < {accuracy:.3f}): replacing it"
        )
        floors = []
        compared = champion
    reasons = floors + degraded
    return GateDecision(
        passed=not reasons,
        notes=notes,
        reasons=reasons,
        candidate=dict(candidate),
        champion=dict(compared) if compared is not None else None,
        champion_version=champion_version if compared is not None else None,
        thresholds={
            "min_accuracy": config.min_accuracy_threshold,
            "min_f1": config.min_f1_threshold,
            "max_degradation": config.performance_degradation_threshold,
        },
    )
