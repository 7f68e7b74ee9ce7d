"""``GET /v1/models`` and ``GET /v1/models/{version}``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from model_store import StoreError, StoreErrorCode

from ...errors import ApiError
from ...schemas import ErrorResponse, ModelRef, ModelsResponse, ModelVersionResponse
from ..deps import ManagerDep, ModelDep

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsResponse, summary="The served model's card and the store's versions",
            responses={503: {"model": ErrorResponse, "description": "No model loaded."}})
async def list_models(model: ModelDep, manager: ManagerDep) -> ModelsResponse:
    production, versions = await asyncio.to_thread(
        lambda: (manager.store.production(manager.name), manager.store.versions(manager.name)))
    return ModelsResponse(served=ModelRef(name=model.name, version=model.version), production_version=production,
                          versions=versions, card=model.card)


@router.get("/{version}", response_model=ModelVersionResponse, summary="One version's card",
            responses={404: {"model": ErrorResponse, "description": "No such version (or its card is invalid)."}})
async def get_model(version: Annotated[int, Path(ge=1, le=1_000_000, description="Version number.",
                                                 examples=[1])],
                    manager: ManagerDep) -> ModelVersionResponse:
    try:
        card, production = await asyncio.to_thread(
            lambda: (manager.store.card(manager.name, version), manager.store.production(manager.name)))
    except StoreError as exc:
        status = 404 if exc.code in (StoreErrorCode.NOT_FOUND, StoreErrorCode.BAD_CARD) else 500
        raise ApiError(status, str(exc.code), exc.message) from None
    served = manager.current
    return ModelVersionResponse(served=served is not None and served.version == version,
                                production=production == version, card=card)
