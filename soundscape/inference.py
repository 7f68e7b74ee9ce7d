"""The inference engine: a verified model plus the front end its card describes.

Used by the HTTP service and by batch analysis; no torch. One :class:`Engine` holds one runtime (the card's:
ONNX Runtime, or LiteRT for TFLite models; :mod:`soundscape.runtimes`); ``run`` is thread-safe. Mel models
take one image per window; waveform models take each window's model windows, all in one batch, and report
the max of their probabilities (embeddings: the mean). A card with a ``head`` is a frozen backbone plus
``head.onnx``: the runtime gives each model window's embedding, the head (ONNX Runtime) its logits, then the
same sigmoid and pool. Recordings go through the one window pipeline
(:mod:`soundscape.pipeline`): :meth:`Engine.pipeline` builds it for this model, :meth:`Engine.predict` runs
it on decoded audio.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from model_store import ModelCard, VerifiedModel
from soundscape.audio import Audio, AudioStream, Frontend, Windows
from soundscape.pipeline import Prediction, WindowPipeline
from soundscape.render import row_id
from soundscape.runtimes import Runtime, RuntimeUnavailableError, SignatureError, check_signature, open_runtime

__all__ = ["Engine", "EngineError", "Prediction", "row_id", "sigmoid"]

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """A model that cannot be loaded or does not match its card."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


class Engine:
    """Model runtime + front end, built from a verified model.

    Args:
        model (VerifiedModel): card and checksum-verified model bytes from the store.
        intra_op_threads (int): threads inside one ``run`` (LiteRT: threads per interpreter). (Default: ``1``)
        inter_op_threads (int): threads across graph nodes (ONNX Runtime). (Default: ``1``)
        fft_workers (int): FFT threads of the front end. (Default: ``1``)
        memory_arena, memory_pattern (bool): ONNX Runtime's CPU arena and memory plans (see
            :func:`~soundscape.runtimes.open_runtime`). (Default: ``True``, ``True``)
        native_rate (bool): a mel model's pipelines decode files at their own rate when the card's front end
            runs there exactly (48/64/96 kHz for the default 32 kHz card: no resampling; see
            :mod:`soundscape.audio.native`); false: always resample to the card's rate. (Default: ``False``:
            at concurrency it saved no time and cost memory, see the service's ``native_rate_mel``)

    Raises:
        EngineError: the card's runtime is not installed (the message names the extra), cannot load the
            bytes, or the model's inputs and outputs do not match the card.
    """

    def __init__(self, model: VerifiedModel, *, intra_op_threads: int = 1, inter_op_threads: int = 1,
                 fft_workers: int = 1, memory_arena: bool = True, memory_pattern: bool = True,
                 native_rate: bool = False) -> None:
        self.card: ModelCard = model.card
        self.native_rate = native_rate
        emb = self.card.embedding_output
        self.embedding_name = emb.name if emb else None
        self.runtime = self._open(model, self.card.runtime, model.onnx_bytes, threads=intra_op_threads,
                                  inter_op_threads=inter_op_threads, declare=[self.embedding_name] if emb else [],
                                  memory_arena=memory_arena, memory_pattern=memory_pattern)
        self.head = None
        if self.card.head is not None:
            if model.head_bytes is None:
                raise EngineError(f"{model.path}: the card has a head but no {self.card.head.file} was loaded")
            self.head = self._open(model, "onnxruntime", model.head_bytes, threads=intra_op_threads,
                                   memory_arena=memory_arena, memory_pattern=memory_pattern)
        try:
            check_signature(self.card, self.runtime, self.head)
        except SignatureError as exc:
            raise EngineError(f"{model.path}: {exc}") from None
        self.frontend = Frontend(self.card.frontend, workers=fft_workers)
        self.input_name = self.card.inputs[0].name
        self.logits_name = self.card.outputs[0].name

    @staticmethod
    def _open(model: VerifiedModel, runtime: str, data: bytes, **kwargs) -> Runtime:
        try:
            return open_runtime(runtime, data, **kwargs)
        except RuntimeUnavailableError as exc:
            raise EngineError(f"{model.path}: {exc}") from None
        except Exception as exc:  # runtimes raise several unrelated types for bad files
            raise EngineError(f"{model.path}: {runtime} cannot load the model ({exc})") from None

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    def run(self, images: np.ndarray, *, embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model on a batch of the front end's outputs, one row per report window.

        Args:
            images (np.ndarray): mel: ``(batch, n_mels, n_frames)`` or ``(batch, 1, n_mels, n_frames)``;
                waveform: ``(batch, k, model_window_samples)`` (each window's ``k`` model windows, all run in
                one batch) or ``(batch, model_window_samples)``; float32.
            embeddings (bool): also return the embeddings output. (Default: ``False``)

        Returns:
            tuple: probabilities ``(batch, n_labels)`` and embeddings ``(batch, dim)`` or None; a waveform
            window's are the max (embeddings: mean) over its model windows.
        """
        images, batch, per_window = self._model_inputs(images)
        if batch == 0:
            dim = self.card.embedding_output.shape[-1] if embeddings and self.card.embedding_output else 0
            return np.zeros((0, len(self.card.labels)), np.float32), (
                np.zeros((0, dim or 0), np.float32) if embeddings else None)
        if embeddings and self.embedding_name is None:
            raise EngineError(f"{self.card.name} v{self.card.version} has no embeddings output")
        logits, emb = self._forward(images, embeddings or self.head is not None)
        probs = sigmoid(logits) if self.card.output_activation == "sigmoid" else logits.astype(np.float32)
        emb = emb.astype(np.float32) if embeddings else None
        if per_window > 1:  # the card's pool (max) over each report window's model windows; embeddings: mean
            probs = probs.reshape(batch, per_window, -1).max(axis=1)
            emb = emb.reshape(batch, per_window, -1).mean(axis=1) if emb is not None else None
        return probs, emb

    def model_window_embeddings(self, images: np.ndarray) -> np.ndarray:
        """The embedding of every model window, not pooled: ``(batch, k, dim)`` for a batch of the front end's
        outputs (``k`` model windows per report window; 1 for mel models). What a head is trained on."""
        if self.embedding_name is None:
            raise EngineError(f"{self.card.name} v{self.card.version} has no embeddings output")
        images, batch, per_window = self._model_inputs(images)
        if batch == 0:
            return np.zeros((0, per_window, self.card.embedding_output.shape[-1] or 0), np.float32)
        (emb,) = self.runtime.run([self.embedding_name], {self.input_name: images})
        return emb.astype(np.float32).reshape(batch, per_window, -1)

    def _model_inputs(self, images: np.ndarray) -> tuple[np.ndarray, int, int]:
        """The runtime's input for a batch of the front end's outputs (waveform: every model window of the batch
        as one row), the batch size and the model windows per report window."""
        waveform = self.card.frontend.input == "waveform"
        if images.ndim == (2 if waveform else 3):  # one model window per report window / no channel axis
            images = images[:, None]
        batch, per_window = images.shape[:2]
        if waveform:  # every model window of the batch in one run
            images = images.reshape(batch * per_window, images.shape[-1])
        else:
            per_window = 1
        return np.ascontiguousarray(images, dtype=np.float32), batch, per_window

    def _forward(self, x: np.ndarray, embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (and the embedding) of model inputs; with a head, the head's logits of the embedding."""
        feed = {self.input_name: x}
        if self.head is None:
            outs = self.runtime.run([self.logits_name, self.embedding_name] if embeddings else [self.logits_name],
                                    feed)
            return outs[0], outs[1] if embeddings else None
        (emb,) = self.runtime.run([self.embedding_name], feed)
        (logits,) = self.head.run([self.logits_name], {self.card.head.input.name: emb.astype(np.float32)})
        return logits, emb

    def windows(self, audio: Audio, hop_s: float | None = None) -> Windows:
        """Windows of decoded audio by the card's policy."""
        return self.frontend.windows(audio, hop_s)

    def pipeline(self, hop_s: float | None = None, chunk_windows: int = 64, *,
                 native_rate: bool | None = None) -> WindowPipeline:
        """The window pipeline of one recording through this model (see :mod:`soundscape.pipeline`);
        ``native_rate`` overrides the engine's."""
        native = self.native_rate if native_rate is None else native_rate
        return WindowPipeline(self.card, self.frontend, hop_s=hop_s, chunk_windows=chunk_windows, native_rate=native)

    def decode_rate(self, source_rate: int, *, native_rate: bool | None = None) -> int:
        """The rate to decode a file of ``source_rate`` Hz at for this model (:meth:`WindowPipeline.decode_rate
        <soundscape.pipeline.WindowPipeline.decode_rate>`): e.g. ``stream(path, sample_rate=engine.decode_rate)``."""
        return self.pipeline(native_rate=native_rate).decode_rate(source_rate)

    def predict(self, audio: Audio | AudioStream, *, hop_s: float | None = None, embeddings: bool = False,
                batch_size: int = 64, postprocess: bool = True, native_rate: bool | None = None) -> Prediction:
        """Per-window probabilities for one recording: decoded, or streamed, at the card's sample rate or at
        a rate the card's front end runs at natively (:meth:`decode_rate`, e.g. ``decode(path,
        sample_rate=engine.decode_rate)``).

        With ``postprocess`` (the default) the card's smoothing is applied as the service and batch
        analysis apply it (the same pipeline); ``postprocess=False`` gives the model's raw probabilities.
        """
        return self.pipeline(hop_s, batch_size, native_rate=native_rate).run(
            audio, lambda x: self.run(x, embeddings=embeddings), postprocess=postprocess)

    def warmup(self, batch_sizes: tuple[int, ...] = (1, 12)) -> float:
        """Run the model once per batch size on silence; returns the seconds it took."""
        t0 = time.perf_counter()
        fe = self.card.frontend
        for n in batch_sizes:
            self.run(self.frontend(np.zeros((n, fe.window_samples), np.float32)))
        if self.native_rate:  # the common recorder rates' native front ends (filter banks: ~5 ms each)
            for rate in (48000, 96000):
                self.frontend.native(rate)
        took = time.perf_counter() - t0
        log.info("warmed up %s v%d in %.0f ms", self.card.name, self.card.version, took * 1000)
        return took
