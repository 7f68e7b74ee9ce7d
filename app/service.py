"""The prediction pipeline behind ``/v1/predict``: upload -> decode -> windows -> log-mel -> batched model.

Decoding, resampling and the front end are CPU work and run in a bounded thread pool (``cpu_workers``),
the model runs in the batcher's own thread; the event loop only moves bytes. Windows are computed and
submitted in chunks of ``batch_max_size``, so a long recording never holds all its images at once and its
first chunk is on the model while the next one is being computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import Request

from soundscape.audio import AudioError, Frontend, decode
from soundscape.audio.functional import cut_windows, window_starts
from soundscape.inference import row_id
from soundscape.postprocess import PostprocessReport, apply_postprocess, postprocess_report

from .batching import BatcherClosedError, QueueFullError
from .core.config import Settings
from .errors import ApiError, audio_error, error_body
from .metrics import Metrics
from .model_manager import ServedModel
from .schemas import (
    AudioSummary,
    BatchItem,
    BatchResponse,
    ErrorResponse,
    ModelRef,
    PredictResponse,
    Timings,
    WindowResult,
)
from .uploads import Upload, is_audio_type, receive_uploads

__all__ = ["PredictOptions", "Predictor", "Result"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """A request's query options (already type-checked by FastAPI)."""

    hop_s: float | None = None
    threshold: float | None = None
    top_k: int | None = None
    species: tuple[str, ...] | None = None
    format: Literal["json", "csv"] = "json"

    @staticmethod
    def parse_species(values: list[str] | None) -> tuple[str, ...] | None:
        """``?species=a&species=b,c`` -> ``("a", "b", "c")`` (order kept, duplicates dropped)."""
        if not values:
            return None
        codes = [c.strip() for v in values for c in v.split(",") if c.strip()]
        return tuple(dict.fromkeys(codes)) or None

    def check(self, model: ServedModel, settings: Settings) -> None:
        """Checks that need the model or settings; raises 422 ``invalid_option``."""
        if self.hop_s is not None and self.hop_s < settings.min_hop_s:
            raise ApiError(422, "invalid_option", f"hop_s={self.hop_s} is below the minimum of {settings.min_hop_s}")
        if self.species:
            known = set(model.card.codes)
            unknown = [c for c in self.species if c not in known]
            if unknown:
                raise ApiError(422, "unknown_species",
                               f"species {unknown} are not labels of {model.name} v{model.version}")


@dataclass(frozen=True)
class AudioFacts:
    """What the response reports about a recording (the samples themselves are freed early)."""

    duration_s: float
    source_sample_rate: int
    channels: int


@dataclass
class Result:
    """Raw outcome of one file."""

    stem: str
    audio: AudioFacts
    starts_s: np.ndarray
    window_s: float
    probabilities: np.ndarray  # (n_windows, n_labels), after the card's postprocessing
    postprocess: PostprocessReport
    timings: Timings


def _images(frontend: Frontend, samples: np.ndarray, starts_s: np.ndarray) -> np.ndarray:
    cfg = frontend.cfg
    return frontend(cut_windows(samples, cfg.sample_rate, starts_s, cfg.window_samples))


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

    def close(self) -> None:
        self._cpu.shutdown(wait=True, cancel_futures=True)

    def _busy(self, reason: str, detail: str) -> ApiError:
        self.metrics.rejected.labels(reason).inc()
        return ApiError(503, reason, detail, headers={"Retry-After": str(self.settings.retry_after_s)})

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Counts a request in; raises 503 ``too_busy`` past ``max_concurrent_requests``."""
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

    # -- one file --------------------------------------------------------------------------------
    async def predict_file(self, model: ServedModel, upload: Upload, opts: PredictOptions) -> Result:
        """Decode, window and score one file.

        Raises:
            ApiError: 400/413 bad audio, 415 not audio, 503 queue full or model closing.
        """
        if upload.content_type and not is_audio_type(upload.content_type):
            raise ApiError(415, "unsupported_media_type",
                           f"{upload.stem}: content type {upload.content_type!r} is not audio")
        fe = model.engine.frontend
        cfg = fe.cfg
        t0 = time.perf_counter()
        try:
            audio = await self._cpu_call(decode, upload.file, sample_rate=cfg.sample_rate,
                                         max_duration_s=self.settings.max_duration_s, name=upload.stem)
        except AudioError as exc:
            raise audio_error(exc) from None
        t1 = time.perf_counter()
        hop = cfg.hop_s if opts.hop_s is None else opts.hop_s
        starts = window_starts(len(audio.samples), cfg.sample_rate, cfg.window_s, hop, cfg.min_partial_s)
        step = self.settings.batch_max_size
        frontend_s = 0.0
        first_submit: float | None = None
        pending: list[asyncio.Task] = []
        try:
            for a in range(0, len(starts), step):
                f0 = time.perf_counter()
                images = await self._cpu_call(_images, fe, audio.samples, starts[a : a + step])
                frontend_s += time.perf_counter() - f0
                first_submit = first_submit or time.perf_counter()
                pending.append(asyncio.ensure_future(model.batcher.submit(images)))
            # Only the images are needed from here on: drop the samples before waiting for the model,
            # so requests queued behind a busy model hold ~2 MB per minute of audio, not ~30 MB.
            facts = AudioFacts(audio.duration_s, audio.source_sample_rate, audio.channels)
            del audio
            outs = await asyncio.gather(*pending)
        except QueueFullError as exc:
            raise self._busy("queue_full", str(exc)) from None
        except BatcherClosedError as exc:
            raise self._busy("model_unavailable", str(exc)) from None
        finally:
            for task in pending:
                task.cancel()
        t2 = time.perf_counter()
        probs = np.concatenate(outs) if outs else np.zeros((0, len(model.card.labels)), np.float32)
        # The card's temporal smoothing, on the whole file, before any filter (same call as batch analysis).
        probs, postprocess = apply_postprocess(probs, model.card, hop)
        model_s = t2 - (first_submit or t2)
        m = self.metrics
        m.audio_seconds.inc(facts.duration_s)
        m.windows.inc(len(starts))
        m.stage_seconds.labels("decode").observe(t1 - t0)
        m.stage_seconds.labels("frontend").observe(frontend_s)
        m.stage_seconds.labels("model").observe(model_s)
        timings = Timings(decode_ms=round((t1 - t0) * 1000, 2), frontend_ms=round(frontend_s * 1000, 2),
                          model_ms=round(model_s * 1000, 2), total_ms=round((t2 - t0) * 1000, 2))
        return Result(stem=upload.stem, audio=facts, starts_s=starts, window_s=cfg.window_s,
                      probabilities=probs, postprocess=postprocess, timings=timings)

    # -- requests --------------------------------------------------------------------------------
    async def predict(self, request: Request, model: ServedModel, opts: PredictOptions) -> PredictResponse | str:
        """``POST /v1/predict``: a :class:`PredictResponse`, or CSV text when ``opts.format == "csv"``."""
        opts.check(model, self.settings)
        with self.admit():
            uploads = await receive_uploads(request, self.settings, max_files=1)
            try:
                result = await self.predict_file(model, uploads[0], opts)
            finally:
                for u in uploads:
                    u.close()
        if opts.format == "csv":
            return self.to_csv(model, result, opts)
        return self.to_response(model, result, opts)

    async def predict_batch(self, request: Request, model: ServedModel, opts: PredictOptions) -> BatchResponse:
        """``POST /v1/predict/batch``: every file scored concurrently, one result or error each."""
        opts.check(model, self.settings)
        with self.admit():
            uploads = await receive_uploads(request, self.settings, max_files=self.settings.max_batch_files)
            try:
                outcomes = await asyncio.gather(*(self.predict_file(model, u, opts) for u in uploads),
                                                return_exceptions=True)
            finally:
                for u in uploads:
                    u.close()
        items = []
        for upload, outcome in zip(uploads, outcomes, strict=True):
            name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1][:200]
            if isinstance(outcome, ApiError):
                items.append(BatchItem(filename=name, status=outcome.status,
                                       error=ErrorResponse(**error_body(outcome.code, outcome.detail))))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                items.append(BatchItem(filename=name, status=200, result=self.to_response(model, outcome, opts)))
        return BatchResponse(model=ModelRef(name=model.name, version=model.version), results=items)

    # -- rendering -------------------------------------------------------------------------------
    @staticmethod
    def _columns(model: ServedModel, opts: PredictOptions) -> tuple[list[str], np.ndarray]:
        codes = model.card.codes
        if not opts.species:
            return codes, np.arange(len(codes))
        index = {c: i for i, c in enumerate(codes)}
        return list(opts.species), np.array([index[c] for c in opts.species], dtype=np.int64)

    @staticmethod
    def _filter(codes: list[str], row: np.ndarray, opts: PredictOptions) -> dict[str, float]:
        order = np.argsort(-row, kind="stable") if opts.top_k else range(len(codes))
        out: dict[str, float] = {}
        for i in order:
            p = float(row[i])
            if opts.threshold is not None and p < opts.threshold:
                if opts.top_k:
                    break  # sorted: the rest are lower
                continue
            out[codes[i]] = round(p, 6)
            if opts.top_k and len(out) >= opts.top_k:
                break
        return out

    def to_response(self, model: ServedModel, result: Result, opts: PredictOptions) -> PredictResponse:
        codes, cols = self._columns(model, opts)
        probs = result.probabilities[:, cols]
        windows = [
            WindowResult(start_s=round(float(s), 3), end_s=round(float(s) + result.window_s, 3),
                         row_id=row_id(result.stem, float(s) + result.window_s),
                         probabilities=self._filter(codes, row, opts))
            for s, row in zip(result.starts_s, probs, strict=True)
        ]
        summary = self._filter(codes, probs.max(axis=0), opts) if len(probs) else {}
        audio = result.audio
        return PredictResponse(
            model=ModelRef(name=model.name, version=model.version),
            postprocess=result.postprocess,
            audio=AudioSummary(duration_s=round(audio.duration_s, 3), sample_rate=audio.source_sample_rate,
                               channels=audio.channels, windows=len(result.starts_s)),
            windows=windows,
            summary=summary,
            timings=result.timings,
        )

    @staticmethod
    def postprocess_header(model: ServedModel, opts: PredictOptions) -> str:
        """``X-Postprocess`` of a CSV answer, e.g. ``smoothing=neighbours; applied=true; neighbour_offset=1``."""
        report = postprocess_report(model.card, opts.hop_s)
        parts = [f"smoothing={report.smoothing}", f"applied={str(report.applied).lower()}"]
        if report.neighbour_offset is not None:
            parts.append(f"neighbour_offset={report.neighbour_offset}")
        return "; ".join(parts)

    def to_csv(self, model: ServedModel, result: Result, opts: PredictOptions) -> str:
        """BirdCLEF submission rows: ``row_id`` then one column per species (threshold/top_k do not apply)."""
        codes, cols = self._columns(model, opts)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["row_id", *codes])
        for s, row in zip(result.starts_s, result.probabilities[:, cols], strict=True):
            writer.writerow([row_id(result.stem, float(s) + result.window_s),
                             *(f"{float(p):.6f}" for p in row)])
        return buf.getvalue()
