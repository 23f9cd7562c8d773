"""``POST /predict``: validated records into the micro-batcher, answered with labels and
probabilities, logged under their request id."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlmedic.errors import NotReady
from mlmedic.serving.openapi import plain
from mlmedic.serving.requests import REQUEST_ID, json_body, records_of, validate_records
from mlmedic.serving.state import Pending, state_of

router = APIRouter()


@router.post("/predict")
async def predict(request: Request) -> JSONResponse:
    state = state_of(request)
    started = time.perf_counter()
    model = state.model
    if model is None:
        raise NotReady("no model is loaded yet")
    records = records_of(
        await json_body(request, state.config.max_body_bytes), state.config.max_records_per_request
    )
    columns = validate_records(records, model)
    assert state.queue is not None
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pending = Pending(columns, len(records), future, request.state.fingerprint)
    state.queue.put_nowait(pending)
    try:
        # a model call that does not return must not hang the client: the worker answers 503
        # (Retry-After) and the supervisor, seeing the call in flight, replaces the worker
        labels, probabilities, used = await asyncio.wait_for(
            asyncio.shield(future), state.config.hang_seconds
        )
    except TimeoutError:
        raise NotReady(
            f"the model call did not return within {state.config.hang_seconds:g} s "
            "(serving.hang_seconds); this worker is being replaced"
        ) from None
    request_id = request.headers.get("x-request-id") or ""
    if not REQUEST_ID.fullmatch(request_id):
        request_id = uuid.uuid4().hex  # only a bounded, safe charset is stored and echoed
    failed = pending.failed
    predictions = [None if i in failed else plain(label) for i, label in enumerate(labels)]
    shown = (
        [
            None if i in failed else np.round(np.asarray(p, dtype=float), 6).tolist()
            for i, p in enumerate(probabilities)
        ]
        if failed
        else np.round(probabilities, 6).tolist()  # the common case, in one vectorised step
    )
    if failed:  # the log keeps what was answered
        kept = [i for i in range(len(records)) if i not in failed]
        columns = {name: [values[i] for i in kept] for name, values in columns.items()}
        logged = np.asarray([probabilities[i] for i in kept], dtype=float)
        state.predictions.append(
            columns, [predictions[i] for i in kept], logged, used.version, request_id
        )
    else:
        state.predictions.append(columns, predictions, probabilities, used.version, request_id)
    answered = [p for p in predictions if p is not None]
    state.metrics.predicted(answered, time.perf_counter() - started)
    return JSONResponse(
        {
            "request_id": request_id,
            "model_version": used.version,
            "predictions": predictions,
            "probabilities": shown,
            "classes": [plain(c) for c in used.classes],
            "errors": [{"index": i, "detail": detail} for i, detail in sorted(failed.items())],
        }
    )
