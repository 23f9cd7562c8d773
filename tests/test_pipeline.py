"""Stages 1-3 end to end, with a real MLflow: deploy a good model, refuse a bad one, roll back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from mlmedic.cli import app
from mlmedic.datasets import TARGET, make_churn
from mlmedic.pipeline import run_pipeline
from mlmedic.project import Project
from mlmedic.serving.launch import free_port

runner = CliRunner()


def _shuffled(frame: pd.DataFrame, target: str, seed: int = 0) -> pd.DataFrame:
    out = frame.copy()
    out[target] = out[target].sample(frac=1.0, random_state=seed).to_numpy()
    return out


def test_good_model_deploys_then_bad_candidate_is_refused(project: Project) -> None:
    lines: list[str] = []
    first = run_pipeline(project, make_churn(2500, seed=1), target=TARGET, say=lines.append)
    assert first.deployed and first.champion_after == first.candidate == 1
    assert [line[:3] for line in lines] == ["[1]", "[2]", "[2]", "[2]", "[2]", "[3]", "[3]"]
    assert "training" in lines[1] and "registering in MLflow" in lines[3]

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


def test_a_plain_mlflow_client_loads_the_champion(served: Path) -> None:
    """A client mlmedic did not write: plain mlflow.pyfunc in a separate process."""
    project = Project(served)
    uri, name = project.registry.tracking_uri, project.registry.model_name
    project.close()
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{name}@champion')\n"
        "frame = pd.read_csv(sys.argv[1]).drop(columns=['churned', 'signup_at'])\n"
        "print(','.join(str(p) for p in model.predict(frame.head(5))))\n"
    )
    env = dict(
        os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(served / "train.csv")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=served,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = done.stdout.strip().splitlines()[-1].split(",")
    assert len(predictions) == 5 and set(predictions) <= {"0", "1"}


def test_each_version_carries_its_drift_reference(project: Project) -> None:
    from mlmedic.drift import ReferenceProfile, compare

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
