"""The prediction API: FastAPI on uvicorn, serving the champion with micro-batching and hot swaps.

Endpoints: ``POST /predict``, ``POST /feedback``, ``GET /health`` (liveness), ``GET /ready``
(a model is loaded and its canary prediction succeeds), ``GET /model``, ``GET /metrics``
(Prometheus), ``POST /admin/reload`` (bearer token from ``MLMEDIC_ADMIN_TOKEN``), and the
OpenAPI document typed from the served version (``/openapi.json``, ``/docs``, ``/redoc``).

Concurrent one-row requests are coalesced into one model call (at most ``batch_wait_ms`` of
waiting, at most ``max_batch_size`` rows), run on a worker thread off the event loop. The champion
is swapped atomically: the new version is loaded and canaried first, and a version that fails
leaves the old one serving.

A worker's state is ``serving.state``; requests, their limits and authorisation are
``serving.requests`` and ``serving.auth``; the endpoints are routers, one per concern
(``serving.routes``); the scoring paths reach theirs through ``serving.lane``; this module
assembles the app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from mlmedic.core.errors import ApiError, MedicError
from mlmedic.model.source import model_source
from mlmedic.serving.auth import TokenGuard, Tokens, is_loopback
from mlmedic.serving.lane import ScoringLane
from mlmedic.serving.metrics import Metrics
from mlmedic.serving.releases.link import ReleaseLink
from mlmedic.serving.requests import error_response, validate_records
from mlmedic.serving.routes import ROUTERS, mlflow_protocol, predictions, v2
from mlmedic.serving.state import ServerState, beating
from mlmedic.store.logstore import FeedbackLog, PredictionLog

log = logging.getLogger("mlmedic.serving")


# ---------------------------------------------------------------------- the app
def create_app(state: ServerState) -> FastAPI:
    """The FastAPI app around one worker's state (the server process builds it with ``build``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.queue = asyncio.Queue()
        if state.release is not None:  # its state changes on this loop from now on
            state.release.bind(asyncio.get_running_loop())
        batcher = asyncio.create_task(state.batcher())
        beats = asyncio.create_task(beating(state.on_beat)) if state.on_beat else None
        watcher = threading.Thread(target=state.watch, name="champion-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            state.stopping.set()
            batcher.cancel()
            if beats is not None:
                beats.cancel()
            state.predictions.close()

    app = FastAPI(title="mlmedic", docs_url=None, redoc_url=None, lifespan=lifespan)
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
                guarded=lambda path: bool(tokens.for_path(path)[0]),
                model_name=state.source.model_name,
            )
            described["key"] = key
        return dict(described["doc"])

    app.openapi = openapi  # type: ignore[method-assign]
    tokens = Tokens(state.api_token, state.metrics_token, frozenset(state.config.open_paths))
    # the scoring paths skip FastAPI's stack; added first, so it runs inside the token guard
    app.add_middleware(
        ScoringLane,
        handlers={
            "/predict": predictions.predict,
            "/invocations": mlflow_protocol.invocations,
        },
        v2_infer=v2.infer,
        errors=app.exception_handlers,
    )
    if tokens.guarding:
        app.add_middleware(TokenGuard, tokens=tokens, on_refused=state.metrics.failed)

    @app.exception_handler(MedicError)
    async def _medic_error(request: Request, exc: MedicError) -> JSONResponse:
        """Every error of mlmedic's tree answers with the status its class carries."""
        state.metrics.failed(exc.status_code, request.url.path)
        return error_response(exc, {"detail": exc.message})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, _: ClientDisconnect) -> Response:
        """A client that leaves mid-request is not an error of the server: a debug line and a
        count (``mlmedic_client_disconnects_total``); the answer goes nowhere."""
        log.debug("client left before the answer: %s %s", request.method, request.url.path)
        state.metrics.client_left(request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        state.metrics.failed(500, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    for router in ROUTERS:
        app.include_router(router)
    return app


def build(
    project_dir: str | Path,
    *,
    poll_registry: bool = False,
    on_model_call: Callable[..., None] | None = None,
    on_beat: Callable[[], None] | None = None,
) -> FastAPI:
    """The app for a project directory (what each server worker runs)."""
    from mlmedic.model.project import Project

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
        metrics_token=os.environ.get("MLMEDIC_METRICS_TOKEN") or None,
        poll_registry=poll_registry,
        on_model_call=on_model_call,
        on_beat=on_beat,
        settings=project.settings,
    )
    state.release = ReleaseLink(
        project.state_dir,
        state.events,
        state.metrics,
        model_name=state.source.model_name,
        error_burst=settings.deployment.error_burst,
        release_log=PredictionLog(
            project.log_location("release"),
            flush_seconds=config.prediction_log_flush_seconds,
        ),
    )
    state.release.refresh()
    state.load_initial()
    return create_app(state)


__all__ = [
    "ApiError",
    "ServerState",
    "build",
    "create_app",
    "is_loopback",
    "model_source",
    "validate_records",
]
