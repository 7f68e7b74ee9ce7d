"""``GET /healthz``, ``GET /readyz`` and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ...errors import ApiError
from ...metrics import CONTENT_TYPE_LATEST
from ...schemas import ErrorResponse, HealthResponse, ModelRef, ReadyResponse
from ..deps import ManagerDep, MetricsDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness: a model is loaded and warm",
            responses={503: {"model": ErrorResponse, "description": "No model loaded yet (see Retry-After)."}})
async def readyz(manager: ManagerDep, settings: SettingsDep) -> ReadyResponse:
    model = manager.current
    if model is None:
        raise ApiError(503, "no_model", "no model is loaded", headers={"Retry-After": str(settings.retry_after_s)})
    return ReadyResponse(model=ModelRef(name=model.name, version=model.version))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Metrics in the Prometheus text format."}})
async def metrics(m: MetricsDep) -> Response:
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
