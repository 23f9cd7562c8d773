"""#23 item 2: a real three-class table through the real CLI and server.

Vega's cars (shipped in the ``vega_datasets`` wheel, a test extra; the file is read, the package
never imported): 406 cars of 1970-1982, their origin (USA, Europe or Japan, text labels) from
miles per gallon, cylinders, displacement, horsepower, weight and acceleration, with the
missing values the table really has. Trained on the cars up to 1976, served, given feedback,
monitored on the later years, and replayed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from served import get_json, post_json, serving, v2_inputs

pytestmark = pytest.mark.slow

CLASSES = ["Europe", "Japan", "USA"]


def cars() -> pd.DataFrame:
    spec = importlib.util.find_spec("vega_datasets")
    assert spec is not None and spec.submodule_search_locations, (
        "vega_datasets is a test extra: pip install -e '.[test]'"
    )
    path = Path(next(iter(spec.submodule_search_locations)), "_data", "cars.json")
    frame = pd.read_json(path)
    frame["year"] = pd.to_datetime(frame.pop("Year")).dt.year
    return frame.drop(columns=["Name"]).sort_values("year", kind="stable")


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlmedic", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
    )


def replayed(project: Path, target: str) -> dict[str, Any]:
    """``mlmedic replay --json`` of the project's later rows, in windows of 45, on its training
    rows as the reference."""
    done = _cli(
        "replay",
        project / "later.csv",
        "--target",
        target,
        "--reference",
        project / "train.csv",
        "--window-rows",
        "45",
        "--json",
        "-C",
        project,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained by ``mlmedic run`` on the cars up to 1976; the later ones in ``later.csv``."""
    root = tmp_path_factory.mktemp("multiclass") / "cars"
    root.mkdir()
    frame = cars()
    frame[frame.year <= 1976].drop(columns=["year"]).to_csv(root / "train.csv", index=False)
    frame[frame.year > 1976].drop(columns=["year"]).to_csv(root / "later.csv", index=False)
    done = _cli("run", root / "train.csv", "--target", "Origin", "-C", root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-> PASS" in done.stdout and "v1 is now champion" in done.stdout, done.stdout
    return root


def test_a_three_class_table_is_served_with_every_class_by_every_protocol(project: Path) -> None:
    """Labels as the table has them (text), one probability per class summing to one, by
    ``/predict``, MLflow's ``/invocations`` and the Open Inference Protocol; feedback in the
    table's own labels is taken."""
    later = pd.read_csv(project / "later.csv")
    rows = later.drop(columns=["Origin"]).head(6)
    records = json.loads(rows.to_json(orient="records"))
    with serving(project) as url:
        status, answer = post_json(f"{url}/predict", {"records": records})
        assert status == 200, answer
        assert answer["classes"] == CLASSES
        assert all(label in CLASSES for label in answer["predictions"])
        for row in answer["probabilities"]:
            assert len(row) == 3 and abs(sum(row) - 1.0) < 1e-5
        best = [CLASSES[max(range(3), key=row.__getitem__)] for row in answer["probabilities"]]
        assert best == answer["predictions"]

        split = {"columns": list(rows.columns), "data": json.loads(rows.to_json(orient="values"))}
        payload = {"dataframe_split": split, "params": {"output": "probabilities"}}
        status, mlflow = post_json(f"{url}/invocations", payload)
        assert status == 200, mlflow
        assert [sorted(p) for p in mlflow["predictions"]] == [CLASSES] * len(rows)

        name = get_json(f"{url}/model")[1]["name"]
        tensors = v2_inputs(rows, integer=("Cylinders",))
        status, v2 = post_json(f"{url}/v2/models/{name}/infer", {"inputs": tensors})
        assert status == 200, v2
        outputs = {o["name"]: o for o in v2["outputs"]}
        assert outputs["predict"]["datatype"] == "BYTES"
        assert outputs["predict"]["data"] == answer["predictions"]
        assert outputs["predict_proba"]["shape"] == [len(rows), 3]
        assert outputs["predict_proba"]["parameters"]["classes"] == CLASSES

        truth = later["Origin"].head(6).tolist()
        feedback = [{"request_id": answer["request_id"], "label": label} for label in truth[:1]]
        status, taken = post_json(f"{url}/feedback", {"labels": feedback})
        assert status == 200, taken
        status, refused = post_json(
            f"{url}/feedback", {"request_id": answer["request_id"], "label": "Mars"}
        )
        assert status == 422 and "Mars" in json.dumps(refused), refused


def test_a_three_class_table_is_monitored_and_replayed(project: Path) -> None:
    """``monitor --batch`` measures accuracy on the later years' labels; ``replay`` scores
    mlmedic beside never-heal and retrain-every-window on them, per window, all three classes
    in play."""
    done = _cli("monitor", "--batch", project / "later.csv", "--json", "-C", project)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    passed = json.loads(done.stdout)
    accuracy = passed["performance"]["accuracy"]
    assert 0.0 < accuracy < 1.0, passed["performance"]
    assert passed["performance"]["rows"] == len(pd.read_csv(project / "later.csv"))

    result = replayed(project, "Origin")
    names = {s["name"] for s in result["summaries"]}
    assert {"mlmedic", "never heal", "retrain every window"} <= names
    rows = len(pd.read_csv(project / "later.csv"))
    assert [w["rows"] for w in result["windows"]] == [45] * (rows // 45) + [rows % 45]
    assert all(w["accuracy"] is not None for w in result["windows"])
