"""``POST /v1/predict`` and ``POST /v1/predict/batch``: the same options and formats on both.

The options are :mod:`soundscape.options`' (names, bounds and rules shared with ``soundscape analyze``); a
query option the routes do not know answers 422 ``invalid_option`` (a typo such as ``min_conf`` would
otherwise be silently ignored).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from soundscape.options import (
    HOP_DOC,
    MAX_HOP_S,
    MAX_TOP_K,
    MIN_HOP_S,
    SPECIES_DOC,
    THRESHOLD_DOC,
    TOP_K_DOC,
    ResultOptions,
)

from ...errors import ApiError
from ...schemas import BatchResponse, ErrorResponse, PredictResponse
from ..deps import ModelDep, PredictorDep

router = APIRouter(prefix="/v1", tags=["predict"])

_AUDIO_SCHEMA = {"type": "string", "format": "binary"}
BODY_DOC = {
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
ERRORS = {
    400: {"model": ErrorResponse, "description": "Unreadable or corrupt audio, or a malformed body."},
    413: {"model": ErrorResponse, "description": "Upload bytes, audio duration or file count over the limits."},
    415: {"model": ErrorResponse, "description": "The body is not audio."},
    422: {"model": ErrorResponse, "description": "Invalid query options."},
    503: {"model": ErrorResponse, "description": "No model loaded, or the service is full (see Retry-After)."},
}

QUERY_OPTIONS = ("hop_s", "threshold", "top_k", "species", "format")
# Names people bring from elsewhere (``soundscape analyze``'s old flag), with what they mean here.
_SUGGEST = {"min_conf": "threshold", "min-conf": "threshold", "hop": "hop_s", "hop-s": "hop_s", "top-k": "top_k",
            "topk": "top_k", "k": "top_k", "fmt": "format"}

HopQuery = Annotated[float | None, Query(ge=MIN_HOP_S, le=MAX_HOP_S, description=HOP_DOC, examples=[2.5])]
ThresholdQuery = Annotated[float | None, Query(ge=0, le=1, description=THRESHOLD_DOC, examples=[0.5])]
TopKQuery = Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description=TOP_K_DOC, examples=[3])]
SpeciesQuery = Annotated[list[str] | None, Query(description=SPECIES_DOC, examples=[["coptri", "Pale Whistler"]])]
FormatQuery = Annotated[Literal["json", "csv", "detections", "raven", "audacity", "kaleidoscope"], Query(
    description="`json` (PredictResponse, or BatchResponse for a batch); `csv`: BirdCLEF submission rows (a header "
    "`row_id,<code>,...`, one row per window, every requested species, no threshold); the tables of `soundscape "
    "analyze` (threshold/top_k/species applied, model name and version in every row): `detections` (CSV, one row "
    "per window and species kept), `raven` (Raven Pro selection table: `Begin Path` is the upload's file name, "
    "`File Offset (s)` the window's start), `audacity` (label track: one recording, so not for a batch), "
    "`kaleidoscope` (Kaleidoscope-compatible CSV). A batch's files come one after the other under one header "
    "(Raven: on one timeline, selections numbered on).",
    examples=["json"])]


def check_query(request: Request, allowed: tuple[str, ...]) -> None:
    """422 ``invalid_option`` for a query option that is not in ``allowed`` (with a hint for known typos)."""
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in allowed]
    if unknown:
        hints = [f"{k!r} (did you mean {_SUGGEST[k]!r}?)" if k in _SUGGEST else repr(k) for k in unknown]
        raise ApiError(422, "invalid_option", f"unknown query option(s) {', '.join(hints)}; the options are "
                                              f"{', '.join(allowed)}")


def result_options(request: Request, hop_s: HopQuery = None, threshold: ThresholdQuery = None,
                   top_k: TopKQuery = None, species: SpeciesQuery = None) -> ResultOptions:
    """The request's :class:`ResultOptions`; 422 ``invalid_option`` for a query option the routes do not take."""
    check_query(request, QUERY_OPTIONS)
    return ResultOptions(hop_s=hop_s, threshold=threshold, top_k=top_k, species=species)


OptionsDep = Annotated[ResultOptions, Depends(result_options)]


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Species probabilities for every window of one recording",
    responses={**ERRORS, 200: {"description": "Per-window probabilities (JSON), or the table of `format` (CSV, or "
                                "tab-separated text for raven and audacity).",
                                "content": {"text/csv": {"schema": {"type": "string"}},
                                            "text/plain": {"schema": {"type": "string"}}}}},
    openapi_extra=BODY_DOC,
)
async def predict(request: Request, model: ModelDep, predictor: PredictorDep, opts: OptionsDep,
                  format: FormatQuery = "json") -> PredictResponse | Response:
    return (await predictor.predict(request, model, opts, format)).response()


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    summary="Several recordings in one request; one result or error each",
    responses={**ERRORS, 200: {"description": "One result or error per file (JSON), or the table of `format` of "
                                "every file that succeeded (failures in `X-Failed-Files`).",
                                "content": {"text/csv": {"schema": {"type": "string"}},
                                            "text/plain": {"schema": {"type": "string"}}}}},
    openapi_extra=_BATCH_BODY_DOC,
)
async def predict_batch(request: Request, model: ModelDep, predictor: PredictorDep, opts: OptionsDep,
                        format: FormatQuery = "json") -> BatchResponse | Response:
    return (await predictor.predict_batch(request, model, opts, format)).response()
