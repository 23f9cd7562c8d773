"""#23 item 1: a regression through the real CLI and server.

Vega's cars (shipped in the ``vega_datasets`` wheel, a test extra; the file is read): miles per
gallon from cylinders, displacement, horsepower, weight, acceleration and origin, with the
table's own missing values. The task is told from the target, trained and gated on error up to
1976, served as numbers by ``/predict``, MLflow's ``/invocations`` and the Open Inference
Protocol, given numeric feedback, and monitored on the later years — whose cars are more
economical than any the model saw: the error rises, and the retrain that follows lowers it.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from served import get_json, post_json, serving, v2_inputs
from test_multiclass import _cli, cars, replayed

pytestmark = pytest.mark.slow
TARGET = "Miles_per_Gallon"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained by ``mlmedic run`` on the cars up to 1976; the later ones in ``later.csv``."""
    root = tmp_path_factory.mktemp("regression") / "mpg"
    root.mkdir()
    frame = cars()
    frame[frame.year <= 1976].drop(columns=["year"]).to_csv(root / "train.csv", index=False)
    frame[frame.year > 1976].drop(columns=["year"]).to_csv(root / "later.csv", index=False)
    done = _cli("run", root / "train.csv", "--target", TARGET, "--json", "-C", root)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == "regression" and result["deployed"], result
    assert "[1] task: regression (told from the values of Miles_per_Gallon)" in done.stderr
    gate = result["gate"]
    assert set(gate["candidate"]) == {"rmse", "mae", "r2", "baseline_rmse", "rmse_ratio"}
    assert gate["candidate"]["rmse_ratio"] < 0.6, gate  # far better than the training mean
    assert gate["thresholds"]["min_r2"] == 0.0, gate  # the regression's keys, not accuracy's
    return root


def test_a_regression_is_stored_with_its_task_and_scored_by_plain_mlflow(project: Path) -> None:
    """The task is a tag of the run and of the version; ``mlflow.pyfunc.load_model`` answers
    numbers and refuses probabilities with a line saying why."""
    import warnings

    from mlmedic.model.project import Project

    with warnings.catch_warnings():  # MLflow's own import-time note on its type hints
        warnings.simplefilter("ignore", UserWarning)
        import mlflow.pyfunc

    opened = Project(project)
    try:
        registry = opened.registry
        version = registry.info(1)
        assert version.tags["mlmedic.task"] == "regression", version.tags
        assert "rmse" in version.metrics
        registry.connection.activate()
        model = mlflow.pyfunc.load_model(f"models:/{registry.model_name}/1")
    finally:
        opened.close()
    later = pd.read_csv(project / "later.csv").drop(columns=[TARGET]).head(4)
    values = model.predict(later.astype({"Cylinders": "int64"}))
    assert len(values) == 4 and all(5 < float(v) < 60 for v in values)
    with pytest.raises(Exception, match="regression model"):
        model.predict(later, params={"output": "probabilities"})


def test_a_regression_is_served_as_numbers_by_every_protocol(project: Path) -> None:
    """Numbers by ``/predict``, ``/invocations`` and v2 (``FP64``, no ``predict_proba``); the
    OpenAPI schema types them; asking for probabilities is a 400 naming why; feedback takes a
    number and refuses text (422)."""
    later = pd.read_csv(project / "later.csv")
    rows = later.drop(columns=[TARGET]).head(5)
    records = json.loads(rows.to_json(orient="records"))
    with serving(project) as url:
        status, answer = post_json(f"{url}/predict", {"records": records})
        assert status == 200, answer
        values = answer["predictions"]
        assert len(values) == 5 and all(isinstance(v, float) for v in values), answer
        assert "probabilities" not in answer and "classes" not in answer

        split = {"columns": list(rows.columns), "data": json.loads(rows.to_json(orient="values"))}
        status, mlflow = post_json(f"{url}/invocations", {"dataframe_split": split})
        assert status == 200 and mlflow["predictions"] == values, mlflow
        asked = {"dataframe_split": split, "params": {"output": "probabilities"}}
        status, refused = post_json(f"{url}/invocations", asked)
        assert status == 400 and "regression model" in refused["message"], refused

        name = get_json(f"{url}/model")[1]["name"]
        status, metadata = get_json(f"{url}/v2/models/{name}")
        assert metadata["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
        tensors = v2_inputs(rows, integer=("Cylinders",))
        status, v2 = post_json(f"{url}/v2/models/{name}/infer", {"inputs": tensors})
        assert status == 200, v2
        assert v2["outputs"] == [
            {"name": "predict", "datatype": "FP64", "shape": [5], "data": values}
        ], v2
        wanted = {"inputs": tensors, "outputs": [{"name": "predict_proba"}]}
        status, refused = post_json(f"{url}/v2/models/{name}/infer", wanted)
        assert status == 400 and "regression" in refused["error"], refused

        schema = get_json(f"{url}/openapi.json")[1]["components"]["schemas"]
        assert schema["PredictResponse"]["properties"]["predictions"]["items"] == {
            "type": ["number", "null"]
        }
        assert schema["Label"] == {"type": "number"}

        truth = later[TARGET].head(1).tolist()
        feedback = [{"request_id": answer["request_id"], "label": truth[0]}]
        status, taken = post_json(f"{url}/feedback", {"labels": feedback})
        assert status == 200 and taken["recorded"] == 1, taken
        status, refused = post_json(
            f"{url}/feedback", {"request_id": answer["request_id"], "label": "fast"}
        )
        assert status == 422 and "not a number" in json.dumps(refused), refused
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as scraped:
            metrics = scraped.read().decode()
        assert 'mlmedic_predictions_total{label="value"}' in metrics
        assert "mlmedic_predicted_value_count" in metrics


def test_a_regression_whose_error_rises_is_retrained_and_the_error_falls(project: Path) -> None:
    """``monitor --batch`` on the later years: the MAE measured from their labels is
    significantly above validation's (the error rule), the label-free estimate is made with its
    interval, and the retrain deploys a version with less error on the newest rows than the
    champion there."""
    done = _cli("monitor", "--batch", project / "later.csv", "--json", "-C", project)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    passed = json.loads(done.stdout)
    performance, estimate = passed["performance"], passed["estimate"]
    assert not performance["estimated"] and performance["rows"] > 150, performance
    assert performance["low"] < performance["mae"] < performance["high"]
    assert estimate["estimated"] and estimate["low"] <= estimate["mae"] <= estimate["high"]
    assert "measured_drop" in passed["decision"]["triggers"], passed["decision"]
    assert passed["decision"]["drop_test"]["p_value"] < 0.05
    assert passed["decision"]["action"] == "retrain" and "v2 deployed" in passed["action"]
    models = json.loads(_cli("models", "--json", "-C", project).stdout)
    champion = next(m for m in models["versions"] if m["version"] == 2)
    assert "champion" in champion["aliases"], champion

    # the MLflow monitoring run of v1 holds the pass's error, not an accuracy
    from mlmedic.model.project import Project

    opened = Project(project)
    try:
        run_id = opened.registry.info(1).tags["mlmedic.monitoring_run"]
        logged = opened.registry.connection.client.get_run(run_id).data.metrics
    finally:
        opened.close()
    assert logged["mae"] == pytest.approx(performance["mae"]) and "rmse" in logged, logged
    assert "accuracy" not in logged

    # the dashboard shows error where accuracy means nothing
    board = json.loads(_cli("dashboard", "--json", "-C", project).stdout)
    assert board["last_pass"]["mae"] == pytest.approx(performance["mae"])
    assert [p["value"] for p in board["error"]] == [pytest.approx(performance["mae"])]
    assert board["accuracy"] == []
    error = next(p for p in board["health_parts"] if p["name"] == "error")
    assert error["score"] < 0.5 and "MAE" in error["why"], error
    page = project / "board.html"
    assert _cli("dashboard", "--html", page, "-C", project).returncode == 0
    assert "Error (MAE) per pass" in page.read_text(encoding="utf-8")


def test_a_regression_is_replayed_on_its_error_beside_the_baselines(project: Path) -> None:
    """``replay`` scores a regression by MAE (lower wins): every window's error of the model in
    force, never heal, retrain every window (which learns the later cars: less error), and the
    oracle as the lowest of them."""
    result = replayed(project, TARGET)
    assert result["metric"] == "mae" and result["validation_mae"] > 0
    windows = result["windows"]
    assert all(w["mae"] is not None and w["accuracy"] is None for w in windows)
    for w in windows:
        assert w["baselines"]["oracle"] == min(
            v for k, v in w["baselines"].items() if k != "oracle"
        )
    summaries = {s["name"]: s for s in result["summaries"]}
    assert summaries["mlmedic"]["mean_mae"] is not None
    assert summaries["retrain every window"]["mean_mae"] < summaries["never heal"]["mean_mae"]
    assert summaries["never heal"]["worst_mae"] == max(
        w["baselines"]["never heal"] for w in windows
    )
