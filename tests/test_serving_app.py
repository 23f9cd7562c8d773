"""The API in-process (FastAPI's TestClient), on a project with a real registered champion."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.local import ModelLoadError
from mlmedic.model.project import Project
from mlmedic.serving.app import ServerState, build
from mlmedic.serving.state import Pending as _Pending
from mlmedic.store.logstore import read_feedback, read_predictions
from served import wait_until


@pytest.fixture(scope="module")
def served_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "shop"
    root.mkdir()
    project = Project(root)
    assert run_pipeline(project, make_churn(2000, seed=21), target=TARGET).deployed
    project.close()
    return root


def _record(**changes: object) -> dict[str, object]:
    row = make_churn(1, seed=3).drop(columns=[TARGET, "signup_at"]).iloc[0].to_dict()
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    row.update(changes)
    return row


@pytest.fixture
def client(served_project: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLMEDIC_ADMIN_TOKEN", "s3cret")
    with TestClient(build(served_project, poll_registry=False)) as test_client:
        yield test_client


@pytest.mark.slow
def test_health_ready_and_model(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "alive"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == 1
    model = client.get("/model").json()
    assert model["version"] == 1 and model["alias"] == "champion"
    assert model["metrics"]["accuracy"] > 0.8 and model["trained_at"] > 0
    assert "signup_at" not in model["features"]


def test_predict_one_record_and_a_batch(client: TestClient) -> None:
    single = client.post("/predict", json=_record())
    assert single.status_code == 200
    body = single.json()
    assert body["model_version"] == 1 and body["classes"] == [0, 1]
    assert body["predictions"][0] in (0, 1) and len(body["request_id"]) == 32
    assert sum(body["probabilities"][0]) == pytest.approx(1.0, abs=1e-5)
    batch = client.post("/predict", json={"records": [_record(), _record(age=80)]})
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
    traced = client.post("/predict", json=_record(), headers={"x-request-id": "abc-1"})
    assert traced.json()["request_id"] == "abc-1"


@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [
        (_record(age="old"), 422, "records[0].age: expected a number, got str"),
        (_record(age=True), 422, "records[0].age: expected a number, got bool"),
        (_record(region=3), 422, "records[0].region: expected a string, got int"),
        (
            {k: v for k, v in _record().items() if k != "age"},
            422,
            "records[0]: missing field 'age'",
        ),
        (_record(colour="red"), 422, "records[0]: unknown field 'colour'"),
        ({"records": []}, 422, "no records to predict"),
        ({"records": "nope"}, 422, "'records' must be a list"),
        ({"records": [1]}, 422, "records[0]: expected an object"),
        ([], 422, "no records to predict"),
        (42, 422, "expected a JSON object"),
        ({"records": [_record()] * 1001}, 413, "the limit is 1000"),
        ({"records": [_record()], "trace": 1}, 422, "unknown field 'trace' beside 'records'"),
        (_record(age=10**300 + 1), 422, "records[0].age: number out of range"),
        (_record(monthly_charges=-2e300), 422, "records[0].monthly_charges: number out of range"),
    ],
)
def test_client_mistakes_get_4xx_naming_the_problem(
    client: TestClient, payload: object, status: int, detail: str
) -> None:
    answer = client.post("/predict", json=payload)
    assert answer.status_code == status
    assert detail in answer.json()["detail"]


def test_non_json_and_huge_bodies(client: TestClient) -> None:
    garbled = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert garbled.status_code == 422 and "not valid JSON" in garbled.json()["detail"]
    huge = client.post("/predict", content=b"x" * 2_000_000)
    assert huge.status_code == 413
    assert "Traceback" not in huge.text


def test_nulls_only_where_the_contract_has_missing_values(client: TestClient) -> None:
    """The contract of the (repaired) training data has no missing ages: null is a 422."""
    answer = client.post("/predict", json=_record(age=None))
    assert answer.status_code == 422
    assert "records[0].age: missing value" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"age": NaN}', "NaN"),
        (b'{"age": Infinity}', "Infinity"),
        (b'{"age": -Infinity}', "-Infinity"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a":' * 5_000, "nested too deeply"),
        (b"1" + b"0" * 5000, "not valid JSON"),
    ],
)
def test_non_finite_and_pathological_json_is_a_422(
    client: TestClient, body: bytes, detail: str
) -> None:
    answer = client.post("/predict", content=body)
    assert answer.status_code == 422, answer.text
    assert detail in answer.json()["detail"]


@pytest.mark.parametrize(
    ("literal", "detail"),
    [
        ("1" + "0" * 400, "records[0].age: number out of range (the limit is 1e300)"),
        ("1e309", "records[0].age: expected a finite number, got inf"),
        ("true", "records[0].age: expected a number, got bool"),
        ('"40"', "records[0].age: expected a number, got str"),
    ],
)
def test_numbers_must_be_finite_float64(client: TestClient, literal: str, detail: str) -> None:
    import json as json_module

    body = json_module.dumps(_record(age=424242)).replace("424242", literal)
    answer = client.post("/predict", content=body.encode())
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == detail


def test_a_huge_but_finite_integer_is_served_and_logged(
    client: TestClient, served_project: Path
) -> None:
    """2**70 used to be answered 200 and then kill the prediction-log writer."""
    answer = client.post("/predict", json=_record(age=2**70))
    assert answer.status_code == 200
    request_id = answer.json()["request_id"]
    client.__exit__(None, None, None)
    logged = read_predictions(served_project / ".mlmedic" / "predictions")
    assert request_id in set(logged["request_id"])


def test_predictions_and_feedback_are_logged(client: TestClient, served_project: Path) -> None:
    answer = client.post("/predict", json={"records": [_record(), _record(age=30)]}).json()
    recorded = client.post("/feedback", json={"request_id": answer["request_id"], "label": 1})
    assert recorded.json() == {"recorded": 1}
    bad = client.post("/feedback", json={"label": 1})
    assert bad.status_code == 422
    client.app.state  # noqa: B018  (keep the client open until the log flushes on shutdown)
    client.__exit__(None, None, None)
    logged = read_predictions(served_project / ".mlmedic" / "predictions")
    mine = logged[logged["request_id"] == answer["request_id"]]
    assert len(mine) == 2
    assert set(mine["model_version"]) == {1}
    assert {"age", "prediction", "probability", "served_at"} <= set(mine.columns)
    feedback = read_feedback(served_project / ".mlmedic" / "feedback")
    assert answer["request_id"] in set(feedback["request_id"])
    assert any(
        p.name.startswith("hour=") for p in (served_project / ".mlmedic" / "predictions").iterdir()
    )


@pytest.mark.parametrize(
    ("item", "detail"),
    [
        ({"request_id": "abc", "label": "banana"}, "labels[0].label: 'banana' is not one of"),
        ({"request_id": "abc", "label": None}, "labels[0].label: None is not one of"),
        ({"request_id": "abc", "label": {}}, "labels[0].label: {} is not one of"),
        ({"request_id": "abc", "label": [1]}, "labels[0].label: [1] is not one of"),
        ({"request_id": {"x": 1}, "label": 1}, "labels[0].request_id: not a request id"),
        ({"request_id": "<x>", "label": 1}, "labels[0].request_id: not a request id"),
        ({"request_id": "abc", "label": " 1.0"}, "labels[0].label: ' 1.0' is not one of"),
        ({"request_id": "abc", "label": True}, "labels[0].label: True is not one of"),
        ({"request_id": "abc", "label": 1, "note": "x"}, "labels[0]: unknown field 'note'"),
        ({"labels": [{"request_id": "a", "label": 1}], "x": 1}, "unknown field 'x' beside"),
    ],
)
def test_feedback_checks_labels_against_the_models_classes(
    client: TestClient, item: dict[str, object], detail: str
) -> None:
    answer = client.post("/feedback", json=item)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(detail)


def test_feedback_normalises_labels_and_reports_unknown_ids(
    client: TestClient, served_project: Path
) -> None:
    served = client.post("/predict", json=_record()).json()["request_id"]
    answer = client.post(
        "/feedback",
        json={
            "labels": [
                {"request_id": served, "label": "1"},
                {"request_id": "never-served-1", "label": 0.0},
                {"request_id": "never-served-2", "label": 1},
            ]
        },
    ).json()
    assert answer["recorded"] == 3
    assert answer["unknown_request_ids"] == {
        "count": 2,
        "examples": ["never-served-1", "never-served-2"],
    }
    stored = read_feedback(served_project / ".mlmedic" / "feedback")
    assert set(stored["label"]) <= {"0", "1"}


def test_admin_reload_needs_the_token(client: TestClient) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"authorization": "Bearer nope"}).status_code == 403
    ok = client.post("/admin/reload", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json() == {"swapped": False, "model_version": 1}


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.post("/predict", json=_record())
    client.post("/predict", json=_record(age="x"))
    text = client.get("/metrics").text
    client.post("/admin/reload")  # a 401 of the admin endpoint is not a prediction
    assert 'mlmedic_requests_total{endpoint="/predict",status="200"}' in text
    assert 'mlmedic_requests_total{endpoint="/predict",status="422"}' in text
    assert "mlmedic_request_seconds_bucket" in text
    assert "mlmedic_model_version 1.0" in text
    assert 'mlmedic_actions_total{kind="data_fix",outcome="success"}' in text
    assert "# TYPE mlmedic_actions_total counter" in text
    assert "mlmedic_event_store_up 1.0" in text
    assert "mlmedic_prediction_log_writing 1.0" in text
    again = client.get("/metrics").text
    assert 'mlmedic_requests_total{endpoint="/admin/reload",status="401"} 1.0' in again
    # what the dashboard shows, for Grafana (examples/grafana/mlmedic.json)
    assert "# TYPE mlmedic_health gauge" in text and "mlmedic_health " in text
    assert 'mlmedic_health_part{part="serving"} 1.0' in text
    assert "mlmedic_auto_fix_success_ratio" in text
    assert 'mlmedic_recovery_seconds_bucket{le="+Inf"}' in text
    assert "mlmedic_rollbacks_window 0.0" in text


def test_the_grafana_dashboard_uses_only_metrics_mlmedic_serves(client: TestClient) -> None:
    """examples/grafana/mlmedic.json imports as it is: a dashboard JSON with a Prometheus input,
    and every metric its queries name is one /metrics exposes."""
    import json
    import re
    from pathlib import Path

    board = json.loads(
        (Path(__file__).resolve().parents[1] / "examples" / "grafana" / "mlmedic.json").read_text()
    )
    assert board["__inputs"][0]["pluginId"] == "prometheus" and board["panels"]
    served = set(re.findall(r"^# TYPE (\w+)", client.get("/metrics").text, re.MULTILINE))
    names = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(mlmedic_\w+)", target["expr"])
    }
    suffixes = ("_total", "_bucket", "_sum", "_count")
    unknown = {
        n
        for n in names
        if n not in served and not any(n.removesuffix(x) in served for x in suffixes)
    }
    assert len(names) >= 10 and unknown == set()
    # #22: a datasource, job and instance to choose, and every query scoped to them
    variables = {v["name"]: v["type"] for v in board["templating"]["list"]}
    assert variables == {"datasource": "datasource", "job": "query", "instance": "query"}
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            scoped = re.findall(r"\bmlmedic_\w+\{[^}]*\}", target["expr"])
            wanted = ('job=~"$job"', 'instance=~"$instance"')
            assert scoped and all(w in found for found in scoped for w in wanted)


def test_the_alerting_rules_pass_promtool() -> None:
    """#22: deploy/prometheus/rules.yml is valid Prometheus rules (promtool, installed by
    .ci/run; the metric names are checked against a live scrape in test_supervisor.py)."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    rules = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "rules.yml"
    command = [promtool, "check", "rules", str(rules)]
    checked = subprocess.run(command, capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 6 rules found" in checked.stdout, checked


def test_the_dashboard_page_is_served_read_only(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="tile-auto_fix"' in page.text and "<script" not in page.text
    assert client.post("/dashboard").status_code == 405


# ----------------------------------------------------------------------------- units of the state
class _CountingModel:
    """A stand-in model that counts its calls (a unit test of the batcher only)."""

    version = 7
    classes = (0, 1)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_columns(
        self, parts: list[dict[str, list[object]]]
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = sum(len(part["x"]) for part in parts)
        self.calls.append(rows)
        return np.ones(rows, dtype=object), np.tile([0.25, 0.75], (rows, 1))


def test_concurrent_requests_are_coalesced_into_one_model_call(served_project: Path) -> None:
    app = build(served_project, poll_registry=False)
    with TestClient(app):
        pass  # build the state; the batcher is driven by hand below
    state: ServerState = app.state.mlmedic
    fake = _CountingModel()
    state.model = fake  # type: ignore[assignment]

    async def scenario() -> list[int]:
        state.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        futures = []
        for i in range(10):
            future = loop.create_future()
            state.queue.put_nowait(_Pending({"x": [i]}, 1, future))
            futures.append(future)
        task = asyncio.create_task(state.batcher())
        results = await asyncio.gather(*futures)
        task.cancel()
        return [len(labels) for labels, _, _ in results]

    assert asyncio.run(scenario()) == [1] * 10
    assert fake.calls == [10]


class _PoisonedModel(_CountingModel):
    """Fails any call that contains the value 13 (a unit test of the batcher only)."""

    def predict_columns(
        self, parts: list[dict[str, list[object]]]
    ) -> tuple[np.ndarray, np.ndarray]:
        if any(13 in part["x"] for part in parts):
            raise ValueError("cannot score 13")
        return super().predict_columns(parts)


def test_one_bad_request_fails_alone_not_its_whole_batch(served_project: Path) -> None:
    from mlmedic.serving.app import ApiError

    app = build(served_project, poll_registry=False)
    with TestClient(app):
        pass
    state: ServerState = app.state.mlmedic
    state.model = _PoisonedModel()  # type: ignore[assignment]

    async def scenario() -> list[object]:
        state.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        futures = []
        for i in range(10, 20):
            future = loop.create_future()
            state.queue.put_nowait(_Pending({"x": [i]}, 1, future))
            futures.append(future)
        task = asyncio.create_task(state.batcher())
        results = await asyncio.gather(*futures, return_exceptions=True)
        task.cancel()
        return results

    results = asyncio.run(scenario())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], ApiError) and failed[0].status == 422
    assert "cannot score" in failed[0].detail
    assert sum(not isinstance(r, BaseException) for r in results) == 9


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    served_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build(served_project, poll_registry=False)
    state: ServerState = app.state.mlmedic
    before = state.model
    assert before is not None and before.version == 1

    def broken(version: int) -> None:
        raise ModelLoadError(f"v{version}: canary prediction failed: boom")

    monkeypatch.setattr(state.source, "load_version", broken)
    assert state.swap_to(5, reason="test") is False
    assert state.model is before
    event = state.events.last("deploy")
    assert event is not None and event.outcome == "failure"
    assert "hot swap to v5 failed, still serving v1" in event.message


def test_the_fast_path_calls_the_trees_on_one_thread(
    served_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process is the unit of parallelism (#22): its model call opens no OpenMP team.
    With two threads, every tree's parallel region waited for a descheduled thread on a busy
    2-core host and halved the throughput."""
    model = build(served_project, poll_registry=False).state.mlmedic.model
    assert model is not None and model.fast is not None and model.fast.direct
    booster = model.fast.booster
    seen: list[int] = []
    call = booster._predict_iterations

    def spy(*args: Any) -> Any:
        seen.append(args[-1])
        return call(*args)

    monkeypatch.setattr(booster, "_predict_iterations", spy)
    rows = make_churn(5, seed=3).drop(columns=[TARGET, "signup_at"])
    model.predict_columns([{c: rows[c].tolist() for c in model.features}])
    assert seen == [1]


def test_the_fast_path_reproduces_the_pipeline(served_project: Path) -> None:
    """Served predictions equal the registered pipeline's, unseen and missing values included —
    through the booster's trees directly (#22: its own category encoder folded into the
    lookups), not its ColumnTransformer."""
    app = build(served_project, poll_registry=False)
    model = app.state.mlmedic.model
    assert model is not None and model.fast is not None
    assert model.fast.direct
    rows = make_churn(300, seed=77).drop(columns=[TARGET, "signup_at"])
    rows.loc[:20, "region"] = "atlantis"
    rows.loc[21:40, "contract_type"] = None
    rows = rows.astype({c: "float64" for c in model.numeric})
    rows.loc[41:60, "age"] = np.nan
    parts = [{c: rows[c].tolist() for c in model.features}]
    _, fast = model.predict_columns(parts)
    slow = model.model.predict_proba(model.frame(parts))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_the_openapi_document_is_typed_from_the_served_model(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    record = schemas["Record"]
    assert set(record["required"]) == set(_record()) and record["additionalProperties"] is False
    assert record["properties"]["age"]["type"] == "integer"
    assert record["properties"]["monthly_charges"]["type"] == "number"
    assert record["properties"]["region"]["type"] == "string"
    assert schemas["Label"]["enum"] == [0, 1, "0", "1"]
    predict = document["paths"]["/predict"]["post"]
    assert set(predict["responses"]) == {"200", "413", "422", "503"}
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    assert document["paths"]["/admin/reload"]["post"]["security"] == [{"bearer": []}]
    assert "v1" in document["info"]["description"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert client.get("/redoc").status_code == 200


def test_a_model_call_that_does_not_return_answers_503_with_retry_after(
    served_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 item 1: a client waiting on a stuck model call gets a fast 503 with Retry-After
    (``serving.hang_seconds``), not a hang; the supervisor replaces the worker."""
    import threading

    release = threading.Event()
    app = build(served_project, poll_registry=False)
    with TestClient(app) as client:
        state: ServerState = app.state.mlmedic
        state.config = state.config.model_copy(update={"hang_seconds": 0.3})
        model = state.model
        assert model is not None
        real = model.predict_columns

        def stuck(parts):  # type: ignore[no-untyped-def]
            release.wait(10)
            return real(parts)

        monkeypatch.setattr(model, "predict_columns", stuck)
        monkeypatch.setattr(model, "fast", None)  # off the inline path: into the thread pool
        answer = client.post("/predict", json=_record())
        release.set()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "serving.hang_seconds" in answer.json()["detail"]


def test_a_record_the_model_cannot_score_fails_alone(
    served_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21 item 7: in a request of three records, the one the model raises on gets its own
    error with its index; the other two get their predictions, and only they are logged."""
    app = build(served_project, poll_registry=False)
    with TestClient(app) as client:
        state: ServerState = app.state.mlmedic
        model = state.model
        assert model is not None
        real = model.predict_columns

        def picky(parts):  # type: ignore[no-untyped-def]
            if any(80 in part["age"] for part in parts):
                raise ValueError("cannot score age 80")
            return real(parts)

        monkeypatch.setattr(model, "predict_columns", picky)
        answer = client.post(
            "/predict", json={"records": [_record(), _record(age=80), _record(age=40)]}
        )
        body = answer.json()
        assert answer.status_code == 200, body
        assert body["predictions"][1] is None and body["probabilities"][1] is None
        assert body["predictions"][0] is not None and body["predictions"][2] is not None
        assert len(body["probabilities"][0]) == len(body["classes"])
        assert [e["index"] for e in body["errors"]] == [1]
        assert "cannot score age 80" in body["errors"][0]["detail"]
        alone = client.post("/predict", json={"records": [_record(age=80)]})
        assert alone.status_code == 422  # nothing to answer: the request is refused
        clean = client.post("/predict", json={"records": [_record(), _record(age=40)]}).json()
        assert clean["errors"] == []


# ----------------------------------------------------------------------------- the hang watch
def test_on_a_starved_host_only_a_stopped_worker_is_taken_for_hung() -> None:
    """#21 item 11: two workers whose beats are 3 s old (the limit is 2 s). On a quiet host
    both are hung. When the supervisor's own ticks came 2 s apart (a CPU hog), a late beat is
    a scheduling delay, so only the worker the kernel reports stopped is killed."""
    import signal
    import subprocess
    import time
    from types import SimpleNamespace

    from mlmedic.serving.incidents import Incidents
    from mlmedic.serving.marks import HangLimit, Heartbeats

    def check(tick_gap: float) -> set[str]:
        running = subprocess.Popen(["sleep", "30"])
        stopped = subprocess.Popen(["sleep", "30"])
        stopped.send_signal(signal.SIGSTOP)
        state = Path(f"/proc/{stopped.pid}/stat")
        assert wait_until(lambda: state.read_text().split(") ")[1][0] == "T", 5)
        beats = Heartbeats(4)
        now = time.monotonic()
        for index in (0, 1):
            beats._set(index, 0, now - 3.0)
        watch = SimpleNamespace(
            serving=SimpleNamespace(hang_seconds=2.0),
            beats=beats,
            children={running.pid: 0, stopped.pid: 1},
            _hung={},
            _hang_limit=HangLimit(2.0),
        )
        watch._hang_limit.mark(now - tick_gap)
        names = {running.pid: "running", stopped.pid: "stopped"}
        try:
            Incidents._catch_hangs(watch)  # type: ignore[arg-type]
            return {names[pid] for pid in watch._hung}
        finally:
            for process in (running, stopped):
                process.kill()
                process.wait()

    assert check(0.25) == {"running", "stopped"}
    assert check(2.0) == {"stopped"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/predict", ("predict", {})),
        ("/invocations", ("invocations", {})),
        ("/v2/models/churn/infer", ("v2", {"name": "churn"})),
        ("/v2/models/churn/versions/3/infer", ("v2", {"name": "churn", "version": "3"})),
        ("/v2/models//infer", None),
        ("/v2/models/churn/versions//infer", None),
        ("/v2/models/churn/other/3/infer", None),
        ("/v2/models/a/b/infer", None),
        ("/v2/models/churn/ready", None),
        ("/predict/", None),
        ("/feedback", None),
    ],
)
def test_the_scoring_lane_takes_exactly_the_scoring_paths(
    path: str, expected: tuple[str, dict[str, str]] | None
) -> None:
    """#22 item 10: what the lane takes past FastAPI's router is what the routers declare for
    a POST (a ``{name}`` segment is never empty and never holds a slash); the rest goes on."""
    from mlmedic.serving.lane import ScoringLane

    async def predict(_: Any) -> Any: ...
    async def invocations(_: Any) -> Any: ...
    async def v2(_: Any) -> Any: ...

    names = {predict: "predict", invocations: "invocations", v2: "v2"}
    lane = ScoringLane(
        None,  # type: ignore[arg-type]
        handlers={"/predict": predict, "/invocations": invocations},
        v2_infer=v2,
        errors={},
    )
    handler, params = lane.match(path)
    assert (None if handler is None else (names[handler], params)) == expected


def test_a_scoring_request_answers_the_same_through_the_lane_and_the_router(
    served_project: Path,
) -> None:
    """The lane calls the routers' own handlers and the app's exception handlers: a request
    the lane takes and the same request through FastAPI's router get the same answer."""
    app = build(served_project, poll_registry=False)
    record = make_churn(1, seed=5).drop(columns=[TARGET, "signup_at"]).iloc[0].to_dict()
    bad = dict(record, age="old")
    with TestClient(app) as client:
        laned = [client.post("/predict", json=body) for body in (record, bad, [])]
        laned.append(client.post("/predict", content=b"{not json"))
    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ != "ScoringLane"]
    app.middleware_stack = None
    with TestClient(app) as client:
        routed = [client.post("/predict", json=body) for body in (record, bad, [])]
        routed.append(client.post("/predict", content=b"{not json"))
    assert [r.status_code for r in laned] == [200, 422, 422, 422]
    assert [r.status_code for r in routed] == [r.status_code for r in laned]
    assert [r.json() for r in routed[1:]] == [r.json() for r in laned[1:]]
    assert routed[0].json()["predictions"] == laned[0].json()["predictions"]


def _tensors(record: dict[str, object]) -> list[dict[str, object]]:
    return [
        {
            "name": name,
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "shape": [1],
            "data": [value],
        }
        for name, value in record.items()
    ]


def _v2_case(case: str) -> list[dict[str, object]]:
    tensors = _tensors(_record())
    first = tensors[0]
    if case == "datatype a list":
        first["datatype"] = ["FP64"]
    elif case == "parameters a list":
        first["parameters"] = [1]
    elif case == "a tensor twice":
        tensors.append(dict(first))
    elif case == "negative rows":
        first["shape"] = [-1]
    elif case == "a shape of two columns":
        first["shape"], first["data"] = [1, 2], [[1, 2]]
    elif case == "rows that differ":
        first["shape"], first["data"] = [2], [first["data"][0]] * 2  # type: ignore[index]
    elif case == "an input missing":
        tensors.pop()
    elif case == "data not a list":
        first["data"] = 3
    elif case == "text for a number":
        for tensor in tensors:
            if tensor["name"] == "age":
                tensor["datatype"], tensor["data"] = "BYTES", ["old"]
    return tensors


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("datatype a list", "unknown datatype"),
        ("parameters a list", "'parameters' must be an object"),
        ("a tensor twice", "is given twice"),
        ("negative rows", "1 values for shape [-1]"),
        ("a shape of two columns", "shape must be [rows] or [rows, 1]"),
        ("rows that differ", "the same, non-zero number of rows"),
        ("an input missing", "missing input"),
        ("data not a list", "'data' must be a list"),
        ("text for a number", "age[0]: expected a number, got str"),
    ],
)
def test_a_v2_request_the_model_cannot_take_is_a_400_naming_why(
    served_project: Path, case: str, says: str
) -> None:
    """The Open Inference Protocol's errors: ``{"error": ...}`` with 400 for every malformed
    tensor — never a 500, whatever JSON type a field holds."""
    app = build(served_project, poll_registry=False)
    name = app.state.mlmedic.source.model_name
    with TestClient(app) as client:
        good = client.post(f"/v2/models/{name}/infer", json={"inputs": _tensors(_record())})
        nested = _tensors(_record())
        for tensor in nested:
            tensor["shape"], tensor["data"] = [1, 1], [tensor["data"]]
        as_column = client.post(f"/v2/models/{name}/infer", json={"inputs": nested})
        answer = client.post(f"/v2/models/{name}/infer", json={"inputs": _v2_case(case)})
    assert good.status_code == 200 and as_column.status_code == 200
    assert as_column.json()["outputs"] == good.json()["outputs"]
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
