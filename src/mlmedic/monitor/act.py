"""Act on a decision: roll back, retrain (under the project lock, the cooldown re-checked), or
only tell — through a notifier (``mlmedic.notify.Notify``; a ``MemoryNotifier`` in tests).

Retraining goes through stages 1-3 (``run_pipeline``) on the reference training data plus the
window's labelled rows, in the columns of the champion the pass measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlmedic.clock import to_iso
from mlmedic.data.io import read_table
from mlmedic.events import EventKind, Outcome
from mlmedic.monitor.snapshot import ChampionSnapshot
from mlmedic.notify import Notify
from mlmedic.policy import Decision
from mlmedic.project import Project

Say = Callable[[str], None]


class Actions:
    """What the monitor can do about a window."""

    def __init__(
        self,
        project: Project,
        notifier: Notify,
        *,
        reference_data: str | Path | pd.DataFrame | None,
        say: Say,
    ) -> None:
        self.project = project
        self.notifier = notifier
        self.reference_data = reference_data
        self.say = say

    def alert(self, alerts: list[str], version: int, now: float) -> None:
        for alert in alerts:
            self.project.events.record(
                EventKind.ALERT,
                "monitor",
                Outcome.WARNING,
                message=alert,
                model_version=version,
                started_at=now,
                ended_at=now,
            )
            self.say(f"ALERT: {alert}")
            self.notifier.send("drift", alert)

    def act(
        self,
        decision: Decision,
        frame: pd.DataFrame,
        labelled: bool,
        snapshot: ChampionSnapshot,
    ) -> str:
        """Carry out ``decision``; returns what was done ('' for nothing)."""
        action = decision.action
        settings = self.project.settings
        if action in ("rollback", "retrain") and not settings.self_healing.self_healing.enabled:
            return self._told(f"no {action}: self-healing is off (self_healing.enabled is false)")
        if action == "rollback":
            done = self.project.registry.rollback(reason="; ".join(decision.reasons))
            acted = f"rolled back v{done.from_version} -> v{done.to_version}"
            self.notifier.send("rollback", f"{acted}: {'; '.join(decision.reasons)}")
            return self._told(acted)
        if action == "retrain":
            return self._retrain_if_allowed(decision, frame if labelled else None, snapshot)
        if decision.next_retrain_at is not None:
            return f"no retrain: cooldown until {to_iso(decision.next_retrain_at)}"
        return ""

    def _told(self, text: str) -> str:
        self.say(text)
        return text

    def _retrain_if_allowed(
        self, decision: Decision, labelled: pd.DataFrame | None, snapshot: ChampionSnapshot
    ) -> str:
        events = self.project.events
        training = self.training_data(labelled, snapshot)
        if training is None:
            acted = "cannot retrain: no reference training data and no labelled rows"
            events.record(EventKind.ALERT, "retrain", Outcome.FAILURE, message=acted)
            return self._told(acted)
        from mlmedic.lock import project_lock

        with project_lock(self.project.state_dir, "monitor retrain", say=self.say):
            # another monitor may have retrained while this pass measured: the cooldown is
            # claimed under the lock, so one retrain per cooldown holds across processes
            last = events.last(EventKind.RETRAIN)
            hours = self.project.settings.retraining_cooldown_hours
            now = self.project.clock.now()
            if last is not None and now < last.started_at + hours * 3600.0:
                return self._told(
                    f"no retrain: another monitor retrained at {to_iso(last.started_at)} "
                    f"(cooldown until {to_iso(last.started_at + hours * 3600.0)})"
                )
            return self._retrain(decision, training, snapshot)

    def _retrain(
        self, decision: Decision, training: pd.DataFrame, snapshot: ChampionSnapshot
    ) -> str:
        from mlmedic.pipeline import run_pipeline

        events = self.project.events
        with events.span(EventKind.RETRAIN, "retrain", model_version=snapshot.version) as span:
            run = run_pipeline(self.project, training, target=snapshot.target, say=self.say)
            span.outcome = Outcome.SUCCESS if run.deployed else Outcome.FAILURE
            outcome = "deployed" if run.deployed else "rejected by the gate"
            reasons = "; ".join(decision.reasons)
            span.message = (
                f"retrained on {len(training):,} rows because {reasons}: v{run.candidate} {outcome}"
            )
            span.details = {
                "candidate": run.candidate,
                "deployed": run.deployed,
                "reasons": decision.reasons,
            }
        return span.message

    def training_data(
        self, labelled: pd.DataFrame | None, snapshot: ChampionSnapshot
    ) -> pd.DataFrame | None:
        """The reference training data plus the window's labelled rows, in the champion's
        columns (never the log's prediction columns)."""
        columns = list(snapshot.contract.columns_)
        target = snapshot.target
        parts = []
        if self.reference_data is not None:
            reference = self.reference_data
            parts.append(
                reference if isinstance(reference, pd.DataFrame) else read_table(reference)
            )
        if labelled is not None and len(labelled):
            parts.append(labelled[labelled[target].notna()] if target in labelled else labelled)
        if not parts:
            return None
        return pd.concat(
            [p[[c for c in columns if c in p.columns]] for p in parts], ignore_index=True
        )
