"""The web page's backend: one upload -> its prediction, its spectrogram and a short-lived result id.

``POST /v1/review`` runs the upload through the same path as ``/v1/predict`` (:meth:`Predictor.predict_one`:
the same limits, checks and error codes) with a :class:`ReviewTap` on the pipeline, which builds the
spectrogram from the chunks of model inputs as they pass and counts scored windows for the progress
endpoint; nothing is computed twice. The result is kept (:class:`ResultCache`, bounded in time and memory)
so the page's downloads are rendered from it by the renderers ``soundscape analyze`` writes with
(:func:`soundscape.render.render_text`).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from model_store import ModelCard
from soundscape import render
from soundscape.audio import AudioStream
from soundscape.audio.functional import window_starts
from soundscape.options import ResultOptions
from soundscape.pipeline import Chunk, Prediction
from soundscape.spectrogram import Spectrogram, SpectrogramBuilder, png

from .core.config import Settings
from .errors import ApiError
from .model_manager import ServedModel
from .schemas import ReviewProgress, ReviewResponse, SpectrogramImage
from .service import Predictor

__all__ = ["DOWNLOAD_TYPES", "ProgressBoard", "ResultCache", "ReviewTap", "Reviewer"]

log = logging.getLogger(__name__)

# Media types of the downloads, by format name (soundscape analyze's names).
DOWNLOAD_TYPES = {"birdclef": "text/csv", "csv": "text/csv", "raven": "text/plain", "audacity": "text/plain",
                  "kaleidoscope": "text/csv", "json": "application/json"}
_MAX_PROGRESS = 1024


# -- progress -------------------------------------------------------------------------------------------------
@dataclass
class _Progress:
    stage: str = "receiving"
    windows_done: int = 0
    windows_total: int | None = None
    error: str | None = None
    updated: float = field(default_factory=time.monotonic)

    def view(self) -> ReviewProgress:
        total = self.windows_total
        fraction = 1.0 if self.stage == "done" else min(1.0, self.windows_done / total) if total else 0.0
        return ReviewProgress(stage=self.stage, fraction=round(fraction, 4), windows_done=self.windows_done,
                              windows_total=total, error=self.error)


class ProgressBoard:
    """Progress of uploads by client token, kept ``ttl_s`` after their last change (at most 1024)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, _Progress] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, token: str) -> _Progress:
        with self._lock:
            self._expire()
            entry = self._items[token] = _Progress()
            while len(self._items) > _MAX_PROGRESS:
                self._items.popitem(last=False)
            return entry

    def get(self, token: str) -> ReviewProgress | None:
        with self._lock:
            self._expire()
            entry = self._items.get(token)
            return entry.view() if entry else None

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, e in self._items.items() if now - e.updated > self.ttl_s]:
            del self._items[token]


# -- results ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kept:
    """A reviewed result, as kept for its downloads."""

    pred: Prediction
    card: ModelCard
    stem: str
    filename: str
    expires: float

    @property
    def nbytes(self) -> int:
        return self.pred.probabilities.nbytes + self.pred.starts_s.nbytes + 4096


class ResultCache:
    """Results by random id, each kept ``ttl_s`` seconds, at most ``max_bytes`` of them (oldest dropped)."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, pred: Prediction, card: ModelCard, stem: str, filename: str) -> str:
        result_id = secrets.token_urlsafe(18)
        kept = Kept(pred, card, stem, filename, time.monotonic() + self.ttl_s)
        with self._lock:
            self._items[result_id] = kept
            while sum(k.nbytes for k in self._items.values()) > self.max_bytes and len(self._items) > 1:
                dropped, _ = self._items.popitem(last=False)
                log.info("dropped review result %s early to stay under review_cache_mb", dropped)
        return result_id

    def get(self, result_id: str) -> Kept | None:
        with self._lock:
            now = time.monotonic()
            for rid in [r for r, k in self._items.items() if k.expires < now]:
                del self._items[rid]
            return self._items.get(result_id)


# -- the tap on the pipeline -----------------------------------------------------------------------------------
class ReviewTap:
    """Builds the spectrogram from the pipeline's chunks and reports progress (a :class:`ChunkTap`)."""

    def __init__(self, card: ModelCard, hop_s: float | None, max_columns: int, progress: _Progress | None) -> None:
        self.card = card
        self.hop_s = card.frontend.hop_s if hop_s is None else hop_s
        self.spectrogram = SpectrogramBuilder(card.frontend, max_columns=max_columns)
        self.progress = progress

    def opened(self, reader: AudioStream) -> None:
        duration_s = reader.info.duration_s  # from the header
        self.spectrogram.start(duration_s)
        if self.progress is not None:
            fe = self.card.frontend
            n = int(round(duration_s * fe.sample_rate))
            total = len(window_starts(n, fe.sample_rate, fe.window_s, self.hop_s, fe.min_partial_s))
            self.report(stage="analysing", windows_total=total)

    def chunk(self, chunk: Chunk) -> None:
        self.spectrogram.add_chunk(chunk)

    def scored(self, windows: int) -> None:
        if self.progress is not None:
            self.report(windows_done=self.progress.windows_done + windows)

    def report(self, **changes: object) -> None:
        """Update the progress entry (when the upload has one)."""
        if self.progress is not None:
            for name, value in {**changes, "updated": time.monotonic()}.items():
                setattr(self.progress, name, value)


def _describe(spec: Spectrogram) -> str:
    cfg = spec.config
    band = f"{cfg.n_mels} mel bands, {cfg.fmin:g}-{cfg.fmax:g} Hz"
    if spec.source == "model_frontend":
        return (f"What the model saw: its own front end's log-mel ({band}), each {cfg.window_s:g}-s window "
                "normalised on its own.")
    return (f"This model takes raw audio, not a spectrogram: shown is a default log-mel ({band}) computed for "
            "display only.")


def spectrogram_image(spec: Spectrogram) -> SpectrogramImage:
    """The API form of a :class:`Spectrogram`: a base64 PNG and its axes."""
    return SpectrogramImage(
        png_base64=base64.b64encode(png(spec.image)).decode("ascii"), width=spec.image.shape[1],
        height=spec.image.shape[0], seconds_per_column=spec.seconds_per_column,
        duration_s=round(spec.duration_s, 6), frequencies_hz=[round(float(f), 1) for f in spec.frequencies_hz],
        source=spec.source, description=_describe(spec))


def _axis_s(pred: Prediction) -> float:
    """The time axis the page draws: the recording, or its last (zero-padded) window's end if later."""
    duration = pred.audio.duration_s if pred.audio else 0.0
    return max(duration, float(pred.ends_s[-1]) if len(pred) else 0.0)


def _filename(upload_name: str) -> str:
    return upload_name.replace("\\", "/").rsplit("/", 1)[-1][:200] or "upload"


# -- the endpoints' work ------------------------------------------------------------------------------------
class Reviewer:
    """``/v1/review``: runs uploads with a :class:`ReviewTap`, keeps results, renders downloads."""

    def __init__(self, settings: Settings, predictor: Predictor) -> None:
        self.settings = settings
        self.predictor = predictor
        self.progress = ProgressBoard(settings.review_ttl_s)
        self.results = ResultCache(settings.review_ttl_s, int(settings.review_cache_mb * 1024 * 1024))

    async def review(self, request: Request, model: ServedModel, opts: ResultOptions,
                     token: str | None) -> ReviewResponse:
        """One upload: the prediction (as ``/v1/predict``), its spectrogram and a result id."""
        entry = self.progress.start(token) if token else None
        tap = ReviewTap(model.card, opts.hop_s, self.settings.spectrogram_max_columns, entry)
        try:
            pred, upload, opts = await self.predictor.predict_one(request, model, opts, tap)
            tap.report(stage="rendering")
            image = await self.predictor.cpu(lambda: spectrogram_image(tap.spectrogram.finish(_axis_s(pred))))
        except ApiError as exc:
            tap.report(stage="failed", error=exc.code)
            raise
        except ClientDisconnect:
            tap.report(stage="failed", error="client_disconnected")
            raise
        except BaseException:
            tap.report(stage="failed", error="internal_error")
            raise
        result = render.response(pred, model.card, upload.stem, opts)
        filename = _filename(upload.filename)
        result_id = self.results.put(pred, model.card, upload.stem, filename)
        tap.report(stage="done")
        labels = [model.card.labels[i] for i in render.columns(model.card, opts.species)[1]]
        return ReviewResponse(result_id=result_id, expires_in_s=self.settings.review_ttl_s, filename=filename,
                              result=result, labels=labels, spectrogram=image)

    def download(self, result_id: str, fmt: str, opts: ResultOptions) -> Response:
        """A kept result in one of ``soundscape analyze``'s text formats, as an attachment."""
        kept = self.results.get(result_id)
        if kept is None:
            raise ApiError(404, "result_not_found",
                           f"no result {result_id!r}: results are kept {self.settings.review_ttl_s:g} s after "
                           "their analysis (fewer when memory runs short); upload the file again")
        try:
            opts = opts.for_card(kept.card)
        except ValueError as exc:
            raise ApiError(422, "unknown_species", str(exc)) from None
        text = render.render_text(fmt, kept.pred, kept.card, opts, source=kept.filename, stem=kept.stem)
        name = f"{kept.stem}{render.TEXT_FORMATS[fmt]}"
        return Response(text, media_type=DOWNLOAD_TYPES[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "X-Model-Name": kept.card.name, "X-Model-Version": str(kept.card.version)})
