"""``POST /predict``: validated records into the micro-batcher, answered with labels and
probabilities, logged under their request id. ``score`` is what every protocol shares (this
one, MLflow's ``/invocations`` and the Open Inference Protocol's ``infer``): validation, the
micro-batcher, the hang limit, the prediction log, request ids and the metrics."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlmedic.core.errors import NotReady
from mlmedic.core.jsonvalues import plain
from mlmedic.serving.requests import (
    REQUEST_ID,
    json_body,
    records_of,
    validate_columns,
    validate_records,
)
from mlmedic.serving.state import Pending, state_of

router = APIRouter()


@dataclass
class Scored:
    """One request's answer, whatever protocol it came by."""

    request_id: str
    version: int
    labels: list[Any]  # plain values; None for a record that failed
    probabilities: np.ndarray  # one row per record, one column per class
    classes: list[Any]
    failed: dict[int, str]  # record index -> why it has no answer


async def score(
    request: Request,
    records: list[Any] | None,
    endpoint: str,
    *,
    request_id: str | None = None,
    columns: dict[str, list[Any]] | None = None,
) -> Scored:
    """Score ``records`` (JSON-like objects of feature values), or ``columns`` (one list per
    feature, as a protocol's tensors carry them), through the shared path; the request id is
    ``request_id``, else the ``x-request-id`` header, else a new one."""
    state = state_of(request)
    started = time.perf_counter()
    model = state.model
    if model is None:
        raise NotReady("no model is loaded yet")
    if records is not None:
        columns = validate_records(records, model)
    else:
        assert columns is not None
        columns = validate_columns(columns, model, "{name}[{row}]")
    rows = len(columns[model.features[0]])
    assert state.queue is not None
    request_id = request_id or request.headers.get("x-request-id") or ""
    if not REQUEST_ID.fullmatch(request_id):
        request_id = secrets.token_hex(16)  # only a bounded, safe charset is stored and echoed
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    pending = Pending(columns, rows, future, getattr(request.state, "fingerprint", 0), request_id)
    state.queue.put_nowait(pending)
    # a model call that does not return must not hang the client: the worker answers 503
    # (Retry-After) and the supervisor, seeing the call in flight, replaces the worker. One
    # timer on the shared future (the batcher skips a future already answered), not wait_for's
    # task and shield per request
    expiry = loop.call_later(state.config.hang_seconds, _expire, future, state.config.hang_seconds)
    link = state.release
    release = link.release if link is not None else None
    if release is not None and link.role(request_id) == "canary":
        # the champion scores it too (already queued); the candidate's answer is returned when
        # it comes in time, and the champion's is kept for the comparison
        answer = await link.ask(columns)
        if answer is not None:
            future.add_done_callback(lambda done: link.log_champion(done, columns, request_id))
            labels, outputs, classes = answer
            state.predictions.append(columns, labels, outputs, release.version, request_id)
            state.metrics.released(release.version, "canary")
            state.metrics.predicted(
                labels, time.perf_counter() - started, endpoint, values=not classes
            )
            return Scored(request_id, release.version, labels, outputs, classes, {})
    try:
        labels, probabilities, used = await future
    finally:
        expiry.cancel()
    if release is not None and release.mode == "canary":  # a shadow's are counted in bulk
        state.metrics.released(used.version, "champion")
    failed = pending.failed
    predictions = [None if i in failed else plain(label) for i, label in enumerate(labels)]
    if failed:  # the log keeps what was answered
        kept = [i for i in range(rows) if i not in failed]
        columns = {name: [values[i] for i in kept] for name, values in columns.items()}
        logged = np.asarray([probabilities[i] for i in kept], dtype=float)
        state.predictions.append(
            columns, [predictions[i] for i in kept], logged, used.version, request_id
        )
    else:
        state.predictions.append(columns, predictions, probabilities, used.version, request_id)
    answered = [p for p in predictions if p is not None]
    state.metrics.predicted(
        answered, time.perf_counter() - started, endpoint, values=not used.task.probabilities
    )
    classes = [plain(c) for c in used.classes]
    return Scored(request_id, used.version, predictions, probabilities, classes, failed)


def _expire(future: asyncio.Future[Any], seconds: float) -> None:
    if not future.done():
        future.set_exception(
            NotReady(
                f"the model call did not return within {seconds:g} s "
                "(serving.hang_seconds); this worker is being replaced"
            )
        )


@router.post("/predict")
async def predict(request: Request) -> JSONResponse:
    state = state_of(request)
    if state.model is None:
        raise NotReady("no model is loaded yet")
    records = records_of(
        await json_body(request, state.config.max_body_bytes), state.config.max_records_per_request
    )
    done = await score(request, records, "/predict")
    failed = done.failed
    if not done.classes:  # a regression: the predictions are the numbers
        return JSONResponse(
            {
                "request_id": done.request_id,
                "model_version": done.version,
                "predictions": done.labels,
                "errors": [{"index": i, "detail": d} for i, d in sorted(failed.items())],
            }
        )
    shown = (
        [
            None if i in failed else np.round(np.asarray(p, dtype=float), 6).tolist()
            for i, p in enumerate(done.probabilities)
        ]
        if failed
        else np.round(done.probabilities, 6).tolist()  # the common case, in one vectorised step
    )
    return JSONResponse(
        {
            "request_id": done.request_id,
            "model_version": done.version,
            "predictions": done.labels,
            "probabilities": shown,
            "classes": done.classes,
            "errors": [{"index": i, "detail": detail} for i, detail in sorted(failed.items())],
        }
    )
