"""The prediction API: FastAPI on uvicorn, serving the champion with micro-batching and hot swaps.

Endpoints: ``POST /predict``, ``POST /feedback``, ``GET /health`` (liveness), ``GET /ready``
(a model is loaded and its canary prediction succeeds), ``GET /model``, ``GET /metrics``
(Prometheus), ``POST /admin/reload`` (bearer token from ``MLMEDIC_ADMIN_TOKEN``), and the
OpenAPI document typed from the served version (``/openapi.json``, ``/docs``, ``/redoc``).

Concurrent one-row requests are coalesced into one model call (at most ``batch_wait_ms`` of
waiting, at most ``max_batch_size`` rows), run on a worker thread off the event loop. The champion
is swapped atomically: the new version is loaded and canaried first, and a version that fails
leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from mlmedic.clock import SystemClock
from mlmedic.config import ServingConfig
from mlmedic.errors import ApiError, MedicError
from mlmedic.events import EventKind, EventStore, Outcome
from mlmedic.labels import label_key
from mlmedic.logstore import FeedbackLog, PredictionLog
from mlmedic.model.local import LoadedModel, ModelLoadError
from mlmedic.model.source import ModelSource
from mlmedic.serving.metrics import Metrics
from mlmedic.serving.openapi import NUMBER_LIMIT, NUMBER_LIMIT_INT, label_for
from mlmedic.serving.openapi import plain as _plain

log = logging.getLogger("mlmedic.serving")
_DRAIN_LIMIT = 16 * 1024 * 1024
_ARRIVAL_GAP = 0.0004  # seconds without a new request that close a batch early
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SWAP_BACKOFF_CAP = 30.0
_INLINE_ROWS = 16  # batches up to this many rows run on the event loop (fast path only)


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
    api_token: str | None = None
    poll_registry: bool = False
    model: LoadedModel | None = None
    queue: asyncio.Queue[_Pending] | None = None
    swap_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    on_model_call: Callable[[int], None] | None = None
    log_failing: bool = False
    settings: Any = None  # the project's Settings (the dashboard's floors and intervals)
    # a swap target that failed: version -> (attempts, first failure time, next try, last error)
    failing: dict[int, list[Any]] = field(default_factory=dict)

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
            if self.model.fallback_from is not None:
                self.failing[self.model.fallback_from] = [
                    1,
                    time.time(),
                    time.monotonic() + 1.0,
                    self.model.fallback_why,
                ]

    def catch_up(self) -> None:
        """A standby that starts serving swaps first if the champion moved since it loaded."""
        version = self.check_for_new_champion(ask_registry=False)
        if version is not None:
            self.swap_to(version, reason="champion moved while this worker was on standby")

    def swap_to(self, version: int, *, reason: str) -> bool:
        """Load ``version``, canary it, swap it in; on failure keep the old model (and say so,
        once per target: retries back off, and the success that ends them counts them)."""
        with self.swap_lock:
            current = self.model.version if self.model else None
            if current == version:
                return False
            failing = self.failing.get(version)
            if failing is not None and time.monotonic() < failing[2]:
                return False
            try:
                loaded = self.source.load_version(version)
            except ModelLoadError as exc:
                self.metrics.swap(ok=False)
                if failing is None:
                    self.failing[version] = [1, time.time(), time.monotonic() + 1.0, str(exc)]
                    self.events.record(
                        EventKind.DEPLOY,
                        "hot-swap",
                        Outcome.FAILURE,
                        message=f"hot swap to v{version} failed, still serving v{current}: {exc}"
                        " (retrying with back-off)",
                        details={"to_version": version, "serving": current, "reason": reason},
                        model_version=current,
                    )
                else:
                    failing[0] += 1
                    delay = min(_SWAP_BACKOFF_CAP, 2.0 ** min(failing[0], 10))
                    failing[2], failing[3] = time.monotonic() + delay, str(exc)
                return False
            attempts = self.failing.pop(version, [0])[0]
            self.model = loaded
            self.metrics.model_version(loaded.version)
            self.metrics.swap(ok=True)
            self.events.record(
                EventKind.DEPLOY,
                "hot-swap",
                Outcome.SUCCESS,
                message=f"now serving v{version} (was v{current}): {reason}"
                + (f" after {attempts} failed attempt(s)" if attempts else ""),
                details={
                    "from_version": current,
                    "to_version": version,
                    "source": loaded.source,
                    "failed_attempts": attempts,
                },
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
        keeps it in step with the registry), and write events buffered while the store was
        unavailable."""
        parent = os.getppid()
        ticks = 0
        while not self.stopping.wait(0.25):
            ticks += 1
            try:
                if os.environ.get("MLMEDIC_WORKER_INDEX") and os.getppid() != parent:
                    log.error("the supervisor is gone; this worker stops")
                    os._exit(1)
                version = self.check_for_new_champion(ask_registry=self.poll_registry)
                if version is not None:
                    self.swap_to(version, reason="champion alias moved")
                self._watch_prediction_log()
                if ticks % 8 == 0:
                    flush = getattr(self.events, "flush", None)
                    if flush is not None:
                        flush()
            except Exception as exc:  # the watcher must never die
                log.warning("champion watch failed: %s", exc)

    def _watch_prediction_log(self) -> None:
        """One event when the prediction log stops being written, one when it writes again."""
        status = self.predictions.status()
        failing = not status["writing"]
        if failing == self.log_failing:
            return
        self.log_failing = failing
        self.events.record(
            EventKind.COMPONENT,
            "prediction-log failing" if failing else "prediction-log writing",
            Outcome.WARNING if failing else Outcome.SUCCESS,
            message=(
                f"the prediction log cannot be written ({status['last_error']}); rows are kept "
                f"in memory (at most {self.predictions.max_pending_rows:,})"
                if failing
                else f"the prediction log is written again ({status['dropped_rows']} rows dropped, "
                f"{status['set_aside_rows']} set aside)"
            ),
            details=status,
        )

    def fallback(self) -> dict[str, Any] | None:
        """When another version is served because the champion cannot be loaded (at start, or
        by a hot swap that keeps failing)."""
        model = self.model
        if model is None:
            return None
        wanted = self.source.champion_version(ask_registry=False)
        if model.fallback_from is not None and wanted in (None, model.fallback_from):
            champion, why = model.fallback_from, model.fallback_why
        elif wanted is not None and wanted != model.version and wanted in self.failing:
            champion, why = wanted, str(self.failing[wanted][3])
        else:
            return None
        return {"champion": champion, "serving": model.version, "why": why}

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
            mark = self.on_model_call
            try:
                parts = [item.columns for item in batch]
                if mark is not None:
                    mark(model.version)
                fast = getattr(model, "fast", None) is not None
                if rows <= _INLINE_ROWS and fast and self.queue.empty():
                    # a small batch on the fast path costs about a millisecond: with nothing else
                    # waiting, handing it to a thread and back costs more than it saves
                    labels, probabilities = model.predict_columns(parts)
                else:
                    labels, probabilities = await loop.run_in_executor(
                        None, model.predict_columns, parts
                    )
            except Exception:
                # one request's rows must not fail the others: score them one by one
                await self._one_by_one(batch, model)
                continue
            finally:
                if mark is not None:
                    mark(0)
            start = 0
            for item in batch:
                stop = start + item.rows
                if not item.future.done():
                    item.future.set_result((labels[start:stop], probabilities[start:stop], model))
                start = stop

    async def _one_by_one(self, batch: list[_Pending], model: LoadedModel) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            if item.future.done():
                continue
            try:
                labels, probabilities = await loop.run_in_executor(
                    None, model.predict_columns, [item.columns]
                )
            except Exception as exc:
                item.future.set_exception(
                    ApiError(
                        422,
                        f"v{model.version} cannot score these records: "
                        f"{type(exc).__name__}: {str(exc)[:200]}",
                    )
                )
            else:
                item.future.set_result((labels, probabilities, model))


# ---------------------------------------------------------------------- validation
def _records(body: Any, limit: int) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "records" in body:
        records = body["records"]
        if not isinstance(records, list):
            raise ApiError(422, "'records' must be a list of objects")
        if len(body) > 1:
            other = sorted(k for k in body if k != "records")[0]
            raise ApiError(422, f"unknown field '{other}' beside 'records'")
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
            if value is None:
                if name not in model.nullable:
                    raise ApiError(
                        422,
                        f"{where}.{name}: missing value (null), and the model's data contract "
                        "has no missing values in this column",
                    )
                if name in numeric:
                    value = float("nan")
            elif name in numeric:
                value = _number(value, name in model.integer, f"{where}.{name}")
            elif not isinstance(value, str):
                raise ApiError(
                    422, f"{where}.{name}: expected a string, got {type(value).__name__}"
                )
            columns[name].append(value)
    return columns


def _number(value: Any, integer: bool, where: str) -> float:
    """A JSON number as a finite float64, or ``ApiError(422)`` saying why not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(422, f"{where}: expected a number, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) > NUMBER_LIMIT_INT:
        raise ApiError(422, f"{where}: number out of range (the limit is 1e300)")
    number = float(value)
    if not math.isfinite(number):
        raise ApiError(422, f"{where}: expected a finite number, got {value!r}")
    if abs(number) > NUMBER_LIMIT:
        raise ApiError(422, f"{where}: number out of range (the limit is 1e300)")
    if integer and not number.is_integer():
        raise ApiError(422, f"{where}: expected an integer, got {value!r}")
    return number


def _reject_constant(name: str) -> Any:
    raise ApiError(422, f"request body has {name}: only finite numbers are accepted")


def parse_json(body: bytes | bytearray) -> Any:
    """The request body as JSON; ``ApiError(422)`` for anything that is not plain, finite JSON
    (NaN and Infinity tokens, numbers too long to read, nesting too deep to parse)."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except ApiError:
        raise
    except RecursionError:
        raise ApiError(422, "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "request body is not valid JSON") from None


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

    app = FastAPI(title="mlmedic", docs_url="/docs", redoc_url="/redoc", lifespan=lifespan)
    app.state.mlmedic = state
    described: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        """The document for the version served now (rebuilt when it changes)."""
        from mlmedic import __version__
        from mlmedic.serving.openapi import document

        model = state.model
        key = model.version if model is not None else None
        if described.get("key", -1) != key:
            described["doc"] = document(
                title=f"mlmedic: {state.source.model_name}",
                app_version=__version__,
                model=model,
                max_records=state.config.max_records_per_request,
                max_body_bytes=state.config.max_body_bytes,
                api_token=bool(state.api_token),
            )
            described["key"] = key
        return dict(described["doc"])

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(MedicError)
    async def _medic_error(request: Request, exc: MedicError) -> JSONResponse:
        """Every error of mlmedic's tree answers with the status its class (or instance) carries."""
        state.metrics.failed(exc.status_code, request.url.path)
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        state.metrics.failed(500, request.url.path)
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
        return parse_json(body)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        _authorise_api(request, state.api_token)
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
        request_id = request.headers.get("x-request-id") or ""
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex  # only a bounded, safe charset is stored and echoed
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
        _authorise_api(request, state.api_token)
        body = await _json_body(request)
        items = body.get("labels") if isinstance(body, dict) and "labels" in body else [body]
        if not isinstance(items, list) or not items:
            raise ApiError(422, 'expected {"request_id": ..., "label": ...} or {"labels": [...]}')
        if isinstance(body, dict) and "labels" in body and len(body) > 1:
            other = sorted(k for k in body if k != "labels")[0]
            raise ApiError(422, f"unknown field '{other}' beside 'labels'")
        model = state.model
        if model is None:
            raise ApiError(503, "no model is loaded yet")
        rows: list[dict[str, str]] = []
        for position, item in enumerate(items):
            where = f"labels[{position}]"
            if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
                raise ApiError(422, f"{where}: needs 'request_id' and 'label'")
            if len(item) > 2:
                other = sorted(k for k in item if k not in ("request_id", "label"))[0]
                raise ApiError(422, f"{where}: unknown field '{other}'")
            request_id = item["request_id"]
            if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
                raise ApiError(422, f"{where}.request_id: not a request id this server issues")
            label = label_for(item["label"], model.classes)
            if label is None:
                known = ", ".join(repr(_plain(c)) for c in model.classes)
                raise ApiError(
                    422,
                    f"{where}.label: {item['label']!r} is not one of v{model.version}'s classes "
                    f"({known}), as its value or its text",
                )
            rows.append({"request_id": request_id, "label": label_key(label) or ""})
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(None, state.feedback.write, rows)
        unknown = await loop.run_in_executor(
            None, state.predictions.unknown_ids, [row["request_id"] for row in rows]
        )
        answer: dict[str, Any] = {"recorded": written}
        if unknown:
            answer["unknown_request_ids"] = {"count": len(unknown), "examples": unknown[:5]}
        return JSONResponse(answer)

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
        body: dict[str, Any] = {"ready": True, "model_version": model.version}
        fallback = state.fallback()
        if fallback is not None:
            body["fallback"] = fallback
        status = getattr(state.events, "status", None)
        if status is not None:
            body["event_store"] = status()
        body["prediction_log"] = state.predictions.status()
        return JSONResponse(body)

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
                "fallback": state.fallback(),
            }
        )

    dashboard_cache: dict[str, Any] = {}

    def board(*, timelines: bool) -> Any:
        """This project's dashboard as this worker sees it (the model it serves is the serving
        part of the health)."""
        import time as clock

        from mlmedic.dashboard import build

        model = state.model
        return build(
            state.events,
            now=clock.time(),
            project=state.source.state_dir.parent.name,
            state_dir=state.source.state_dir,
            settings=state.settings,
            serving={
                "ready": model is not None,
                "fallback": state.fallback(),
                "why": "" if model is not None else "no model loaded",
            },
            timelines=timelines,
        )

    def render_dashboard() -> str:
        """The dashboard page (computed in a worker thread, at most every 5 s per worker)."""
        import time as clock

        from mlmedic.page import page

        if dashboard_cache.get("until", 0.0) > clock.time():
            return str(dashboard_cache["html"])
        html = page(board(timelines=True), refresh=30)
        dashboard_cache.update(html=html, until=clock.time() + 5.0)
        return html

    def render_metrics() -> tuple[str, str]:
        try:
            figures = board(timelines=False)
        except MedicError:
            figures = None  # the event store is unreadable: mlmedic_event_store_up says so
        return state.metrics.render(state.events, state.predictions.status(), figures)

    @app.get("/dashboard")
    async def dashboard(request: Request) -> HTMLResponse:
        """The self-healing dashboard, live (the page refreshes itself every 30 s), read-only."""
        _authorise_api(request, state.api_token)
        text = await asyncio.get_running_loop().run_in_executor(None, render_dashboard)
        return HTMLResponse(text)

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        _authorise_api(request, state.api_token)
        text, content_type = await asyncio.get_running_loop().run_in_executor(None, render_metrics)
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


def _authorise_api(request: Request, token: str | None) -> None:
    """``/predict``, ``/feedback`` and ``/metrics`` need the bearer token when one is set."""
    if token:
        _check_bearer(request, token, "MLMEDIC_API_TOKEN")


def is_loopback(host: str) -> bool:
    """Does binding ``host`` keep the server on this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _authorise(request: Request, token: str | None) -> None:
    """``/admin/*``: disabled unless ``MLMEDIC_ADMIN_TOKEN`` is set."""
    if not token:
        raise ApiError(403, "admin endpoints are disabled: set MLMEDIC_ADMIN_TOKEN")
    _check_bearer(request, token, "MLMEDIC_ADMIN_TOKEN")


def _check_bearer(request: Request, token: str, variable: str) -> None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise ApiError(401, f"missing bearer token (this endpoint requires {variable})")
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise ApiError(403, "wrong token")


def model_source(project: Any) -> ModelSource:
    """Where a server of this project finds its models."""
    settings = project.settings.self_healing
    name = settings.model_training.model_name or _default_name(project.root)
    return ModelSource(
        project.state_dir,
        model_name=name,
        events=project.events,
        allow_pickle=settings.model_training.allow_pickle_models_executing_code,
    )


def build(
    project_dir: str | Path,
    *,
    poll_registry: bool = False,
    on_model_call: Callable[[int], None] | None = None,
) -> FastAPI:
    """The app for a project directory (what each server worker runs)."""
    from mlmedic.project import Project

    project = Project(project_dir, service=True)
    settings = project.settings.self_healing
    config = settings.serving
    state = ServerState(
        source=model_source(project),
        config=config,
        events=project.events,
        predictions=PredictionLog(
            project.log_location("predictions"),
            flush_seconds=config.prediction_log_flush_seconds,
        ),
        feedback=FeedbackLog(project.log_location("feedback")),
        metrics=Metrics(),
        admin_token=os.environ.get("MLMEDIC_ADMIN_TOKEN") or None,
        api_token=os.environ.get("MLMEDIC_API_TOKEN") or None,
        poll_registry=poll_registry,
        on_model_call=on_model_call,
        settings=project.settings,
    )
    state.load_initial()
    return create_app(state)


def _default_name(root: Path) -> str:
    from mlmedic.registry import default_model_name

    return default_model_name(root)


__all__ = [
    "ApiError",
    "ServerState",
    "SystemClock",
    "build",
    "create_app",
    "is_loopback",
    "model_source",
    "validate_records",
]
