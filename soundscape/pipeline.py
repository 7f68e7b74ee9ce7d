"""The one window pipeline: audio -> windows -> images -> batched model -> probabilities -> card postprocess.

"Images" are whatever the card's front end gives the model per window: a log-mel image, or for a waveform
model the window's model windows (:class:`~soundscape.audio.Frontend`); the windows, batching and results
are the same for both.

Every entry point runs a recording through :class:`WindowPipeline`: :meth:`Engine.predict
<soundscape.inference.Engine.predict>` (decoded audio), ``soundscape analyze`` (a streamed file) and the
HTTP service. The stages are split where the service needs them split: :meth:`WindowPipeline.chunks` turns
audio blocks into chunks of model input images (CPU work, run in the service's thread pool), the model runs
wherever the caller runs it (the service: its dynamic batcher, which mixes windows of concurrent requests;
:meth:`WindowPipeline.run`: a direct call), and :meth:`WindowPipeline.finish` joins the outputs and applies
the card's postprocessing (:mod:`soundscape.postprocess`) to the whole file. Whole files and streamed
blocks give the same windows (:func:`~soundscape.audio.functional.stream_windows`), so the same numbers.

Native rate (mel models, ``native_rate=True``; off by default): a file whose own rate the card's log-mel front end
can run at exactly (:func:`~soundscape.audio.native.native_config`: 48, 64 or 96 kHz for the default 32 kHz
card) is decoded at that rate, without resampling, and its windows go through the card's front end scaled to that
rate (:meth:`Frontend.native <soundscape.audio.Frontend.native>`): the same windows, starts and image shapes,
values within the bounds measured in :mod:`soundscape.audio.native`. :meth:`WindowPipeline.decode_rate` tells the
reader which rate to decode a file at; other rates, waveform models and ``native_rate=False`` resample to the
card's rate as before.

The result of every entry point is one :class:`Prediction`; :mod:`soundscape.render` turns it into the
service's JSON, BirdCLEF rows and the detection formats.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from model_store import ModelCard
from soundscape.audio import Audio, AudioStream, Frontend, FrontendConfig
from soundscape.audio.functional import stream_grid, stream_windows
from soundscape.postprocess import PostprocessReport, apply_postprocess

__all__ = ["AudioFacts", "Chunk", "ModelFn", "Prediction", "StageTimes", "WindowPipeline", "pool_rows"]

ModelFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class AudioFacts:
    """What the results report about a recording (its samples are not kept).

    Attributes:
        duration_s (float): length of the decoded audio (at the rate it was decoded at: the model's, or the
            file's own for a mel model run at that rate).
        sample_rate (int): the rate stored in the file.
        channels (int): the file's channel count (mixed to mono for the model).
    """

    duration_s: float
    sample_rate: int
    channels: int

    @classmethod
    def of(cls, audio: Audio | AudioStream) -> AudioFacts:
        if isinstance(audio, AudioStream):
            return cls(audio.duration_s, audio.info.sample_rate, audio.info.channels)
        return cls(audio.duration_s, audio.source_sample_rate, audio.channels)


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent per stage on one recording (decode includes resampling; front end includes windowing;
    model: from the first chunk handed to the model to the last output, queueing included)."""

    decode_s: float = 0.0
    frontend_s: float = 0.0
    model_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class Prediction:
    """Per-window results of one recording: what every entry point returns and every renderer reads.

    Attributes:
        starts_s (np.ndarray): ``(n_windows,)`` window starts in seconds.
        window_s (float): window length (``ends_s = starts_s + window_s``).
        probabilities (np.ndarray): ``(n_windows, n_labels)`` float32 in [0, 1], in the card's label order,
            after the card's postprocessing unless the pipeline was told not to.
        embeddings (np.ndarray | None): ``(n_windows, dim)`` float32 when requested.
        postprocess (PostprocessReport | None): what was done to ``probabilities`` after the model (None:
            postprocessing was switched off).
        audio (AudioFacts | None): the recording's facts (None for a bare array of samples).
        times (StageTimes | None): where the time went.
    """

    starts_s: np.ndarray
    window_s: float
    probabilities: np.ndarray
    embeddings: np.ndarray | None = None
    postprocess: PostprocessReport | None = None
    audio: AudioFacts | None = None
    times: StageTimes | None = None

    @property
    def ends_s(self) -> np.ndarray:
        return self.starts_s + self.window_s

    def __len__(self) -> int:
        return len(self.starts_s)


@dataclass(frozen=True)
class Chunk:
    """Consecutive windows of one recording, ready for the model.

    For a waveform model on a recording grid (``model_grid="recording"``) the images are the grid's model
    windows that the chunk's report windows overlap, once each, and ``pool`` says which rows each report
    window pools (:func:`pool_rows`).
    """

    starts_s: np.ndarray  # (n,) float64
    images: np.ndarray  # mel (n, n_mels, n_frames); waveform (n, k, samples), or on a grid (m, samples); float32
    pool: np.ndarray | None = None  # grid: (n, k_max) int rows of `images` per report window, -1 padded
    grid_starts: np.ndarray | None = None  # grid: (m,) int sample index where each row starts

    def report_windows(self, cfg: FrontendConfig) -> np.ndarray:
        """A waveform chunk's report windows ``(n, window_samples)`` put back together from its model windows."""
        size, win = cfg.model_window_samples, cfg.window_samples
        out = np.zeros((len(self.starts_s), win), np.float32)
        for i, start in enumerate(self.starts_s):
            rows = range(self.images.shape[1]) if self.pool is None else self.pool[i][self.pool[i] >= 0]
            at = cfg.model_offsets if self.pool is None else self.grid_starts[rows] - round(start * cfg.sample_rate)
            for row, offset in zip(rows, at, strict=True):
                part = self.images[i, row] if self.pool is None else self.images[row]
                a, b = max(int(offset), 0), min(int(offset) + size, win)
                out[i, a:b] = part[a - int(offset) : b - int(offset)]
        return out


def pool_rows(values: np.ndarray, pool: np.ndarray, how: str) -> np.ndarray:
    """Per report window, the ``max`` (probabilities) or ``mean`` (embeddings) of the model windows' rows that
    ``pool`` names (``(n, k_max)`` row indices, -1 padded)."""
    gathered = values[np.maximum(pool, 0)]  # (n, k_max, dim)
    valid = (pool >= 0)[:, :, None]
    if how == "max":
        return np.where(valid, gathered, -np.inf).max(axis=1).astype(values.dtype)
    return ((gathered * valid).sum(axis=1) / valid.sum(axis=1)).astype(values.dtype)


class WindowPipeline:
    """One recording's trip through the front end and the model, by the card's rules.

    One instance per recording (it counts that recording's stage times).

    Args:
        card (ModelCard): labels, windowing policy and postprocessing.
        frontend (Frontend): the card's front end (shared, thread-safe).
        hop_s (float, optional): step between window starts. (Default: the card's hop)
        chunk_windows (int): windows per chunk of images (per model call, or per batcher submission).
        native_rate (bool): run a mel card's front end at the audio's own rate when it can
            (:meth:`decode_rate`); false: always resample to the card's rate. (Default: ``False``)
    """

    def __init__(self, card: ModelCard, frontend: Frontend, *, hop_s: float | None = None,
                 chunk_windows: int = 64, native_rate: bool = False) -> None:
        if chunk_windows < 1:
            raise ValueError(f"chunk_windows must be >= 1, got {chunk_windows}")
        self.card = card
        self.frontend = frontend
        self.native_rate = native_rate
        self.hop_s = card.frontend.hop_s if hop_s is None else hop_s
        self.chunk_windows = chunk_windows
        self.decode_s = 0.0
        self.frontend_s = 0.0
        self._pools: list[np.ndarray] = []  # recording grid: each chunk's pool, in the order chunks were made

    # -- rates -------------------------------------------------------------------------------------
    def decode_rate(self, source_rate: int) -> int:
        """The rate to decode a file of ``source_rate`` Hz at: its own when the card's front end runs there
        (a mel card, ``native_rate``, :meth:`Frontend.native <soundscape.audio.Frontend.native>`), else the
        card's. Pass it as the reader's ``sample_rate`` (``AudioStream(src, sample_rate=pipe.decode_rate)``)."""
        if self.native_rate and self.frontend.native(source_rate) is not None:
            return int(source_rate)
        return self.frontend.cfg.sample_rate

    def frontend_for(self, rate: int) -> Frontend:
        """The front end for audio at ``rate``: the card's at its own rate, else its native twin (see
        :meth:`decode_rate`).

        Raises:
            ValueError: the card's front end cannot run at ``rate`` (or ``native_rate`` is off).
        """
        if rate == self.frontend.cfg.sample_rate:
            return self.frontend
        native = self.frontend.native(rate) if self.native_rate else None
        if native is None:
            raise ValueError(f"audio is at {rate} Hz but the front end expects {self.frontend.cfg.sample_rate} Hz")
        return native

    # -- stages ------------------------------------------------------------------------------------
    def _blocks(self, audio: Audio | AudioStream | np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The audio's blocks, timing the reads as the decode stage."""
        if isinstance(audio, Audio):
            audio = [audio.samples]
        elif isinstance(audio, np.ndarray):
            audio = [np.asarray(audio, dtype=np.float32)]
        it = iter(audio)
        while True:
            t0 = time.perf_counter()
            block = next(it, None)
            self.decode_s += time.perf_counter() - t0
            if block is None:
                return
            yield block

    def chunks(self, audio: Audio | AudioStream | np.ndarray | Iterable[np.ndarray]) -> Iterator[Chunk]:
        """Windows and images of a recording, ``chunk_windows`` at a time, as soon as the audio covers them.

        Args:
            audio: decoded :class:`Audio`, an :class:`AudioStream` (blocks decoded on demand, in bounded
                memory), a ``(n,)`` array, or any iterable of blocks. Arrays and blocks are at the card's
                sample rate; :class:`Audio` and streams at it or at a rate the card's front end runs at
                natively (:meth:`decode_rate`).

        Raises:
            ValueError: the audio is at a rate the front end cannot take.
        """
        rate = audio.sample_rate if isinstance(audio, Audio | AudioStream) else self.frontend.cfg.sample_rate
        fe = self.frontend_for(rate)
        cfg = fe.cfg
        blocks = self._blocks(audio)
        on_grid = cfg.input == "waveform" and cfg.model_grid == "recording"
        items = self._grid_items(blocks) if on_grid else stream_windows(
            blocks, cfg.sample_rate, cfg.window_s, self.hop_s, cfg.min_partial_s)
        make = self._grid_chunk if on_grid else functools.partial(self._chunk, fe)
        starts: list[float] = []
        payloads: list = []
        busy_from = time.perf_counter()
        decode_before = self.decode_s
        for start, payload in items:
            starts.append(start)
            payloads.append(payload)
            if len(payloads) == self.chunk_windows:
                chunk = make(starts, payloads)
                starts, payloads = [], []
                self.frontend_s += time.perf_counter() - busy_from - (self.decode_s - decode_before)
                yield chunk
                busy_from, decode_before = time.perf_counter(), self.decode_s
        if payloads:
            chunk = make(starts, payloads)
            self.frontend_s += time.perf_counter() - busy_from - (self.decode_s - decode_before)
            yield chunk

    @staticmethod
    def _chunk(fe: Frontend, starts: list[float], windows: list[np.ndarray]) -> Chunk:
        return Chunk(np.asarray(starts, dtype=np.float64), fe(np.stack(windows)))

    def _grid_items(self, blocks: Iterator[np.ndarray]) -> Iterator[tuple[float, dict[int, np.ndarray]]]:
        """Report windows as ``(start_s, {grid index: model window})`` of the grid windows each overlaps."""
        cfg = self.frontend.cfg
        size, hop, win = cfg.model_window_samples, cfg.model_hop_samples, cfg.window_samples
        for_windows, for_grid = itertools.tee(blocks)
        grid = stream_grid(for_grid, size, hop)
        have: dict[int, np.ndarray] = {}
        last = -1
        for start, _ in stream_windows(for_windows, cfg.sample_rate, cfg.window_s, self.hop_s, cfg.min_partial_s):
            a = round(start * cfg.sample_rate)
            first, wanted = max(0, (a - size) // hop + 1), -(-(a + win) // hop) - 1
            while last < wanted and (got := next(grid, None)) is not None:
                last = got[0]
                have[last] = got[1]
            for j in [j for j in have if j < first]:
                del have[j]
            yield start, {j: have[j] for j in range(first, min(wanted, last) + 1)}

    def _grid_chunk(self, starts: list[float], rows: list[dict[int, np.ndarray]]) -> Chunk:
        """One chunk of a recording grid: each model window once, and each report window's rows."""
        order = sorted(set().union(*rows))
        index = {j: r for r, j in enumerate(order)}
        pool = np.full((len(rows), max(map(len, rows))), -1, np.int64)
        for i, window_rows in enumerate(rows):
            pool[i, : len(window_rows)] = [index[j] for j in window_rows]
        merged = {j: w for window_rows in rows for j, w in window_rows.items()}
        images = np.stack([merged[j] for j in order])
        hop = self.frontend.cfg.model_hop_samples
        chunk = Chunk(np.asarray(starts, dtype=np.float64), images, pool, np.asarray(order, np.int64) * hop)
        self._pools.append(pool)
        return chunk

    def finish(self, starts_s: list[np.ndarray], probabilities: list[np.ndarray],
               embeddings: list[np.ndarray] | None = None, *, audio: AudioFacts | None = None,
               times: StageTimes | None = None, postprocess: bool = True) -> Prediction:
        """Join the chunks' model outputs into the recording's :class:`Prediction`, applying the card's
        postprocessing to the whole sequence (unless ``postprocess`` is false)."""
        n_labels = len(self.card.labels)
        if self._pools:  # a recording grid: the model windows' outputs pooled into the report windows
            if len(self._pools) != len(probabilities):
                raise ValueError(f"{len(probabilities)} outputs for {len(self._pools)} chunks of a recording grid")
            probabilities = [pool_rows(p, pool, "max") for p, pool in zip(probabilities, self._pools, strict=True)]
            if embeddings:
                embeddings = [pool_rows(e, pool, "mean") for e, pool in zip(embeddings, self._pools, strict=True)]
        starts = np.concatenate(starts_s) if starts_s else np.zeros(0)
        probs = np.concatenate(probabilities) if probabilities else np.zeros((0, n_labels), np.float32)
        report = None
        if postprocess:
            probs, report = apply_postprocess(probs, self.card, self.hop_s)
        return Prediction(starts_s=starts, window_s=self.frontend.cfg.window_s, probabilities=probs,
                          embeddings=np.concatenate(embeddings) if embeddings else None, postprocess=report,
                          audio=audio, times=times)

    # -- all of it, in this thread -----------------------------------------------------------------
    def run(self, audio: Audio | AudioStream | np.ndarray, model: ModelFn, *, postprocess: bool = True) -> Prediction:
        """The whole pipeline, calling ``model`` on each chunk of images (``images -> (probabilities,
        embeddings or None)``, e.g. ``lambda x: engine.run(x, embeddings=True)``)."""
        t0 = time.perf_counter()
        starts, probs, embs = [], [], []
        model_s = 0.0
        for chunk in self.chunks(audio):
            m0 = time.perf_counter()
            p, e = model(chunk.images)
            model_s += time.perf_counter() - m0
            starts.append(chunk.starts_s)
            probs.append(p)
            if e is not None:
                embs.append(e)
        facts = AudioFacts.of(audio) if isinstance(audio, Audio | AudioStream) else None
        times = StageTimes(self.decode_s, self.frontend_s, model_s, time.perf_counter() - t0)
        return self.finish(starts, probs, embs, audio=facts, times=times, postprocess=postprocess)
