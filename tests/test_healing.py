"""Healing that acts on the right signals (issue 11): labels matched to the model's classes,
repairs that keep production-shaped data, drift calibrated on the reference, retrains that need
evidence of harm, enough labels before acting, and estimates with an error bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmedic.core.config import Settings
from mlmedic.data.contract import DataContract
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.data.drift import DriftReport, FeatureDrift, ReferenceProfile, compare
from mlmedic.data.repair import Repairer
from mlmedic.heal.policy import decide
from mlmedic.model.performance import Calibration, Performance, estimated, measured


def _settings(**detection: object) -> Settings:
    settings = Settings()
    for key, value in detection.items():
        setattr(settings.self_healing.drift_detection, key, value)
    return settings


def _drift(score: float, drifted: bool) -> DriftReport:
    features = [FeatureDrift("x", "numeric", 1000, 1000, "wasserstein_norm", 0.3, 0.1, drifted)]
    return DriftReport(features, score, 0.5, drifted, False, 1000)


# ---------------------------------------------------------------- 1: labels of another dtype


def test_labels_read_as_floats_meet_an_integer_model_and_unknown_labels_are_reported() -> None:
    classes = [0, 1]
    truth = np.array([0.0, 1.0, 1.0, 0.0, 7.0, "banana"], dtype=object)
    predicted = np.array([0, 1, 0, 0, 1, 1], dtype=object)
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]] * 1)
    probabilities = np.vstack([probabilities, [[0.4, 0.6]]])
    result = measured(truth, predicted, probabilities, classes)
    assert result.rows == 4 and result.accuracy == 0.75
    assert result.unknown_labels == 2 and set(result.unknown_examples) == {"7.0", "banana"}
    assert result.roc_auc is not None and result.low is not None and result.low < 0.75
    assert "labels the model does not know" in result.summary()


@pytest.mark.slow
def test_monitor_a_parquet_batch_with_int_labels_after_training_on_float_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reported crash: train on a CSV whose target reads 0.0/1.0, monitor Parquet with 0/1."""
    from mlmedic.cli import main

    train = make_churn(1500, seed=81)
    train[TARGET] = train[TARGET].astype(float)
    train.to_csv(tmp_path / "train.csv", index=False)
    batch = make_churn(400, seed=82)
    batch.loc[:4, TARGET] = 3  # a label the model never saw
    batch.to_parquet(tmp_path / "batch.parquet")
    for argv in (
        ["run", str(tmp_path / "train.csv"), "-t", TARGET],
        ["monitor", "--batch", str(tmp_path / "batch.parquet")],
    ):
        monkeypatch.setattr(sys, "argv", ["mlmedic", "-C", str(tmp_path), *argv])
        with pytest.raises(SystemExit) as done:
            main()
        captured = capsys.readouterr()
        assert done.value.code == 0, captured.err
    assert "measured on 395 rows" in captured.out
    assert "5 labels the model does not know left out" in captured.out


# ---------------------------------------------------------------- 2: the repair keeps the shape


def _survey(rows: int, seed: int) -> pd.DataFrame:
    """Integer-coded answers (as census tables hold them): identical people are common."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "education": rng.integers(1, 6, rows),
            "region": rng.integers(1, 5, rows),
            "answer": rng.choice([1, 2, 3, 9], rows, p=[0.4, 0.3, 0.25, 0.05]),  # 9: no answer
            "household": rng.integers(1, 4, rows),
        }
    )
    frame["income_high"] = ((frame["education"] + rng.integers(0, 3, rows)) > 4).astype(int)
    return frame


def test_natural_repeats_are_kept_and_coded_answers_are_never_capped() -> None:
    survey = _survey(3000, seed=83)
    assert survey.duplicated().mean() > 0.5  # most rows have a twin
    contract = DataContract(target="income_high", self_reference=True).fit(survey)
    assert contract.columns_["answer"].codes  # 9 is a code, not an outlier
    assert contract.duplicate_rate_ == pytest.approx(survey.duplicated().mean())
    repaired = Repairer().fit(contract).transform(survey)
    assert repaired.removed_duplicates == []
    assert len(repaired.data) == len(survey)
    assert not [r for r in repaired.rules if r.rule == "cap_outliers"]
    assert (repaired.data["answer"] == 9).sum() == (survey["answer"] == 9).sum()


def test_a_repeated_ingestion_beyond_the_natural_rate_is_still_removed() -> None:
    churn = make_churn(2000, seed=84)  # continuous columns: identical rows are not natural
    doubled = pd.concat([churn, churn.iloc[:300]], ignore_index=True)
    contract = DataContract(target=TARGET, self_reference=True).fit(doubled)
    assert contract.duplicate_rate_ == 0.0
    repaired = Repairer().fit(contract).transform(doubled)
    assert len(repaired.removed_duplicates) == 300


def test_the_drift_reference_describes_production_shaped_data(tmp_path: Path) -> None:
    from mlmedic.heal.pipeline import run_pipeline
    from mlmedic.model.project import Project

    survey = _survey(2500, seed=85)
    project = Project(tmp_path)
    try:
        run = run_pipeline(project, survey, target="income_high")
        assert run.deployed
        accounting = run.data.repair.accounting() if run.data.repair else {}
        assert accounting.get("removed_duplicate_rows", 0) == 0
        profile = project.registry.load_drift_profile(run.candidate)  # type: ignore[arg-type]
        assert profile is not None
        assert profile["features"]["numeric"]["education"]["n"] == len(survey)
        assert set(profile["importance"]) == {"education", "region", "answer", "household"}
        assert profile["importance"]["education"] > profile["importance"]["household"]
    finally:
        project.close()


# ---------------------------------------------------------------- 3: calibrated on the reference


def _seasons(rows: int, seed: int) -> pd.DataFrame:
    """Three years of a weather-like table in time order: temperature follows the seasons."""
    rng = np.random.default_rng(seed)
    day = np.arange(rows) * (3 * 365 / rows)
    return pd.DataFrame(
        {
            "temperature": 12 + 9 * np.sin(2 * np.pi * day / 365) + rng.normal(0, 2, rows),
            "pressure": rng.normal(1013, 6, rows),
            "sky": rng.choice(["clear", "cloudy", "rain"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def test_windows_of_the_reference_never_alarm_once_calibrated() -> None:
    reference = _seasons(12_000, seed=86)
    kinds = {"temperature": "numeric", "pressure": "numeric", "sky": "categorical"}
    plain = ReferenceProfile().fit(reference, kinds)
    calibrated = ReferenceProfile().fit(reference, kinds).calibrate(reference, 1000)
    windows = [reference.iloc[i : i + 1000] for i in range(0, 12_000, 1000)]
    uncalibrated_alarms = [compare(plain, w, threshold=0.3).drift for w in windows]
    assert any(uncalibrated_alarms)  # the seasons alone alarm against an uncalibrated profile
    for window in windows:
        report = compare(calibrated, window, threshold=0.3)
        assert not report.drift and report.drifted_features == [], report.summary()
    # a smaller window of the reference (more sampling noise) stays quiet too
    assert not compare(calibrated, reference.iloc[3000:3400], threshold=0.3).drift
    # and real drift is still seen
    shifted = windows[0].assign(pressure=windows[0]["pressure"] + 12, sky="rain")
    report = compare(calibrated, shifted, threshold=0.3)
    assert report.drift and {"pressure", "sky"} <= set(report.drifted_features)
    # the calibration travels with the version
    again = ReferenceProfile.from_dict(calibrated.to_dict())
    assert again.thresholds_ == calibrated.thresholds_ and again.window_rows_ == 1000


# ---------------------------------------------------------------- 4, 5, 8: the policy


def test_impact_policy_alerts_on_harmless_drift_and_retrains_on_harm() -> None:
    kwargs = {"last_retrain_at": None, "now": 0.0, "validation_accuracy": 0.85}
    # a version without importance: its drift says nothing about the model's inputs it uses
    harmless = decide(_drift(0.8, True), None, settings=_settings(), **kwargs)
    assert harmless.action == "alert" and harmless.evidence == []
    assert "without evidence of harm" in harmless.summary()

    weighted = _drift(0.8, True)
    weighted.weighted = True  # the score weighs the features the model relies on
    important = decide(weighted, None, settings=_settings(), **kwargs)
    assert important.action == "retrain"
    assert "features the model relies on" in important.evidence[0]
    # ... unless labels measured on the window show no drop: they outweigh the proxy, and
    # vouch for the model (the drift is reported in the pass, not alerted)
    fine = Performance(accuracy=0.86, estimated=False, rows=500)
    told = decide(weighted, fine, settings=_settings(), **kwargs)
    assert told.action == "none" and told.alerts == []
    assert "show no drop: reported, not acted on" in told.summary()
    assert told.data_drift

    dropped = Performance(accuracy=0.6, estimated=False, rows=500, low=0.56, high=0.64)
    measured_drop = decide(None, dropped, settings=_settings(), **kwargs)
    assert (
        measured_drop.action == "retrain" and "measured accuracy drop" in measured_drop.evidence[0]
    )

    original = decide(_drift(0.8, True), None, settings=_settings(retrain_on="drift"), **kwargs)
    assert original.action == "retrain" and original.policy == "drift"
    assert "drift score 0.80" in original.summary()


def test_one_labelled_row_cannot_roll_production_back() -> None:
    one = Performance(accuracy=0.0, estimated=False, rows=1)
    better = Performance(accuracy=1.0, estimated=False, rows=1)
    decision = decide(
        None,
        one,
        settings=_settings(),
        last_retrain_at=None,
        now=0.0,
        validation_accuracy=0.85,
        previous_performance=better,
    )
    assert decision.action == "none"
    assert "insufficient labels: 1 labelled rows < 100" in decision.summary()


def test_estimates_carry_an_interval_and_count_only_beyond_it() -> None:
    rng = np.random.default_rng(87)
    confidence = rng.uniform(0.5, 1.0, 400)
    calibration = Calibration.fit(confidence, (rng.uniform(size=400) < confidence).astype(float))
    probabilities = np.column_stack([1 - confidence, confidence])
    estimate = estimated(calibration, probabilities)
    assert estimate.estimated and estimate.low is not None and estimate.high is not None
    assert estimate.low < estimate.accuracy < estimate.high
    assert "estimated" in estimate.summary() and "[" in estimate.summary()

    kwargs = {"last_retrain_at": None, "now": 0.0, "validation_accuracy": 0.85}
    within = Performance(accuracy=0.78, estimated=True, rows=200, low=0.70, high=0.86)
    assert decide(None, within, settings=_settings(), **kwargs).action == "none"
    beyond = Performance(accuracy=0.60, estimated=True, rows=2000, low=0.57, high=0.63)
    decision = decide(None, beyond, settings=_settings(), **kwargs)
    assert decision.action == "retrain"
    assert "estimated accuracy drop beyond its uncertainty" in decision.evidence[0]
    # an estimate never rolls back, however much better `previous` looks
    previous = Performance(accuracy=0.95, estimated=False, rows=2000)
    assert (
        decide(None, beyond, settings=_settings(), previous_performance=previous, **kwargs).action
        == "retrain"
    )


# ---------------------------------------------------------------- replay


def _stream(windows: int = 18, rows: int = 300, seed: int = 88) -> pd.DataFrame:
    """y depends on x1 and x2; x3-x5 are noise. Window 8: x1 and x2 shift along the boundary
    (drift in the features the model relies on, harmless: the same concept holds there). From
    window 14: the concept flips (harmful, no feature drift)."""
    rng = np.random.default_rng(seed)
    parts = []
    for window in range(windows):
        frame = pd.DataFrame({f"x{i}": rng.normal(0, 1, rows) for i in range(1, 6)})
        if window == 8:
            frame[["x1", "x2"]] += [0.5, -1.0]
        signal = frame["x1"] + 0.5 * frame["x2"] > 0
        frame["y"] = np.where(window >= 14, ~signal, signal).astype(int)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


@pytest.mark.slow
def test_replay_retrains_on_harm_only_and_leaves_the_project_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlmedic.cli import main
    from mlmedic.heal.replay import replay
    from mlmedic.store.events import EventStore

    project = tmp_path / "project"
    project.mkdir()
    with EventStore(project / ".mlmedic" / "events.db") as store:
        store.record("data_fix", "auto-fix", "success", message="the project's own history")
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    _stream().to_csv(tmp_path / "history.csv", index=False)
    # the user's tracking server is down: a replay never needs it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "mlmedic",
            "-C",
            str(project),
            "replay",
            str(tmp_path / "history.csv"),
            "-t",
            "y",
            "--window-rows",
            "300",
            "--json",
            "--html",
            str(tmp_path / "impact.html"),
        ],
    )
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    assert done.value.code == 0, captured.err
    impact = json.loads(captured.out)  # --json -: one document on stdout, nothing else
    html = (tmp_path / "impact.html").read_text()
    assert "<script" not in html and "retrain every window" in html and 'id="tile-mlmedic"' in html
    actions = {w["index"]: w["action"] for w in impact["windows"]}
    assert [i for i, a in actions.items() if a == "retrain"] == [14]
    # harmless drift: reported in the pass, neither acted on nor alerted (labels vouch)
    assert actions[8] == "none"
    window = next(w for w in impact["windows"] if w["index"] == 8)
    assert set(window["drifted_features"]) == {"x1", "x2"} and window["alerts"] == []
    mlmedic = impact["summaries"][0]
    never = impact["summaries"][1]
    assert mlmedic["retrains"] == 1 and mlmedic["mean_accuracy"] > never["mean_accuracy"]

    drift = replay(
        tmp_path / "history.csv", target="y", window_rows=300, policy="drift", baselines=False
    )
    assert [w.index for w in drift.windows if w.action == "retrain"] == [8, 14]
    assert drift.summaries[0].retrains == 2

    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert after == before  # the project's registry, event store and files are untouched


def test_no_rollback_to_a_version_that_fails_the_same_floor() -> None:
    both_bad = decide(
        None,
        Performance(accuracy=0.012, estimated=False, rows=500),
        settings=_settings(),
        last_retrain_at=None,
        now=0.0,
        validation_accuracy=0.98,
        previous_performance=Performance(accuracy=0.020, estimated=False, rows=500),
    )
    assert both_bad.action == "retrain"  # v1 scores "better" (0.020) but heals nothing


def test_replay_of_a_history_too_short_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlmedic.cli import main

    (tmp_path / "tiny.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    monkeypatch.setattr(sys, "argv", ["mlmedic", "replay", str(tmp_path / "tiny.csv"), "-t", "y"])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "at least 2 are needed" in err


def test_labelled_rows_seen_at_the_deploy_instant_are_kept_for_retraining(tmp_path: Path) -> None:
    """File names hold the time to the millisecond: rows seen in the same millisecond as the
    deploy must not be lost to rounding."""
    from mlmedic.heal.monitor import labelled

    moment = 1_700_000_000.0004  # its name rounds down to ...000.000
    labelled.keep(tmp_path, pd.DataFrame({"x": [1, 2], "y": [0, 1]}), now=moment, version=1)
    rows = labelled.since(tmp_path, moment, now=moment + 1, max_rows=10, max_age_days=1)
    assert len(rows) == 2
