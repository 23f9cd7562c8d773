"""The monitor: read a window of production data, measure drift and performance, decide, act.

``run_batch`` is one pass over one file or frame (``mlmedic monitor --batch FILE``);
``run_window`` reads the prediction log (and the feedback labels) since the last pass;
``run_forever`` does that every ``monitoring_interval_hours`` on an injected clock, and survives
restarts because the last pass is an event. Each pass writes a ``drift_check``, a
``performance_check`` and a ``monitor`` event; alerts go to the event store, the console and,
when ``notifications.slack_webhook`` is set, a Slack-compatible JSON POST. A retrain goes through
stages 1-3 (``run_pipeline``) on the reference training data plus the window's labelled rows; the
running server then swaps to the new champion by itself.

A pass is four steps, each its own module: load one ``snapshot`` of the champion, ``measure``
(pure), ``decide`` (``mlmedic.heal.policy``), ``act`` (through a notifier protocol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlmedic.core.clock import to_iso
from mlmedic.core.errors import ConfigError, RegistryError
from mlmedic.data.drift import DriftReport
from mlmedic.data.io import read_table
from mlmedic.data.windows import data_time
from mlmedic.heal.monitor import labelled as labelled_store
from mlmedic.heal.monitor.act import Actions, Say
from mlmedic.heal.monitor.distributed import WindowSummary, summarise_window
from mlmedic.heal.monitor.history import (
    expected_accuracy,
    expected_error,
    mark,
    on_probation,
    recent_errors,
    retrain_history,
)
from mlmedic.heal.monitor.measure import Measurements, measure
from mlmedic.heal.monitor.pass_reports import log_to_mlflow, write_reports
from mlmedic.heal.monitor.snapshot import ChampionSnapshot
from mlmedic.heal.notify import Notifier, Notify
from mlmedic.heal.policy import Decision, decide
from mlmedic.heal.releases.judge import tend
from mlmedic.heal.releases.states import read_release
from mlmedic.model.performance import Performance
from mlmedic.model.project import Project
from mlmedic.store.events import EventKind, Outcome
from mlmedic.store.logstore import read_feedback, read_predictions

__all__ = ["ChampionSnapshot", "Measurements", "Monitor", "MonitorResult", "measure"]


def _quiet(_: str) -> None:
    return None


@dataclass
class MonitorResult:
    """One pass: what was measured, what was decided, what was done."""

    rows: int
    drift: DriftReport | None
    prediction_drift: DriftReport | None
    performance: Performance | None
    decision: Decision
    acted: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    estimate: Performance | None = None  # the label-free estimate, made on every window
    estimate_error: float | None = None  # its error where labels were measured

    def to_dict(self) -> dict[str, Any]:
        """The pass as one JSON-able document (``mlmedic monitor --json``, the MLflow report)."""
        return {
            "rows": self.rows,
            "decision": {**self.decision.to_dict(), "summary": self.decision.summary()},
            "action": self.acted,
            "drift": self.drift.to_dict() if self.drift else None,
            "prediction_drift": self.prediction_drift.to_dict() if self.prediction_drift else None,
            "performance": self.performance.to_dict() if self.performance else None,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "estimate_error": self.estimate_error,
            "details": self.details,
        }


class Monitor:
    """Monitoring of one project's champion."""

    def __init__(
        self,
        project: Project,
        *,
        reference_data: str | Path | pd.DataFrame | None = None,
        say: Say = _quiet,
        notifier: Notify | None = None,
        dask_scheduler: str | None = None,
    ) -> None:
        self.project = project
        self.settings = project.settings
        self.say = say
        # windows of the prediction log profiled on this Dask cluster (None: in this process)
        self.dask_scheduler = dask_scheduler or self.settings.monitoring.dask_scheduler
        self.dask_batch_rows: int | None = None  # rows a worker profiles at once (a test's knob)
        # each pass logged to the champion's MLflow run (a replay's throwaway monitor: never)
        self.mlflow_reports = self.settings.self_healing.monitoring.mlflow_reports
        configured = self.settings.self_healing.monitoring.reference_data_path
        if reference_data is None and configured:
            path = Path(configured)
            reference_data = path if path.is_absolute() else project.root / path
        self.reference_data = reference_data
        if notifier is None:
            notifier = Notifier(
                self.settings.self_healing.notifications, project.events, project=project.root.name
            )
        self.notifier = notifier
        self.actions = Actions(project, notifier, reference_data=reference_data, say=say)
        # a version's contract, baseline and model never change: one snapshot per version
        self._snapshots: dict[int, ChampionSnapshot] = {}

    def snapshot(self) -> ChampionSnapshot:
        """The champion now, read once per version (the alias is read on every call; a version
        comes from the project's local copies when they are there)."""
        registry = self.project.registry
        version = registry.alias_version("champion")
        if version is None:
            raise RegistryError("no champion to monitor yet: run 'mlmedic run' first")
        found = self._snapshots.get(version)
        if found is None:
            found = ChampionSnapshot.load_version(registry, version)
            self._snapshots = {version: found}
        return found

    # ------------------------------------------------------------------ passes
    def run_batch(
        self,
        data: str | Path | pd.DataFrame,
        *,
        labelled: pd.DataFrame | None = None,
        time_column: str | None = None,
    ) -> MonitorResult:
        """One pass over a batch (with or without the target column); ``labelled``: rows whose
        labels arrived since the last pass (measured on instead of the batch's own labels).

        The pass happens in *data time* — at the newest time of ``time_column``, or of the
        champion's time column (its contract's, from ``data_quality.time_column``) when the
        batch has it — so that a backfill of a history pass by pass keeps cooldowns, back-offs
        and the labelled rows' ages as ``mlmedic replay`` does; without one, at the project's
        clock."""
        if not self.settings.self_healing.monitoring.batch_monitoring_enabled:
            raise ConfigError(
                "self_healing_config.json",
                "batch monitoring is off (monitoring.batch_monitoring_enabled is false); "
                "monitor the prediction log with 'mlmedic monitor --every'",
                "monitoring.batch_monitoring_enabled",
            )
        snapshot = self.snapshot()
        source = "" if isinstance(data, pd.DataFrame) else str(data)
        if isinstance(data, pd.DataFrame):
            frame = data
        else:
            # only the columns the champion's contract knows are read (Parquet and CSV read no
            # more from disk): a production file may carry many the model never sees
            named = time_column or snapshot.contract.time_column
            wanted = set(snapshot.contract.columns_) | ({named} if named else set())
            frame = read_table(data, columns=wanted)
        moment = data_time(frame, time_column, snapshot.contract.time_column)
        if moment is None:
            return self._pass(frame, source=source, snapshot=snapshot, labelled=labelled)
        with self.project.data_time(moment):
            self.say(f"data time: {to_iso(moment)} (the newest time of the batch)")
            return self._pass(frame, source=source, snapshot=snapshot, labelled=labelled)

    def run_window(self, since: float | None, until: float) -> MonitorResult:
        """One pass over the prediction log in [since, until), labels joined from feedback."""
        feedback = read_feedback(self.project.log_location("feedback"))
        snapshot = self.snapshot()
        if self.dask_scheduler:
            return self._distributed_window(since, until, feedback, snapshot)
        logged = read_predictions(
            self.project.log_location("predictions"), since=since, until=until
        )
        trial = read_release(self.project.state_dir)
        if trial is not None and trial.state != "promoted" and len(logged):
            # a canary's answers are the candidate's, not the champion's: judged apart
            logged = logged[logged["model_version"] != trial.version]
        target = snapshot.target
        if len(logged) and len(feedback) and target is not None:
            labels = feedback.drop_duplicates("request_id", keep="last").set_index("request_id")
            logged = logged.assign(**{target: logged["request_id"].map(labels["label"])})
        result = self._pass(
            logged.reset_index(drop=True), source="prediction log", logged=True, snapshot=snapshot
        )
        verdict = tend(self.project, self.say)
        if verdict is not None:
            result.details["release"] = verdict.to_dict()
        return result

    def _distributed_window(
        self,
        since: float | None,
        until: float,
        feedback: pd.DataFrame,
        snapshot: ChampionSnapshot,
    ) -> MonitorResult:
        """The window profiled part file by part file on the Dask cluster, merged there."""

        assert self.dask_scheduler is not None
        labels = None
        if len(feedback):
            labels = feedback.drop_duplicates("request_id", keep="last").set_index("request_id")[
                "label"
            ]
        summary = summarise_window(
            self.dask_scheduler,
            self.project.log_location("predictions"),
            since=since,
            until=until,
            features=snapshot.baseline["features"],
            predictions=snapshot.baseline["predictions"],
            contract=snapshot.contract,
            target=snapshot.target,
            labels=labels,
            **({"batch_rows": self.dask_batch_rows} if self.dask_batch_rows else {}),
        )
        if summary is None:
            return self._pass(
                pd.DataFrame(), source="prediction log", logged=True, snapshot=snapshot
            )
        return self._pass(
            summary.frame,
            source=f"prediction log (Dask {self.dask_scheduler})",
            logged=True,
            snapshot=snapshot,
            summary=summary,
        )

    def run_forever(self, *, every_seconds: float | None = None, passes: int | None = None) -> None:
        """Run a pass every ``every_seconds`` (default: the configured interval) on the project's
        clock, reading the prediction log since the last pass (kept in the event store)."""
        interval = every_seconds or self.settings.monitoring.monitoring_interval_hours * 3600.0
        clock = self.project.clock
        done = 0
        while passes is None or done < passes:
            self.project.events.prune(
                clock.now() - self.settings.self_healing.logging.retention_days * 86_400
            )
            last = self.project.events.last(EventKind.MONITOR)
            since = last.details.get("until") if last else None
            due = (since or clock.now()) + (interval if since else 0.0)
            if clock.now() < due:
                clock.sleep(due - clock.now())
            if not self.claim_pass(interval):
                # another monitor sharing this event store has this interval's pass: wait for
                # its record, then for the next interval
                clock.sleep(min(interval, 60.0) / 4)
                continue
            last = self.project.events.last(EventKind.MONITOR)
            self.run_window(last.details.get("until") if last else None, clock.now())
            done += 1

    def claim_pass(self, interval: float) -> bool:
        """Claim this interval's pass: True for one of the monitors sharing the event store
        (every host, on Postgres); the claim lapses a little before the next pass is due."""
        name = f"monitor-pass:{self.project.registry.model_name}"
        return self.project.events.claim(name, seconds=interval * 0.9)

    # ------------------------------------------------------------------ one pass
    def _pass(
        self,
        frame: pd.DataFrame,
        *,
        source: str,
        logged: bool = False,
        snapshot: ChampionSnapshot | None = None,
        labelled: pd.DataFrame | None = None,
        summary: WindowSummary | None = None,
    ) -> MonitorResult:
        events = self.project.events
        now = self.project.clock.now()
        snapshot = snapshot or self.snapshot()
        found = measure(
            snapshot,
            frame,
            settings=self.settings,
            logged=logged,
            labelled=labelled,
            summary=summary,
            errors=recent_errors(events),
        )
        rows = found.rows
        decision = self._decide(found, snapshot, now, late=labelled is not None)
        self._keep_labelled(
            labelled if labelled is not None else frame,
            snapshot,
            now,
            mark=mark(decision),
        )
        result = MonitorResult(
            rows,
            found.drift,
            found.prediction_drift,
            found.performance,
            decision,
            estimate=found.estimate,
            estimate_error=found.estimate_error,
        )
        self._record(result, snapshot.version, source, now)
        self.actions.alert(decision.alerts, snapshot.version, now)
        self.say(f"decision: {decision.summary()}")
        result.acted = self.actions.act(decision, snapshot)
        write_reports(self.project, result, snapshot.version, source, now, self.say)
        if self.mlflow_reports:
            log_to_mlflow(self.project, result, snapshot.version, source, now, self.say)
        events.record(
            EventKind.MONITOR,
            "pass",
            Outcome.SUCCESS,
            message=f"{source or 'batch'}: {rows:,} rows; {decision.summary()}"
            + (f"; {result.acted}" if result.acted else ""),
            details={
                "until": now,
                "rows": rows,
                "action": decision.action,
                "policy": decision.policy,
                "evidence": decision.evidence,
                "triggers": decision.triggers,
                "data_drift": decision.data_drift,
                "drift_score": found.drift.score if found.drift else None,
                "measured_rows": found.measured_rows,
                "measured_accuracy": found.performance.accuracy
                if found.performance and found.measured_rows
                else None,
                "measured_mae": found.performance.mae  # a regression's
                if found.performance and found.measured_rows
                else None,
                "drop_test": decision.drop_test,
            },
            model_version=snapshot.version,
            started_at=now,
            ended_at=now,
        )
        return result

    def _decide(
        self, found: Measurements, snapshot: ChampionSnapshot, now: float, *, late: bool
    ) -> Decision:
        """The policy's decision on a window, with what the event store remembers: the
        retrain history, the expected accuracy, probation, an ongoing drift."""
        events = self.project.events
        detection = self.settings.self_healing.drift_detection
        minimum = detection.min_samples_for_detection
        before = events.last(EventKind.MONITOR)
        expected, expected_rows = expected_accuracy(
            events, snapshot.version, snapshot.baseline, min_rows=minimum
        )
        measured_rows = found.measured_rows
        return decide(
            found.drift,
            found.performance,
            settings=self.settings,
            now=now,
            history=retrain_history(events, self.project.state_dir, arriving=measured_rows),
            validation_accuracy=expected,
            validation_rows=expected_rows,
            validation_error=expected_error(
                events, snapshot.version, snapshot.baseline, min_rows=minimum
            ),
            versus_previous=found.versus_previous,
            previous_performance=found.previous_performance,
            probation=measured_rows >= minimum
            and on_probation(
                events,
                snapshot.version,
                min_rows=minimum,
                now=now,
                cooldown=self.settings.retraining_cooldown_hours * 3600.0,
            ),
            drift_ongoing=before is not None
            and bool(before.details.get("data_drift"))
            and before.model_version == str(snapshot.version),
            # labels that arrived late are of earlier rows: the window's estimate counts too
            estimate=found.estimate if late and not found.labelled else None,
        )

    def _keep_labelled(
        self, frame: pd.DataFrame, snapshot: ChampionSnapshot, now: float, *, mark: str
    ) -> None:
        """Labelled rows go to the store the next retrain learns from (``monitor.labelled``)."""
        target = snapshot.target
        if target is None or target not in frame.columns or not len(frame):
            return
        rows = frame[frame[target].notna()]
        columns = [c for c in snapshot.contract.columns_ if c in rows.columns]
        paths = self.settings.self_healing.monitoring
        try:
            labelled_store.keep(
                self.project.state_dir,
                rows[columns],
                now=now,
                version=snapshot.version,
                mark=mark,
            )
            labelled_store.prune(
                self.project.state_dir, before=now - paths.production_rows_max_age_days * 86_400
            )
        except (OSError, ValueError) as exc:
            self.say(f"cannot keep the labelled rows for retraining: {exc}")

    def _record(self, result: MonitorResult, version: int, source: str, now: float) -> None:
        events = self.project.events
        if result.drift is not None:
            drift = result.drift
            events.record(
                EventKind.DRIFT_CHECK,
                "features",
                Outcome.WARNING if drift.drift else Outcome.SUCCESS,
                message=drift.summary(),
                details={
                    "score": drift.score,
                    "threshold": drift.threshold,
                    "drifted": drift.drifted_features,
                    "weighted": drift.weighted,
                    "features": [
                        {
                            k: v
                            for k, v in f.__dict__.items()
                            if k in ("name", "test", "statistic", "drifted", "psi")
                        }
                        for f in drift.features
                    ],
                    "prediction_drift": result.prediction_drift.summary()
                    if result.prediction_drift
                    else None,
                    "source": source,
                },
                model_version=version,
                started_at=now,
                ended_at=now,
            )
            self.say(f"drift: {drift.summary()}")
        if result.performance is not None:
            events.record(
                EventKind.PERFORMANCE_CHECK,
                "estimate" if result.performance.estimated else "measure",
                Outcome.SUCCESS,
                message=result.performance.summary(),
                details={
                    **result.performance.to_dict(),
                    "estimate": result.estimate.to_dict() if result.estimate else None,
                    "estimate_error": result.estimate_error,
                },
                model_version=version,
                started_at=now,
                ended_at=now,
            )
            self.say(f"performance: {result.performance.summary()}")
