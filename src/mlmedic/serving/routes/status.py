"""The probes and the version: ``GET /health`` (liveness), ``GET /ready`` (a model loaded and
its canary answering), ``GET /model``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlmedic.core.errors import NotReady
from mlmedic.core.jsonvalues import plain
from mlmedic.model.local import ModelLoadError
from mlmedic.serving.state import state_of

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    state = state_of(request)
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


@router.get("/model")
async def model_info(request: Request) -> JSONResponse:
    state = state_of(request)
    model = state.model
    if model is None:
        raise NotReady("no model is loaded yet")
    return JSONResponse(
        {
            "name": state.source.model_name,
            "version": model.version,
            "alias": "champion",
            "trained_at": model.trained_at,
            "metrics": model.metrics,
            "features": model.features,
            "classes": [plain(c) for c in model.classes],
            "loaded_from": model.source,
            "fast_path": model.fast is not None,
            "fallback": state.fallback(),
            "release": _release(state),
        }
    )


def _release(state: Any) -> dict[str, Any] | None:
    """The release this worker follows (#24): the candidate, how it is tried, since when."""
    link = state.release
    release = link.release if link is not None else None
    if release is None:
        return None
    return {
        "version": release.version,
        "mode": release.mode,
        "share": release.share,
        "started_at": release.started_at,
    }
