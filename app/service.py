"""``/v1/predict`` and ``/v1/predict/batch``: uploads through the one window pipeline, answers through the
shared renderers.

Each file runs through :class:`soundscape.pipeline.WindowPipeline`: the audio is read block by block
(:class:`soundscape.audio.AudioStream`, every check of the one reader) and cut into chunks of
``batch_max_size`` windows whose images are computed in a bounded thread pool (``cpu_workers``); each chunk
goes to the dynamic batcher, which runs the model in its own threads on windows of concurrent requests. The
event loop only moves bytes. A long recording never holds all its samples or images at once, and its first
chunk is on the model while the next one is decoded. Answers are rendered by :mod:`soundscape.render`, as
``soundscape analyze`` renders its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from soundscape import render
from soundscape.audio import AudioError, AudioStream
from soundscape.options import ResultOptions, UnknownSpeciesError
from soundscape.pipeline import AudioFacts, Chunk, Prediction, StageTimes
from soundscape.postprocess import postprocess_report

from .batching import BatcherClosedError, QueueFullError
from .clients import UploadGate, until_disconnect
from .core.config import Settings
from .errors import ApiError, audio_error, error_body
from .metrics import Metrics
from .model_manager import ServedModel
from .schemas import BatchItem, BatchResponse, ErrorResponse, ModelRef, PredictResponse
from .uploads import Upload, is_audio_type, receive_uploads

__all__ = ["Answer", "ChunkTap", "Predictor"]

log = logging.getLogger(__name__)

# ``csv``: BirdCLEF rows; the others are ``soundscape analyze``'s formats (``detections`` is its ``csv``).
Format = Literal["json", "csv", "detections", "raven", "audacity", "kaleidoscope"]
TEXT_FORMATS: dict[str, tuple[str, str]] = {  # Format -> (render.render_text's name, media type)
    "detections": ("csv", "text/csv"),
    "raven": ("raven", "text/plain"),
    "audacity": ("audacity", "text/plain"),
    "kaleidoscope": ("kaleidoscope", "text/csv"),
}


class ChunkTap(Protocol):
    """What else sees one file's pipeline as it runs (the web page's spectrogram and progress).

    ``opened`` and ``chunk`` run in a CPU thread, one call at a time; ``scored`` on the event loop.
    """

    def opened(self, reader: AudioStream) -> None: ...

    def chunk(self, chunk: Chunk) -> None: ...

    def scored(self, windows: int) -> None: ...


def _on_scored(tap: ChunkTap, windows: int) -> Callable[[asyncio.Future], None]:
    def done(fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            tap.scored(windows)

    return done


@dataclass(frozen=True)
class Answer:
    """A rendered answer: the JSON model, or CSV text with its headers."""

    body: PredictResponse | BatchResponse | str
    headers: dict[str, str]
    media_type: str = "text/csv"

    def response(self) -> Response | PredictResponse | BatchResponse:
        if isinstance(self.body, str):
            return Response(self.body, media_type=self.media_type, headers=self.headers)
        return self.body


class Predictor:
    """Runs predictions; one per app. Holds the CPU thread pool and the admission counter.

    Args:
        settings (Settings): limits, thread counts and batch size.
        metrics (Metrics): where stage timings, audio seconds and rejections go.
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._cpu = ThreadPoolExecutor(max_workers=settings.cpu_workers, thread_name_prefix="cpu")
        self._active = 0
        self.uploads = UploadGate(settings.max_uploads_in_progress, settings.max_uploads_per_client,
                                  settings.retry_after_s, metrics)

    def close(self) -> None:
        self._cpu.shutdown(wait=True, cancel_futures=True)

    def _busy(self, reason: str, detail: str) -> ApiError:
        self.metrics.rejected.labels(reason).inc()
        return ApiError(503, reason, detail, headers={"Retry-After": str(self.settings.retry_after_s)})

    async def receive(self, request: Request, max_files: int) -> list[Upload]:
        """The request's files, read within the upload gate's limits and the body timeouts (not yet admitted)."""
        with self.uploads.receiving(request):
            return await receive_uploads(request, self.settings, max_files=max_files)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Counts a request in once its body has arrived; raises 503 ``too_busy`` past
        ``max_concurrent_requests``."""
        if self._active >= self.settings.max_concurrent_requests:
            raise self._busy("too_busy", f"{self._active} requests are in progress; retry later")
        self._active += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self._active -= 1
            self.metrics.in_flight.dec()

    async def _cpu_call(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._cpu, lambda: fn(*args, **kwargs))

    async def cpu(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in the service's CPU thread pool."""
        return await self._cpu_call(fn, *args, **kwargs)

    def check(self, model: ServedModel, opts: ResultOptions) -> ResultOptions:
        """Checks that need the model or settings; the options with species as the model's codes.

        Raises:
            ApiError: 422 ``invalid_option`` (hop under the minimum) or ``unknown_species``.
        """
        if opts.hop_s is not None and opts.hop_s < self.settings.min_hop_s:
            raise ApiError(422, "invalid_option",
                           f"hop_s={opts.hop_s} is below the minimum of {self.settings.min_hop_s}")
        try:
            return opts.for_card(model.card)
        except UnknownSpeciesError as exc:
            raise ApiError(422, "unknown_species", str(exc)) from None

    # -- one file --------------------------------------------------------------------------------
    async def predict_file(self, model: ServedModel, upload: Upload, opts: ResultOptions,
                           tap: ChunkTap | None = None) -> Prediction:
        """Read, window and score one file through the pipeline, the model behind the batcher; ``tap`` sees
        the reader and every chunk of images on the way.

        Raises:
            ApiError: 400/413 bad audio, 415 not audio, 503 queue full or model closing.
        """
        if upload.content_type and not is_audio_type(upload.content_type):
            raise ApiError(415, "unsupported_media_type",
                           f"{upload.stem}: content type {upload.content_type!r} is not audio")
        pipe = model.engine.pipeline(opts.hop_s, chunk_windows=self.settings.batch_max_size,
                                     native_rate=self.settings.native_rate_mel)
        t0 = time.perf_counter()
        state: dict = {}
        lock = threading.Lock()  # one thread at a time touches this request's reader and generator

        def start() -> None:
            with lock:
                state["reader"] = AudioStream(upload.file, sample_rate=pipe.decode_rate,
                                              max_duration_s=self.settings.max_duration_s, name=upload.stem)
                state["chunks"] = pipe.chunks(state["reader"])
                if tap is not None:
                    tap.opened(state["reader"])

        def step() -> Chunk | None:
            with lock:
                chunk = next(state["chunks"], None)
                if tap is not None and chunk is not None:
                    tap.chunk(chunk)
                return chunk

        def cleanup() -> None:
            with lock:
                if "chunks" in state:
                    state["chunks"].close()
                    state["reader"].close()

        starts: list[np.ndarray] = []
        pending: list[asyncio.Future] = []
        first_submit: float | None = None
        open_s = 0.0
        try:
            await self._cpu_call(start)
            open_s = time.perf_counter() - t0
            while (chunk := await self._cpu_call(step)) is not None:
                first_submit = first_submit or time.perf_counter()
                starts.append(chunk.starts_s)
                pending.append(asyncio.ensure_future(model.batcher.submit(chunk.images)))
                if tap is not None:
                    pending[-1].add_done_callback(_on_scored(tap, len(chunk.starts_s)))
            # Only the images are held from here on (no samples), ~2 MB per minute of audio.
            outs = await asyncio.gather(*pending)
        except AudioError as exc:
            raise audio_error(exc) from None
        except QueueFullError as exc:
            raise self._busy("queue_full", str(exc)) from None
        except BatcherClosedError as exc:
            raise self._busy("model_unavailable", str(exc)) from None
        finally:
            for task in pending:
                task.cancel()
            if lock.acquire(blocking=False):  # nothing running: close now
                lock.release()
                cleanup()
            else:  # cancelled while a CPU thread is still on this file: close after it
                self._cpu.submit(cleanup)
        t2 = time.perf_counter()
        times = StageTimes(decode_s=open_s + pipe.decode_s, frontend_s=pipe.frontend_s,
                           model_s=t2 - (first_submit or t2), total_s=t2 - t0)
        # The card's temporal smoothing, on the whole file, before any filter (the pipeline's one call).
        pred = pipe.finish(starts, outs, audio=AudioFacts.of(state["reader"]), times=times)
        m = self.metrics
        m.audio_seconds.inc(pred.audio.duration_s)
        m.windows.inc(len(pred))
        m.stage_seconds.labels("decode").observe(times.decode_s)
        m.stage_seconds.labels("frontend").observe(times.frontend_s)
        m.stage_seconds.labels("model").observe(times.model_s)
        return pred

    # -- requests --------------------------------------------------------------------------------
    async def predict_one(self, request: Request, model: ServedModel, opts: ResultOptions,
                          tap: ChunkTap | None = None) -> tuple[Prediction, Upload, ResultOptions]:
        """One uploaded file through the pipeline, with every check and limit of ``/v1/predict``.

        Returns:
            tuple: the prediction, the (closed) upload for its name, and the options checked against the
            model (species as its codes).
        """
        opts = self.check(model, opts)
        uploads = await self.receive(request, max_files=1)
        try:
            with self.admit():
                pred = await until_disconnect(request, self.predict_file(model, uploads[0], opts, tap))
        finally:
            for u in uploads:
                u.close()
        return pred, uploads[0], opts

    async def predict(self, request: Request, model: ServedModel, opts: ResultOptions, fmt: Format) -> Answer:
        """``POST /v1/predict``: one file, rendered as JSON, BirdCLEF CSV or one of ``soundscape analyze``'s
        tables (:data:`TEXT_FORMATS`; the file columns carry the upload's name)."""
        pred, upload, opts = await self.predict_one(request, model, opts)
        stem = upload.stem
        headers = self._csv_headers(model, render.postprocess_header(pred.postprocess))
        if fmt == "csv":
            return Answer(render.birdclef_csv(pred, model.card, stem, opts.species), headers)
        if fmt in TEXT_FORMATS:
            name, media = TEXT_FORMATS[fmt]
            text = render.render_text(name, pred, model.card, opts, source=_name(upload), stem=stem)
            return Answer(text, headers, media)
        return Answer(render.response(pred, model.card, stem, opts), {})

    async def predict_batch(self, request: Request, model: ServedModel, opts: ResultOptions, fmt: Format) -> Answer:
        """``POST /v1/predict/batch``: every file scored concurrently, one result or error each.

        JSON: a :class:`BatchResponse`. CSV and the other tables: the rows of every file that succeeded, in
        upload order under one header (:func:`soundscape.render.combine`; Raven: one timeline); the files that
        failed are listed in ``X-Failed-Files`` (JSON).

        Raises:
            ApiError: 422 ``invalid_option`` for ``audacity`` (a label track is one file's).
        """
        if fmt == "audacity":
            raise ApiError(422, "invalid_option", "format=audacity is one recording's label track: use "
                           "/v1/predict (batch formats: json, csv, detections, raven, kaleidoscope)")
        opts = self.check(model, opts)
        uploads = await self.receive(request, max_files=self.settings.max_batch_files)
        try:
            with self.admit():
                work = asyncio.gather(*(self.predict_file(model, u, opts) for u in uploads), return_exceptions=True)
                outcomes = await until_disconnect(request, work)
        finally:
            for u in uploads:
                u.close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, ApiError):
                raise outcome
        names = [_name(u) for u in uploads]
        if fmt != "json":
            return self._batch_table(model, opts, fmt, uploads, names, outcomes)
        items = []
        for upload, name, outcome in zip(uploads, names, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                items.append(BatchItem(filename=name, status=outcome.status,
                                       error=ErrorResponse(**error_body(outcome.code, outcome.detail))))
            else:
                items.append(BatchItem(filename=name, status=200,
                                       result=render.response(outcome, model.card, upload.stem, opts)))
        return Answer(BatchResponse(model=ModelRef(name=model.name, version=model.version), results=items), {})

    def _batch_table(self, model: ServedModel, opts: ResultOptions, fmt: Format, uploads: list[Upload],
                     names: list[str], outcomes: list) -> Answer:
        """A batch's files that succeeded as one table; the failed ones in ``X-Failed-Files``."""
        ok = [(u, n, o) for u, n, o in zip(uploads, names, outcomes, strict=True) if isinstance(o, Prediction)]
        failed = [{"filename": n, "status": o.status, "error": o.code}
                  for n, o in zip(names, outcomes, strict=True) if isinstance(o, ApiError)]
        headers = self._csv_headers(model, render.postprocess_header(postprocess_report(model.card, opts.hop_s)))
        headers["X-Failed-Files"] = json.dumps(failed)
        if fmt == "csv":
            parts = [render.birdclef_csv(o, model.card, u.stem, opts.species) for u, _, o in ok]
            return Answer(render.join_csv(render.birdclef_header(model.card, opts.species), parts), headers)
        name, media = TEXT_FORMATS[fmt]
        parts = [render.render_text(name, o, model.card, opts, source=n, stem=u.stem) for u, n, o in ok]
        durations = [o.audio.duration_s if o.audio else 0.0 for _, _, o in ok]
        return Answer(render.combine(name, parts, durations), headers, media)

    @staticmethod
    def _csv_headers(model: ServedModel, postprocess: str) -> dict[str, str]:
        return {"X-Model-Name": model.name, "X-Model-Version": str(model.version), "X-Postprocess": postprocess}


def _name(upload: Upload) -> str:
    """The upload's file name as sent, without any path (never used as a path here), at most 200 characters."""
    return upload.filename.replace("\\", "/").rsplit("/", 1)[-1][:200]
