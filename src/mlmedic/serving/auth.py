"""Who may call what. With ``MLMEDIC_API_TOKEN`` set, every endpoint needs it as a bearer token
except the open paths (``serving.open_paths``: ``/health`` and ``/ready`` by default, what a
load balancer or the kubelet probes) — ``/predict``, ``/feedback``, ``/model``, ``/dashboard``,
``/metrics``, ``/openapi.json``, ``/docs`` and ``/redoc`` alike. ``MLMEDIC_METRICS_TOKEN``, when
set, is also accepted on ``/metrics`` (a scraper's token that cannot predict). ``/admin/*`` is off
unless ``MLMEDIC_ADMIN_TOKEN`` is set, and then needs that token. Tokens are compared in constant
time."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mlmedic.core.errors import ApiError, Forbidden, Unauthorized

METRICS_PATH = "/metrics"
ADMIN_PREFIX = "/admin/"


def is_loopback(host: str) -> bool:
    """Does binding ``host`` keep the server on this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorise_admin(request: Request, token: str | None) -> None:
    """``/admin/*``: disabled unless ``MLMEDIC_ADMIN_TOKEN`` is set."""
    if not token:
        raise Forbidden("admin endpoints are disabled: set MLMEDIC_ADMIN_TOKEN")
    check_bearer(request.headers.get("authorization", ""), [token], "MLMEDIC_ADMIN_TOKEN")


def check_bearer(header: str, tokens: Sequence[str], variable: str) -> None:
    """The ``Authorization`` header must carry one of ``tokens`` as a bearer token."""
    if not header.lower().startswith("bearer "):
        raise Unauthorized(f"missing bearer token (this endpoint requires {variable})")
    given = header[7:].strip().encode()
    # every token is compared, so the time taken does not say which one came close
    matched = [hmac.compare_digest(given, token.encode()) for token in tokens]
    if not any(matched):
        raise Forbidden("wrong token")


@dataclass(frozen=True)
class Tokens:
    """Which token opens which path: see the module docstring."""

    api_token: str | None
    metrics_token: str | None
    open_paths: frozenset[str]

    @property
    def guarding(self) -> bool:
        return bool(self.api_token or self.metrics_token)

    def for_path(self, path: str) -> tuple[list[str], str]:
        """The tokens that open ``path`` (none: it is open), and how to name them."""
        if path in self.open_paths or path.startswith(ADMIN_PREFIX):
            return [], ""
        if path == METRICS_PATH:
            tokens = [t for t in (self.api_token, self.metrics_token) if t]
            return tokens, "MLMEDIC_API_TOKEN or MLMEDIC_METRICS_TOKEN"
        return ([self.api_token] if self.api_token else []), "MLMEDIC_API_TOKEN"


class TokenGuard:
    """ASGI middleware: the bearer token on every path ``tokens`` guards. A refusal is one JSON
    line, 401 with ``WWW-Authenticate: Bearer`` or 403, counted by ``on_refused(status, path)``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Tokens,
        on_refused: Callable[[int, str], None] | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            tokens, variable = self.tokens.for_path(scope["path"])
            if tokens:
                header = _header(scope, b"authorization")
                try:
                    check_bearer(header, tokens, variable)
                except ApiError as refused:
                    if self.on_refused is not None:
                        self.on_refused(refused.status_code, scope["path"])
                    extra = {"www-authenticate": "Bearer"} if refused.status_code == 401 else {}
                    answer = JSONResponse(
                        {"detail": refused.detail}, refused.status_code, headers=extra
                    )
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    headers: Any = scope.get("headers") or []
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""
