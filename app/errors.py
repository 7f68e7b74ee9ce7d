"""Every error the service returns is JSON ``{"error": code, "detail": message}``.

``code`` is stable and machine-readable (audio errors reuse :class:`soundscape.audio.AudioErrorCode`);
``detail`` is for people. Handlers cover the service's own :class:`ApiError`, audio errors, FastAPI's
validation errors (422) and Starlette's HTTP errors (404, 405, ...); a client that disconnected gets nothing
(counted as 499, logged at INFO); anything unexpected is logged and answered 500 ``internal_error`` without
internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from soundscape.audio import AudioError, AudioErrorCode

__all__ = ["CLIENT_CLOSED_REQUEST", "ApiError", "audio_error", "install_error_handlers"]

log = logging.getLogger(__name__)

# nginx's status for "the client closed the connection before the answer": nothing is sent, only counted.
CLIENT_CLOSED_REQUEST = 499

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answer: HTTP ``status``, stable ``code``, human ``detail`` and optional headers."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def audio_error(exc: AudioError) -> ApiError:
    """The HTTP answer to an audio error: 413 for an over-long recording, 400 for the rest."""
    status = 413 if exc.code == AudioErrorCode.TOO_LONG else 400
    return ApiError(status, str(exc.code), exc.message)


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def _respond(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, detail), status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _respond(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(AudioError)
    async def _audio_error(_: Request, exc: AudioError) -> JSONResponse:
        err = audio_error(exc)
        return _respond(err.status, err.code, err.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _respond(422, "invalid_request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _respond(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        # An ordinary network drop, not a server error: no traceback, counted as 499 by the metrics.
        log.info("client went away during %s %s", request.method, request.url.path)
        request.app.state.metrics.disconnects.inc()
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(500, "internal_error", "internal server error; see the service log")
