"""The web page (``GET /``), the model page (``GET /model``) and offline API docs (``/docs``, ``/redoc``).

Plain HTML, CSS and JavaScript modules shipped in this package (``app/ui/static``, package data): no build
step and nothing from the internet. The pages load their scripts and styles from ``/static/ui`` under a
Content-Security-Policy that allows this origin only. Swagger UI and ReDoc come from the ``fastapi-offline``
package's files, served from ``/static/docs``; their pages are FastAPI's own, pointed at those files (no
CDN, no Google Fonts, no Swagger validator badge, ReDoc's CDN logo pointed at nothing).
"""

from __future__ import annotations

import functools
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["STATIC_DIR", "install_ui"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# The pages' own policy: scripts, styles, fetches and media from this origin; images also as data: URLs,
# recordings and uploads as blob: URLs (audio playback).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
            "frame-ancestors 'none'; form-action 'self'")
_PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class _Revalidated(StaticFiles):
    """Static files the browser revalidates on each load (ETag), so a new version's scripts are used."""

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200):
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The review page: upload or record, spectrogram, heat map, table, playback, downloads."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


@router.get("/model")
async def model_page() -> FileResponse:
    """The served model's page: card, labels, metrics and their validation, training curves, license."""
    return FileResponse(STATIC_DIR / "model.html", media_type="text/html", headers=_PAGE_HEADERS)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}", swagger_js_url=f"{root}/static/docs/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/static/docs/swagger-ui.css", swagger_favicon_url=f"{root}/static/ui/favicon.svg",
        swagger_ui_parameters={**(request.app.swagger_ui_parameters or {}), "validatorUrl": None})


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - ReDoc",
                          redoc_js_url=f"{root}/static/docs/redoc.standalone.js",
                          redoc_favicon_url=f"{root}/static/ui/favicon.svg", with_google_fonts=False)


@functools.cache
def _redoc_js() -> bytes:
    # ReDoc's sidebar shows a logo from its CDN (hidden when it fails to load): point it at nothing, so the
    # docs make no request outside this service.
    text = (DOCS_ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    return text.replace(REDOC_CDN_LOGO, "data:,").encode("utf-8")


@router.get("/static/docs/redoc.standalone.js")
async def redoc_js() -> Response:
    """fastapi-offline's ReDoc bundle without its one CDN reference (served before the static mount)."""
    return Response(_redoc_js(), media_type="text/javascript",
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def install_ui(app: FastAPI) -> None:
    """Add the pages, the offline docs and their static files to ``app`` (built with docs_url=None)."""
    app.include_router(router)
    app.mount("/static/ui", _Revalidated(directory=STATIC_DIR), name="ui-static")
    app.mount("/static/docs", _Revalidated(directory=DOCS_ASSETS), name="docs-static")
