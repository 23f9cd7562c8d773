"""Act on a decision: roll back, retrain (under the project lock, the cooldown and back-off
re-checked by the policy's own rule), or only tell — through a notifier
(``mlmedic.heal.notify.Notify``; a ``MemoryNotifier`` in tests).

A retrain goes through stages 1-3 (``run_pipeline``) with a plan (``monitor.recipes``): one
candidate per recipe drawn from the reference and the kept labelled rows, the best on the newest
labelled rows none of them trained on, gated against the champion on those same rows. Its event
records every candidate's score, the winner, the gate's verdict, and — when refused — how many new
labelled rows the next attempt waits for. A retrain that fails is recorded and backed off, never
raised into the monitoring pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlmedic.core.errors import MedicError
from mlmedic.core.lock import RUN_LOCK, project_lock
from mlmedic.data.io import read_table
from mlmedic.heal.monitor import recipes
from mlmedic.heal.monitor.history import refused_in_a_row, retrain_history
from mlmedic.heal.monitor.snapshot import ChampionSnapshot
from mlmedic.heal.notify import Notify
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.heal.policy import Decision, retrain_allowed
from mlmedic.heal.releases.states import running_release
from mlmedic.model.project import Project
from mlmedic.model.registry.versions import RETRAIN_TAG
from mlmedic.store.events import EventKind, Outcome

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
        if decision.waiting:
            return f"no retrain: {decision.waiting}"
        return ""

    def _told(self, text: str) -> str:
        self.say(text)
        return text

    def _retrain_if_allowed(self, decision: Decision, snapshot: ChampionSnapshot) -> str:

        events = self.project.events
        settings = self.project.settings
        state, model = self.project.state_dir, self.project.registry.model_name
        with project_lock(state, "monitor retrain", lock_file=RUN_LOCK, say=self.say):
            # another monitor may have retrained while this pass measured: the same rule as the
            # policy's, re-read under the lock, and a claim in the event store so that one
            # attempt per monitoring interval holds across processes and (on Postgres) hosts
            now = self.project.clock.now()
            allowance = retrain_allowed(retrain_history(events, state), now, settings)
            if not allowance.allowed:
                return self._told(f"no retrain: {allowance.why}")
            interval = settings.monitoring.monitoring_interval_hours * 3600.0
            if not events.claim(f"retrain:{model}", seconds=interval * 0.9):
                return self._told("no retrain: another monitor has just claimed this attempt")
            pool = self._pool(snapshot, now)
            if pool is None or not pool.production_rows:
                # the reference alone would teach the champion's own lesson again
                acted = (
                    "cannot retrain: no labelled production rows to learn from "
                    "(labels reach mlmedic through 'mlmedic feedback' or a batch's target column)"
                )
                events.record(EventKind.ALERT, "retrain", Outcome.FAILURE, message=acted)
                return self._told(acted)
            return self._retrain(decision, pool, snapshot)

    def _pool(self, snapshot: ChampionSnapshot, now: float) -> recipes.Pool | None:
        reference = self.reference_data
        if reference is not None and not isinstance(reference, pd.DataFrame):
            reference = read_table(reference)
        pool = recipes.build(
            self.project.state_dir,
            reference,
            columns=list(snapshot.contract.columns_),
            now=now,
            settings=self.project.settings,
        )
        if pool is not None and pool.plan is not None:
            # the regimes the champion was trained for, newest first
            baseline = snapshot.baseline
            pool.plan.known = [baseline["features"], *baseline.get("known_features", [])]
        return pool

    def _retrain(self, decision: Decision, pool: recipes.Pool, snapshot: ChampionSnapshot) -> str:

        events = self.project.events
        running = running_release(self.project)
        if running is not None:  # one candidate on trial at a time: its verdict comes first
            return self._told(
                f"retrain deferred: the {running.mode} release of v{running.version} is being "
                "judged on live traffic"
            )
        minimum = self.project.settings.self_healing.drift_detection.min_samples_for_detection
        plan = pool.plan
        if plan is None:
            self.say(f"retrain: {pool.note}")
        for recipe, why in plan.skipped if plan is not None else []:
            events.record(
                EventKind.TRAIN,
                f"train:{recipe}",
                Outcome.SKIPPED,
                message=f"recipe {recipe} skipped: {why}",
                details={"recipe": recipe, "error": why},
            )
        started = events.clock.now()
        with events.span(EventKind.RETRAIN, "retrain", model_version=snapshot.version) as span:
            reasons = "; ".join(decision.reasons)
            details: dict[str, object] = {
                "reasons": decision.reasons,
                "evidence": decision.evidence,
                "training_rows": len(pool.frame),
                "gate_rows": 0 if plan is None else len(plan.holdout),
                "newest_rows": pool.newest_rows,
                # a refused attempt waits for as many new labelled rows as it was judged on,
                # doubled for each refusal in a row since the last deployment
                "rows_needed": max(minimum, 0 if plan is None else len(plan.holdout))
                * 2 ** refused_in_a_row(events),
            }
            try:
                run = run_pipeline(
                    self.project,
                    pool.frame,
                    target=snapshot.target,
                    plan=plan,
                    say=self.say,
                    reason="retrain: " + ", ".join(decision.triggers or ["drift"]),
                    task=snapshot.contract.task,  # a retrain keeps the champion's task
                    # and a LightGBM or XGBoost champion its library (else the configured one)
                    trainer=getattr(snapshot.model, "library", None),
                )
            except MedicError as exc:  # the retrain failed: recorded, backed off, never raised
                span.outcome = Outcome.FAILURE
                span.message = f"retrain failed because {reasons}: {exc}"
                span.details = {**details, "deployed": False, "error": str(exc)}
                return self._told(span.message)
            span.outcome = Outcome.SUCCESS if run.deployed else Outcome.FAILURE
            outcome = "deployed" if run.deployed else "rejected by the gate"
            if run.deployed and run.release != "direct":
                outcome = f"released as a {run.release} (judged on live traffic)"
            recipe = f" (recipe {run.recipe})" if run.recipe else ""
            span.message = (
                f"retrained on {len(pool.frame):,} rows because {reasons}: "
                f"v{run.candidate}{recipe} {outcome}"
            )
            span.details = {
                **details,
                "candidate": run.candidate,
                "deployed": run.deployed,
                "release": run.release,
                "recipe": run.recipe,
                "candidates": [c.to_dict() for c in run.candidates],
                "gate": run.decision.to_dict() if run.decision is not None else None,
            }
        if run.candidate is not None:
            self._tag_retrain(run.candidate, started, run.deployed, span.details["rows_needed"])
        return self._told(span.message)

    def _tag_retrain(self, version: int, started: float, deployed: bool, rows: object) -> None:
        """The retrain on the version it made, so that a recreated event store finds its
        cooldown and back-off again (``registry.restore``)."""

        ended = self.project.events.clock.now()
        record = {"started_at": started, "ended_at": ended, "deployed": deployed}
        try:
            self.project.registry.set_tags(
                version, {RETRAIN_TAG: json.dumps({**record, "rows_needed": rows})}
            )
        except MedicError as exc:  # the event holds it; only a lost store would miss it
            self.say(f"the retrain was not tagged on v{version}: {exc}")
