"""Stages 1-3 as one run: fix the data, back up, train, register, gate, deploy or roll back.

``run_pipeline`` is what ``mlmedic run`` calls and what the monitor will call to retrain. Every
step writes an event; ``say`` receives one line per stage for the console.

The training data is checked against its own robust statistics (or a ``--reference`` /
``--contract`` when given), not against the champion's contract: new training data is exactly where
new categories and shifted ranges must be learned, not capped away. The repaired training data
then becomes the new version's contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlmedic.core.clock import Timings
from mlmedic.core.errors import DataQualityError, SchemaError, UsageError
from mlmedic.core.lock import RUN_LOCK, project_lock
from mlmedic.data.contract import DataContract
from mlmedic.data.io import read_table
from mlmedic.data.repair import Repairer
from mlmedic.data.stage import DataStageResult, heal_data, resolve_contract
from mlmedic.heal import narration
from mlmedic.heal.candidates import Candidate, RetrainPlan, choose, train_candidates
from mlmedic.heal.releases.states import choose_mode, start_release
from mlmedic.model.baseline import drift_reference
from mlmedic.model.gate import GateDecision, decide
from mlmedic.model.project import Project
from mlmedic.model.registry import CHAMPION, VersionInfo
from mlmedic.model.tasks import TASKS, infer_task, task_of
from mlmedic.model.training import TrainResult, model_frame, positive_rate, scored, train
from mlmedic.model.verdict import champion_on, deploy, keep_champion
from mlmedic.store.events import EventKind, Outcome

Say = Callable[[str], None]
MAX_KNOWN_REGIMES = 3  # earlier regimes' drift profiles a version keeps


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
    recipe: str | None = None  # the winning recipe of a retrain's candidates
    candidates: list[Candidate] = field(default_factory=list)
    task: str = "classification"
    release: str = "direct"  # how the candidate reached traffic: direct, shadow or canary


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
    plan: RetrainPlan | None = None,
    say: Say = _quiet,
    reason: str = "run",
    task: str | None = None,
    release: str | None = None,
) -> RunResult:
    """Stages 1-3 on ``data``; returns what happened. Raises ``MedicError`` on bad input, with the
    champion unchanged.

    ``plan`` (a monitor's retrain): ``data`` is a pool of rows, and the plan names the training
    sets drawn from it (one candidate each), the newest labelled rows none of them trains on
    (the candidates and the champion are judged on them) and the rows that show the current
    distribution (the new version's drift reference). ``task``: classification or regression
    (None: ``model_training.task``, by default told from the target's values). ``release``:
    direct, shadow or canary (None: ``deployment.release``); a second release while one runs is
    refused before any work."""
    target = target or project.settings.self_healing.data_quality.target_column
    if target is None:
        raise UsageError("no target column: pass --target or set data_quality.target_column")
    release = release or project.settings.self_healing.deployment.release
    if release != "direct":  # refused now, not after the training
        choose_mode(project, release, project.registry.alias_version(CHAMPION), _quiet)
    source = str(data) if not isinstance(data, pd.DataFrame) else "data frame"
    # one run at a time: a second 'mlmedic run' (or a monitor's retrain) waits here, on this
    # host (the run lock) and on every host sharing a Postgres event store (an advisory lock)
    what = f"mlmedic run on {source}"
    with (
        project_lock(project.state_dir, what, lock_file=RUN_LOCK, say=say),
        project.events.hold(f"run:{project.registry.model_name}", what, say=say),
    ):
        return _run_stages(
            project,
            data,
            source,
            target,
            trainer,
            reference,
            contract,
            tags,
            plan,
            say,
            reason,
            task or project.settings.self_healing.model_training.task,
            release,
        )


def _run_stages(
    project: Project,
    data: str | Path | pd.DataFrame,
    source: str,
    target: str,
    trainer: str | None,
    reference: str | Path | None,
    contract: str | Path | None,
    tags: dict[str, str] | None,
    plan: RetrainPlan | None,
    say: Say,
    reason: str,
    task: str,
    release: str = "direct",
) -> RunResult:
    timings = Timings()
    if plan is not None and isinstance(data, pd.DataFrame):
        data = data.reset_index(drop=True)  # the plan's rows are positions in the pool
    stage = _stage_data(project, data, source, target, reference, contract, timings, say, task)
    _stage_backup(project, timings, say)
    result, new_contract, candidates = _stage_train(
        project, stage, source, target, trainer, timings, say, plan=plan
    )
    current = plan.current if plan is not None else None
    known: list[dict[str, Any]] = []
    if plan is not None and any(c.result is result and c.learns_reference for c in candidates):
        known = plan.known
    candidate = _stage_register(
        project,
        stage,
        result,
        new_contract,
        tags,
        timings,
        say,
        source=source,
        reason=reason,
        current=current,
        known=known,
    )
    if candidates:
        _tag_candidates(project, candidate.version, result, candidates)
    # stage 3 under the project lock too: rollbacks and the supervisor move the champion
    # without the run lock, and the champion is re-read there
    with project_lock(
        project.state_dir, f"mlmedic run (gate and deploy of v{candidate.version})", say=say
    ):
        return _gate_and_deploy(
            project,
            candidate,
            result,
            target,
            stage,
            timings,
            say,
            gate_data=plan.holdout if plan is not None else None,
            contract=new_contract,
            candidates=candidates,
            release=release,
        )


def _stage_data(
    project: Project,
    data: str | Path | pd.DataFrame,
    source: str,
    target: str,
    reference: str | Path | None,
    contract: str | Path | None,
    timings: Timings,
    say: Say,
    task: str,
) -> DataStageResult:
    """Stage 1: the task told (or checked), checks -> auto-fix -> re-check; DataQualityError if
    the data still fails."""
    settings = project.settings.self_healing
    with timings.step("read+contract"):
        frame = read_table(data) if not isinstance(data, pd.DataFrame) else data
        if target not in frame.columns:
            raise SchemaError(
                f"{source}: target column '{target}' not found "
                f"(columns: {', '.join(map(str, frame.columns[:10]))})"
            )
        told = infer_task(frame[target], target, source, task)
        asked = task in TASKS
        say(f"[1] task: {told} ({'as set' if asked else 'told from the values of ' + target})")
        checked = resolve_contract(
            frame,
            reference=reference,
            contract=contract,
            target=target,
            config=settings.data_quality,
            batch_name=source,
            task=told,
            target_kind=task_of(told).target_kind,
        )
    stage = heal_data(
        frame, checked, config=settings.data_quality, events=project.events, source=source
    )
    timings.update(stage.timings)
    say(narration.line_data(stage))
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
    say(narration.line_backup(champion.version, path))


def _stage_train(
    project: Project,
    stage: DataStageResult,
    source: str,
    target: str,
    trainer: str | None,
    timings: Timings,
    say: Say,
    *,
    plan: RetrainPlan | None = None,
) -> tuple[TrainResult, DataContract, list[Candidate]]:
    """Stage 2b: the new version's contract from the repaired data, then training (retried) —
    one model, or with a ``plan`` one candidate per training set and the best of them on the
    plan's holdout."""
    settings = project.settings.self_healing
    time_column = settings.data_quality.time_column
    new_contract = DataContract(
        target=target,
        outlier_threshold_iqr=settings.data_quality.outlier_threshold_iqr,
        source=source,
        time_column=time_column if time_column in stage.data.columns else None,
        task=stage.contract.task,
        target_kind=stage.contract.target_kind,
    ).fit(stage.data)
    training = settings.model_training
    retries = training.max_training_retries if training.auto_retry_on_failure else 0
    name = trainer or training.trainer
    if plan is not None:
        say(narration.line_candidates(len(plan.sets), len(plan.holdout)))
        with timings.step("train"):
            candidates = train_candidates(
                stage.data,
                plan.sets,
                plan.holdout,
                new_contract,
                trainer=name,
                retries=retries,
                events=project.events,
                say=say,
                merged=stage.repair.removed_duplicates if stage.repair is not None else None,
            )
            best = choose(
                candidates,
                target=target,
                confidence=settings.model_validation.evidence_confidence,
            )
        assert best.result is not None
        say(narration.line_chosen(best.recipe, best.result.metrics))
        return best.result, new_contract, candidates
    say(narration.line_training(name or "the default pipeline", len(stage.data), retries + 1))
    with timings.step("train"), project.events.span(EventKind.TRAIN, "train") as span:
        result = train(
            stage.data,
            new_contract,
            trainer=name,
            retries=retries,
            on_retry=lambda attempt, exc: say(narration.line_retry(attempt, exc)),
        )
        span.message = f"trained with {result.trainer} on {result.train_rows:,} rows"
        span.details = {"metrics": result.metrics, "params": result.params}
    say(narration.line_trained(result.trainer, result.train_rows, result.seconds, result.metrics))
    return result, new_contract, []


def _tag_candidates(
    project: Project, version: int, result: TrainResult, candidates: list[Candidate]
) -> None:
    """Which recipe won, and every candidate's score, as version tags."""
    winner = next(c.recipe for c in candidates if c.result is result)
    scores = {
        c.recipe: (None if c.score is None else round(abs(c.score), 4)) for c in candidates
    }  # the accuracy, or a regression's MAE
    project.registry.set_tags(
        version,
        {"mlmedic.recipe": winner, "mlmedic.candidates": json.dumps(scores)},
    )


def _stage_register(
    project: Project,
    stage: DataStageResult,
    result: TrainResult,
    new_contract: DataContract,
    tags: dict[str, str] | None,
    timings: Timings,
    say: Say,
    *,
    source: str,
    reason: str,
    current: pd.DataFrame | None = None,
    known: list[dict[str, Any]] | None = None,
) -> VersionInfo:
    """Stage 2c: log and register the candidate with its baseline (contract, repair
    statistics, drift reference), its training data as the run's input. ``current``: rows of
    the distribution the version will see (a retrain's newest rows), for its drift reference;
    else the training input as production would send it. ``known``: drift profiles of earlier
    regimes the version was also trained for (kept in its baseline, ``known_features``)."""
    registry = project.registry
    say(narration.line_registering(registry.tracking_uri))
    with timings.step("baseline"):  # what monitoring compares against (profile, importance)
        quality = project.settings.self_healing.data_quality
        repair_statistics = Repairer.from_config(quality).fit(new_contract).statistics()
        shaped = current if current is not None else stage.production_shaped()
        profile = drift_reference(
            shaped,
            new_contract,
            result,
            window_rows=project.settings.self_healing.drift_detection.reference_window_rows,
        )
        if known:
            profile["known_features"] = known[:MAX_KNOWN_REGIMES]
    with timings.step("register"):
        candidate = registry.log_candidate(
            result,
            new_contract,
            repair_statistics,
            tags=tags,
            drift_profile=profile,
            dataset=(stage.data, source),
            reason=reason,
            raw=stage.raw,
        )
    say(narration.line_registered(registry.model_name, candidate.version, registry.tracking_uri))
    return candidate


def _gate_and_deploy(
    project: Project,
    candidate: VersionInfo,
    result: TrainResult,
    target: str,
    stage: DataStageResult,
    timings: Timings,
    say: Say,
    *,
    gate_data: pd.DataFrame | None = None,
    contract: DataContract | None = None,
    candidates: list[Candidate] | None = None,
    release: str = "direct",
) -> RunResult:
    """Stage 3: gate the candidate against the champion (re-read under the lock), row by row on
    the same rows — the newest labelled production rows when given, else the candidate's
    holdout — then deploy it or keep the champion."""
    settings = project.settings.self_healing
    events = project.events
    registry = project.registry
    with timings.step("gate"):
        champion = registry.champion()
        on_newest = bool(
            gate_data is not None
            and contract is not None
            and len(gate_data)
            and target in gate_data.columns
        )
        if on_newest:
            assert gate_data is not None and contract is not None
            rows = gate_data[gate_data[target].notna()]
            prepared = model_frame(rows, contract)
            prepared[target] = result.task.target_values(rows[target])
            say(narration.line_gate_rows(len(rows)))
        else:
            rows = prepared = result.holdout
        candidate_metrics, candidate_correct = scored(
            result.model, prepared, target, task=result.task, naive=result.naive
        )
        found = champion_on(project, champion, rows, target, result.task, result.naive)
        decision = decide(
            candidate_metrics,
            found[0] if found is not None else None,
            settings.model_validation,
            champion_version=champion.version if champion else None,
            production_rows=on_newest,
            versus=result.task.versus(
                candidate_correct,
                found[1],
                confidence=settings.model_validation.evidence_confidence,
            )
            if found is not None
            else None,
            prevalence=positive_rate(result.model, prepared[target]),
        )
        registry.tag_gate(
            candidate.version,
            {"passed": decision.passed, **decision.candidate},
            decision.summary(),
        )
        events.record(
            EventKind.GATE,
            "validate",
            Outcome.SUCCESS if decision.passed else Outcome.FAILURE,
            message=decision.summary(),
            details=decision.to_dict(),
            model_version=candidate.version,
        )
    say(narration.line_gate(candidate.version, decision.summary()))
    before = champion.version if champion else None
    after, mode = _carry_out(project, candidate.version, decision, before, release, timings, say)
    return RunResult(
        deployed=decision.passed,
        candidate=candidate.version,
        champion_before=before,
        champion_after=after,
        decision=decision,
        data=stage,
        timings=dict(timings),
        recipe=next((c.recipe for c in candidates or [] if c.result is result), None),
        candidates=list(candidates or []),
        task=stage.contract.task,
        release=mode,
    )


def _carry_out(
    project: Project,
    version: int,
    decision: GateDecision,
    before: int | None,
    release: str,
    timings: Timings,
    say: Say,
) -> tuple[int | None, str]:
    """The gate's verdict carried out: deployed, released as a shadow or canary beside the
    champion (#24), or rejected. Returns (the champion after, the release mode used)."""
    if not decision.passed:
        reason = "; ".join(decision.reasons)
        keep_champion(project, version, before, decision, reason)
        say(narration.line_rejected(version, reason, before))
        return before, "direct"
    mode = choose_mode(project, release, before, say)
    with timings.step("deploy"):
        if mode == "direct" or before is None:
            deploy(project, version, before)
            say(narration.line_deployed(version))
            return version, "direct"
        start_release(project, version, before, mode, "passed the gate")
        say(narration.line_released(version, mode, before))
        return before, mode
