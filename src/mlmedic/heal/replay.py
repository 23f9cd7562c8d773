"""``mlmedic replay``: a backtest of the healing loop on a user's own history.

The history is cut into windows in data time (``--time-column`` and ``--every``), or taken file by
file from a folder, or in row order (``window_rows``). The first model is trained on
``reference`` (default: the windows holding the first fifth of the history); then, on a
simulated clock in data time, every window is one monitoring pass of the real monitor: drift and
the label-free estimate on the window, measured accuracy on the labels that *arrived* since the
last pass (each row's label arrives ``label_delay`` after its time), the policy's decision, and
its action — retrains through stages 1-3 into a throwaway registry in a temporary folder. The
project's own registry, event store and files are never touched.

Each window's pass happens at the data time of its newest row (a time column), or at the end of
its slot of ``every`` (rows in order, spread evenly over it), as ``mlmedic monitor --batch
--time-column`` would run it on the same rows: the same history gives the same decisions.

Baselines run in the same replay on the same windows (``mlmedic.heal.strategies``): *never heal*,
*retrain every window*, optionally each retraining recipe alone, and the *oracle* (the best of
them in hindsight on each window). For each strategy: the accuracy of the model in force on each
window (all its labels, known afterwards), retrains, rollbacks, and alerts raised on windows where
the model's accuracy did not drop. A history without labels replays on the label-free estimate
alone, and says so. A regression is scored by its MAE (``metric``: lower is better; the oracle is
the lowest): ``mae`` and ``mean_mae``/``worst_mae`` (the highest) where a classification has
``accuracy``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.clock import SimulatedClock, to_iso
from mlmedic.core.config import MONITORING_FILE, SELF_HEALING_FILE, load_settings
from mlmedic.core.errors import UsageError
from mlmedic.data.windows import Window, prepare
from mlmedic.heal.monitor import Monitor
from mlmedic.heal.monitor.window_error import measured_errors
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.heal.releases.judge import simulate
from mlmedic.heal.strategies import NEVER, Baselines
from mlmedic.model.performance import measured
from mlmedic.model.project import Project
from mlmedic.model.tasks import Task, task_of
from mlmedic.model.training import model_frame
from mlmedic.store.events import EventKind

Say = Callable[[str], None]
ARRIVES = "_mlmedic_label_at"


def _quiet(_: str) -> None:
    return None


@dataclass
class WindowOutcome:
    """What happened on one window of the replay."""

    index: int
    start: str
    end: str
    rows: int
    drift_score: float | None
    drifted_features: list[str]
    performance: str
    alerts: list[str]
    action: str
    acted: str
    evidence: list[str]
    model_version: int  # the model that served this window
    accuracy: float | None  # of that model on this window, with all its labels
    roc_auc: float | None
    never_heal_accuracy: float | None
    retrain_every_window_accuracy: float | None
    baselines: dict[str, float | None] = field(default_factory=dict)  # strategy -> accuracy
    # the champion's label-free estimate of this window: [accuracy, low, high] of its 95 %
    # interval (made before the window's labels are used); a regression's: [MAE, low, high]
    estimate: list[float] | None = None
    mae: float | None = None  # a regression's error of the model in force (accuracy is None)
    release: str = ""  # a shadow release judged on this window, and its verdict (#24)


@dataclass
class StrategySummary:
    name: str
    mean_accuracy: float | None
    worst_accuracy: float | None
    retrains: int
    rollbacks: int
    needless_alerts: int  # alerts on windows where the model's accuracy had not dropped
    mean_mae: float | None = None  # a regression's (worst: the highest)
    worst_mae: float | None = None


@dataclass
class ReplayResult:
    policy: str
    windows: list[WindowOutcome]
    summaries: list[StrategySummary]
    validation_accuracy: float | None
    validation_rows: int
    seconds: float
    seconds_per_window: float
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metric: str = "accuracy"  # what the windows and baselines are scored by ("mae": lower wins)
    validation_mae: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- the history as windows


@contextlib.contextmanager
def _throwaway(settings_from: Path | None, policy: str) -> Iterator[Path]:
    """A temporary project holding a copy of the user's configuration."""
    folder = Path(tempfile.mkdtemp(prefix="mlmedic-replay-"))
    try:
        root = folder / "replay"
        root.mkdir()
        config: dict[str, Any] = {}
        if settings_from is not None:
            for name in (SELF_HEALING_FILE, MONITORING_FILE):
                if (settings_from / name).is_file():
                    shutil.copy(settings_from / name, root / name)
            if (root / SELF_HEALING_FILE).is_file():
                config = json.loads((root / SELF_HEALING_FILE).read_text(encoding="utf-8"))
        section = config.setdefault("drift_detection", {})
        section["retrain_on"] = policy
        # reports of a replay are not the project's
        config.setdefault("monitoring", {}).update(
            {
                "reports_dir": ".mlmedic/replay/reports",
                "metrics_dir": ".mlmedic/replay/metrics",
                "alerts_dir": ".mlmedic/replay/alerts",
                "reference_data_path": None,
            }
        )
        config.setdefault("notifications", {})["enabled"] = False
        (root / SELF_HEALING_FILE).write_text(json.dumps(config), encoding="utf-8")
        yield root
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _accuracy(model: Any, frame: pd.DataFrame, contract: Any) -> tuple[float | None, float | None]:
    """Accuracy and ROC AUC of ``model`` on the labelled rows of ``frame`` (a regression: its
    MAE, and None)."""

    target = contract.target
    rows = frame[frame[target].notna()] if target in frame.columns else frame.iloc[0:0]
    if not len(rows):
        return None, None
    if not task_of(contract.task).probabilities:  # a regression: its MAE, lower is better
        values = np.asarray(model.predict(model_frame(rows, contract)), dtype=float)
        error = measured_errors(rows[target].to_numpy(), values)
        return (None if error.rows == 0 else error.mae), None
    probabilities = np.asarray(model.predict_proba(model_frame(rows, contract)))
    classes = list(model.classes_)
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    found = measured(rows[target].to_numpy(), predicted, probabilities, classes)
    return (None if found.rows == 0 else found.accuracy), found.roc_auc


def replay(
    history: str | Path | pd.DataFrame,
    *,
    target: str,
    reference: str | Path | pd.DataFrame | None = None,
    time_column: str | None = None,
    every_seconds: float = 6 * 3600.0,
    label_delay_seconds: float = 0.0,
    policy: str = "impact",
    window_rows: int = 1000,
    settings_from: Path | None = None,
    baselines: bool = True,
    recipes: bool = False,
    say: Say = _quiet,
) -> ReplayResult:
    """Replay ``history`` through the loop (see the module docstring); ``recipes``: also each
    retraining recipe alone, retrained every window, and the oracle (three trainings more per
    window)."""

    if policy not in ("impact", "drift"):
        raise UsageError(f"--policy {policy}: use impact or drift")
    if time_column is None and settings_from is not None:
        time_column = load_settings(settings_from).self_healing.data_quality.time_column
    begin = time.perf_counter()
    windows, reference_frame = prepare(
        history, target, reference, time_column, every_seconds, window_rows
    )
    notes = _notes(windows, target, say)
    with _throwaway(settings_from, policy) as root:
        clock = SimulatedClock(start=windows[0].start)
        project = Project(
            root, clock=clock, tracking_uri=f"sqlite:///{root / '.mlmedic' / 'mlflow.db'}"
        )
        try:
            monitor, first_snapshot, others = _start(
                project, reference_frame, target, baselines=baselines, recipes=recipes, say=say
            )
            contract = first_snapshot.contract
            task = task_of(contract.task)
            validation = first_snapshot.baseline.get("validation_accuracy")
            validation_rows = int(first_snapshot.baseline.get("validation_rows") or 0)
            labels = _Arrivals(target, label_delay_seconds)
            shadow = _Shadow(project, target, notes, say)
            outcomes: list[WindowOutcome] = []
            passes_started = time.perf_counter()
            for window in windows:
                clock.advance(max(0.0, window.at - clock.now()))
                snapshot = monitor.snapshot()  # the model that served this window
                scores = _scores(others, first_snapshot.model, window.rows, contract)
                fresh = labels.arrive(window, clock.now())
                if label_delay_seconds <= 0:  # the window's own labels, with its rows
                    result = monitor.run_batch(window.rows)
                else:  # the labels that arrived by now, of this window's rows or earlier ones
                    features = window.rows.drop(columns=[target])
                    result = monitor.run_batch(features, labelled=fresh if len(fresh) else None)
                measured = _accuracy(snapshot.model, window.rows, contract)
                outcomes.append(_outcome(window, result, snapshot.version, measured, scores, task))
                shadow.judge(window, clock.now(), outcomes[-1])
                say(_line(outcomes[-1]))
                if others is not None:  # the next window's models, on every label known now
                    known, seen = labels.known(clock.now())
                    others.learn(known, seen, clock.now())
            passes = time.perf_counter() - passes_started
            retrains = project.events.count(EventKind.RETRAIN)
            rollbacks = len(
                [e for e in project.events.query(kind=EventKind.ROLLBACK) if e.action == "rollback"]
            )
            released = [e.action for e in project.events.query(kind=EventKind.RELEASE)]
        finally:
            project.close()
    error = (first_snapshot.baseline.get("validation_error") or {}).get("mae")
    summaries = _summaries(outcomes, task, validation, project.settings, retrains, rollbacks, error)
    return ReplayResult(
        metric=task.metric,
        validation_mae=(first_snapshot.baseline.get("validation_error") or {}).get("mae"),
        policy=policy,
        windows=outcomes,
        summaries=summaries,
        validation_accuracy=validation,
        validation_rows=validation_rows,
        seconds=time.perf_counter() - begin,
        seconds_per_window=passes / len(outcomes),
        settings={
            "every_seconds": every_seconds,
            "label_delay_seconds": label_delay_seconds,
            "reference_rows": len(reference_frame),
            "windows": len(outcomes),
            "release": project.settings.self_healing.deployment.release,
            "releases": {a: released.count(a) for a in ("start", "promote", "retire", "abort")},
        },
        notes=notes,
    )


def _scores(others: Any, first: Any, rows: pd.DataFrame, contract: Any) -> dict[str, Any]:
    """The baselines' accuracies on a window (only *never heal* without the baselines)."""

    def score(model: Any, frame: pd.DataFrame) -> float | None:
        return _accuracy(model, frame, contract)[0]

    return others.score(rows, score) if others is not None else {NEVER: score(first, rows)}


class _Shadow:
    """A release policy replayed (#24): with ``deployment.release`` shadow (or canary), each
    window after a release started is that release's traffic, and judged as a monitoring pass
    judges it (``monitor.releases.simulate``)."""

    def __init__(self, project: Any, target: str, notes: list[str], say: Say) -> None:
        self.project, self.target = project, target
        self.models: dict[int, Any] = {}  # a release's two models, loaded once
        mode = project.settings.self_healing.deployment.release
        self.on = mode != "direct"
        if self.on:
            notes.append(
                f"deployment.release is {mode}: a retrain that passes the gate is a shadow "
                "judged on the next windows (each row a request, its own label as feedback) "
                "and serves only once promoted"
                + (" (a canary is replayed as a shadow)" if mode == "canary" else "")
            )
            say(notes[-1])

    def judge(self, window: Window, at: float, outcome: WindowOutcome) -> None:
        if not self.on:
            return
        found = simulate(
            self.project, window.rows, self.target, at, f"w{window.index}", self.models
        )
        if found is not None:
            outcome.release = f"shadow v{found.release.version}: {found.action} ({found.why})"


def _notes(windows: list[Window], target: str, say: Say) -> list[str]:
    """What the replay must say about its history before anything else (told at once)."""
    notes = []
    if not any(w.rows[target].notna().any() for w in windows):
        notes.append(
            "the history has no labels: every decision rests on the label-free estimate, and "
            "no accuracy can be scored"
        )
    for note in notes:
        say(note)
    return notes


def _start(
    project: Any,
    reference: pd.DataFrame,
    target: str,
    *,
    baselines: bool,
    recipes: bool,
    say: Say,
) -> tuple[Any, Any, Any]:
    """The first model trained on ``reference`` into the throwaway project, the monitor that
    replays the windows, the snapshot of that first model, and the baselines (or None)."""

    say(f"training the first model on {len(reference):,} reference rows ...")
    first = run_pipeline(project, reference, target=target)
    if first.candidate is None or not first.deployed:
        raise UsageError("the first model did not pass the gate; nothing to replay")
    monitor = Monitor(project, reference_data=reference)
    monitor.mlflow_reports = False  # a throwaway registry: no history to keep
    snapshot = monitor.snapshot()
    others = (
        Baselines(snapshot.model, reference, snapshot.contract, project.settings, recipes=recipes)
        if baselines
        else None
    )
    return monitor, snapshot, others


class _Arrivals:
    """Labels arriving in data time: each row's label ``delay`` after the row's own time."""

    def __init__(self, target: str, delay: float) -> None:
        self.target, self.delay = target, delay
        self.arrived: list[pd.DataFrame] = []  # labelled rows with their arrival time
        self.last_pass = -float("inf")  # labels that arrived after this are new to a pass

    def arrive(self, window: Window, now: float) -> pd.DataFrame:
        """Add ``window``'s labelled rows; return those whose labels arrived since the last
        pass (at ``now``)."""
        present = window.rows[self.target].notna()
        arrives = window.times[present.to_numpy()] + self.delay
        self.arrived.append(window.rows[present].assign(**{ARRIVES: arrives}))
        pool = pd.concat(self.arrived, ignore_index=True)
        due = (pool[ARRIVES] > self.last_pass) & (pool[ARRIVES] <= now)
        self.last_pass = now
        return pool.loc[due].drop(columns=[ARRIVES])

    def known(self, now: float) -> tuple[pd.DataFrame, np.ndarray]:
        """Every labelled row known by ``now``, oldest first, and when each label arrived."""
        pool = pd.concat(self.arrived, ignore_index=True)
        pool = pool.loc[pool[ARRIVES] <= now]
        return (
            pool.drop(columns=[ARRIVES]).reset_index(drop=True),
            pool[ARRIVES].to_numpy(dtype=float),
        )


def _outcome(
    window: Window,
    result: Any,
    version: int,
    measured: tuple[float | None, float | None],
    scores: dict[str, float | None],
    task: Task,
) -> WindowOutcome:
    """One window of the replay: the pass's result, and what each strategy scored on it (a
    regression's MAE in ``mae`` and ``baselines``; its accuracy fields are None)."""

    drift = result.drift
    return WindowOutcome(
        index=window.index,
        start=to_iso(window.start),
        end=to_iso(window.end),
        rows=len(window.rows),
        drift_score=drift.score if drift else None,
        drifted_features=drift.drifted_features if drift else [],
        performance=result.performance.summary() if result.performance else "",
        alerts=list(result.decision.alerts),
        action=result.decision.action,
        acted=result.acted,
        evidence=list(result.decision.evidence),
        model_version=version,
        roc_auc=measured[1],
        baselines=scores,
        estimate=_interval(result.estimate),
        **task.window_fields(measured[0], scores),
    )


def _interval(estimate: Any) -> list[float] | None:
    if estimate is None or not estimate.rows or estimate.low is None or estimate.high is None:
        return None
    centre = estimate.mae if estimate.mae is not None else estimate.accuracy
    return [float(centre), float(estimate.low), float(estimate.high)]


def _line(outcome: WindowOutcome) -> str:
    score = "-" if outcome.drift_score is None else f"{outcome.drift_score:.2f}"
    accuracy = "-" if outcome.accuracy is None else f"{outcome.accuracy:.3f}"
    shown = f"MAE {outcome.mae:.4g}" if outcome.mae is not None else f"accuracy {accuracy}"
    return (
        f"window {outcome.index:>3} {outcome.end[:16]}  drift {score:>4}  v{outcome.model_version}"
        f" {shown}  {outcome.action}"
        + (f" ({outcome.acted})" if outcome.acted else "")
        + (f"; {outcome.release}" if outcome.release else "")
    )


def _summaries(
    outcomes: list[WindowOutcome],
    task: Task,
    validation: float | None,
    settings: Any,
    retrains: int,
    rollbacks: int,
    validation_mae: float | None = None,
) -> list[StrategySummary]:
    """mlmedic first, then every baseline the replay scored, in their order. A needless alert
    is one on a window whose served model scored at least its validation accuracy less the
    allowed drop — or, a regression, at most its validation MAE plus ``max_error_increase``."""
    allowed = settings.self_healing.model_validation.performance_degradation_threshold
    floor = (validation - allowed) if validation is not None else None

    def stats(values: list[float | None]) -> tuple[float | None, float | None]:
        known = [v for v in values if v is not None]
        return (float(np.mean(known)), float(min(known))) if known else (None, None)

    needless = sum(
        1
        for o in outcomes
        if o.alerts and o.accuracy is not None and (floor is None or o.accuracy >= floor)
    )
    if not task.higher_is_better:  # errors: the worst window is the highest
        increase = settings.self_healing.model_validation.max_error_increase
        ceiling = None if validation_mae is None else validation_mae * (1 + increase)
        needless = sum(
            1
            for o in outcomes
            if o.alerts and o.mae is not None and (ceiling is None or o.mae <= ceiling)
        )

    def summary(
        name: str, values: list[float | None], retrains: int, rollbacks: int, needless: int
    ) -> StrategySummary:
        if task.higher_is_better:
            return StrategySummary(name, *stats(values), retrains, rollbacks, needless)
        known = [v for v in values if v is not None]
        return StrategySummary(
            name,
            None,
            None,
            retrains,
            rollbacks,
            needless,
            mean_mae=float(np.mean(known)) if known else None,
            worst_mae=max(known, default=None),
        )

    mine = [getattr(o, task.metric) for o in outcomes]
    found = [summary("mlmedic", mine, retrains, rollbacks, needless)]
    names = list(outcomes[0].baselines) if outcomes else []
    for name in names:
        trained = 0 if name in ("never heal", "oracle") else len(outcomes)
        found.append(summary(name, [o.baselines.get(name) for o in outcomes], trained, 0, 0))
    return found
