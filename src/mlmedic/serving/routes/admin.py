"""``POST /admin/reload``: swap to the champion the registry names now."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlmedic.serving.auth import authorise_admin
from mlmedic.serving.state import state_of

router = APIRouter()


@router.post("/admin/reload")
async def reload(request: Request) -> JSONResponse:
    state = state_of(request)
    authorise_admin(request, state.admin_token)
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
