"""Act on a decision: roll back, retrain (under the project lock, the cooldown re-checked), or
only tell — through a notifier (``mlmedic.notify.Notify``; a ``MemoryNotifier`` in tests).

Retraining goes through stages 1-3 (``run_pipeline``) on the reference training data plus the
labelled production rows seen since the champion was deployed (``monitor.labelled``), in the
columns of the champion the pass measured. When there are enough of those rows, the newest are
held out by time and the gate compares candidate and champion on them: rows neither trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlmedic.clock import to_iso
from mlmedic.data.io import read_table
from mlmedic.events import EventKind, Outcome
from mlmedic.monitor import labelled as labelled_store
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

    def act(self, decision: Decision, snapshot: ChampionSnapshot) -> str:
        """Carry out ``decision``; returns what was done ('' for nothing)."""
        action = decision.action
        settings = self.project.settings
        if action in ("rollback", "retrain") and not settings.self_healing.self_healing.enabled:
            return self._told(f"no {action}: self-healing is off (self_healing.enabled is false)")
        if action == "rollback":
            done = self.project.registry.rollback(reason="; ".join(decision.reasons), by="monitor")
            acted = f"rolled back v{done.from_version} -> v{done.to_version}"
            self.notifier.send("rollback", f"{acted}: {'; '.join(decision.reasons)}")
            return self._told(acted)
        if action == "retrain":
            return self._retrain_if_allowed(decision, snapshot)
        if decision.next_retrain_at is not None:
            return f"no retrain: cooldown until {to_iso(decision.next_retrain_at)}"
        return ""

    def _told(self, text: str) -> str:
        self.say(text)
        return text

    def _retrain_if_allowed(self, decision: Decision, snapshot: ChampionSnapshot) -> str:
        events = self.project.events
        # labels show a drop while the inputs did not drift: the concept changed (the same
        # inputs now mean another label), so learn from the rows since the drop began; with
        # drifted inputs (covariate shift) the reference still holds and is kept
        concept_changed = "measured_drop" in decision.triggers and not decision.data_drift
        training, gate_rows = self.training_data(snapshot, concept_changed=concept_changed)
        if training is None:
            acted = "cannot retrain: no reference training data and no labelled rows"
            events.record(EventKind.ALERT, "retrain", Outcome.FAILURE, message=acted)
            return self._told(acted)
        from mlmedic.lock import RUN_LOCK, project_lock

        state, model = self.project.state_dir, self.project.registry.model_name
        with project_lock(state, "monitor retrain", lock_file=RUN_LOCK, say=self.say):
            # another monitor may have retrained while this pass measured: the cooldown is
            # claimed in the event store, atomically, so one retrain per cooldown holds across
            # processes and (on Postgres) across hosts
            last = events.last(EventKind.RETRAIN)
            hours = self.project.settings.retraining_cooldown_hours
            now = self.project.clock.now()
            if last is not None and now < last.started_at + hours * 3600.0:
                return self._told(
                    f"no retrain: another monitor retrained at {to_iso(last.started_at)} "
                    f"(cooldown until {to_iso(last.started_at + hours * 3600.0)})"
                )
            if hours > 0 and not events.claim(f"retrain:{model}", seconds=hours * 3600.0):
                return self._told("no retrain: another monitor has just claimed this cooldown")
            return self._retrain(decision, training, gate_rows, snapshot)

    def _retrain(
        self,
        decision: Decision,
        training: pd.DataFrame,
        gate_rows: pd.DataFrame | None,
        snapshot: ChampionSnapshot,
    ) -> str:
        from mlmedic.pipeline import run_pipeline

        events = self.project.events
        with events.span(EventKind.RETRAIN, "retrain", model_version=snapshot.version) as span:
            run = run_pipeline(
                self.project,
                training,
                target=snapshot.target,
                gate_data=gate_rows,
                say=self.say,
                reason="retrain: " + ", ".join(decision.triggers or ["drift"]),
            )
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
                "evidence": decision.evidence,
                "training_rows": len(training),
                "gate_rows": 0 if gate_rows is None else len(gate_rows),
            }
        return span.message

    def training_data(
        self, snapshot: ChampionSnapshot, *, concept_changed: bool = False
    ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """(training rows, gate rows): the reference plus the labelled production rows seen
        since the champion was deployed, in the champion's columns; the newest production rows
        are the gate rows when there are at least twice ``min_samples_for_detection`` of them.

        With ``concept_changed`` (a measured drop without input drift) two training sets are
        tried on the gate rows: that one, and the rows since the drop began alone. The recent
        rows alone win only when they beat it by more than ``performance_degradation_threshold``
        — when the reference teaches a concept that no longer holds (labels flipped), not merely
        when production moved to a region of the data the reference covers thinly."""
        columns = list(snapshot.contract.columns_)
        settings = self.project.settings.self_healing
        now = self.project.clock.now()

        def rows_since(streak: bool) -> pd.DataFrame:
            return labelled_store.since(
                self.project.state_dir,
                _deployed_at(self.project),
                now=now,
                max_rows=settings.monitoring.production_rows_max,
                max_age_days=settings.monitoring.production_rows_max_age_days,
                drop_streak=streak,
            )

        production = rows_since(False)
        minimum = settings.drift_detection.min_samples_for_detection
        recent = rows_since(True) if concept_changed else production.iloc[0:0]
        # the gate's rows: the newest fifth of the production rows — of those since the drop
        # when the concept changed, so both candidates are judged on the concept that holds now
        pool = recent if len(recent) >= 2 * minimum else production
        gate_rows = None
        if len(pool) >= 2 * minimum:
            held = max(minimum, len(pool) // 5)
            gate_rows = pool.iloc[-held:]
            production = production.iloc[: max(0, len(production) - held)]
            recent = recent.iloc[: max(0, len(recent) - held)]
        parts = []
        if self.reference_data is not None:
            reference = self.reference_data
            parts.append(
                reference if isinstance(reference, pd.DataFrame) else read_table(reference)
            )
        if len(production):
            parts.append(production)
        if not parts:
            return None, None
        training = pd.concat(
            [p[[c for c in columns if c in p.columns]] for p in parts], ignore_index=True
        )
        if concept_changed and gate_rows is not None and len(recent) >= minimum:
            recent = recent[[c for c in columns if c in recent.columns]]
            if self._recent_is_better(snapshot, training, recent, gate_rows):
                training = recent.reset_index(drop=True)
        return training, gate_rows

    def _recent_is_better(
        self,
        snapshot: ChampionSnapshot,
        everything: pd.DataFrame,
        recent: pd.DataFrame,
        gate_rows: pd.DataFrame,
    ) -> bool:
        """Whether a model of the recent rows alone beats one of everything on the gate rows by
        more than the allowed degradation (quick fits of the project's trainer)."""
        from mlmedic.training import evaluate, model_frame, train

        target = snapshot.target
        if target is None:
            return False
        allowed = self.project.settings.self_healing.model_validation
        trainer = self.project.settings.self_healing.model_training.trainer
        scored = gate_rows[gate_rows[target].notna()]
        prepared = model_frame(scored, snapshot.contract)
        prepared[target] = scored[target].to_numpy()
        try:
            general = train(everything, snapshot.contract, trainer=trainer, retries=0)
            specific = train(recent, snapshot.contract, trainer=trainer, retries=0)
            a = evaluate(general.model, prepared, target)["accuracy"]
            b = evaluate(specific.model, prepared, target)["accuracy"]
        except Exception as exc:  # a set that cannot be trained on: keep everything
            self.say(f"cannot compare the recent rows with everything: {exc}")
            return False
        better = b > a + allowed.performance_degradation_threshold
        self.say(
            f"the concept changed? a model of the {len(recent):,} rows since the drop scores "
            f"{b:.3f} on the newest rows, one of all {len(everything):,} rows {a:.3f}: "
            + ("learning from the recent rows only" if better else "learning from all of them")
        )
        return better


def _deployed_at(project: Project) -> float | None:
    """When the champion got its alias (from the event store, on the project's clock)."""
    moves = [
        e
        for e in project.events.query(kind=EventKind.ALIAS)
        if e.details.get("alias") == "champion" and e.details.get("to") is not None
    ]
    return moves[-1].started_at if moves else None
