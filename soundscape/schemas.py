"""The result schemas shared by the service and batch analysis: ``DetectionBase`` -> ``WindowResult`` ->
``PredictResponse``, and the batch and error envelopes.

They live in the shared core so the renderers (:mod:`soundscape.render`) build the service's JSON for
``soundscape analyze`` too, without the core importing the app; :mod:`app.schemas` re-exports them, so the
OpenAPI document (component names, descriptions, examples) is unchanged. pydantic only, no FastAPI.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from soundscape.postprocess import PostprocessReport

__all__ = [
    "AudioSummary",
    "BatchItem",
    "BatchResponse",
    "DetectionBase",
    "ErrorResponse",
    "ModelRef",
    "PostprocessReport",
    "PredictResponse",
    "Timings",
    "WindowResult",
]

_PROBS_EXAMPLE = {"coptri": 0.91, "palwhi": 0.07}  # species of the bundled model


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: str = Field(..., description="Stable machine-readable error code.", examples=["corrupt_audio"])
    detail: str = Field(..., description="What went wrong, for a person.",
                        examples=["upload.ogg: cannot open as audio (Format not recognised)"])


class ModelRef(BaseModel):
    """Which model produced a result."""

    name: str = Field(..., description="Model name in the store.", examples=["birds"])
    version: int = Field(..., ge=1, description="Model version in the store.", examples=[3])


class AudioSummary(BaseModel):
    """Facts about the uploaded recording."""

    duration_s: float = Field(..., ge=0, description="Duration of the recording in seconds.", examples=[60.0])
    sample_rate: int = Field(..., description="Sample rate stored in the file, in Hz.", examples=[48000])
    channels: int = Field(..., ge=1, description="Channels in the file (mixed to mono for the model).",
                          examples=[2])
    windows: int = Field(..., ge=0, description="Number of analysis windows.", examples=[12])


class Timings(BaseModel):
    """Server-side time spent on the request, in milliseconds."""

    decode_ms: float = Field(..., ge=0, description="Decoding and resampling the audio.", examples=[31.2])
    frontend_ms: float = Field(..., ge=0, description="Cutting windows and computing log-mel images.",
                               examples=[38.5])
    model_ms: float = Field(..., ge=0, description="Waiting for and running the model (batched with others).",
                            examples=[92.0])
    total_ms: float = Field(..., ge=0, description="From the upload received to the response built.",
                            examples=[165.3])


class DetectionBase(BaseModel):
    """Per-species probabilities, after the request's species/threshold/top_k filters."""

    probabilities: dict[str, float] = Field(
        ..., description="Species code -> presence probability in [0, 1].", examples=[_PROBS_EXAMPLE])


class WindowResult(DetectionBase):
    """One analysis window of the recording."""

    start_s: float = Field(..., ge=0, description="Window start, seconds from the file start.", examples=[55.0])
    end_s: float = Field(..., gt=0, description="Window end (start + window length), in seconds.",
                         examples=[60.0])
    row_id: str = Field(..., description="BirdCLEF row id: `<file stem>_<int(end_s)>`.",
                        examples=["soundscape_0001_60"])


class PredictResponse(BaseModel):
    """Per-window species probabilities for one recording."""

    model: ModelRef = Field(..., description="The model that produced these results.")
    postprocess: PostprocessReport = Field(
        ..., description="The model card's temporal smoothing and whether it was applied to these "
        "probabilities (before the filters and the summary).")
    audio: AudioSummary = Field(..., description="Facts about the recording.")
    windows: list[WindowResult] = Field(..., description="One entry per analysis window, in time order.")
    summary: dict[str, float] = Field(
        ..., description="Species code -> highest probability over all windows (same filters as the windows).",
        examples=[_PROBS_EXAMPLE])
    timings: Timings = Field(..., description="Server-side timings.")


class BatchItem(BaseModel):
    """The outcome for one file of a batch request: a result or an error."""

    filename: str = Field(..., description="The file's name as sent (sanitised; used only in row ids).",
                          examples=["soundscape_0001.ogg"])
    status: int = Field(..., description="HTTP status this file alone would have got.", examples=[200])
    result: PredictResponse | None = Field(None, description="The prediction, when status is 200.")
    error: ErrorResponse | None = Field(None, description="Why the file failed, when status is not 200.")


class BatchResponse(BaseModel):
    """Results of a batch request, in upload order."""

    model: ModelRef = Field(..., description="The model that produced every result of this request.")
    results: list[BatchItem] = Field(..., description="One entry per uploaded file, in upload order.")
