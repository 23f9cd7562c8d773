"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their scripts, styles and icon served from
this server — the files ship in the ``fastapi-offline`` package — so both work without a
network (#22); FastAPI's defaults load them from a CDN."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter()

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
_cache: dict[str, bytes] = {}
# nothing leaves the page: ReDoc would fetch its "API docs by Redocly" logo from a CDN
POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = POLICY
    return page


def _title(request: Request) -> str:
    return str(request.app.title)


@router.get("/docs", include_in_schema=False)
async def swagger(request: Request) -> HTMLResponse:
    return _offline(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{_title(request)} - Swagger UI",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )
    )


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    return _offline(
        get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{_title(request)} - ReDoc",
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
            with_google_fonts=False,
        )
    )


@router.get("/docs/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    kind = ASSETS.get(name)
    if kind is None:
        return Response(status_code=404)
    if name not in _cache:
        _cache[name] = (files("fastapi_offline") / "static" / name).read_bytes()
    return Response(
        _cache[name], media_type=kind, headers={"cache-control": "public, max-age=86400"}
    )
