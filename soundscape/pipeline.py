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

The result of every entry point is one :class:`Prediction`; :mod:`soundscape.render` turns it into the
service's JSON, BirdCLEF rows and the detection formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from model_store import ModelCard
from soundscape.audio import Audio, AudioStream, Frontend
from soundscape.audio.functional import stream_windows
from soundscape.postprocess import PostprocessReport, apply_postprocess

__all__ = ["AudioFacts", "Chunk", "ModelFn", "Prediction", "StageTimes", "WindowPipeline"]

ModelFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class AudioFacts:
    """What the results report about a recording (its samples are not kept).

    Attributes:
        duration_s (float): length of the decoded audio at the model's rate.
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
    """Consecutive windows of one recording, ready for the model."""

    starts_s: np.ndarray  # (n,) float64
    images: np.ndarray  # the front end's model inputs: (n, n_mels, n_frames) or waveform (n, k, samples) float32


class WindowPipeline:
    """One recording's trip through the front end and the model, by the card's rules.

    One instance per recording (it counts that recording's stage times).

    Args:
        card (ModelCard): labels, windowing policy and postprocessing.
        frontend (Frontend): the card's front end (shared, thread-safe).
        hop_s (float, optional): step between window starts. (Default: the card's hop)
        chunk_windows (int): windows per chunk of images (per model call, or per batcher submission).
    """

    def __init__(self, card: ModelCard, frontend: Frontend, *, hop_s: float | None = None,
                 chunk_windows: int = 64) -> None:
        if chunk_windows < 1:
            raise ValueError(f"chunk_windows must be >= 1, got {chunk_windows}")
        self.card = card
        self.frontend = frontend
        self.hop_s = card.frontend.hop_s if hop_s is None else hop_s
        self.chunk_windows = chunk_windows
        self.decode_s = 0.0
        self.frontend_s = 0.0

    # -- stages ------------------------------------------------------------------------------------
    def _blocks(self, audio: Audio | AudioStream | np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The audio's blocks at the front end's rate, timing the reads as the decode stage."""
        rate = self.frontend.cfg.sample_rate
        if isinstance(audio, Audio | AudioStream) and audio.sample_rate != rate:
            raise ValueError(f"audio is at {audio.sample_rate} Hz but the front end expects {rate} Hz")
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
                memory), a ``(n,)`` array, or any iterable of blocks, at the card's sample rate.
        """
        cfg = self.frontend.cfg
        starts: list[float] = []
        windows: list[np.ndarray] = []
        busy_from = time.perf_counter()
        decode_before = self.decode_s
        for start, window in stream_windows(self._blocks(audio), cfg.sample_rate, cfg.window_s, self.hop_s,
                                            cfg.min_partial_s):
            starts.append(start)
            windows.append(window)
            if len(windows) == self.chunk_windows:
                chunk = Chunk(np.asarray(starts, dtype=np.float64), self.frontend(np.stack(windows)))
                starts, windows = [], []
                self.frontend_s += time.perf_counter() - busy_from - (self.decode_s - decode_before)
                yield chunk
                busy_from, decode_before = time.perf_counter(), self.decode_s
        if windows:
            chunk = Chunk(np.asarray(starts, dtype=np.float64), self.frontend(np.stack(windows)))
            self.frontend_s += time.perf_counter() - busy_from - (self.decode_s - decode_before)
            yield chunk

    def finish(self, starts_s: list[np.ndarray], probabilities: list[np.ndarray],
               embeddings: list[np.ndarray] | None = None, *, audio: AudioFacts | None = None,
               times: StageTimes | None = None, postprocess: bool = True) -> Prediction:
        """Join the chunks' model outputs into the recording's :class:`Prediction`, applying the card's
        postprocessing to the whole sequence (unless ``postprocess`` is false)."""
        n_labels = len(self.card.labels)
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
