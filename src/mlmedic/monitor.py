"""The monitor: read a window of production data, measure drift and performance, decide, act.

``run_batch`` is one pass over one file or frame (``mlmedic monitor --batch FILE``);
``run_window`` reads the prediction log (and the feedback labels) since the last pass;
``run_forever`` does that every ``monitoring_interval_hours`` on an injected clock, and survives
restarts because the last pass is an event. Each pass writes a ``drift_check``, a
``performance_check`` and a ``monitor`` event; alerts go to the event store, the console and,
when ``notifications.slack_webhook`` is set, a Slack-compatible JSON POST. A retrain goes through
stages 1-3 (``run_pipeline``) on the reference training data plus the window's labelled rows; the
running server then swaps to the new champion by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.clock import to_iso
from mlmedic.data.io import read_table
from mlmedic.drift import DriftReport, ReferenceProfile, compare
from mlmedic.errors import ConfigError, RegistryError
from mlmedic.events import EventKind, Outcome
from mlmedic.performance import Calibration, Performance, estimated, measured
from mlmedic.policy import Decision, decide
from mlmedic.project import Project
from mlmedic.serving.logstore import read_feedback, read_predictions
from mlmedic.training import model_frame

Say = Callable[[str], None]


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


class Monitor:
    """Monitoring of one project's champion."""

    def __init__(
        self,
        project: Project,
        *,
        reference_data: str | Path | pd.DataFrame | None = None,
        say: Say = _quiet,
    ) -> None:
        self.project = project
        self.settings = project.settings
        self.say = say
        configured = self.settings.self_healing.monitoring.reference_data_path
        if reference_data is None and configured:
            path = Path(configured)
            reference_data = path if path.is_absolute() else project.root / path
        self.reference_data = reference_data
        from mlmedic.notify import Notifier

        self.notifier = Notifier(
            self.settings.self_healing.notifications, project.events, project=project.root.name
        )

    # ------------------------------------------------------------------ passes
    def run_batch(self, data: str | Path | pd.DataFrame) -> MonitorResult:
        """One pass over a batch (with or without the target column)."""
        if not self.settings.self_healing.monitoring.batch_monitoring_enabled:
            raise ConfigError(
                "self_healing_config.json",
                "batch monitoring is off (monitoring.batch_monitoring_enabled is false); "
                "monitor the prediction log with 'mlmedic monitor --every'",
                "monitoring.batch_monitoring_enabled",
            )
        frame = read_table(data) if not isinstance(data, pd.DataFrame) else data
        return self._pass(frame, source=str(data) if not isinstance(data, pd.DataFrame) else "")

    def run_window(self, since: float | None, until: float) -> MonitorResult:
        """One pass over the prediction log in [since, until), labels joined from feedback."""
        state = self.project.state_dir
        logged = read_predictions(state / "predictions", since=since, until=until)
        feedback = read_feedback(state / "feedback")
        target = self._champion_contract().target
        if len(logged) and len(feedback) and target is not None:
            labels = feedback.drop_duplicates("request_id", keep="last").set_index("request_id")
            logged = logged.assign(**{target: logged["request_id"].map(labels["label"])})
        return self._pass(logged.reset_index(drop=True), source="prediction log", logged=True)

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
            self.run_window(since, clock.now())
            done += 1

    # ------------------------------------------------------------------ one pass
    def _champion(self) -> Any:
        champion = self.project.registry.champion()
        if champion is None:
            raise RegistryError("no champion to monitor yet: run 'mlmedic run' first")
        return champion

    def _champion_contract(self) -> Any:
        return self.project.registry.load_contract(self._champion().version)

    def _pass(self, frame: pd.DataFrame, *, source: str, logged: bool = False) -> MonitorResult:
        settings = self.settings
        registry = self.project.registry
        events = self.project.events
        now = self.project.clock.now()
        champion = self._champion()
        contract = registry.load_contract(champion.version)
        baseline = registry.load_drift_profile(champion.version)
        if baseline is None:
            raise RegistryError(
                f"v{champion.version} has no drift reference; retrain it with this mlmedic"
            )
        detection = settings.self_healing.drift_detection
        target = contract.target
        features = model_frame(frame, contract) if len(frame) else pd.DataFrame()
        labelled = bool(
            target is not None and target in frame.columns and frame[target].notna().any()
        )

        drift = prediction_drift = None
        performance = None
        probabilities = np.empty((0, 0))
        if len(frame):
            profile = ReferenceProfile.from_dict(baseline["features"])
            drift = compare(
                profile,
                features,
                threshold=settings.drift_threshold,
                min_samples=detection.min_samples_for_detection,
            )
            model = registry.load_model(champion.version)
            if logged:
                probabilities = frame.filter(regex=r"^proba_\d+$").to_numpy(dtype=float)
            if probabilities.size == 0:
                probabilities = np.asarray(model.predict_proba(features))
            prediction_profile = ReferenceProfile.from_dict(baseline["predictions"])
            prediction_drift = compare(
                prediction_profile,
                pd.DataFrame({"probability": probabilities.max(axis=1)}),
                threshold=settings.drift_threshold,
                min_samples=detection.min_samples_for_detection,
            )
            classes = list(getattr(model, "classes_", []))
            previous_performance = None
            if labelled:
                rows = frame[target].notna().to_numpy()
                predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
                performance = measured(
                    frame[target].to_numpy()[rows], predicted[rows], probabilities[rows], classes
                )
                previous = registry.alias("previous")
                if previous is not None:
                    try:
                        other = registry.load_model(previous.version)
                        other_probabilities = np.asarray(other.predict_proba(features))
                        other_predicted = np.asarray(list(other.classes_), dtype=object)[
                            other_probabilities.argmax(axis=1)
                        ]
                        previous_performance = measured(
                            frame[target].to_numpy()[rows],
                            other_predicted[rows],
                            other_probabilities[rows],
                            list(other.classes_),
                        )
                    except Exception:  # the previous version may not fit today's data
                        previous_performance = None
            else:
                performance = estimated(
                    Calibration.from_dict(baseline["calibration"]), probabilities
                )
        else:
            previous_performance = None

        if not detection.monitor_features:
            drift = None
        if not detection.monitor_predictions:
            prediction_drift = None
        last_retrain = events.last(EventKind.RETRAIN)
        decision = decide(
            drift,
            performance,
            settings=settings,
            last_retrain_at=last_retrain.started_at if last_retrain else None,
            now=now,
            validation_accuracy=baseline.get("validation_accuracy"),
            previous_performance=previous_performance,
        )
        result = MonitorResult(len(frame), drift, prediction_drift, performance, decision)
        self._record(result, champion.version, source, now)
        self._act(result, frame, labelled, champion.version)
        self._write_reports(result, champion.version, source, now)
        events.record(
            EventKind.MONITOR,
            "pass",
            Outcome.SUCCESS,
            message=f"{source or 'batch'}: {len(frame):,} rows; {decision.summary()}"
            + (f"; {result.acted}" if result.acted else ""),
            details={"until": now, "rows": len(frame), "action": decision.action},
            model_version=champion.version,
            started_at=now,
            ended_at=now,
        )
        return result

    def _write_reports(self, result: MonitorResult, version: int, source: str, now: float) -> None:
        """Each pass as files too (``monitoring.reports_dir``, ``metrics_dir``, ``alerts_dir``,
        relative to the project): the drift report, the performance, the alerts."""
        paths = self.settings.self_healing.monitoring
        stamp = to_iso(now).replace(":", "-")[:19]
        head = {"time": to_iso(now), "model_version": version, "source": source}
        documents = {
            paths.reports_dir: {
                **head,
                "rows": result.rows,
                "decision": result.decision.summary(),
                "action": result.acted,
                "drift": result.drift.summary() if result.drift else None,
                "drift_score": result.drift.score if result.drift else None,
                "drifted_features": result.drift.drifted_features if result.drift else [],
            },
            paths.metrics_dir: {
                **head,
                "performance": result.performance.to_dict() if result.performance else None,
            },
        }
        if result.decision.alerts:
            documents[paths.alerts_dir] = {**head, "alerts": result.decision.alerts}
        for folder, document in documents.items():
            target = Path(folder) if Path(folder).is_absolute() else self.project.root / folder
            try:
                target.mkdir(parents=True, exist_ok=True)
                (target / f"{stamp}-v{version}.json").write_text(
                    json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8"
                )
            except OSError as exc:
                self.say(f"cannot write the pass report into {target}: {exc}")

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
                details=result.performance.to_dict(),
                model_version=version,
                started_at=now,
                ended_at=now,
            )
            self.say(f"performance: {result.performance.summary()}")
        for alert in result.decision.alerts:
            events.record(
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
        self.say(f"decision: {result.decision.summary()}")

    def _act(
        self, result: MonitorResult, frame: pd.DataFrame, labelled: bool, version: int
    ) -> None:
        action = result.decision.action
        events = self.project.events
        if (
            action in ("rollback", "retrain")
            and not self.settings.self_healing.self_healing.enabled
        ):
            result.acted = f"no {action}: self-healing is off (self_healing.enabled is false)"
            self.say(result.acted)
            return
        if action == "rollback":
            done = self.project.registry.rollback(reason="; ".join(result.decision.reasons))
            result.acted = f"rolled back v{done.from_version} -> v{done.to_version}"
            self.say(result.acted)
            self.notifier.send("rollback", f"{result.acted}: {'; '.join(result.decision.reasons)}")
        elif action == "retrain":
            training = self._training_data(frame if labelled else None)
            if training is None:
                result.acted = "cannot retrain: no reference training data and no labelled rows"
                events.record(EventKind.ALERT, "retrain", Outcome.FAILURE, message=result.acted)
                self.say(result.acted)
                return
            from mlmedic.lock import project_lock

            with project_lock(self.project.state_dir, "monitor retrain", say=self.say):
                # another monitor may have retrained while this pass measured: the cooldown is
                # claimed under the lock, so one retrain per cooldown holds across processes
                last = events.last(EventKind.RETRAIN)
                hours = self.settings.retraining_cooldown_hours
                now = self.project.clock.now()
                if last is not None and now < last.started_at + hours * 3600.0:
                    result.acted = (
                        "no retrain: another monitor retrained at "
                        f"{to_iso(last.started_at)} (cooldown until "
                        f"{to_iso(last.started_at + hours * 3600.0)})"
                    )
                    self.say(result.acted)
                    return
                self._retrain(result, training, version)
        elif result.decision.next_retrain_at is not None:
            result.acted = f"no retrain: cooldown until {to_iso(result.decision.next_retrain_at)}"

    def _retrain(self, result: MonitorResult, training: pd.DataFrame, version: int) -> None:
        from mlmedic.pipeline import run_pipeline

        events = self.project.events
        with events.span(EventKind.RETRAIN, "retrain", model_version=version) as span:
            target = self._champion_contract().target
            run = run_pipeline(self.project, training, target=target, say=self.say)
            span.outcome = Outcome.SUCCESS if run.deployed else Outcome.FAILURE
            outcome = "deployed" if run.deployed else "rejected by the gate"
            reasons = "; ".join(result.decision.reasons)
            span.message = (
                f"retrained on {len(training):,} rows because {reasons}: v{run.candidate} {outcome}"
            )
            span.details = {
                "candidate": run.candidate,
                "deployed": run.deployed,
                "reasons": result.decision.reasons,
            }
        result.acted = span.message

    def _training_data(self, labelled: pd.DataFrame | None) -> pd.DataFrame | None:
        """The reference training data plus the window's labelled rows, in the champion's
        columns (never the log's prediction columns)."""
        columns = list(self._champion_contract().columns_)
        parts = []
        if self.reference_data is not None:
            reference = (
                self.reference_data
                if isinstance(self.reference_data, pd.DataFrame)
                else read_table(self.reference_data)
            )
            parts.append(reference)
        if labelled is not None and len(labelled):
            target = self._champion_contract().target
            parts.append(labelled[labelled[target].notna()] if target in labelled else labelled)
        if not parts:
            return None
        return pd.concat(
            [p[[c for c in columns if c in p.columns]] for p in parts], ignore_index=True
        )
