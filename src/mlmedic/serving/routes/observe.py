"""What the service shows of the loop: ``GET /dashboard`` (the self-healing dashboard, live)
and ``GET /metrics`` (Prometheus, with the dashboard's gauges). The OpenAPI document and its
pages (``/openapi.json``, ``/docs``, ``/redoc``) are typed from the served version in
``serving.openapi``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from mlmedic.core.errors import MedicError
from mlmedic.serving.state import ServerState, state_of

router = APIRouter()


def board(state: ServerState, *, timelines: bool) -> Any:
    """This project's dashboard as this worker sees it (the model it serves is the serving
    part of the health)."""
    import time as clock

    from mlmedic.views.dashboard import build

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


def render_dashboard(state: ServerState) -> str:
    """The dashboard page (computed in a worker thread, at most every 5 s per worker)."""
    import time as clock

    from mlmedic.views.page import page

    if state.dashboard_cache.get("until", 0.0) > clock.time():
        return str(state.dashboard_cache["html"])
    html = page(board(state, timelines=True), refresh=30)
    state.dashboard_cache.update(html=html, until=clock.time() + 5.0)
    return html


def render_metrics(state: ServerState) -> tuple[str, str]:
    try:
        figures = board(state, timelines=False)
    except MedicError:
        figures = None  # the event store is unreadable: mlmedic_event_store_up says so
    return state.metrics.render(state.events, state.predictions.status(), figures)


@router.get("/dashboard")
async def dashboard(request: Request) -> HTMLResponse:
    """The self-healing dashboard, live (the page refreshes itself every 30 s), read-only."""
    state = state_of(request)
    text = await asyncio.get_running_loop().run_in_executor(None, render_dashboard, state)
    return HTMLResponse(text)


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    state = state_of(request)
    text, content_type = await asyncio.get_running_loop().run_in_executor(
        None, render_metrics, state
    )
    return PlainTextResponse(text, media_type=content_type)
