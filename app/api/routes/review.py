"""``/v1/review``: what the web page (``GET /``) needs, documented like every endpoint.

``POST /v1/review`` takes an upload exactly as ``POST /v1/predict`` does (same body, limits, options and
error codes) and answers, from one pass through the pipeline, the same result plus the spectrogram the page
draws and a short-lived result id; ``GET /v1/review/{result_id}/download`` renders that result in the formats
of ``soundscape analyze`` (the same renderers); ``GET /v1/review/progress/{token}`` reports a long upload's
progress while it runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from soundscape.options import ResultOptions

from ...errors import ApiError
from ...schemas import ErrorResponse, ReviewProgress, ReviewResponse
from ..deps import ModelDep, ReviewerDep
from .predict import BODY_DOC, ERRORS, HopQuery, SpeciesQuery, ThresholdQuery, TopKQuery, check_query

router = APIRouter(prefix="/v1/review", tags=["review"])

REVIEW_OPTIONS = ("hop_s", "threshold", "top_k", "species", "progress")
DOWNLOAD_OPTIONS = ("format", "threshold", "top_k", "species")
_PROGRESS_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_RESULT_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
_PROGRESS_EXAMPLE = "9b2f6c1e-4d7a-4f0e-8a31-5c2d7e9f0b14"

ProgressQuery = Annotated[str | None, Query(
    pattern=_PROGRESS_PATTERN, description="A token the client makes up (8-64 of A-Z a-z 0-9 _ -): while the "
    "upload runs, GET /v1/review/progress/{token} says how far it has got.", examples=[_PROGRESS_EXAMPLE])]
TokenPath = Annotated[str, Path(pattern=_PROGRESS_PATTERN, description="The upload's progress token.",
                                examples=[_PROGRESS_EXAMPLE])]
ResultIdPath = Annotated[str, Path(pattern=_RESULT_ID_PATTERN, description="The id from POST /v1/review.",
                                   examples=["q3Jx0n8rYk2c1Zb7Lw4mAa"])]
DownloadFormat = Annotated[Literal["birdclef", "csv", "raven", "audacity", "kaleidoscope", "json"], Query(
    description="soundscape analyze's format names: `birdclef` (BirdCLEF rows, every window and species: the "
    "same bytes as /v1/predict?format=csv), `csv` (detections: one row per window and species kept), `raven` "
    "(Raven Pro selection table), `audacity` (label track), `kaleidoscope` (Kaleidoscope-compatible CSV), "
    "`json` (the /v1/predict answer, without timings). threshold/top_k/species filter all but `birdclef` "
    "(species: that one too).", examples=["raven"])]


def review_options(request: Request, hop_s: HopQuery = None, threshold: ThresholdQuery = None,
                   top_k: TopKQuery = None, species: SpeciesQuery = None) -> ResultOptions:
    check_query(request, REVIEW_OPTIONS)
    return ResultOptions(hop_s=hop_s, threshold=threshold, top_k=top_k, species=species)


def download_options(request: Request, threshold: ThresholdQuery = None, top_k: TopKQuery = None,
                     species: SpeciesQuery = None) -> ResultOptions:
    check_query(request, DOWNLOAD_OPTIONS)
    return ResultOptions(threshold=threshold, top_k=top_k, species=species)


@router.post(
    "",
    response_model=ReviewResponse,
    summary="One recording's result, spectrogram and a short-lived result id (the web page's call)",
    description="The same upload, options, limits and errors as `POST /v1/predict`; `result` is its JSON "
                "answer. The spectrogram comes from the chunks of model inputs the pipeline made anyway (a "
                "waveform model's from a default log-mel, said in `spectrogram.source`).",
    responses={**ERRORS, 200: {"description": "The result, its spectrogram and the result id."}},
    openapi_extra=BODY_DOC,
)
async def review(request: Request, model: ModelDep, reviewer: ReviewerDep,
                 opts: Annotated[ResultOptions, Depends(review_options)],
                 progress: ProgressQuery = None) -> ReviewResponse:
    return await reviewer.review(request, model, opts, progress)


@router.get(
    "/progress/{token}",
    response_model=ReviewProgress,
    summary="How far an upload sent with ?progress=token has got",
    responses={404: {"model": ErrorResponse, "description": "No upload with this token (yet, or any more)."},
               422: {"model": ErrorResponse, "description": "A token that is not 8-64 of A-Z a-z 0-9 _ -."}},
)
async def review_progress(token: TokenPath, reviewer: ReviewerDep) -> ReviewProgress:
    found = reviewer.progress.get(token)
    if found is None:
        raise ApiError(404, "progress_not_found", "no upload with this progress token (yet, or any more)")
    return found


@router.get(
    "/{result_id}/download",
    summary="A reviewed result as BirdCLEF CSV, detections CSV, Raven, Audacity, Kaleidoscope or JSON",
    response_class=Response,
    responses={
        200: {"description": "The file, as an attachment (the renderers of `soundscape analyze`).",
              "content": {"text/csv": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}},
                          "application/json": {"schema": {"type": "object"}}}},
        404: {"model": ErrorResponse, "description": "No such result id, or it has expired."},
        422: {"model": ErrorResponse, "description": "Invalid options (or species the model does not know)."},
    },
)
async def download(result_id: ResultIdPath, reviewer: ReviewerDep,
                   opts: Annotated[ResultOptions, Depends(download_options)],
                   format: DownloadFormat = "birdclef") -> Response:
    return reviewer.download(result_id, format, opts)
