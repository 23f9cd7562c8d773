"""Stages 1-3 as one run: fix the data, back up, train, register, gate, deploy or roll back.

``run_pipeline`` is what ``mlmedic run`` calls and what the monitor will call to retrain. Every
step writes an event; ``say`` receives one line per stage for the console.

The training data is checked against its own robust statistics (or a ``--reference`` /
``--contract`` when given), not against the champion's contract: new training data is exactly where
new categories and shifted ranges must be learned, not capped away. The repaired training data
then becomes the new version's contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
from mlmedic.training import evaluate, model_features, model_frame, train

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
    settings = project.settings.self_healing
    events = project.events
    registry = project.registry
    timings: dict[str, float] = {}
    target = target or settings.data_quality.target_column
    if target is None:
        raise UsageError("no target column: pass --target or set data_quality.target_column")
    source = str(data) if not isinstance(data, pd.DataFrame) else "data frame"

    # ---- stage 1: checks -> auto-fix -> re-check
    clock = time.perf_counter()
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
    timings["read+contract"] = time.perf_counter() - clock
    stage = heal_data(frame, checked, config=settings.data_quality, events=events, source=source)
    timings.update(stage.timings)
    if stage.repaired:
        rows = stage.repair.accounting() if stage.repair else {}
        say(
            f"[1] data: {stage.first_report.summary()}; auto-fixed "
            f"({rows.get('output_rows', 0):,} rows kept, {rows.get('quarantined_rows', 0):,} "
            f"quarantined) -> {stage.final_report.summary()}"
        )
    else:
        say(f"[1] data: {stage.final_report.summary()}")
    if not stage.passed:
        raise DataQualityError(
            f"{source}: the data still fails its checks after auto-fix: "
            + "; ".join(f.message for f in stage.final_report.failures[:3])
        )

    # ---- stage 2: back up the champion, train, register
    champion = registry.champion()
    if champion is not None and settings.model_training.auto_backup_enabled:
        clock = time.perf_counter()
        with events.span(EventKind.BACKUP, "backup", model_version=champion.version) as span:
            path = registry.backup(champion.version)
            span.message = f"backed up champion v{champion.version} to {path}"
            span.details = {"path": str(path)}
        timings["backup"] = time.perf_counter() - clock
        say(f"[2] backup: champion v{champion.version} -> {path}")

    new_contract = DataContract(
        target=target,
        outlier_threshold_iqr=settings.data_quality.outlier_threshold_iqr,
        source=source,
    ).fit(stage.data)
    clock = time.perf_counter()
    training = settings.model_training
    retries = training.max_training_retries if training.auto_retry_on_failure else 0

    def retrying(attempt: int, exc: BaseException) -> None:
        say(f"    training attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying")

    say(
        f"[2] training {trainer or training.trainer or 'the default pipeline'} on "
        f"{len(stage.data):,} rows (up to {retries + 1} attempt(s)) ..."
    )
    with events.span(EventKind.TRAIN, "train") as span:
        result = train(
            stage.data,
            new_contract,
            trainer=trainer or training.trainer,
            retries=retries,
            on_retry=retrying,
        )
        span.message = f"trained with {result.trainer} on {result.train_rows:,} rows"
        span.details = {"metrics": result.metrics, "params": result.params}
    timings["train"] = time.perf_counter() - clock
    say(
        f"[2] train: {result.trainer} on {result.train_rows:,} rows in {result.seconds:.1f}s: "
        + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
    )

    clock = time.perf_counter()
    say(f"[2] registering in MLflow ({registry.tracking_uri}) ...")
    repair_statistics = Repairer.from_config(settings.data_quality).fit(new_contract).statistics()
    profile = drift_reference(stage.data, new_contract, result)
    candidate = registry.log_candidate(
        result, new_contract, repair_statistics, tags=tags, drift_profile=profile
    )
    timings["register"] = time.perf_counter() - clock
    say(f"[2] register: {registry.model_name} v{candidate.version} in {registry.tracking_uri}")

    # ---- stage 3: gate -> deploy or auto-rollback, under the project lock: the champion is
    # re-read there, so two runs at once gate one after the other against the real champion
    with project_lock(
        project.state_dir, f"mlmedic run (gate and deploy of v{candidate.version})", say=say
    ):
        return _gate_and_deploy(project, candidate, result, target, stage, timings, say)


def _gate_and_deploy(
    project: Project,
    candidate: VersionInfo,
    result: Any,
    target: str,
    stage: DataStageResult,
    timings: dict[str, float],
    say: Say,
) -> RunResult:
    settings = project.settings.self_healing
    events = project.events
    registry = project.registry
    clock = time.perf_counter()
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
    timings["gate"] = time.perf_counter() - clock
    say(f"[3] gate: v{candidate.version} {decision.summary()}")

    if decision.passed:
        clock = time.perf_counter()
        registry.promote(candidate.version, reason="passed the gate")
        events.record(
            EventKind.DEPLOY,
            "deploy",
            Outcome.SUCCESS,
            message=f"v{candidate.version} is champion"
            + (f" (was v{champion.version})" if champion else ""),
            details={"from_version": champion.version if champion else None},
            model_version=candidate.version,
        )
        timings["deploy"] = time.perf_counter() - clock
        say(f"[3] deploy: v{candidate.version} is now champion")
        after: int | None = candidate.version
    else:
        reason = "; ".join(decision.reasons)
        registry.reject(candidate.version, reason)
        kept = champion.version if champion else None
        if settings.model_validation.auto_rollback_enabled:
            events.record(
                EventKind.ROLLBACK,
                "auto-rollback",
                Outcome.SUCCESS if kept is not None else Outcome.SKIPPED,
                message=(
                    f"{reason}: candidate v{candidate.version} rejected, champion v{kept} kept"
                    if kept is not None
                    else f"{reason}: candidate v{candidate.version} rejected, no champion yet"
                ),
                details={
                    "rejected_version": candidate.version,
                    "restored_version": kept,
                    "reasons": decision.reasons,
                },
                model_version=kept,
            )
        say(
            f"[3] auto-rollback: v{candidate.version} rejected ({reason}); "
            + (f"champion stays v{kept}" if kept is not None else "no champion yet")
        )
        after = kept
    return RunResult(
        deployed=decision.passed,
        candidate=candidate.version,
        champion_before=champion.version if champion else None,
        champion_after=after,
        decision=decision,
        data=stage,
        timings=timings,
    )


def drift_reference(frame: pd.DataFrame, contract: DataContract, result: Any) -> dict[str, Any]:
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
    project: Project, champion: VersionInfo | None, result: Any, target: str
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
