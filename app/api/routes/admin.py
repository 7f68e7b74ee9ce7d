"""``POST /v1/admin/reload`` and ``POST /v1/admin/promote/{version}`` (bearer token; 404 when disabled)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Request

from ...errors import ApiError
from ...model_manager import ModelLoadError, ServedModel
from ...schemas import ErrorResponse, ModelRef, ReloadResponse
from ..deps import AdminDep, ManagerDep, SettingsDep

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorResponse, "description": "Admin disabled (no token configured), or no such version."},
    409: {"model": ErrorResponse, "description": "The version was refused (checksum, load or warm-up failed); "
                                                 "the previous model keeps serving."},
}
_PROMOTE_ERRORS = {**_ERRORS, 422: {"model": ErrorResponse,
                                    "description": "The version is not an integer from 1 to 1000000."}}


def _ref(model: ServedModel | None) -> ModelRef | None:
    return ModelRef(name=model.name, version=model.version) if model else None


def _refused(exc: ModelLoadError) -> ApiError:
    status = 404 if exc.code == "model_not_found" else 409
    return ApiError(status, exc.code, f"refused; the previous model keeps serving: {exc.message}")


@router.post("/reload", response_model=ReloadResponse, responses=_ERRORS,
             summary="Serve the store's production version (load + warm beside the old one, then swap)")
async def reload(_: AdminDep, manager: ManagerDep) -> ReloadResponse:
    try:
        previous, served = await manager.reload()
    except ModelLoadError as exc:
        raise _refused(exc) from None
    return ReloadResponse(previous=_ref(previous), served=_ref(served), changed=previous is not served,
                          load_ms=round(served.load_s * 1000, 1) if previous is not served else 0.0)


@router.post("/promote/{version}", response_model=ReloadResponse, responses=_PROMOTE_ERRORS,
             summary="Verify and warm a version, mark it production, then serve it")
async def promote(version: Annotated[int, Path(ge=1, le=1_000_000, description="Version to promote.",
                                               examples=[2])],
                  _: AdminDep, manager: ManagerDep) -> ReloadResponse:
    try:
        previous, served = await manager.promote(version)
    except ModelLoadError as exc:
        raise _refused(exc) from None
    return ReloadResponse(previous=_ref(previous), served=_ref(served), changed=previous is not served,
                          load_ms=round(served.load_s * 1000, 1) if previous is not served else 0.0)


_ROUTES = re.compile(r"reload|promote/[^/]+")


@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)
async def other_methods(request: Request, rest: str, settings: SettingsDep) -> None:
    """Admin disabled: 404 for every method (the endpoints do not exist); enabled: 405 for the admin routes'
    other methods, 404 for other paths."""
    if settings.admin_enabled and request.method != "POST" and _ROUTES.fullmatch(rest):
        raise ApiError(405, "method_not_allowed", "Method Not Allowed", headers={"Allow": "POST"})
    raise ApiError(404, "not_found", "admin endpoints are disabled (no admin token configured)"
                   if not settings.admin_enabled else "Not Found")
