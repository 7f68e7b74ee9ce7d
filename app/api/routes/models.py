"""``GET /v1/models``, ``GET /v1/models/{version}`` and ``GET /v1/models/{version}/curves``."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path

from model_store import StoreError, StoreErrorCode

from ...errors import ApiError
from ...schemas import ErrorResponse, ModelRef, ModelsResponse, ModelVersionResponse, TrainingCurves
from ..deps import ManagerDep, ModelDep

router = APIRouter(prefix="/v1/models", tags=["models"])

VersionPath = Annotated[int, Path(ge=1, le=1_000_000, description="Version number.", examples=[1])]
CURVES_FILE = "metrics.csv"  # written by training beside each registered version
_MAX_CURVES_BYTES = 4 * 1024 * 1024
_BAD_VERSION = {"model": ErrorResponse, "description": "The version is not an integer from 1 to 1000000."}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def read_curves(path: FilePath) -> dict[str, list[float | None]] | None:
    """A version's ``metrics.csv`` as columns of numbers (None: absent, too large or empty)."""
    if not path.is_file() or path.stat().st_size > _MAX_CURVES_BYTES:
        return None
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"))))
    if not rows:
        return None
    return {col: [_number(r.get(col) or "") for r in rows] for col in rows[0] if col}


@router.get("", response_model=ModelsResponse, summary="The served model's card and the store's versions",
            responses={503: {"model": ErrorResponse, "description": "No model loaded."}})
async def list_models(model: ModelDep, manager: ManagerDep) -> ModelsResponse:
    production, versions = await asyncio.to_thread(
        lambda: (manager.store.production(manager.name), manager.store.versions(manager.name)))
    return ModelsResponse(served=ModelRef(name=model.name, version=model.version), production_version=production,
                          versions=versions, card=model.card)


@router.get("/{version}", response_model=ModelVersionResponse, summary="One version's card",
            responses={404: {"model": ErrorResponse, "description": "No such version (or its card is invalid)."},
                       422: _BAD_VERSION})
async def get_model(version: VersionPath, manager: ManagerDep) -> ModelVersionResponse:
    try:
        card, production = await asyncio.to_thread(
            lambda: (manager.store.card(manager.name, version), manager.store.production(manager.name)))
    except StoreError as exc:
        status = 404 if exc.code in (StoreErrorCode.NOT_FOUND, StoreErrorCode.BAD_CARD) else 500
        raise ApiError(status, str(exc.code), exc.message) from None
    served = manager.current
    return ModelVersionResponse(served=served is not None and served.version == version,
                                production=production == version, card=card)


@router.get("/{version}/curves", response_model=TrainingCurves, summary="One version's training curves",
            responses={404: {"model": ErrorResponse, "description": "No such version, or it keeps no "
                                                                    "metrics.csv (e.g. an imported model)."},
                       422: _BAD_VERSION})
async def get_curves(version: VersionPath, manager: ManagerDep) -> TrainingCurves:
    folder = manager.store.version_dir(manager.name, version)
    if not folder.is_dir():
        raise ApiError(404, str(StoreErrorCode.NOT_FOUND), f"{manager.name} v{version} is not in the store")
    series = await asyncio.to_thread(read_curves, folder / CURVES_FILE)
    if series is None:
        raise ApiError(404, "no_curves", f"{manager.name} v{version} keeps no training curves ({CURVES_FILE})")
    x = "epoch" if "epoch" in series else next(iter(series))
    return TrainingCurves(name=manager.name, version=version, x=x, series=series)
