"""``POST /feedback``: true labels for served predictions, by the request ids this server
issued."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlmedic.core.errors import InvalidRequest, NotReady
from mlmedic.serving.requests import REQUEST_ID, json_body
from mlmedic.serving.state import state_of

router = APIRouter()


@router.post("/feedback")
async def feedback(request: Request) -> JSONResponse:
    state = state_of(request)
    body = await json_body(request, state.config.max_body_bytes)
    items = body.get("labels") if isinstance(body, dict) and "labels" in body else [body]
    if not isinstance(items, list) or not items:
        raise InvalidRequest('expected {"request_id": ..., "label": ...} or {"labels": [...]}')
    if isinstance(body, dict) and "labels" in body and len(body) > 1:
        other = sorted(k for k in body if k != "labels")[0]
        raise InvalidRequest(f"unknown field '{other}' beside 'labels'")
    model = state.model
    if model is None:
        raise NotReady("no model is loaded yet")
    rows: list[dict[str, str]] = []
    for position, item in enumerate(items):
        where = f"labels[{position}]"
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise InvalidRequest(f"{where}: needs 'request_id' and 'label'")
        if len(item) > 2:
            other = sorted(k for k in item if k not in ("request_id", "label"))[0]
            raise InvalidRequest(f"{where}: unknown field '{other}'")
        request_id = item["request_id"]
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise InvalidRequest(f"{where}.request_id: not a request id this server issues")
        try:  # in the form the model answers: one of its classes, or a number
            label = model.task.feedback(item["label"], model.classes)
        except ValueError as exc:
            raise InvalidRequest(f"{where}.label: {exc}") from None
        rows.append({"request_id": request_id, "label": label})
    loop = asyncio.get_running_loop()
    written = await loop.run_in_executor(None, state.feedback.write, rows)
    unknown = await loop.run_in_executor(
        None, state.predictions.unknown_ids, [row["request_id"] for row in rows]
    )
    answer: dict[str, Any] = {"recorded": written}
    if unknown:
        answer["unknown_request_ids"] = {"count": len(unknown), "examples": unknown[:5]}
    return JSONResponse(answer)
