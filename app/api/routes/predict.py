"""``POST /v1/predict`` and ``POST /v1/predict/batch``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from ...schemas import BatchResponse, ErrorResponse, PredictResponse
from ...service import PredictOptions
from ..deps import ModelDep, PredictorDep

router = APIRouter(prefix="/v1", tags=["predict"])

_AUDIO_SCHEMA = {"type": "string", "format": "binary"}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "The recording: multipart field `file`, or the raw file as the body with an audio/* "
                       "content type (WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3).",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {**_AUDIO_SCHEMA, "description": "The audio file."}}},
            },
            "audio/*": {"schema": {**_AUDIO_SCHEMA, "description": "The audio file as the raw body."}},
            "application/octet-stream": {"schema": {**_AUDIO_SCHEMA, "description": "The raw audio file."}},
        },
    }
}
_BATCH_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "Several recordings, each in a multipart field named `files` (or `file`).",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["files"],
                           "properties": {"files": {"type": "array", "items": _AUDIO_SCHEMA,
                                                    "description": "The audio files."}}},
            },
        },
    }
}
_ERRORS = {
    400: {"model": ErrorResponse, "description": "Unreadable or corrupt audio, or a malformed body."},
    413: {"model": ErrorResponse, "description": "Upload bytes, audio duration or file count over the limits."},
    415: {"model": ErrorResponse, "description": "The body is not audio."},
    422: {"model": ErrorResponse, "description": "Invalid query options."},
    503: {"model": ErrorResponse, "description": "No model loaded, or the service is full (see Retry-After)."},
}

HopQuery = Annotated[float | None, Query(
    gt=0, le=60, description="Step between window starts in seconds (default: the model's window, 5 s). "
    "Smaller than the window gives overlapping windows. A card's smoothing applies when the card's hop is a "
    "whole multiple of it (the answer's `postprocess` says).", examples=[2.5])]
ThresholdQuery = Annotated[float | None, Query(
    ge=0, le=1, description="Only report probabilities >= this (JSON only).", examples=[0.5])]
TopKQuery = Annotated[int | None, Query(
    ge=1, le=10_000, description="Only report the k most probable species per window (JSON only).", examples=[3])]
SpeciesQuery = Annotated[list[str] | None, Query(
    description="Restrict results to these species codes; repeat the parameter or use a comma list.",
    examples=[["amered", "comrav"]])]
FormatQuery = Annotated[Literal["json", "csv"], Query(
    description="`json` (PredictResponse) or `csv` (BirdCLEF submission rows).", examples=["json"])]


def _options(hop_s: float | None, threshold: float | None, top_k: int | None, species: list[str] | None,
             fmt: Literal["json", "csv"] = "json") -> PredictOptions:
    return PredictOptions(hop_s=hop_s, threshold=threshold, top_k=top_k,
                          species=PredictOptions.parse_species(species), format=fmt)


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Species probabilities for every window of one recording",
    responses={**_ERRORS, 200: {"description": "Per-window probabilities (JSON), or CSV rows with format=csv.",
                                "content": {"text/csv": {"schema": {"type": "string"}}}}},
    openapi_extra=_BODY_DOC,
)
async def predict(request: Request, model: ModelDep, predictor: PredictorDep, hop_s: HopQuery = None,
                  threshold: ThresholdQuery = None, top_k: TopKQuery = None, species: SpeciesQuery = None,
                  format: FormatQuery = "json") -> PredictResponse | Response:
    opts = _options(hop_s, threshold, top_k, species, format)
    result = await predictor.predict(request, model, opts)
    if isinstance(result, str):
        return Response(result, media_type="text/csv",
                        headers={"X-Model-Name": model.name, "X-Model-Version": str(model.version),
                                 "X-Postprocess": predictor.postprocess_header(model, opts)})
    return result


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    summary="Several recordings in one request; one result or error each",
    responses=_ERRORS,
    openapi_extra=_BATCH_BODY_DOC,
)
async def predict_batch(request: Request, model: ModelDep, predictor: PredictorDep, hop_s: HopQuery = None,
                        threshold: ThresholdQuery = None, top_k: TopKQuery = None,
                        species: SpeciesQuery = None) -> BatchResponse:
    return await predictor.predict_batch(request, model, _options(hop_s, threshold, top_k, species))
