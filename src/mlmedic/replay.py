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

Baselines run in the same replay on the same windows (``mlmedic.baselines``): *never heal*,
*retrain every window*, optionally each retraining recipe alone, and the *oracle* (the best of
them in hindsight on each window). For each strategy: the accuracy of the model in force on each
window (all its labels, known afterwards), retrains, rollbacks, and alerts raised on windows where
the model's accuracy did not drop. A history without labels replays on the label-free estimate
alone, and says so.
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

from mlmedic.clock import SimulatedClock, to_iso
from mlmedic.config import MONITORING_FILE, SELF_HEALING_FILE
from mlmedic.data.io import read_table
from mlmedic.errors import UsageError
from mlmedic.events import EventKind

Say = Callable[[str], None]
ARRIVES = "_mlmedic_label_at"


def _quiet(_: str) -> None:
    return None


@dataclass
class Window:
    """One window of the history: its rows, the data-time span they cover, and each row's
    data time (the pass happens at the newest)."""

    index: int
    start: float
    end: float
    rows: pd.DataFrame
    times: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __post_init__(self) -> None:
        if len(self.times) != len(self.rows):  # rows in order, spread over (start, end]
            n = len(self.rows)
            self.times = self.start + (self.end - self.start) * np.arange(1, n + 1) / max(n, 1)

    @property
    def at(self) -> float:
        """When the window's pass runs: at its newest row."""
        return float(self.times.max()) if len(self.times) else self.end


@dataclass
class WindowOutcome:
    """What happened on one window of the replay."""

    index: int
    start: str
    end: str
    rows: int
    labels_arrived: int
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
    # interval (made before the window's labels are used)
    estimate: list[float] | None = None


@dataclass
class StrategySummary:
    name: str
    mean_accuracy: float | None
    worst_accuracy: float | None
    retrains: int
    rollbacks: int
    needless_alerts: int  # alerts on windows where the model's accuracy had not dropped


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- the history as windows


def windows_of(
    history: str | Path | pd.DataFrame,
    *,
    time_column: str | None,
    every_seconds: float,
    window_rows: int,
    start: float,
) -> list[Window]:
    """The history cut into windows (see the module docstring)."""
    if isinstance(history, pd.DataFrame):
        return _by_rows_or_time(history, time_column, every_seconds, window_rows, start)
    path = Path(history)
    if path.is_dir() and time_column is None:
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise UsageError(f"{path}: no files to replay")
        found = []
        for position, file in enumerate(files):
            frame = read_table(file)
            found.append(
                Window(
                    position,
                    start + position * every_seconds,
                    start + (position + 1) * every_seconds,
                    frame.reset_index(drop=True),
                )
            )
        return found
    return _by_rows_or_time(read_table(path), time_column, every_seconds, window_rows, start)


def _by_rows_or_time(
    frame: pd.DataFrame,
    time_column: str | None,
    every_seconds: float,
    window_rows: int,
    start: float,
) -> list[Window]:
    if time_column is not None:
        from mlmedic.clock import data_times

        if time_column not in frame.columns:
            raise UsageError(f"--time-column {time_column}: no such column in the history")
        try:
            seconds = data_times(frame[time_column], what=f"--time-column {time_column}")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        order = np.argsort(seconds, kind="stable")
        frame, seconds = frame.iloc[order].reset_index(drop=True), seconds[order]
        first = float(seconds[0])
        slot = ((seconds - first) // every_seconds).astype(int)
        found = []
        for position, number in enumerate(np.unique(slot)):
            inside = np.flatnonzero(slot == number)
            begin = first + int(number) * every_seconds
            found.append(
                Window(
                    position,
                    begin,
                    begin + every_seconds,
                    frame.iloc[inside].reset_index(drop=True),
                    seconds[inside],
                )
            )
        return found
    if window_rows < 1:
        raise UsageError("--window-rows must be at least 1")
    found = []
    for position, begin in enumerate(range(0, len(frame), window_rows)):
        rows = frame.iloc[begin : begin + window_rows].reset_index(drop=True)
        t0 = start + position * every_seconds
        found.append(Window(position, t0, t0 + every_seconds, rows))
    return found


# ---------------------------------------------------------------- the replay


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
    """Accuracy and ROC AUC of ``model`` on the labelled rows of ``frame``."""
    from mlmedic.performance import measured
    from mlmedic.training import model_frame

    target = contract.target
    rows = frame[frame[target].notna()] if target in frame.columns else frame.iloc[0:0]
    if not len(rows):
        return None, None
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
    from mlmedic.baselines import EVERY, NEVER, Baselines
    from mlmedic.monitor import Monitor
    from mlmedic.pipeline import run_pipeline
    from mlmedic.project import Project

    if policy not in ("impact", "drift"):
        raise UsageError(f"--policy {policy}: use impact or drift")
    if time_column is None and settings_from is not None:
        from mlmedic.config import load_settings

        time_column = load_settings(settings_from).self_healing.data_quality.time_column
    begin = time.perf_counter()
    windows, reference_frame = _prepare(
        history, target, reference, time_column, every_seconds, window_rows
    )
    notes = []
    if not any(w.rows[target].notna().any() for w in windows):
        notes.append(
            "the history has no labels: every decision rests on the label-free estimate, and "
            "no accuracy can be scored"
        )
        say(notes[-1])
    with _throwaway(settings_from, policy) as root:
        clock = SimulatedClock(start=windows[0].start)
        project = Project(
            root, clock=clock, tracking_uri=f"sqlite:///{root / '.mlmedic' / 'mlflow.db'}"
        )
        try:
            say(f"training the first model on {len(reference_frame):,} reference rows ...")
            first = run_pipeline(project, reference_frame, target=target)
            if first.candidate is None or not first.deployed:
                raise UsageError("the first model did not pass the gate; nothing to replay")
            monitor = Monitor(project, reference_data=reference_frame)
            monitor.mlflow_reports = False  # a throwaway registry: no history to keep
            first_snapshot = monitor.snapshot()
            contract = first_snapshot.contract
            validation = first_snapshot.baseline.get("validation_accuracy")
            validation_rows = int(first_snapshot.baseline.get("validation_rows") or 0)
            others = (
                Baselines(
                    first_snapshot.model,
                    reference_frame,
                    contract,
                    project.settings,
                    recipes=recipes,
                )
                if baselines
                else None
            )
            arrived: list[pd.DataFrame] = []  # labelled rows with their arrival time
            outcomes: list[WindowOutcome] = []
            last_pass = -float("inf")  # labels that arrived after this time are new to the pass
            passes_started = time.perf_counter()
            for window in windows:
                clock.advance(max(0.0, window.at - clock.now()))
                snapshot = monitor.snapshot()  # the model that served this window

                def score(model: Any, rows: pd.DataFrame) -> float | None:
                    return _accuracy(model, rows, contract)[0]

                accuracy, auc = _accuracy(snapshot.model, window.rows, contract)
                scores = (
                    others.score(window.rows, score)
                    if others is not None
                    else {NEVER: score(first_snapshot.model, window.rows)}
                )
                # each row's label arrives label_delay after the row's own time
                labelled = window.rows[window.rows[target].notna()]
                arrives = window.times[window.rows[target].notna().to_numpy()]
                arrived.append(labelled.assign(**{ARRIVES: arrives + label_delay_seconds}))
                pool = pd.concat(arrived, ignore_index=True)
                due = (pool[ARRIVES] > last_pass) & (pool[ARRIVES] <= clock.now())
                fresh = pool.loc[due].drop(columns=[ARRIVES])
                last_pass = clock.now()
                if label_delay_seconds <= 0:  # the window's own labels, with its rows
                    result = monitor.run_batch(window.rows)
                else:  # the labels that arrived by now, of this window's rows or earlier ones
                    features = window.rows.drop(columns=[target])
                    result = monitor.run_batch(features, labelled=fresh if len(fresh) else None)
                outcomes.append(
                    WindowOutcome(
                        index=window.index,
                        start=to_iso(window.start),
                        end=to_iso(window.end),
                        rows=len(window.rows),
                        labels_arrived=len(fresh),
                        drift_score=result.drift.score if result.drift else None,
                        drifted_features=result.drift.drifted_features if result.drift else [],
                        performance=result.performance.summary() if result.performance else "",
                        alerts=list(result.decision.alerts),
                        action=result.decision.action,
                        acted=result.acted,
                        evidence=list(result.decision.evidence),
                        model_version=snapshot.version,
                        accuracy=accuracy,
                        roc_auc=auc,
                        never_heal_accuracy=scores.get(NEVER),
                        retrain_every_window_accuracy=scores.get(EVERY),
                        baselines=scores,
                        estimate=_interval(result.estimate),
                    )
                )
                say(_line(outcomes[-1]))
                if others is not None:  # the next window's models, on every label known now
                    known = pool.loc[pool[ARRIVES] <= clock.now()]
                    others.learn(
                        known.drop(columns=[ARRIVES]).reset_index(drop=True),
                        known[ARRIVES].to_numpy(dtype=float),
                        clock.now(),
                    )
            passes = time.perf_counter() - passes_started
            retrains = project.events.count(EventKind.RETRAIN)
            rollbacks = len(
                [e for e in project.events.query(kind=EventKind.ROLLBACK) if e.action == "rollback"]
            )
        finally:
            project.close()
    summaries = _summaries(outcomes, validation, project.settings, retrains, rollbacks)
    return ReplayResult(
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
        },
        notes=notes,
    )


def _prepare(
    history: str | Path | pd.DataFrame,
    target: str,
    reference: str | Path | pd.DataFrame | None,
    time_column: str | None,
    every_seconds: float,
    window_rows: int,
) -> tuple[list[Window], pd.DataFrame]:
    """The windows to replay and the reference the first model learns from (the windows
    holding the first fifth of the history when no reference is given)."""
    start = 1_600_000_000.0  # data time of a history without a time column
    windows = windows_of(
        history,
        time_column=time_column,
        every_seconds=every_seconds,
        window_rows=window_rows,
        start=start,
    )
    if reference is None and any(target not in w.rows.columns for w in windows):
        raise UsageError(f"--target {target}: not a column of every window of the history")
    for window in windows:  # a history without labels (a reference gave the first model)
        if target not in window.rows.columns:
            window.rows = window.rows.assign(**{target: np.nan})
    if reference is None and len(windows) < 2:
        raise UsageError(
            f"the history holds {len(windows)} window(s): at least 2 are needed (the first model "
            "learns from the first); cut it finer with --window-rows or --every, or pass "
            "--reference"
        )
    if reference is None:
        total = sum(len(w.rows) for w in windows)
        taken, rows = 0, 0
        while taken < len(windows) - 1 and rows < total / 5:
            rows += len(windows[taken].rows)
            taken += 1
        reference_frame = pd.concat([w.rows for w in windows[:taken]], ignore_index=True)
        reference_frame = reference_frame[reference_frame[target].notna()]
        windows = windows[taken:]
        if not len(reference_frame):
            raise UsageError(
                "the first fifth of the history has no labels to train the first model on; "
                "pass a labelled --reference"
            )
    else:
        reference_frame = (
            reference if isinstance(reference, pd.DataFrame) else read_table(Path(reference))
        )
    if not windows:
        raise UsageError("the history holds no window to replay after the reference")
    drop = [c for c in (time_column,) if c]
    reference_frame = reference_frame.drop(columns=[c for c in drop if c in reference_frame])
    for window in windows:
        window.rows = window.rows.drop(columns=[c for c in drop if c in window.rows])
    return windows, reference_frame.reset_index(drop=True)


def _interval(estimate: Any) -> list[float] | None:
    if estimate is None or not estimate.rows or estimate.low is None or estimate.high is None:
        return None
    return [float(estimate.accuracy), float(estimate.low), float(estimate.high)]


def _line(outcome: WindowOutcome) -> str:
    score = "-" if outcome.drift_score is None else f"{outcome.drift_score:.2f}"
    accuracy = "-" if outcome.accuracy is None else f"{outcome.accuracy:.3f}"
    return (
        f"window {outcome.index:>3} {outcome.end[:16]}  drift {score:>4}  v{outcome.model_version}"
        f" accuracy {accuracy}  {outcome.action}" + (f" ({outcome.acted})" if outcome.acted else "")
    )


def _summaries(
    outcomes: list[WindowOutcome],
    validation: float | None,
    settings: Any,
    retrains: int,
    rollbacks: int,
) -> list[StrategySummary]:
    """mlmedic first, then every baseline the replay scored, in their order."""
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
    mean, worst = stats([o.accuracy for o in outcomes])
    found = [StrategySummary("mlmedic", mean, worst, retrains, rollbacks, needless)]
    names = list(outcomes[0].baselines) if outcomes else []
    for name in names:
        mean, worst = stats([o.baselines.get(name) for o in outcomes])
        trained = 0 if name in ("never heal", "oracle") else len(outcomes)
        found.append(StrategySummary(name, mean, worst, trained, 0, 0))
    return found
