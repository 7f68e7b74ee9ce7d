"""Response schemas of API v1, layered: ``DetectionBase`` -> ``WindowResult`` -> ``PredictResponse``.

Every field carries a description and an example, so the OpenAPI document (``/openapi.json``, shown at
``/docs``) is the API reference. The result schemas (a prediction, a batch, an error) are defined in
:mod:`soundscape.schemas`, where the shared renderers build them, and re-exported here; the models below
are the service's own (models, health, reload).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store import ModelCard
from soundscape import schemas as core

# The result schemas, shared with the renderers, re-exported: the OpenAPI components keep their names.
AudioSummary = core.AudioSummary
BatchItem = core.BatchItem
BatchResponse = core.BatchResponse
DetectionBase = core.DetectionBase
ErrorResponse = core.ErrorResponse
ModelRef = core.ModelRef
PostprocessReport = core.PostprocessReport
PredictResponse = core.PredictResponse
Timings = core.Timings
WindowResult = core.WindowResult

# The shared result schemas, then the service's own.
__all__ = [*core.__all__, "HealthResponse", "ModelVersionResponse", "ModelsResponse", "ReadyResponse",
           "ReloadResponse"]


class ModelsResponse(BaseModel):
    """The model being served and what the store holds."""

    model_config = ConfigDict(protected_namespaces=())

    served: ModelRef = Field(..., description="The model version answering predictions now.")
    production_version: int | None = Field(
        ..., description="The store's production version (differs from served until a reload).", examples=[3])
    versions: list[int] = Field(..., description="All versions registered in the store.", examples=[[1, 2, 3]])
    card: ModelCard = Field(..., description="The served model's card: labels, front end, metrics, version.")


class ModelVersionResponse(BaseModel):
    """One version's card from the store."""

    served: bool = Field(..., description="True when this version answers predictions now.", examples=[True])
    production: bool = Field(..., description="True when this is the store's production version.",
                             examples=[True])
    card: ModelCard = Field(..., description="The version's card.")


class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"] = Field("ok", description="Always 'ok' while the process answers.", examples=["ok"])


class ReadyResponse(BaseModel):
    """Readiness: a model is loaded and warm."""

    status: Literal["ready"] = Field("ready", description="'ready' when predictions can be served.",
                                     examples=["ready"])
    model: ModelRef = Field(..., description="The model being served.")


class ReloadResponse(BaseModel):
    """Outcome of a reload or promotion."""

    previous: ModelRef | None = Field(..., description="The model served before.")
    served: ModelRef = Field(..., description="The model served now.")
    changed: bool = Field(..., description="False when the requested version was already served.",
                          examples=[True])
    load_ms: float = Field(..., ge=0, description="Time to verify, load and warm the new version.",
                           examples=[420.0])
