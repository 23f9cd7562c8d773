"""Property-based fuzzing of /predict and /feedback: whatever a client sends, never a 5xx, never a
dead prediction-log writer, and well-formed requests sent meanwhile always succeed."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.serving.app import build

RECORD = {
    k: (v.item() if hasattr(v, "item") else v)
    for k, v in make_churn(1, seed=3).drop(columns=[TARGET, "signup_at"]).iloc[0].items()
}
FIELDS = sorted(RECORD)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**70, 1e308, -1e308, 5e-324])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def records(draw: Any) -> Any:
    """A valid record with some fields replaced, removed or added; or anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(values)
    record = dict(RECORD)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        record[name] = draw(values)
    if draw(st.booleans()):
        record.pop(draw(st.sampled_from(FIELDS)), None)
    if draw(st.integers(0, 5)) == 0:
        record[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return record


def _body(draw_value: Any, wrap: int) -> bytes:
    if wrap == 1:
        draw_value = {"records": [draw_value, RECORD]}
    text = json.dumps(draw_value, allow_nan=True, default=str)
    return text.encode("utf-8", errors="surrogatepass")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, train_isolated):  # type: ignore[no-untyped-def]
    root = train_isolated(tmp_path_factory.mktemp("fuzz") / "shop", 91, rows=1500)
    with TestClient(build(root)) as test_client:
        yield test_client


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=records(), wrap=st.integers(0, 2))
def test_predict_never_answers_5xx(client: TestClient, payload: Any, wrap: int) -> None:
    answer = client.post("/predict", content=_body(payload, wrap))
    assert answer.status_code < 500, (payload, answer.text)
    if answer.status_code == 200:
        body = answer.json()
        assert len(body["predictions"]) == len(body["probabilities"])
        assert all(math.isfinite(p) for row in body["probabilities"] for p in row)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))
)
def test_raw_bytes_never_answer_5xx(client: TestClient, raw: bytes) -> None:
    assert client.post("/predict", content=raw).status_code < 500
    assert client.post("/feedback", content=raw).status_code < 500


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    item=st.fixed_dictionaries({"request_id": values, "label": values})
    | st.dictionaries(st.text(max_size=10), values, max_size=3)
    | values
)
def test_feedback_never_answers_5xx(client: TestClient, item: Any) -> None:
    answer = client.post("/feedback", content=json.dumps(item, default=str).encode())
    assert answer.status_code < 500, (item, answer.text)


def test_well_formed_requests_succeed_while_fuzzing_and_the_writer_lives(
    client: TestClient,
) -> None:
    failures: list[int] = []
    stop = threading.Event()

    def steady() -> None:
        while not stop.is_set():
            status = client.post("/predict", json=RECORD).status_code
            if status != 200:
                failures.append(status)

    thread = threading.Thread(target=steady)
    thread.start()
    try:
        for huge in (2**70, 10**20, -(2**63)):
            client.post("/predict", json={"records": [dict(RECORD, age=huge)] * 3})
        for bad in ('{"age": NaN}', "[" * 50_000, '{"records": [1, 2, {"x": []}]}'):
            client.post("/predict", content=bad.encode())
    finally:
        stop.set()
        thread.join(timeout=30)
    assert failures == []
    state = client.app.state.mlmedic  # type: ignore[attr-defined]
    assert state.predictions.flush() >= 0
    status = state.predictions.status()
    assert status["alive"] and status["writing"], status
    ready = client.get("/ready").json()
    assert ready["prediction_log"]["writing"]


def test_the_fuzzed_log_is_readable(client: TestClient, tmp_path: Path) -> None:
    from mlmedic.store.logstore import read_predictions

    state = client.app.state.mlmedic  # type: ignore[attr-defined]
    state.predictions.flush()
    logged = read_predictions(state.predictions.folder)
    assert len(logged) > 0 and logged["request_id"].notna().all()
