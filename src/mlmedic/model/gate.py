"""The validation gate: deploy a candidate only if it is good enough and no worse than the
champion, on evidence. Every refusal names the configuration key that decided it.

Rules, from ``model_validation``:
- **Floors**: accuracy ≥ ``min_accuracy_threshold`` (0.70) and F1 ≥ ``min_f1_threshold`` (0.65).
  With ``f1_scaled_by_prevalence`` (on), a binary model's F1 floor follows its positive class's
  prevalence ``p`` in the rows judged: it is multiplied by ``(2p/(1+p)) / (2/3)`` — the F1 of
  predicting the positive class for everyone, against its value on balanced classes — when
  ``p`` < 0.5. On balanced data the floor is the seed's 0.65; on a 20 % positive table 0.325, so a
  reasonable model of a rare class is not refused for being about a rare class.
- **No regression** (``rollback_on_degradation``): refused when the candidate is significantly
  worse than the champion on the same rows (McNemar, one-sided at ``evidence_confidence``) by at
  least ``performance_degradation_threshold``. Without per-row results, the drop alone decides.
- **A retrain must heal** (``retrain_must_beat_champion``, on the newest production rows only):
  a candidate that is not significantly better than the champion there (McNemar, one-sided at
  ``evidence_confidence``; without per-row results, not above it) would change the model
  without evidence that it heals anything, and is refused. Refused attempts back off until new
  labelled rows arrive, so a real gain becomes significant with more of them.
- **A failing champion is replaced** (``replace_failing_champion``): when the rows are the newest
  labelled production rows, the candidate fails only the floors, the champion fails them too
  there, and the candidate is significantly better on those same rows, the candidate passes —
  floors keep a bad model out while a better one serves; they must not keep a worse one in.
  Never on the candidate's own holdout: new training data with bad labels would make any
  champion look failing there.

Examples:
    >>> from mlmedic.core.config import ModelValidationConfig
    >>> decision = decide({"accuracy": 0.65, "f1": 0.7}, None, ModelValidationConfig())
    >>> decision.passed, decision.reasons
    (False, ['Model accuracy 0.65 below threshold 0.70 (model_validation.min_accuracy_threshold)'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlmedic.core.config import ModelValidationConfig
from mlmedic.core.evidence import OneSided

KEY = "model_validation"


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
    versus: dict[str, Any] | None = None  # the paired comparison with the champion
    keys: list[str] = field(default_factory=list)  # the config keys behind each refusal

    def summary(self) -> str:
        accuracy = self.candidate.get("accuracy", float("nan"))
        f1 = self.candidate.get("f1", float("nan"))
        numbers = f"accuracy {accuracy:.3f}, F1 {f1:.3f}"
        if "rmse" in self.candidate:
            numbers = error_numbers(self.candidate)
            if self.champion is not None:
                numbers += (
                    f"; champion v{self.champion_version} on the same rows: "
                    f"MAE {self.champion.get('mae', float('nan')):.4g}"
                )
        elif self.champion is not None:
            numbers += (
                f"; champion v{self.champion_version} on the same rows: "
                f"accuracy {self.champion.get('accuracy', float('nan')):.3f}"
            )
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.reasons)
        if self.passed and self.notes:
            verdict += " (" + "; ".join(self.notes) + ")"
        return f"{numbers} -> {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_numbers(metrics: dict[str, float]) -> str:
    """A regression's metrics in a line."""
    return (
        f"RMSE {metrics.get('rmse', float('nan')):.4g}, MAE {metrics.get('mae', float('nan')):.4g}"
        f", R² {metrics.get('r2', float('nan')):.3f}, RMSE/baseline "
        f"{metrics.get('rmse_ratio', float('nan')):.3f}"
    )


def f1_floor(config: ModelValidationConfig, prevalence: float | None) -> float:
    """The F1 floor for a binary model whose positive class has ``prevalence`` in the rows
    judged (None: a multiclass model, or unknown: the configured floor).

    >>> from mlmedic.core.config import ModelValidationConfig
    >>> round(f1_floor(ModelValidationConfig(), 0.2), 3), f1_floor(ModelValidationConfig(), 0.5)
    (0.325, 0.65)
    """
    floor = config.min_f1_threshold
    if not config.f1_scaled_by_prevalence or prevalence is None or not 0 < prevalence < 0.5:
        return floor
    return floor * (2 * prevalence / (1 + prevalence)) / (2 / 3)


def _floors(
    metrics: dict[str, float], config: ModelValidationConfig, prevalence: float | None
) -> list[tuple[str, str]]:
    """(reason, key) for every floor ``metrics`` fails."""
    failed: list[tuple[str, str]] = []
    accuracy = metrics.get("accuracy", 0.0)
    f1 = metrics.get("f1", 0.0)
    if not accuracy >= config.min_accuracy_threshold:
        key = f"{KEY}.min_accuracy_threshold"
        failed.append(
            (
                f"Model accuracy {accuracy:.2f} below threshold "
                f"{config.min_accuracy_threshold:.2f} ({key})",
                key,
            )
        )
    floor = f1_floor(config, prevalence)
    if not f1 >= floor:
        key = f"{KEY}.min_f1_threshold"
        scaled = (
            f", scaled to a positive class of {prevalence:.0%} by {KEY}.f1_scaled_by_prevalence"
            if floor != config.min_f1_threshold and prevalence is not None
            else ""
        )
        failed.append((f"Model F1 {f1:.2f} below threshold {floor:.2f} ({key}{scaled})", key))
    return failed


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    config: ModelValidationConfig,
    *,
    champion_version: int | None = None,
    production_rows: bool = False,
    versus: OneSided | None = None,
    prevalence: float | None = None,
) -> GateDecision:
    """Apply the gate to a candidate's metrics (and the champion's, on the same rows).

    ``production_rows``: the rows are the newest labelled production rows, held out by time (a
    monitor's retrain); ``versus``: the candidate (A) against the champion (B) row by row there;
    ``prevalence``: the positive class's share of those rows (binary models)."""
    if "rmse" in candidate:
        return _decide_errors(
            candidate, champion, config, champion_version, production_rows, versus
        )
    floors = _floors(candidate, config, prevalence)
    refusals: list[tuple[str, str]] = []
    compared = champion if config.rollback_on_degradation else None
    accuracy = candidate.get("accuracy", 0.0)
    if compared is not None:
        gap = compared.get("accuracy", 0.0) - accuracy
        allowed = config.performance_degradation_threshold
        refusals += _worse_than_champion(
            versus,
            gap >= allowed and gap > 0,
            "performance_degradation_threshold",
            f"Model accuracy {accuracy:.3f} is {gap:.3f} below champion v{champion_version}'s "
            f"{compared['accuracy']:.3f} on the same rows (allowed {allowed:.2f}",
        )
    notes: list[str] = []
    if champion is not None and production_rows and not refusals:
        champion_accuracy = champion.get("accuracy", 0.0)
        floors, notes = _on_newest(
            floors,
            refusals,
            config,
            versus,
            champion_version,
            beats=versus.better if versus is not None else accuracy > champion_accuracy,
            what=f"Model accuracy {accuracy:.3f} does not beat champion v{champion_version}'s "
            f"{champion_accuracy:.3f} significantly",
            champion_fails=bool(_floors(champion, config, prevalence)),
        )
        compared = champion if notes else compared
    thresholds = {
        "min_accuracy": config.min_accuracy_threshold,
        "min_f1": f1_floor(config, prevalence),
        "max_degradation": config.performance_degradation_threshold,
        "confidence": config.evidence_confidence,
    }
    return _verdict(
        floors + refusals, notes, candidate, compared, champion_version, versus, thresholds
    )


def _worse_than_champion(versus: Any, large: bool, name: str, said: str) -> list[tuple[str, str]]:
    """The no-regression refusal, for either task: the candidate is worse than the champion by
    at least the allowed amount (``large``) and significantly so (without a paired comparison,
    the amount alone decides); ``said`` is the reason up to its key."""
    significant = versus.worse if versus is not None else True
    if not (significant and large):
        return []
    key = f"{KEY}.{name}"
    evidence = f"; {versus.summary('candidate', 'champion')}" if versus else ""
    return [(f"{said}: {key}{evidence})", key)]


def _on_newest(
    floors: list[tuple[str, str]],
    refusals: list[tuple[str, str]],
    config: ModelValidationConfig,
    versus: Any,
    champion_version: int | None,
    *,
    beats: bool,
    what: str,
    champion_fails: bool,
) -> tuple[list[tuple[str, str]], list[str]]:
    """A retrain judged on the newest rows, for either task: refused (into ``refusals``) unless
    it ``beats`` the champion significantly; under the floors, it still replaces a champion that
    fails them too and is significantly worse there. Returns (the floors left, notes)."""
    if config.retrain_must_beat_champion and not beats:
        key = f"{KEY}.retrain_must_beat_champion"
        evidence = f" ({versus.summary('candidate', 'champion')})" if versus else ""
        refusals.append(
            (
                f"{what} on the newest rows{evidence}: deploying it would not be evidence of "
                f"healing ({key})",
                key,
            )
        )
        return floors, []
    if (
        floors
        and config.replace_failing_champion
        and champion_fails
        and versus is not None
        and versus.better
    ):
        return [], [
            f"below the floors, but champion v{champion_version} fails them too and is "
            f"significantly worse on the same rows ({versus.summary('candidate', 'champion')})"
            f": replacing it ({KEY}.replace_failing_champion)"
        ]
    return floors, []


def _verdict(
    failed: list[tuple[str, str]],
    notes: list[str],
    candidate: dict[str, float],
    compared: dict[str, float] | None,
    champion_version: int | None,
    versus: Any,
    thresholds: dict[str, float],
) -> GateDecision:
    return GateDecision(
        passed=not failed,
        notes=notes,
        reasons=[reason for reason, _ in failed],
        keys=[key for _, key in failed],
        candidate=dict(candidate),
        champion=dict(compared) if compared is not None else None,
        champion_version=champion_version if compared is not None else None,
        versus=versus.to_dict() if versus is not None else None,
        thresholds=thresholds,
    )


def _error_floors(
    metrics: dict[str, float], config: ModelValidationConfig
) -> list[tuple[str, str]]:
    """(reason, key) for every regression floor ``metrics`` fails."""
    failed: list[tuple[str, str]] = []
    r2, ratio = metrics.get("r2", float("nan")), metrics.get("rmse_ratio", float("nan"))
    if not r2 >= config.min_r2_threshold:
        key = f"{KEY}.min_r2_threshold"
        failed.append(
            (f"Model R² {r2:.3f} below threshold {config.min_r2_threshold:.2f} ({key})", key)
        )
    if not ratio <= config.max_rmse_ratio_to_baseline:
        key = f"{KEY}.max_rmse_ratio_to_baseline"
        failed.append(
            (
                f"Model RMSE {metrics.get('rmse', float('nan')):.4g} is {ratio:.3f} of the naive "
                f"baseline's {metrics.get('baseline_rmse', float('nan')):.4g} (predicting the "
                f"training mean), above {config.max_rmse_ratio_to_baseline:.2f} ({key})",
                key,
            )
        )
    return failed


def _decide_errors(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    config: ModelValidationConfig,
    champion_version: int | None,
    production_rows: bool,
    versus: Any,
) -> GateDecision:
    """The gate of a regression: the floors on R² and on RMSE against the naive baseline, no
    significant rise of the MAE against the champion by ``max_error_increase`` or more, and
    on the newest rows a retrain must lower the error significantly (``PairedErrors``)."""
    floors = _error_floors(candidate, config)
    refusals: list[tuple[str, str]] = []
    compared = champion if config.rollback_on_degradation else None
    mae = candidate.get("mae", float("nan"))
    if compared is not None:
        theirs = compared.get("mae", float("nan"))
        rise = (mae - theirs) / theirs if theirs > 0 else float("inf")
        refusals += _worse_than_champion(
            versus,
            rise >= config.max_error_increase and mae > theirs,
            "max_error_increase",
            f"Model MAE {mae:.4g} is {rise:.1%} above champion v{champion_version}'s "
            f"{theirs:.4g} on the same rows (allowed {config.max_error_increase:.0%}",
        )
    notes: list[str] = []
    if champion is not None and production_rows and not refusals:
        theirs = champion.get("mae", float("nan"))
        floors, notes = _on_newest(
            floors,
            refusals,
            config,
            versus,
            champion_version,
            beats=versus.better if versus is not None else mae < theirs,
            what=f"Model MAE {mae:.4g} is not significantly below champion "
            f"v{champion_version}'s {theirs:.4g}",
            champion_fails=bool(_error_floors(champion, config)),
        )
        compared = champion if notes else compared
    thresholds = {
        "min_r2": config.min_r2_threshold,
        "max_rmse_ratio": config.max_rmse_ratio_to_baseline,
        "max_error_increase": config.max_error_increase,
        "confidence": config.evidence_confidence,
    }
    return _verdict(
        floors + refusals, notes, candidate, compared, champion_version, versus, thresholds
    )
