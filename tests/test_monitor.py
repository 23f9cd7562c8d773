"""The monitor end to end, with a real registry: drift -> retrain once per cooldown, estimates,
rollback on an accuracy drop, the cooldown across a restart, and the webhook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmedic.core.clock import SimulatedClock
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.monitor import Monitor
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project
from mlmedic.store.events import EventStore
from mlmedic.store.logstore import FeedbackLog, PredictionLog

HOUR = 3600.0


@pytest.fixture(scope="module")
def watched_template(tmp_path_factory: pytest.TempPathFactory, train_isolated) -> Path:  # type: ignore[no-untyped-def]
    """v1 trained once per module on make_churn(3000, seed=61); tests get copies (new versions
    they register land beside the template's artifacts, under their own run ids)."""
    return train_isolated(tmp_path_factory.mktemp("monitor-template") / "watched", 61, rows=3000)


@pytest.fixture
def watched(tmp_path: Path, watched_template: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "watched"
    shutil.copytree(watched_template, root)
    make_churn(3000, seed=61).to_csv(root / "reference.csv", index=False)
    clock = SimulatedClock(start=time.time())
    project = Project(root, clock=clock)
    yield project, clock
    project.close()


@pytest.mark.slow
def test_stable_batch_does_nothing_and_harm_retrains_once_per_cooldown(watched) -> None:  # type: ignore[no-untyped-def]
    project, clock = watched
    monitor = Monitor(project, reference_data=project.root / "reference.csv")
    stable = monitor.run_batch(make_churn(1500, seed=62))
    assert stable.decision.action == "none", stable.decision.summary()
    assert stable.performance is not None and not stable.performance.estimated
    assert project.events.count("retrain") == 0

    clock.advance(6 * HOUR)
    # harm: the north churns the other way round from now on (a measured drop)
    harmed = monitor.run_batch(_flipped_north(make_churn(1500, seed=63)))
    assert harmed.decision.action == "retrain", harmed.decision.summary()
    assert project.events.count("retrain") == 1
    # the reference and both passes' labelled rows; the newest fifth of the current regime (the
    # harmed pass) held out to judge the candidates and the champion on the same rows
    assert "retrained on 6,000 rows" in harmed.acted and "deployed" in harmed.acted
    retrain = project.events.last("retrain")
    assert retrain is not None and retrain.details["gate_rows"] == 300
    assert [c["recipe"] for c in retrain.details["candidates"]] == [
        "newest",
        "recency_weighted",
        "reference_plus_newest",
    ]

    clock.advance(6 * HOUR)  # inside the 24 h cooldown the deployment started
    worse = _flipped_north(_flipped_north(make_churn(1500, seed=64)), region="south")
    again = monitor.run_batch(worse)  # the north stays flipped, the south flips too
    assert again.decision.action in ("alert", "none")
    assert "cooldown active" in again.decision.summary()
    assert project.events.count("retrain") == 1

    clock.advance(20 * HOUR)  # 26 h after the retrain
    later = monitor.run_batch(make_churn(1500, seed=65, drift=1.0).drop(columns=[TARGET]))
    assert later.performance is not None and later.performance.estimated  # no labels: estimate
    kinds = [e.kind for e in project.events.query(since=clock.now() - 1)]
    assert "drift_check" in kinds and "performance_check" in kinds and "monitor" in kinds


def test_self_healing_off_alerts_but_never_acts_and_each_pass_is_a_report(watched) -> None:  # type: ignore[no-untyped-def]
    import json

    project, _ = watched
    (project.root / "self_healing_config.json").write_text(
        json.dumps(
            {
                "self_healing": {"enabled": False},
                "monitoring": {"reports_dir": "out/reports", "alerts_dir": "out/alerts"},
            }
        )
    )
    monitor = Monitor(Project(project.root, clock=project.clock))
    # drift in the features the model relies on, no labels to say otherwise: evidence of harm
    drifted = monitor.run_batch(make_churn(1500, seed=63, drift=1.0).drop(columns=[TARGET]))
    assert drifted.decision.action == "retrain"  # what the policy would do...
    assert "self-healing is off" in drifted.acted  # ...is not done
    assert project.events.count("retrain") == 0
    [report] = list((project.root / "out" / "reports").glob("*.json"))
    assert json.loads(report.read_text())["drift_score"] == drifted.drift.score  # type: ignore[union-attr]
    assert list((project.root / "out" / "alerts").glob("*.json"))
    assert list((project.root / "monitoring" / "metrics").glob("*.json"))  # the default


@pytest.mark.slow
def test_the_cooldown_holds_across_a_restart(watched) -> None:  # type: ignore[no-untyped-def]
    project, _ = watched
    monitor = Monitor(project, reference_data=project.root / "reference.csv")
    first = monitor.run_batch(_flipped_north(make_churn(1500, seed=66)))
    assert first.decision.action == "retrain" and "deployed" in first.acted, first.acted
    # harm the new champion cannot have learned: the south changes too (a measured drop)
    worse = _flipped_north(_flipped_north(make_churn(1500, seed=67)), region="south")
    worse.to_csv(project.root / "drifted.csv", index=False)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlmedic",
            "monitor",
            "--batch",
            "drifted.csv",
            "--retrain-data",
            "reference.csv",
            "-C",
            str(project.root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
        cwd=project.root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cooldown active" in done.stdout
    assert project.events.count("retrain") == 1


def _flipped_north(frame: pd.DataFrame, region: str = "north") -> pd.DataFrame:
    out = frame.copy()
    north = out["region"] == region
    out.loc[north, TARGET] = 1 - out.loc[north, TARGET]
    return out


@pytest.mark.slow
def test_an_accuracy_drop_rolls_back_to_a_better_previous(watched) -> None:  # type: ignore[no-untyped-def]
    project, _ = watched
    # v2 learns a concept in which the north region churns the other way round; it passes the
    # gate on its own data, then meets a window where the north behaves as v1 learned.
    assert run_pipeline(project, _flipped_north(make_churn(4000, seed=68)), target=TARGET).deployed
    assert project.registry.champion().version == 2  # type: ignore[union-attr]
    result = Monitor(project).run_batch(make_churn(1500, seed=69))
    assert result.decision.action == "rollback", result.decision.summary()
    assert result.acted == "rolled back v2 -> v1"
    assert project.registry.champion().version == 1  # type: ignore[union-attr]


def test_alerts_reach_the_webhook(watched) -> None:  # type: ignore[no-untyped-def]
    project, _ = watched
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = {
            "notifications": {
                "enabled": True,
                "slack_webhook": f"http://127.0.0.1:{server.server_port}/hook",
            },
            "drift_detection": {"auto_retrain_enabled": False},
        }
        (project.root / "self_healing_config.json").write_text(json.dumps(config))
        fresh = Project(project.root, clock=project.clock)
        # drift no labels can judge (labels on the window that show no drop would vouch for it)
        Monitor(fresh).run_batch(make_churn(1500, seed=70, drift=1.0).drop(columns=[TARGET]))
        fresh.close()
    finally:
        server.shutdown()
        server.server_close()
    assert received and "data drift" in received[0]["text"]


def _served(project: Project, batch: pd.DataFrame) -> None:
    """``batch`` as a server would have logged it, with its labels sent as feedback."""
    features = [c for c in batch.columns if c not in (TARGET, "signup_at")]
    log = PredictionLog(project.state_dir / "predictions", flush_seconds=3600)
    ids = [f"r{i}" for i in range(len(batch))]
    for i, (_, row) in enumerate(batch.iterrows()):
        columns = {c: [row[c].item() if hasattr(row[c], "item") else row[c]] for c in features}
        log.append(columns, [0], np.array([[0.8, 0.2]]), 1, ids[i])
    log.close()
    FeedbackLog(project.state_dir / "feedback").write(
        [{"request_id": i, "label": str(v)} for i, v in zip(ids, batch[TARGET], strict=True)]
    )


@pytest.mark.slow
def test_a_window_of_the_prediction_log_with_feedback(
    watched,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The log since the last pass, labels joined from feedback — through `mlmedic monitor
    --once`, what a scheduler (a Kubernetes CronJob) runs; a second `--once` in the same
    interval (a second scheduler, another host) claims nothing and makes no pass."""
    from mlmedic.cli import main

    project, _ = watched
    _served(project, make_churn(400, seed=71))
    passes, said = [], []
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", ["mlmedic", "monitor", "--once", "-C", str(project.root)])
        with pytest.raises(SystemExit) as done:
            main()
        output = capsys.readouterr()
        assert done.value.code == 0, output.err
        said.append(output.out)
        with EventStore(project.events_path) as store:
            passes.append([e.details["rows"] for e in store.query(kind="monitor")])
            measured = store.last("performance_check")
    assert passes == [[400], [400]]
    assert "another monitor has this interval's pass" in said[1]
    assert measured is not None and measured.details["estimated"] is False
    assert measured.details["rows"] == 400


@pytest.mark.slow
def test_real_data_one_retrain_per_cooldown_and_a_drop_gets_an_action(tmp_path: Path) -> None:
    """scikit-learn's bundled UCI breast-cancer data, split in two: data we did not generate."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0)
    reference, later = (
        frame.iloc[:300].reset_index(drop=True),
        frame.iloc[300:].reset_index(drop=True),
    )
    root = tmp_path / "cancer"
    root.mkdir()
    reference.to_csv(root / "reference.csv", index=False)
    clock = SimulatedClock(start=time.time())
    project = Project(root, clock=clock)
    try:
        assert run_pipeline(project, reference, target="target").deployed
        monitor = Monitor(project, reference_data=root / "reference.csv")
        assert monitor.run_batch(later).decision.action == "none"  # the same population
        features = [c for c in later.columns if c != "target"]
        drifted = later.copy()
        drifted[features[: int(len(features) * 0.8)]] *= 1.5  # a recalibrated instrument
        clock.advance(6 * HOUR)
        assert monitor.run_batch(drifted).decision.action == "retrain"
        clock.advance(6 * HOUR)
        assert monitor.run_batch(drifted).decision.action != "retrain"  # cooldown
        assert project.events.count("retrain") == 1
        flipped = later.copy()
        flipped["target"] = 1 - flipped["target"]  # a label definition changed upstream
        clock.advance(24 * HOUR)
        result = monitor.run_batch(flipped)
        assert result.decision.action in ("retrain", "rollback")
        assert any("accuracy drop" in alert for alert in result.decision.alerts)
    finally:
        project.close()


def test_every_interval_reads_only_the_log_since_the_last_pass(watched) -> None:  # type: ignore[no-untyped-def]
    project, clock = watched
    batch = make_churn(300, seed=72)
    features = [c for c in batch.columns if c not in (TARGET, "signup_at")]
    log = PredictionLog(project.state_dir / "predictions", flush_seconds=3600)
    for i, (_, row) in enumerate(batch.iterrows()):
        columns = {c: [row[c].item() if hasattr(row[c], "item") else row[c]] for c in features}
        log.append(columns, [0], np.array([[0.7, 0.3]]), 1, f"q{i}")
    log.close()  # served "now" (wall clock), after the simulated clock's start
    Monitor(project).run_forever(every_seconds=6 * HOUR, passes=2)
    passes = project.events.query(kind="monitor")
    assert [p.details["rows"] for p in passes] == [0, 300]
    assert passes[1].started_at - passes[0].started_at == pytest.approx(6 * HOUR)
    assert passes[1].details["until"] == pytest.approx(clock.now())


def test_a_pass_reads_one_snapshot_of_the_champion_even_if_it_moves_mid_pass(watched) -> None:  # type: ignore[no-untyped-def]
    from mlmedic.heal.monitor import ChampionSnapshot, measure
    from mlmedic.heal.notify import MemoryNotifier

    project, _ = watched
    registry = project.registry
    calls: list[int] = []
    real = registry.load_contract

    def counting(version: int):  # type: ignore[no-untyped-def]
        calls.append(version)
        return real(version)

    registry.load_contract = counting  # type: ignore[method-assign]
    notifier = MemoryNotifier()
    monitor = Monitor(project, notifier=notifier)
    drifted = make_churn(800, seed=66, drift=1.0).drop(columns=[TARGET])
    result = monitor.run_batch(drifted)
    assert len(calls) <= 1  # read once per pass at most (it was up to four times)
    assert result.drift is not None and result.drift.drift
    assert [topic for topic, _ in notifier.sent] == ["drift"]  # the alert went to the notifier

    # measure() is pure: the same snapshot and window give the same numbers, write no event
    snapshot = ChampionSnapshot.load(registry)
    before = project.events.count()
    first = measure(snapshot, drifted, settings=project.settings)
    second = measure(snapshot, drifted, settings=project.settings)
    assert first.drift is not None and second.drift is not None
    assert first.drift.score == second.drift.score
    assert first.performance is not None and first.performance.estimated
    assert project.events.count() == before


@pytest.mark.slow
def test_a_window_profiled_on_a_dask_cluster_gives_the_single_process_report(watched) -> None:  # type: ignore[no-untyped-def]
    """`monitor --dask`: the window is profiled part file by part file (each streamed in
    batches) on a real Dask cluster (two worker processes) and merged there. Same rows, same
    drifted features, the count-based statistics equal, the distances within the sampling
    tolerance, labels measured."""
    from distributed import LocalCluster

    from mlmedic.data.drift import ReferenceProfile, compare
    from mlmedic.model.training import model_frame
    from mlmedic.store.logstore import read_predictions

    project, clock = watched
    batch = make_churn(6000, seed=64, drift=1.0)
    features = [c for c in batch.columns if c not in (TARGET, "signup_at")]
    log = PredictionLog(project.state_dir / "predictions", flush_seconds=3600)
    records = batch[features].to_dict(orient="records")
    for start in range(0, len(batch), 1000):  # six flushes: six part files
        for i in range(start, start + 1000):
            columns = {c: [records[i][c]] for c in features}
            log.append(columns, [0], np.array([[0.8, 0.2]]), 1, f"r{i}")
        log.flush()
    log.close()
    FeedbackLog(project.state_dir / "feedback").write(
        [{"request_id": f"r{i}", "label": str(batch[TARGET].iloc[i])} for i in range(500)]
    )
    monitor = Monitor(project)
    snapshot = monitor.snapshot()
    logged = read_predictions(project.state_dir / "predictions")
    local = compare(
        ReferenceProfile.from_dict(snapshot.baseline["features"]),
        model_frame(logged, snapshot.contract),
        threshold=project.settings.drift_threshold,
        min_samples=project.settings.self_healing.drift_detection.min_samples_for_detection,
    )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        distributed = Monitor(project, dask_scheduler=cluster.scheduler_address)
        distributed.dask_batch_rows = 300  # each part file streamed in four batches
        on_dask = distributed.run_window(None, clock.now() + 60)
    assert on_dask.rows == 6000
    assert on_dask.drift is not None
    assert on_dask.drift.drifted_features == local.drifted_features != []
    for a, b in zip(on_dask.drift.features, local.features, strict=True):
        assert a.name == b.name and a.n_current == b.n_current
        assert a.psi == pytest.approx(b.psi) and a.jensen_shannon == pytest.approx(b.jensen_shannon)
        if b.wasserstein_norm is not None:
            assert a.wasserstein_norm == pytest.approx(b.wasserstein_norm, abs=0.05)
    assert on_dask.performance is not None and not on_dask.performance.estimated
    assert on_dask.performance.rows == 500
    assert "Dask" in project.events.last("monitor").message  # type: ignore[union-attr]


def test_monitor_dask_with_an_unreachable_scheduler_is_one_clear_line(
    watched,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlmedic.cli import main

    project, _ = watched
    _served(project, make_churn(200, seed=65))
    monkeypatch.setattr("mlmedic.heal.monitor.distributed.CONNECT_SECONDS", 1.0)
    argv = ["mlmedic", "monitor", "--once", "--dask", "tcp://127.0.0.1:9", "-C", str(project.root)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert "--dask tcp://127.0.0.1:9: cannot reach the scheduler" in err and "Traceback" not in err
    assert project.events.count("monitor") == 0


@pytest.mark.slow
def test_each_pass_is_in_an_mlflow_run_of_the_champion(watched) -> None:  # type: ignore[no-untyped-def]
    """The MLflow UI shows drift history beside the model: a `monitor v1` run, linked from the
    version, with drift score and accuracy per pass as metric history and each report as JSON
    and a self-contained HTML page."""
    from mlflow import MlflowClient

    project, clock = watched
    monitor = Monitor(project, reference_data=project.root / "reference.csv")
    monitor.run_batch(make_churn(1500, seed=62))
    clock.advance(6 * HOUR)
    monitor.run_batch(make_churn(1500, seed=63, drift=1.0).drop(columns=[TARGET]))
    registry = project.registry
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    version = client.get_model_version(registry.model_name, "1")
    run_id = version.tags["mlmedic.monitoring_run"]
    run = client.get_run(run_id)
    assert run.info.run_name == "monitor v1"
    drift = client.get_metric_history(run_id, "drift_score")
    assert len(drift) == 2 and drift[0].value < drift[1].value  # stable, then drifted
    assert len(client.get_metric_history(run_id, "accuracy")) == 1  # labels in the first only
    assert len(client.get_metric_history(run_id, "estimated_accuracy")) == 1
    files = sorted(a.path for a in client.list_artifacts(run_id, "monitoring"))
    assert [f.rsplit(".", 1)[1] for f in files] == ["html", "json", "html", "json"]
    folder = Path(client.download_artifacts(run_id, "monitoring", str(project.root / "dl")))
    report = json.loads(sorted(folder.glob("*.json"))[-1].read_text())
    assert report["model_version"] == 1 and report["drift"]["drift"] is True
    page = sorted(folder.glob("*.html"))[-1].read_text()
    assert "<script" not in page and "drifted" in page and "monitoring pass" in page


def test_the_pass_page_shows_each_test_as_what_it_is() -> None:
    """#22 item 8 (part): a KS statistic beside its p-value, the p-value against alpha, a
    chi-square the same way, a distance against its threshold, importance, readable numbers."""
    from mlmedic.heal.monitor.pass_reports import pass_page

    features = [
        {
            "name": "age",
            "test": "ks",
            "statistic": 0.2565,
            "p_value": 3.2e-9,
            "threshold": 0.05,
            "drifted": True,
            "weight": 0.42,
        },
        {
            "name": "region",
            "test": "chi_square",
            "statistic": 219.5,
            "p_value": 0.2,
            "threshold": 0.05,
            "drifted": False,
            "weight": 0.1,
        },
        {
            "name": "usage",
            "test": "wasserstein_norm",
            "statistic": 0.031,
            "threshold": 0.1,
            "drifted": False,
            "weight": 0.05,
        },
    ]
    features[0]["histogram"] = {
        "bins": ["< 30", "30 to 50", "≥ 50"],
        "reference": [0.2, 0.5, 0.3],
        "current": [0.1, 0.3, 0.6],
    }
    page = pass_page({"rows": 10, "drift": {"features": features, "score": 0.6}}, title="t")
    assert "D = 0.257" in page and "p = 3.20e-09" in page and "p &lt; 0.05" in page
    assert "χ² = 219.5" in page and "p = 0.2" in page
    assert "distance 0.031" in page and "distance &gt; 0.1" in page
    assert "42 %" in page and "0.2565" not in page
    assert page.count("<rect ") == 6  # a reference and a current bar per bin
    assert "≥ 50: reference 30.0 %, this pass 60.0 %" in page


@pytest.mark.slow
def test_a_real_pass_page_in_a_real_browser(project: Project, tmp_path: Path) -> None:
    """#22 item 8: a drifted pass of a real champion, its page in headless Chromium: one
    self-contained file (nothing requested off the machine, no console error), a histogram per
    tested feature, not blank."""
    from browser import distinct_pixels, load
    from mlmedic.heal.monitor.pass_reports import pass_page

    assert run_pipeline(project, make_churn(1500, seed=61), target=TARGET).deployed
    result = Monitor(project).run_batch(make_churn(1500, seed=62, drift=1.0).drop(columns=[TARGET]))
    assert result.drift is not None
    tested = [f for f in result.drift.features if f.histogram is not None]
    assert tested and all(len(f.histogram["bins"]) == len(f.histogram["current"]) for f in tested)
    target = tmp_path / "pass.html"
    target.write_text(pass_page(result.to_dict(), title="a pass"), encoding="utf-8")
    loaded = load(target.as_uri(), tmp_path)
    assert loaded.console == [] and loaded.requests_off_machine == []
    assert loaded.dom.count("<svg") == len(tested)
    assert distinct_pixels(loaded.screenshot) > 20
