"""The gate's verdict carried out: the champion scored on the gate's rows beside the candidate,
then the candidate deployed, or rejected with the champion kept (the auto-rollback).

Split from ``pipeline`` (stages 1-3) so each stays one room.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmedic.core.errors import MedicError
from mlmedic.model.gate import GateDecision
from mlmedic.model.project import Project
from mlmedic.model.registry import VersionInfo
from mlmedic.model.tasks import Task
from mlmedic.model.training import model_frame, scored
from mlmedic.store.events import EventKind, Outcome


def deploy(project: Project, version: int, before: int | None) -> None:
    project.registry.promote(version, reason="passed the gate")
    project.events.record(
        EventKind.DEPLOY,
        "deploy",
        Outcome.SUCCESS,
        message=f"v{version} is champion" + (f" (was v{before})" if before is not None else ""),
        details={"from_version": before},
        model_version=version,
    )


def keep_champion(
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


def champion_on(
    project: Project,
    champion: VersionInfo | None,
    rows: pd.DataFrame,
    target: str,
    task: Task,
    naive: float | None = None,
) -> tuple[dict[str, float], np.ndarray] | None:
    """The champion's metrics and per row what the paired test compares (``Task.per_row``) on
    the gate's rows, or None if it cannot be compared."""
    if champion is None:
        return None
    registry = project.registry
    try:
        model = registry.load_model(champion.version)
        champion_contract = registry.load_contract(champion.version)
        holdout = model_frame(rows, champion_contract)
        holdout[target] = task.target_values(rows[target])
        return scored(model, holdout, target, task=task, naive=naive)
    except (MedicError, KeyError, ValueError) as exc:
        project.events.record(
            EventKind.GATE,
            "compare-champion",
            Outcome.WARNING,
            message=f"champion v{champion.version} could not be scored on the holdout: {exc}",
            model_version=champion.version,
        )
        return None
