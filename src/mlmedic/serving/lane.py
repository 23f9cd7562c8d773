"""The scoring lane: ``POST /predict``, ``/invocations`` and the v2 ``infer`` go straight to
their handlers (#22 item 10).

Between uvicorn and a route, FastAPI passes a request through five middlewares, a router that
matches it against every route, and a dependency solver; at 8 connections that was a fifth of a
worker's time for a request whose model call is a fraction of a millisecond. The lane sits inside
the token guard (so authorisation is unchanged) and in front of the rest: it calls the same
handler functions the routers register, and answers their exceptions with the app's own
exception handlers (looked up by the exception's class, as Starlette does), so a request gets
the same answer by either way. Every other request, and any other method on these paths, goes
on to FastAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Any]

V2_MODELS = "/v2/models/"
V2_INFER = "/infer"


class ScoringLane:
    """ASGI middleware: the scoring paths to ``handlers``, the rest to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        handlers: dict[str, Handler],
        v2_infer: Handler,
        errors: dict[Any, ErrorHandler],
    ) -> None:
        self.app = app
        self.handlers = handlers
        self.v2_infer = v2_infer
        self.errors = errors  # the app's exception handlers, by class (read at each error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler, params = self.match(scope["path"])
            if handler is not None:
                scope["path_params"] = params
                request = Request(scope, receive)
                try:
                    response = await handler(request)
                except Exception as exc:
                    response = await self._answer(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def match(self, path: str) -> tuple[Handler | None, dict[str, str]]:
        """The handler for a POST to ``path`` and its path parameters (None: not a scoring
        path). A segment is what Starlette's ``{name}`` matches: one or more characters but
        ``/``."""
        handler = self.handlers.get(path)
        if handler is not None:
            return handler, {}
        if path.startswith(V2_MODELS) and path.endswith(V2_INFER):
            parts = path[len(V2_MODELS) : -len(V2_INFER)].split("/")
            if len(parts) == 1 and parts[0]:
                return self.v2_infer, {"name": parts[0]}
            if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
                return self.v2_infer, {"name": parts[0], "version": parts[2]}
        return None, {}

    async def _answer(self, request: Request, exc: Exception) -> Response:
        for kind in type(exc).__mro__:
            handler = self.errors.get(kind)
            if handler is not None:
                return await handler(request, exc)
        raise exc  # pragma: no cover - the app registers a handler for Exception
