"""#23 item 3: LightGBM and XGBoost as built-in trainers, through the real CLI and server.

Vega's cars again (``test_multiclass.cars``): the origin (three text classes) and the miles per
gallon (a regression), each trained by ``mlmedic run --trainer lightgbm|xgboost``. The booster is
stored in its own format (LightGBM's text model, XGBoost's UBJSON) beside and inside skops' file,
never pickled; plain MLflow scores it with only the model's own ``code/`` file (``mlmedic`` made
unimportable in that process); ``mlmedic serve`` answers it; a monitor's retrain keeps the
library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from served import post_json, serving
from test_multiclass import _cli, cars

pytestmark = pytest.mark.slow
NATIVE = {"lightgbm": "model.txt", "xgboost": "model.ubj"}

PLAIN_MLFLOW = """
import json, sys, warnings
sys.modules["mlmedic"] = None  # plain MLflow: mlmedic cannot be imported here
warnings.simplefilter("ignore")
import mlflow.pyfunc
import pandas as pd
answers = []
for model_dir, rows in zip(sys.argv[1::2], sys.argv[2::2]):
    model = mlflow.pyfunc.load_model(model_dir)
    found = model.predict(pd.read_csv(rows))
    answers.append([v.item() if hasattr(v, "item") else v for v in found])
print(json.dumps(answers))
"""
TARGETS = {"origin": "Origin", "mpg": "Miles_per_Gallon"}
# what pandas 3 warns MLflow's input-example code about (pandas 2.2 has no such class)
PANDAS_DEPRECATION = getattr(pd.errors, "Pandas4Warning", DeprecationWarning)


@pytest.fixture(scope="module", params=["lightgbm", "xgboost"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library's model of the origin (classes) and of the mpg (a regression), each the
    champion of its own project, trained by ``mlmedic run --trainer``."""
    library = request.param
    pytest.importorskip(library)
    root = tmp_path_factory.mktemp(library)
    frame = cars()
    for name, target in TARGETS.items():
        folder = root / name
        folder.mkdir()
        frame[frame.year <= 1976].drop(columns=["year"]).to_csv(folder / "train.csv", index=False)
        frame[frame.year > 1976].drop(columns=["year"]).to_csv(folder / "later.csv", index=False)
        done = _cli("run", folder / "train.csv", "-t", target, "--trainer", library, "-C", folder)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"train: {library} on" in done.stdout, done.stdout
    return root


def _tags(folder: Path, version: int = 1) -> dict[str, str]:
    from mlmedic.model.project import Project

    project = Project(folder)
    try:
        return dict(project.registry.info(version).tags)
    finally:
        project.close()


def test_a_booster_is_stored_natively_and_scored_by_plain_mlflow_and_the_server(
    trained: Path,
) -> None:
    """Both tasks: the booster's own file in the MLflow model, no pickle, skops trusting one
    class; plain MLflow (mlmedic unimportable) scores both models; ``mlmedic serve`` answers
    the classifier as plain MLflow does."""
    library = trained.name.rstrip("0123456789")
    command = [sys.executable, "-c", PLAIN_MLFLOW]
    for name, target in TARGETS.items():
        folder = trained / name
        tags = _tags(folder)
        assert json.loads(tags["mlmedic.skops_trusted_types"]) == ["mlmedic_pyfunc.NativeBooster"]
        stored = list((folder / ".mlmedic" / "mlartifacts").rglob(NATIVE[library]))
        assert len(stored) == 1, stored
        model_dir = stored[0].parent
        assert not list(model_dir.glob("*.pkl")) and (model_dir / "model.skops").exists()
        assert f"{library}==" in (model_dir / "requirements.txt").read_text()
        rows = pd.read_csv(folder / "later.csv").head(6).drop(columns=[target])
        rows.to_csv(folder / "rows.csv", index=False)
        command += [str(model_dir), str(folder / "rows.csv")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    classes, values = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(classes) <= {"Europe", "Japan", "USA"} and len(classes) == 6
    assert all(5 < float(v) < 60 for v in values) and len(values) == 6

    folder = trained / "origin"
    with serving(folder) as url:
        records = json.loads(pd.read_csv(folder / "rows.csv").to_json(orient="records"))
        status, answer = post_json(f"{url}/predict", {"records": records})
        assert status == 200, answer
        assert answer["predictions"] == classes
        assert answer["classes"] == ["Europe", "Japan", "USA"]


def test_a_booster_champion_is_monitored_and_retrained_with_its_library(trained: Path) -> None:
    """The later cars raise the mpg model's error; the retrain that follows trains with the
    champion's library, and the new version is stored natively too."""
    library = trained.name.rstrip("0123456789")
    folder = trained / "mpg"
    done = _cli("monitor", "--batch", folder / "later.csv", "--json", "-C", folder)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    passed = json.loads(done.stdout)
    assert passed["decision"]["action"] == "retrain", passed["decision"]
    assert f"train: {library} on" in done.stderr or library in passed["action"], done.stderr
    assert json.loads(_tags(folder, 2)["mlmedic.skops_trusted_types"]) == [
        "mlmedic_pyfunc.NativeBooster"
    ]


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_a_booster_logged_natively_by_plain_mlflow_is_adopted_and_served(
    library: str, tmp_path: Path
) -> None:
    """``mlflow.lightgbm`` (a Booster: LightGBM's text model) and ``mlflow.xgboost`` (UBJSON)
    versions are adopted as they are stored and scored like mlmedic's own: the exported copy
    loads and answers as the library does. A LightGBM model MLflow pickled is refused with one
    line, exit 2, nothing stored."""
    pytest.importorskip(library)
    import warnings

    from mlmedic.model.project import Project

    with warnings.catch_warnings():  # MLflow's own import-time note on its type hints
        warnings.simplefilter("ignore", UserWarning)
        import mlflow
        import mlflow.lightgbm
        import mlflow.pyfunc
        import mlflow.xgboost

    frame = cars().drop(columns=["year"]).dropna()
    target = "Miles_per_Gallon"
    features = frame.drop(columns=[target])
    if library == "xgboost":  # the categories of an XGBoost model are not kept: numbers only
        features = features.drop(columns=["Origin"])
    else:
        features["Origin"] = features["Origin"].astype("category")
    frame[[*features.columns, target]].to_csv(tmp_path / "reference.csv", index=False)
    root = tmp_path / "p"
    root.mkdir()
    project = Project(root)
    try:
        registry = project.registry
        registry.connection.activate()
        example = features.head(3)
        with (
            mlflow.start_run(experiment_id=registry.connection.experiment_id()),
            warnings.catch_warnings(),  # MLflow's input example code against pandas 3: noise
        ):
            warnings.simplefilter("ignore", PANDAS_DEPRECATION)
            if library == "lightgbm":
                import lightgbm

                booster = lightgbm.LGBMRegressor(n_estimators=30, verbose=-1)
                booster.fit(features, frame[target])
                mlflow.lightgbm.log_model(
                    booster.booster_,
                    name="model",
                    input_example=example,
                    registered_model_name=registry.model_name,
                )
                expected = booster.booster_.predict(example)
            else:
                import xgboost

                booster = xgboost.XGBRegressor(n_estimators=30)
                booster.fit(features, frame[target])
                mlflow.xgboost.log_model(
                    booster,
                    name="model",
                    input_example=example,
                    registered_model_name=registry.model_name,
                )
                expected = booster.predict(example)
    finally:
        project.close()
    done = _cli("adopt", "1", "-r", tmp_path / "reference.csv", "-t", target, "-C", root)
    assert done.returncode == 0, done.stdout + done.stderr
    project = Project(root)
    try:
        model = project.registry.load_model(1)
        assert type(model).__name__ == "NativeBooster" and model.library == library
        found = model.predict(
            example.astype({"Origin": object}) if library == "lightgbm" else example
        )
        assert found == pytest.approx(expected, rel=1e-6)
        assert project.registry.load_contract(1).task == "regression"
    finally:
        project.close()

    if library == "lightgbm":  # the scikit-learn API model, pickled by MLflow: refused
        project = Project(root)
        try:
            project.registry.connection.activate()
            with (
                mlflow.start_run(experiment_id=project.registry.connection.experiment_id()),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", PANDAS_DEPRECATION)
                mlflow.lightgbm.log_model(
                    booster,
                    name="model",
                    serialization_format="pickle",
                    registered_model_name=project.registry.model_name,
                )
        finally:
            project.close()
        done = _cli("adopt", "2", "-r", tmp_path / "reference.csv", "-t", target, "-C", root)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "saved with pickle" in lines[0], lines


@pytest.mark.parametrize("name", ["origin", "mpg"])
def test_a_booster_is_served_by_its_own_fast_path_with_the_same_answers(
    trained: Path, name: str, tmp_path: Path
) -> None:
    """The cached version scores through ``NativeBooster.outputs`` (a float matrix by lookup,
    no pandas) and answers exactly as the model's own predict — unseen and missing categories,
    missing numbers included."""
    import numpy as np

    from mlmedic.model.local import load_local
    from mlmedic.model.project import Project

    folder = trained / name
    project = Project(folder)
    try:
        loaded = load_local(project.registry.export(1, tmp_path / "v1"), 1)
    finally:
        project.close()
    assert type(loaded.fast).__name__ == "_NativeFast"
    later = pd.read_csv(folder / "later.csv").head(8)
    later.loc[later.index[0], "Origin"] = "Atlantis" if "Origin" in loaded.features else None
    later.loc[later.index[1], "Horsepower"] = None
    columns = {c: [None if pd.isna(v) else v for v in later[c]] for c in loaded.features}
    fast = loaded.predict_columns([columns])[1]
    fast_path, loaded.fast = loaded.fast, None
    general = loaded.predict_columns([columns])[1]
    assert np.allclose(fast, general, rtol=1e-12, atol=1e-12), (fast, general)
    assert fast_path is not None
