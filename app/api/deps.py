"""Typed dependencies that routes take as parameters (``SettingsDep``, ``ModelDep``, ...)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..core.config import Settings, get_settings
from ..errors import ApiError
from ..metrics import Metrics
from ..model_manager import ModelManager, ServedModel
from ..review import Reviewer
from ..service import Predictor

__all__ = ["AdminDep", "ManagerDep", "MetricsDep", "ModelDep", "PredictorDep", "ReviewerDep", "SettingsDep"]

SettingsDep = Annotated[Settings, Depends(get_settings)]


def _manager(request: Request) -> ModelManager:
    return request.app.state.models


def _predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _reviewer(request: Request) -> Reviewer:
    return request.app.state.reviewer


ManagerDep = Annotated[ModelManager, Depends(_manager)]
PredictorDep = Annotated[Predictor, Depends(_predictor)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
ReviewerDep = Annotated[Reviewer, Depends(_reviewer)]


async def _model(manager: ManagerDep, settings: SettingsDep) -> AsyncIterator[ServedModel]:
    """A lease on the served model for the whole request (a reload cannot close it under us)."""
    try:
        lease = manager.lease()
        model = await lease.__aenter__()
    except LookupError:
        raise ApiError(503, "no_model", "no model is loaded yet",
                       headers={"Retry-After": str(settings.retry_after_s)}) from None
    try:
        yield model
    finally:
        await lease.__aexit__(None, None, None)


ModelDep = Annotated[ServedModel, Depends(_model)]

_bearer = HTTPBearer(auto_error=False, description="The admin token (SOUNDSCAPE_ADMIN_TOKEN).")


def _admin(settings: SettingsDep,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Admin guard: 404 when no token is configured (the endpoints do not exist), 401 on a bad token."""
    if settings.admin_token is None:
        raise ApiError(404, "not_found", "admin endpoints are disabled (no admin token configured)")
    expected = settings.admin_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, expected):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token",
                       headers={"WWW-Authenticate": "Bearer"})


AdminDep = Annotated[None, Depends(_admin)]
