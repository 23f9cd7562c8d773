"""The prediction API: FastAPI on uvicorn, serving the champion with micro-batching and hot swaps.

Endpoints: ``POST /predict``, ``POST /feedback``, ``GET /health`` (liveness), ``GET /ready``
(a model is loaded and its canary prediction succeeds), ``GET /model``, ``GET /metrics``
(Prometheus), ``POST /admin/reload`` (bearer token from ``MLMEDIC_ADMIN_TOKEN``).

Concurrent one-row requests are coalesced into one model call (at most ``batch_wait_ms`` of
waiting, at most ``max_batch_size`` rows), run on a worker thread off the event loop. The champion
is swapped atomically: the new version is loaded and canaried first, and a version that fails
leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from mlmedic.clock import SystemClock
from mlmedic.config import ServingConfig
from mlmedic.events import EventKind, EventStore, Outcome
from mlmedic.serving.logstore import FeedbackLog, PredictionLog
from mlmedic.serving.metrics import Metrics
from mlmedic.serving.model import LoadedModel, ModelLoadError
from mlmedic.serving.source import ModelSource

log = logging.getLogger("mlmedic.serving")
_DRAIN_LIMIT = 16 * 1024 * 1024
_ARRIVAL_GAP = 0.0004  # seconds without a new request that close a batch early


class ApiError(Exception):
    """A client mistake, answered with its status code and a one-line detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Pending:
    """One request's validated rows, as feature columns, waiting for a model call."""

    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[tuple[np.ndarray, np.ndarray, LoadedModel]]


@dataclass
class ServerState:
    """Everything one worker holds: the model, its source, logs, metrics, the batch queue."""

    source: ModelSource
    config: ServingConfig
    events: EventStore
    predictions: PredictionLog
    feedback: FeedbackLog
    metrics: Metrics
    admin_token: str | None
    poll_registry: bool = False
    model: LoadedModel | None = None
    queue: asyncio.Queue[_Pending] | None = None
    swap_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------------ model lifecycle
    def load_initial(self) -> None:
        try:
            self.model = self.source.load_champion()
        except ModelLoadError as exc:
            log.error("no model to serve yet: %s", exc)
            self.events.record(
                EventKind.RECOVERY, "load-model", Outcome.FAILURE, message=f"no model: {exc}"
            )
        if self.model is not None:
            self.metrics.model_version(self.model.version)

    def swap_to(self, version: int, *, reason: str) -> bool:
        """Load ``version``, canary it, swap it in; on failure keep the old model (and say so)."""
        with self.swap_lock:
            current = self.model.version if self.model else None
            if current == version:
                return False
            try:
                loaded = self.source.load_version(version)
            except ModelLoadError as exc:
                self.events.record(
                    EventKind.DEPLOY,
                    "hot-swap",
                    Outcome.FAILURE,
                    message=f"hot swap to v{version} failed, still serving v{current}: {exc}",
                    details={"to_version": version, "serving": current, "reason": reason},
                    model_version=current,
                )
                self.metrics.swap(ok=False)
                return False
            self.model = loaded
            self.metrics.model_version(loaded.version)
            self.metrics.swap(ok=True)
            self.events.record(
                EventKind.DEPLOY,
                "hot-swap",
                Outcome.SUCCESS,
                message=f"now serving v{version} (was v{current}): {reason}",
                details={"from_version": current, "to_version": version, "source": loaded.source},
                model_version=version,
            )
            return True

    def check_for_new_champion(self, *, ask_registry: bool) -> int | None:
        """The champion version if it differs from the one served (from the local pointer, and
        from the registry when ``ask_registry``)."""
        wanted = self.source.champion_version(ask_registry=ask_registry)
        served = self.model.version if self.model else None
        return wanted if wanted is not None and wanted != served else None

    def watch(self) -> None:
        """Background thread: follow the local champion record (the registry watcher process
        keeps it in step with the registry)."""
        while not self.stopping.wait(0.25):
            try:
                version = self.check_for_new_champion(ask_registry=self.poll_registry)
                if version is not None:
                    self.swap_to(version, reason="champion alias moved")
            except Exception as exc:  # the watcher must never die
                log.warning("champion watch failed: %s", exc)

    # ------------------------------------------------------------------ batching
    async def batcher(self) -> None:
        """Coalesce queued requests into model calls of at most ``max_batch_size`` rows."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        wait = self.config.batch_wait_ms / 1000.0
        limit = self.config.max_batch_size
        while True:
            first = await self.queue.get()
            batch = [first]
            rows = first.rows
            deadline = loop.time() + wait
            while rows < limit:
                # close the batch at the window's end, or as soon as arrivals pause: with few
                # clients in flight, waiting out the whole window would only add latency
                timeout = min(deadline - loop.time(), _ARRIVAL_GAP)
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    break
                batch.append(item)
                rows += item.rows
            while rows < limit and not self.queue.empty():
                item = self.queue.get_nowait()
                batch.append(item)
                rows += item.rows
            model = self.model
            if model is None:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(ApiError(503, "no model is loaded yet"))
                continue
            self.metrics.batch(rows)
            try:
                parts = [item.columns for item in batch]
                labels, probabilities = await loop.run_in_executor(
                    None, model.predict_columns, parts
                )
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            start = 0
            for item in batch:
                stop = start + item.rows
                if not item.future.done():
                    item.future.set_result((labels[start:stop], probabilities[start:stop], model))
                start = stop


# ---------------------------------------------------------------------- validation
def _records(body: Any, limit: int) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "records" in body:
        records = body["records"]
        if not isinstance(records, list):
            raise ApiError(422, "'records' must be a list of objects")
    elif isinstance(body, dict):
        records = [body]
    elif isinstance(body, list):
        records = body
    else:
        raise ApiError(422, 'expected a JSON object, or {"records": [...]}')
    if not records:
        raise ApiError(422, "no records to predict")
    if len(records) > limit:
        raise ApiError(413, f"{len(records)} records in one request; the limit is {limit}")
    return records


def validate_records(records: list[Any], model: LoadedModel) -> dict[str, list[Any]]:
    """Records as feature columns (plain lists), or ``ApiError(422)`` naming the first bad field.

    Pure Python on purpose: a DataFrame per request would cost more than the model call; the
    batcher builds one frame per batch.
    """
    features = model.features
    expected = set(features)
    numeric = model.numeric
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for position, record in enumerate(records):
        where = f"records[{position}]"
        if not isinstance(record, dict):
            raise ApiError(422, f"{where}: expected an object of feature values")
        if record.keys() != expected:
            unknown = sorted(set(record) - expected)
            if unknown:
                raise ApiError(422, f"{where}: unknown field '{unknown[0]}'")
            missing = [name for name in features if name not in record]
            raise ApiError(422, f"{where}: missing field '{missing[0]}'")
        for name in features:
            value = record[name]
            if name in numeric:
                if value is None:
                    value = float("nan")
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    raise ApiError(
                        422, f"{where}.{name}: expected a number, got {type(value).__name__}"
                    )
            elif value is not None and not isinstance(value, str):
                raise ApiError(
                    422, f"{where}.{name}: expected a string, got {type(value).__name__}"
                )
            columns[name].append(value)
    return columns


# ---------------------------------------------------------------------- the app
def create_app(state: ServerState) -> FastAPI:
    """The FastAPI app around one worker's state (the server process builds it with ``build``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.queue = asyncio.Queue()
        batcher = asyncio.create_task(state.batcher())
        watcher = threading.Thread(target=state.watch, name="champion-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            state.stopping.set()
            batcher.cancel()
            state.predictions.close()

    app = FastAPI(title="mlmedic", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.mlmedic = state

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        state.metrics.failed(exc.status)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def _json_body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        limit = state.config.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) <= _DRAIN_LIMIT:  # read it, so the client gets the 413, not a reset
                async for _ in request.stream():
                    pass
            raise ApiError(413, f"request body of {declared} bytes; the limit is {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body over the limit of {limit} bytes")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(422, "request body is not valid JSON") from None

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        started = time.perf_counter()
        model = state.model
        if model is None:
            raise ApiError(503, "no model is loaded yet")
        records = _records(await _json_body(request), state.config.max_records_per_request)
        columns = validate_records(records, model)
        assert state.queue is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        state.queue.put_nowait(_Pending(columns, len(records), future))
        labels, probabilities, used = await future
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        predictions = [_plain(label) for label in labels]
        state.predictions.append(columns, predictions, probabilities, used.version, request_id)
        state.metrics.predicted(predictions, time.perf_counter() - started)
        return JSONResponse(
            {
                "request_id": request_id,
                "model_version": used.version,
                "predictions": predictions,
                "probabilities": np.round(probabilities, 6).tolist(),
                "classes": [_plain(c) for c in used.classes],
            }
        )

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        body = await _json_body(request)
        items = body.get("labels") if isinstance(body, dict) and "labels" in body else [body]
        if not isinstance(items, list) or not items:
            raise ApiError(422, 'expected {"request_id": ..., "label": ...} or {"labels": [...]}')
        rows = []
        for position, item in enumerate(items):
            if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
                raise ApiError(422, f"labels[{position}]: needs 'request_id' and 'label'")
            rows.append({"request_id": str(item["request_id"]), "label": str(item["label"])})
        written = state.feedback.write(rows)
        return JSONResponse({"recorded": written})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        model = state.model
        if model is None:
            return JSONResponse({"ready": False, "detail": "no model loaded"}, status_code=503)
        try:
            await asyncio.get_running_loop().run_in_executor(None, model.check_canary)
        except ModelLoadError as exc:
            return JSONResponse({"ready": False, "detail": str(exc)}, status_code=503)
        return JSONResponse({"ready": True, "model_version": model.version})

    @app.get("/model")
    async def model_info() -> JSONResponse:
        model = state.model
        if model is None:
            raise ApiError(503, "no model is loaded yet")
        return JSONResponse(
            {
                "name": state.source.model_name,
                "version": model.version,
                "alias": "champion",
                "trained_at": model.trained_at,
                "metrics": model.metrics,
                "features": model.features,
                "classes": [_plain(c) for c in model.classes],
                "loaded_from": model.source,
                "fast_path": model.fast is not None,
            }
        )

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text, content_type = state.metrics.render(state.events)
        return PlainTextResponse(text, media_type=content_type)

    @app.post("/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        _authorise(request, state.admin_token)
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(
            None, lambda: state.check_for_new_champion(ask_registry=True)
        )
        swapped = False
        if version is not None:
            swapped = await loop.run_in_executor(
                None, lambda: state.swap_to(version, reason="admin reload")
            )
        serving = state.model.version if state.model else None
        return JSONResponse({"swapped": swapped, "model_version": serving})

    return app


def _authorise(request: Request, token: str | None) -> None:
    if not token:
        raise ApiError(403, "admin endpoints are disabled: set MLMEDIC_ADMIN_TOKEN")
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise ApiError(401, "missing bearer token")
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise ApiError(403, "wrong token")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def build(project_dir: str | Path, *, poll_registry: bool = False) -> FastAPI:
    """The app for a project directory (what each server worker runs)."""
    from mlmedic.project import Project

    project = Project(project_dir)
    settings = project.settings.self_healing
    registry_name = settings.model_training.model_name
    source = ModelSource(
        project.state_dir,
        model_name=registry_name or _default_name(project.root),
        events=project.events,
    )
    config = settings.serving
    state = ServerState(
        source=source,
        config=config,
        events=project.events,
        predictions=PredictionLog(
            project.state_dir / "predictions", flush_seconds=config.prediction_log_flush_seconds
        ),
        feedback=FeedbackLog(project.state_dir / "feedback"),
        metrics=Metrics(),
        admin_token=os.environ.get("MLMEDIC_ADMIN_TOKEN") or None,
        poll_registry=poll_registry,
    )
    state.load_initial()
    return create_app(state)


def _default_name(root: Path) -> str:
    from mlmedic.registry import default_model_name

    return default_model_name(root)


__all__ = ["ApiError", "ServerState", "SystemClock", "build", "create_app", "validate_records"]
