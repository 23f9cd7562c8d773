"""Stages 1-3 end to end, with a real MLflow: deploy a good model, refuse a bad one, roll back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from mlmedic.cli import app
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project
from mlmedic.serving.launch import free_port

runner = CliRunner()


def _shuffled(frame: pd.DataFrame, target: str, seed: int = 0) -> pd.DataFrame:
    out = frame.copy()
    out[target] = out[target].sample(frac=1.0, random_state=seed).to_numpy()
    return out


@pytest.mark.slow
def test_good_model_deploys_then_bad_candidate_is_refused(project: Project) -> None:
    lines: list[str] = []
    first = run_pipeline(project, make_churn(2500, seed=1), target=TARGET, say=lines.append)
    assert first.deployed and first.champion_after == first.candidate == 1
    assert [line[:3] for line in lines] == ["[1]"] * 2 + ["[2]"] * 4 + ["[3]"] * 2
    assert lines[0] == f"[1] task: classification (told from the values of {TARGET})"
    assert "training" in lines[2] and "registering in MLflow" in lines[4]

    second = run_pipeline(project, make_churn(2500, seed=2), target=TARGET)
    assert second.deployed and second.champion_before == 1 and second.champion_after == 2
    assert project.registry.alias("previous").version == 1  # type: ignore[union-attr]
    assert (project.registry.backup_dir / "v1" / "model" / "MLmodel").exists()

    bad = run_pipeline(project, _shuffled(make_churn(2500, seed=3), TARGET), target=TARGET)
    assert not bad.deployed
    assert bad.champion_after == 2 and project.registry.champion().version == 2  # type: ignore[union-attr]
    assert project.registry.info(3).status == "rejected"
    rollback = project.events.last("rollback")
    assert rollback is not None and rollback.action == "auto-rollback"
    assert "candidate v3 rejected, champion v2 kept" in rollback.message
    assert rollback.details["restored_version"] == 2
    gate = project.events.last("gate")
    assert gate is not None and gate.outcome == "failure"
    assert gate.details["candidate"]["accuracy"] == pytest.approx(
        bad.decision.candidate["accuracy"]
    )  # type: ignore[union-attr]
    kinds = {e.kind for e in project.events.query()}
    assert {
        "data_check",
        "backup",
        "train",
        "register",
        "gate",
        "deploy",
        "alias",
        "rollback",
    } <= kinds


@pytest.mark.slow
def test_a_candidate_that_passes_the_floors_but_loses_to_the_champion_is_refused(
    project: Project,
) -> None:
    """The run's gate compares with the champion on the same rows: a candidate above every
    floor, but worse than the champion beyond the allowance, is refused and v1 kept."""
    first = run_pipeline(project, make_churn(2500, seed=1), target=TARGET)
    assert first.deployed
    weak = run_pipeline(
        project, make_churn(2500, seed=2), target=TARGET, trainer="trainers:shallow"
    )
    decision = weak.decision
    assert decision is not None and decision.reasons and not weak.deployed
    assert decision.candidate["accuracy"] >= 0.70 and decision.candidate["f1"] >= 0.41
    assert decision.keys == ["model_validation.performance_degradation_threshold"]
    assert decision.champion is not None and decision.champion["accuracy"] > 0.85
    assert project.registry.champion().version == 1  # type: ignore[union-attr]


@pytest.mark.slow
def test_real_data_deploys_and_label_noise_is_refused(tmp_path: Path, project: Project) -> None:
    """scikit-learn's bundled copy of the UCI breast-cancer data: data we did not generate."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    _shuffled(frame, "target").to_csv(tmp_path / "noise.csv", index=False)
    good = run_pipeline(project, tmp_path / "cancer.csv", target="target")
    assert good.deployed and good.decision.candidate["accuracy"] > 0.9  # type: ignore[union-attr]
    noise = run_pipeline(project, tmp_path / "noise.csv", target="target")
    assert not noise.deployed
    assert project.registry.champion().version == good.candidate  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose champion is v1, shared by the bad-input tests (which must not change it)."""
    root = tmp_path_factory.mktemp("served")
    make_churn(2000, seed=4).to_csv(root / "train.csv", index=False)
    old = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        result = runner.invoke(app, ["run", str(root / "train.csv"), "-t", TARGET, "-C", str(root)])
    finally:
        if old is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old
    assert result.exit_code == 0, result.output
    return root


def _champion(root: Path) -> int | None:
    project = Project(root)
    try:
        champion = project.registry.champion()
        return champion.version if champion else None
    finally:
        project.close()


def test_cli_run_and_models(served: Path) -> None:
    listing = runner.invoke(app, ["models", "-C", str(served)])
    assert listing.exit_code == 0
    assert "v1 champion @champion" in listing.output


def _bad_inputs(root: Path) -> dict[str, tuple[list[str], str]]:
    make_churn(300, seed=1).to_csv(root / "churn.csv", index=False)
    make_churn(300, seed=1).assign(churned=0).to_csv(root / "constant.csv", index=False)
    make_churn(10, seed=1).to_csv(root / "tiny.csv", index=False)
    (root / "boom.py").write_text("def train(frame, target):\n    raise ValueError('boom')\n")
    data = str(root / "churn.csv")
    return {
        "missing target": ([data, "-t", "nope"], "target column 'nope' not found"),
        "constant target": ([str(root / "constant.csv"), "-t", TARGET], "is constant"),
        "too few rows": ([str(root / "tiny.csv"), "-t", TARGET], "too few rows"),
        "trainer does not import": (
            [data, "-t", TARGET, "--trainer", "not_a_module_q:train"],
            "cannot import module 'not_a_module_q'",
        ),
        "trainer raises": (
            [data, "-t", TARGET, "--trainer", "boom:train"],
            "failed after 4 attempt(s): ValueError: boom",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing target",
        "constant target",
        "too few rows",
        "trainer does not import",
        "trainer raises",
    ],
)
def test_bad_input_leaves_the_champion_unchanged(
    served: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(served))
    args, problem = _bad_inputs(served)[case]
    result = runner.invoke(app, ["run", *args, "-C", str(served)])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error:") and problem in last, result.output
    assert "Traceback" not in result.output
    assert _champion(served) == 1


def test_unreachable_mlflow_leaves_the_champion_unchanged(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    result = runner.invoke(app, ["run", str(served / "train.csv"), "-t", TARGET, "-C", str(served)])
    assert result.exit_code == 3, result.output
    # told by the /health probe before any MLflow call (and its retries) is made
    assert f"http://127.0.0.1:{port} is unreachable" in result.output
    models = runner.invoke(app, ["models", "-C", str(served)])
    assert models.exit_code == 3 and "unreachable" in models.output
    # a rollback falls back to the local record and backups; here there is nothing to go back to
    rollback = runner.invoke(app, ["rollback", "-C", str(served)])
    assert rollback.exit_code == 2
    assert "no previous version to roll back to (champion is v1)" in rollback.output
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert _champion(served) == 1


def test_rollback_without_previous_version(served: Path) -> None:
    result = runner.invoke(app, ["rollback", "-C", str(served)])
    assert result.exit_code == 2
    assert "no previous version to roll back to (champion is v1)" in result.output
    assert _champion(served) == 1
    missing = runner.invoke(app, ["rollback", "--to", "42", "-C", str(served)])
    assert missing.exit_code == 2 and "has no version 42" in missing.output


@pytest.mark.slow
def test_mlflow_models_serve_answers_labels_and_probabilities(served: Path) -> None:
    """A server mlmedic did not write: `mlflow models serve` of the champion, in its own
    process, answers labels, and probabilities when asked (`params.output`); JSON whole numbers
    are accepted for every numeric feature."""
    import urllib.request

    project = Project(served)
    uri, name = project.registry.tracking_uri, project.registry.model_name
    project.close()
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_TRACKING_URI=uri)
    command = [sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local"]
    command += ["-m", f"models:/{name}@champion", "-p", str(port)]
    log = (served / f"mlflow-serve-{port}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=served, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    records = (
        pd.read_csv(served / "train.csv").drop(columns=[TARGET, "signup_at"]).head(3)
    ).to_dict(orient="records")
    records[0] = {k: (round(v) if isinstance(v, float) else v) for k, v in records[0].items()}

    def invoke(body: dict[str, object]) -> object:
        request = urllib.request.Request(
            url + "/invocations", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())["predictions"]

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/ping", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "no mlflow server"
                time.sleep(0.2)
        labels = invoke({"dataframe_records": records})
        probabilities = invoke(
            {"dataframe_records": records, "params": {"output": "probabilities"}}
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert isinstance(labels, list) and len(labels) == 3 and set(labels) <= {0, 1}
    assert isinstance(probabilities, list) and [set(p) for p in probabilities] == [{"0", "1"}] * 3
    assert [max(p, key=p.get) for p in probabilities] == [str(label) for label in labels]


def test_each_version_carries_its_drift_reference(project: Project) -> None:
    from mlmedic.data.drift import ReferenceProfile, compare

    result = run_pipeline(project, make_churn(2000, seed=51), target=TARGET)
    stored = project.registry.load_drift_profile(result.candidate)  # type: ignore[arg-type]
    assert stored is not None
    features = ReferenceProfile.from_dict(stored["features"])
    assert set(features.kinds_) == {c for c in make_churn(5, seed=1).columns} - {
        TARGET,
        "signup_at",
    }
    same = compare(features, make_churn(3000, seed=52))
    shifted = compare(features, make_churn(3000, seed=53, drift=1.0))
    assert not same.drift and same.drifted_features == []
    assert shifted.score is not None and shifted.score > same.score  # type: ignore[operator]
    predictions = ReferenceProfile.from_dict(stored["predictions"])
    assert predictions.numeric_["probability"].n == 400  # the holdout


def test_mlflow_shows_each_run_as_an_mlflow_user_expects(served: Path) -> None:
    """In the MLflow UI's terms: the run is named by what it is, logs its training data as an
    input (source, digest, rows, schema), the target and the model's hyperparameters, and the
    version carries the gate's verdict as its description."""
    from mlflow.tracking import MlflowClient

    project = Project(served)
    uri, name = project.registry.tracking_uri, project.registry.model_name
    project.close()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version(name, "1")
    assert version.description.startswith("mlmedic gate: ") and "PASS" in version.description
    run = client.get_run(version.run_id)
    assert run.info.run_name == "train v1 (run)"
    assert run.data.params["target"] == TARGET
    assert any(key.startswith("model.") for key in run.data.params)
    [used] = run.inputs.dataset_inputs
    assert used.dataset.name == "train.csv" and used.dataset.digest
    assert str(served / "train.csv") in used.dataset.source
    assert json.loads(used.dataset.profile)["num_rows"] == 2000
    assert TARGET in used.dataset.schema


@pytest.mark.slow
def test_plain_mlflow_scores_the_csv_the_model_was_trained_from(tmp_path: Path) -> None:
    """Whole numbers read as float64 (``12.0``, a gap) are ``double`` in the signature, not
    ``long``: MLflow refused to score the training file itself ("Can not safely convert
    float64 to int64"); integer columns stay ``long``."""
    import mlflow
    import mlflow.sklearn

    frame = make_churn(1200, seed=41)
    frame["tenure_months"] = frame["tenure_months"].astype(float)
    frame.loc[3, "tenure_months"] = None  # a gap: pandas reads the column back as float64
    csv = tmp_path / "train.csv"
    frame.to_csv(csv, index=False)
    root = tmp_path / "floats"
    root.mkdir()
    result = runner.invoke(app, ["-C", str(root), "run", str(csv), "-t", TARGET])
    assert result.exit_code == 0, result.output
    project = Project(root)
    try:
        project.registry.connection.activate()
        model = mlflow.pyfunc.load_model(f"models:/{project.registry.model_name}@champion")
        types = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
        assert types["tenure_months"] == "double" and types["age"] == "long"
        scored = model.predict(pd.read_csv(csv).drop(columns=[TARGET, "signup_at"]))
        assert len(scored) == 1200
        # probabilities through plain MLflow too, by asking for them
        head = pd.read_csv(csv).drop(columns=[TARGET, "signup_at"]).head(4)
        probabilities = model.predict(head, params={"output": "probabilities"})
        assert list(probabilities.columns) == ["0", "1"]
        assert probabilities.sum(axis=1).round(6).tolist() == [1.0] * 4
        assert model.predict(head).tolist() == probabilities.to_numpy().argmax(axis=1).tolist()
        with pytest.raises(Exception, match=r"params\.output must be one of labels"):
            model.predict(head, params={"output": "logits"})
        # and mlflow.sklearn still loads the scikit-learn model itself
        sklearn_model = mlflow.sklearn.load_model(f"models:/{project.registry.model_name}/1")
        assert hasattr(sklearn_model, "predict_proba")
    finally:
        project.close()


def _rare(rows: int, seed: int, *, signal: float) -> pd.DataFrame:
    """A binary table with 20 % positives and a weak signal of strength ``signal``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 4))
    score = signal * x[:, 0] + rng.normal(0, 1, rows)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["y"] = (score > np.quantile(score, 0.8)).astype(int)
    return frame


@pytest.mark.slow
def test_a_reasonable_first_model_of_a_rare_class_deploys_and_a_refusal_names_its_key(
    project: Project,
) -> None:
    """#19 item 3: 20 % positives, a model that ranks well but has a modest F1: the F1 floor is
    scaled to the class balance (model_validation.f1_scaled_by_prevalence), so it deploys; a
    model with no skill still fails, and the refusal names the key that decided it."""
    first = run_pipeline(project, _rare(4000, 1, signal=1.2), target="y")
    assert first.decision is not None
    assert first.decision.candidate["f1"] < 0.65  # the seed's floor would have refused it
    assert first.deployed, first.decision.summary()
    assert first.decision.thresholds["min_f1"] == pytest.approx(0.325)
    # no skill at all: refused, saying which key decided, and that nothing was replaced
    other = Project(project.root / "other", clock=project.clock)
    try:
        refused = run_pipeline(other, _shuffled(_rare(4000, 2, signal=1.2), "y"), target="y")
        assert not refused.deployed and refused.decision is not None
        assert "model_validation.min_f1_threshold" in refused.decision.reasons[-1]
        rollback = other.events.last("rollback")
        assert rollback is not None and "no champion yet" in rollback.message
        assert "model_validation.min_f1_threshold" in rollback.message
    finally:
        other.close()
