"""Stages 1-3 as one run: fix the data, back up, train, register, gate, deploy or roll back.

``run_pipeline`` is what ``mlmedic run`` calls and what the monitor will call to retrain. Every
step writes an event; ``say`` receives one line per stage for the console.

The training data is checked against its own robust statistics (or a ``--reference`` /
``--contract`` when given), not against the champion's contract: new training data is exactly where
new categories and shifted ranges must be learned, not capped away. The repaired training data
then becomes the new version's contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmedic import render
from mlmedic.clock import Timings
from mlmedic.data.contract import DataContract
from mlmedic.data.io import read_table
from mlmedic.data.repair import Repairer
from mlmedic.data.stage import DataStageResult, heal_data, resolve_contract
from mlmedic.drift import ReferenceProfile
from mlmedic.errors import DataQualityError, MedicError, SchemaError, UsageError
from mlmedic.events import EventKind, Outcome
from mlmedic.gate import GateDecision, decide
from mlmedic.lock import project_lock
from mlmedic.performance import Calibration
from mlmedic.project import Project
from mlmedic.registry import VersionInfo
from mlmedic.training import TrainResult, evaluate, model_features, model_frame, train

Say = Callable[[str], None]


@dataclass
class RunResult:
    """What a pipeline run did."""

    deployed: bool
    candidate: int | None
    champion_before: int | None
    champion_after: int | None
    decision: GateDecision | None
    data: DataStageResult
    timings: dict[str, float] = field(default_factory=dict)


def _quiet(_: str) -> None:
    return None


def run_pipeline(
    project: Project,
    data: str | Path | pd.DataFrame,
    *,
    target: str | None = None,
    trainer: str | None = None,
    reference: str | Path | None = None,
    contract: str | Path | None = None,
    tags: dict[str, str] | None = None,
    say: Say = _quiet,
) -> RunResult:
    """Stages 1-3 on ``data``; returns what happened. Raises ``MedicError`` on bad input, with the
    champion unchanged."""
    target = target or project.settings.self_healing.data_quality.target_column
    if target is None:
        raise UsageError("no target column: pass --target or set data_quality.target_column")
    timings = Timings()
    source = str(data) if not isinstance(data, pd.DataFrame) else "data frame"
    stage = _stage_data(project, data, source, target, reference, contract, timings, say)
    _stage_backup(project, timings, say)
    result, new_contract = _stage_train(project, stage, source, target, trainer, timings, say)
    candidate = _stage_register(project, stage, result, new_contract, tags, timings, say)
    # stage 3 under the project lock: the champion is re-read there, so two runs at once gate
    # one after the other against the real champion
    with project_lock(
        project.state_dir, f"mlmedic run (gate and deploy of v{candidate.version})", say=say
    ):
        return _gate_and_deploy(project, candidate, result, target, stage, timings, say)


def _stage_data(
    project: Project,
    data: str | Path | pd.DataFrame,
    source: str,
    target: str,
    reference: str | Path | None,
    contract: str | Path | None,
    timings: Timings,
    say: Say,
) -> DataStageResult:
    """Stage 1: checks -> auto-fix -> re-check; DataQualityError if the data still fails."""
    settings = project.settings.self_healing
    with timings.step("read+contract"):
        frame = read_table(data) if not isinstance(data, pd.DataFrame) else data
        if target not in frame.columns:
            raise SchemaError(
                f"{source}: target column '{target}' not found "
                f"(columns: {', '.join(map(str, frame.columns[:10]))})"
            )
        checked = resolve_contract(
            frame,
            reference=reference,
            contract=contract,
            target=target,
            config=settings.data_quality,
            batch_name=source,
        )
    stage = heal_data(
        frame, checked, config=settings.data_quality, events=project.events, source=source
    )
    timings.update(stage.timings)
    say(render.line_data(stage))
    if not stage.passed:
        raise DataQualityError(
            f"{source}: the data still fails its checks after auto-fix: "
            + "; ".join(f.message for f in stage.final_report.failures[:3])
        )
    return stage


def _stage_backup(project: Project, timings: Timings, say: Say) -> None:
    """Stage 2a: copy the serving champion to the local backups before anything changes."""
    champion = project.registry.champion()
    if champion is None or not project.settings.self_healing.model_training.auto_backup_enabled:
        return
    with (
        timings.step("backup"),
        project.events.span(EventKind.BACKUP, "backup", model_version=champion.version) as span,
    ):
        path = project.registry.backup(champion.version)
        span.message = f"backed up champion v{champion.version} to {path}"
        span.details = {"path": str(path)}
    say(render.line_backup(champion.version, path))


def _stage_train(
    project: Project,
    stage: DataStageResult,
    source: str,
    target: str,
    trainer: str | None,
    timings: Timings,
    say: Say,
) -> tuple[TrainResult, DataContract]:
    """Stage 2b: the new version's contract from the repaired data, then training (retried)."""
    settings = project.settings.self_healing
    new_contract = DataContract(
        target=target,
        outlier_threshold_iqr=settings.data_quality.outlier_threshold_iqr,
        source=source,
    ).fit(stage.data)
    training = settings.model_training
    retries = training.max_training_retries if training.auto_retry_on_failure else 0
    name = trainer or training.trainer
    say(render.line_training(name or "the default pipeline", len(stage.data), retries + 1))
    with timings.step("train"), project.events.span(EventKind.TRAIN, "train") as span:
        result = train(
            stage.data,
            new_contract,
            trainer=name,
            retries=retries,
            on_retry=lambda attempt, exc: say(render.line_retry(attempt, exc)),
        )
        span.message = f"trained with {result.trainer} on {result.train_rows:,} rows"
        span.details = {"metrics": result.metrics, "params": result.params}
    say(render.line_trained(result.trainer, result.train_rows, result.seconds, result.metrics))
    return result, new_contract


def _stage_register(
    project: Project,
    stage: DataStageResult,
    result: TrainResult,
    new_contract: DataContract,
    tags: dict[str, str] | None,
    timings: Timings,
    say: Say,
) -> VersionInfo:
    """Stage 2c: log and register the candidate with its baseline (contract, repair
    statistics, drift reference)."""
    registry = project.registry
    say(render.line_registering(registry.tracking_uri))
    with timings.step("register"):
        quality = project.settings.self_healing.data_quality
        repair_statistics = Repairer.from_config(quality).fit(new_contract).statistics()
        profile = drift_reference(stage.data, new_contract, result)
        candidate = registry.log_candidate(
            result, new_contract, repair_statistics, tags=tags, drift_profile=profile
        )
    say(render.line_registered(registry.model_name, candidate.version, registry.tracking_uri))
    return candidate


def _gate_and_deploy(
    project: Project,
    candidate: VersionInfo,
    result: TrainResult,
    target: str,
    stage: DataStageResult,
    timings: Timings,
    say: Say,
) -> RunResult:
    """Stage 3: gate the candidate against the champion (re-read under the lock), then deploy
    it or keep the champion."""
    settings = project.settings.self_healing
    events = project.events
    registry = project.registry
    with timings.step("gate"):
        champion = registry.champion()
        champion_metrics = _champion_on_holdout(project, champion, result, target)
        decision = decide(
            result.metrics,
            champion_metrics,
            settings.model_validation,
            champion_version=champion.version if champion else None,
        )
        registry.tag_gate(candidate.version, {"passed": decision.passed, **decision.candidate})
        events.record(
            EventKind.GATE,
            "validate",
            Outcome.SUCCESS if decision.passed else Outcome.FAILURE,
            message=decision.summary(),
            details=decision.to_dict(),
            model_version=candidate.version,
        )
    say(render.line_gate(candidate.version, decision.summary()))
    before = champion.version if champion else None
    if decision.passed:
        with timings.step("deploy"):
            _deploy(project, candidate.version, before)
        say(render.line_deployed(candidate.version))
        after: int | None = candidate.version
    else:
        reason = "; ".join(decision.reasons)
        _keep_champion(project, candidate.version, before, decision, reason)
        say(render.line_rejected(candidate.version, reason, before))
        after = before
    return RunResult(
        deployed=decision.passed,
        candidate=candidate.version,
        champion_before=before,
        champion_after=after,
        decision=decision,
        data=stage,
        timings=dict(timings),
    )


def _deploy(project: Project, version: int, before: int | None) -> None:
    project.registry.promote(version, reason="passed the gate")
    project.events.record(
        EventKind.DEPLOY,
        "deploy",
        Outcome.SUCCESS,
        message=f"v{version} is champion" + (f" (was v{before})" if before is not None else ""),
        details={"from_version": before},
        model_version=version,
    )


def _keep_champion(
    project: Project, version: int, kept: int | None, decision: GateDecision, reason: str
) -> None:
    """The candidate is tagged rejected (never served); the champion stays (auto-rollback)."""
    project.registry.reject(version, reason)
    if not project.settings.self_healing.model_validation.auto_rollback_enabled:
        return
    project.events.record(
        EventKind.ROLLBACK,
        "auto-rollback",
        Outcome.SUCCESS if kept is not None else Outcome.SKIPPED,
        message=(
            f"{reason}: candidate v{version} rejected, champion v{kept} kept"
            if kept is not None
            else f"{reason}: candidate v{version} rejected, no champion yet"
        ),
        details={
            "rejected_version": version,
            "restored_version": kept,
            "reasons": decision.reasons,
        },
        model_version=kept,
    )


def drift_reference(
    frame: pd.DataFrame, contract: DataContract, result: TrainResult
) -> dict[str, Any]:
    """The version's drift reference: its training features, and the predicted probabilities
    of its holdout (for prediction drift)."""
    features = model_features(contract)
    kinds: dict[str, str] = {name: contract.columns_[name].kind for name in features}
    data = model_frame(frame, contract)
    feature_profile = ReferenceProfile().fit(data, kinds)
    probabilities = np.asarray(result.model.predict_proba(result.holdout[result.features]))
    predictions = pd.DataFrame({"probability": probabilities.max(axis=1)})
    prediction_profile = ReferenceProfile().fit(predictions, {"probability": "numeric"})
    classes = np.asarray(getattr(result.model, "classes_", []))
    truth = result.holdout[contract.target].to_numpy()
    correct = classes[probabilities.argmax(axis=1)] == truth if len(classes) else truth == truth
    calibration = Calibration.fit(probabilities.max(axis=1), correct.astype(float))
    return {
        "features": feature_profile.to_dict(),
        "predictions": prediction_profile.to_dict(),
        "calibration": calibration.to_dict(),
        "validation_accuracy": result.metrics.get("accuracy"),
    }


def _champion_on_holdout(
    project: Project, champion: VersionInfo | None, result: TrainResult, target: str
) -> dict[str, float] | None:
    """The champion's metrics on the candidate's holdout rows, or None if it cannot be compared."""
    if champion is None:
        return None
    registry = project.registry
    try:
        model = registry.load_model(champion.version)
        champion_contract = registry.load_contract(champion.version)
        holdout = model_frame(result.holdout, champion_contract)
        holdout[target] = result.holdout[target].to_numpy()
        return evaluate(model, holdout, target)
    except (MedicError, KeyError, ValueError) as exc:
        project.events.record(
            EventKind.GATE,
            "compare-champion",
            Outcome.WARNING,
            message=f"champion v{champion.version} could not be scored on the holdout: {exc}",
            model_version=champion.version,
        )
        return None
