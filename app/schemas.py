"""Response schemas of API v1, layered: ``DetectionBase`` -> ``WindowResult`` -> ``PredictResponse``.

Every field carries a description and an example, so the OpenAPI document (``/openapi.json``, shown at
``/docs``) is the API reference. The result schemas (a prediction, a batch, an error) are defined in
:mod:`soundscape.schemas`, where the shared renderers build them, and re-exported here; the models below
are the service's own (models, health, reload).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store import Label, ModelCard
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
           "ReloadResponse", "ReviewProgress", "ReviewResponse", "SpectrogramImage", "TrainingCurves"]


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


# -- the web page's endpoints (/v1/review) -----------------------------------------------------------------
class SpectrogramImage(BaseModel):
    """A recording's spectrogram as a PNG, with the axes needed to line it up with the windows."""

    png_base64: str = Field(..., description="8-bit palette PNG (viridis), base64. Column i covers "
                            "[i, i + 1) * seconds_per_column; the top row is the highest frequency.",
                            examples=["iVBORw0KGgoAAAANSUhEUgAA..."])
    width: int = Field(..., ge=1, description="Columns (time).", examples=[3750])
    height: int = Field(..., ge=1, description="Rows (mel bands).", examples=[128])
    seconds_per_column: float = Field(..., gt=0, description="Time step of the columns, in seconds.",
                                      examples=[0.016])
    duration_s: float = Field(..., ge=0, description="Time covered by the image (width * seconds_per_column).",
                              examples=[60.0])
    frequencies_hz: list[float] = Field(..., description="Centre frequency of each row, bottom row first.",
                                        examples=[[62.1, 78.4, 94.6]])
    source: Literal["model_frontend", "display_logmel"] = Field(
        ..., description="model_frontend: the model's own input images (what it saw); display_logmel: the "
        "model takes raw audio, so a default log-mel was computed for display only.",
        examples=["model_frontend"])
    description: str = Field(..., description="The same in words, for people.",
                             examples=["The model's own input: log-mel, 128 bands, 50-14000 Hz, each 5-s window "
                                       "normalised on its own."])


class ReviewResponse(BaseModel):
    """One upload's result and what the page draws, from one pass through the pipeline."""

    result_id: str = Field(..., description="Short-lived id of the result: downloads at "
                           "/v1/review/{result_id}/download.", examples=["q3Jx0n8rYk2c1Zb7Lw4mAa"])
    expires_in_s: float = Field(..., ge=0, description="Seconds the result id stays valid.", examples=[900.0])
    filename: str = Field(..., description="The upload's file name (no path).", examples=["site7.wav"])
    result: core.PredictResponse = Field(..., description="The answer of /v1/predict for the same file and "
                                         "options.")
    labels: list[Label] = Field(..., description="The reported species, in the result's column order, with "
                                "their names.")
    spectrogram: SpectrogramImage = Field(..., description="The spectrogram under the windows.")


class ReviewProgress(BaseModel):
    """How far an upload sent to /v1/review with a progress token has got."""

    stage: Literal["receiving", "analysing", "rendering", "done", "failed"] = Field(
        ..., description="receiving the upload, analysing (decode, front end, model), rendering the answer, "
        "done, or failed.", examples=["analysing"])
    fraction: float = Field(..., ge=0, le=1, description="Share of the windows scored so far.", examples=[0.42])
    windows_done: int = Field(..., ge=0, description="Windows scored so far.", examples=[151])
    windows_total: int | None = Field(..., description="Windows of the recording (known once its header is read).",
                                      examples=[360])
    error: str | None = Field(None, description="The error code when failed.", examples=["corrupt_audio"])


class TrainingCurves(BaseModel):
    """A version's training history: the run's metrics.csv, one value per epoch and column."""

    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(..., description="Model name.", examples=["birds"])
    version: int = Field(..., ge=1, description="Model version.", examples=[1])
    x: str = Field(..., description="The column to plot against.", examples=["epoch"])
    series: dict[str, list[float | None]] = Field(
        ..., description="Each column's values, one per row of metrics.csv (null where not a number).",
        examples=[{"epoch": [1, 2, 3], "train_loss": [0.9, 0.4, 0.37], "macro_roc_auc": [0.58, 0.64, 0.71]}])
