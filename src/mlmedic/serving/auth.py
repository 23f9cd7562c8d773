"""Who may call what: ``/predict``, ``/feedback``, ``/dashboard`` and ``/metrics`` need the bearer
token ``MLMEDIC_API_TOKEN`` when it is set; ``/admin/*`` is off unless ``MLMEDIC_ADMIN_TOKEN`` is
set, and then needs it. Tokens are compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request

from mlmedic.errors import Forbidden, Unauthorized


def authorise_api(request: Request, token: str | None) -> None:
    """``/predict``, ``/feedback`` and ``/metrics`` need the bearer token when one is set."""
    if token:
        check_bearer(request, token, "MLMEDIC_API_TOKEN")


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
    check_bearer(request, token, "MLMEDIC_ADMIN_TOKEN")


def check_bearer(request: Request, token: str, variable: str) -> None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthorized(f"missing bearer token (this endpoint requires {variable})")
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise Forbidden("wrong token")
