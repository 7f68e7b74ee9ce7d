"""The inference engine: a verified ONNX model plus the front end its card describes.

Used by the HTTP service and by batch analysis; no torch. One :class:`Engine` holds one ONNX Runtime
session; ``run`` is thread-safe (ONNX Runtime allows concurrent ``run`` calls on one session). Recordings go
through the one window pipeline (:mod:`soundscape.pipeline`): :meth:`Engine.pipeline` builds it for this
model, :meth:`Engine.predict` runs it on decoded audio.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import onnxruntime as ort

from model_store import ModelCard, VerifiedModel
from soundscape.audio import Audio, AudioStream, Frontend, Windows
from soundscape.pipeline import Prediction, WindowPipeline
from soundscape.render import row_id

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
    """ONNX Runtime session + front end, built from a verified model.

    Args:
        model (VerifiedModel): card and checksum-verified ONNX bytes from the store.
        intra_op_threads (int): threads inside one ``run``. (Default: ``1``)
        inter_op_threads (int): threads across graph nodes. (Default: ``1``)
        fft_workers (int): FFT threads of the front end. (Default: ``1``)

    Raises:
        EngineError: ONNX Runtime cannot load the bytes, or the graph's inputs and outputs do not match
            the card.
    """

    def __init__(self, model: VerifiedModel, *, intra_op_threads: int = 1, inter_op_threads: int = 1,
                 fft_workers: int = 1) -> None:
        self.card: ModelCard = model.card
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model.onnx_bytes, sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise EngineError(f"{model.path}: ONNX Runtime cannot load the model ({exc})") from None
        self._check_signature(model)
        self.frontend = Frontend(self.card.frontend, workers=fft_workers)
        self.input_name = self.card.inputs[0].name
        self.logits_name = self.card.outputs[0].name
        emb = self.card.embedding_output
        self.embedding_name = emb.name if emb else None

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    def _check_signature(self, model: VerifiedModel) -> None:
        card = self.card
        graph_inputs = {i.name: i.shape for i in self.session.get_inputs()}
        graph_outputs = {o.name: o.shape for o in self.session.get_outputs()}
        spec = card.inputs[0]
        if spec.name not in graph_inputs:
            raise EngineError(f"{model.path}: the graph has no input {spec.name!r} (has {list(graph_inputs)})")
        shape = graph_inputs[spec.name]
        if len(shape) != 4 or [d if isinstance(d, int) else None for d in shape[1:]] != spec.shape[1:]:
            raise EngineError(f"{model.path}: graph input shape {shape} does not match the card's {spec.shape}")
        for out in card.outputs:
            if out.name not in graph_outputs:
                raise EngineError(f"{model.path}: the graph has no output {out.name!r}")
        logits_shape = graph_outputs[card.outputs[0].name]
        if len(logits_shape) != 2 or (isinstance(logits_shape[1], int) and logits_shape[1] != len(card.labels)):
            raise EngineError(
                f"{model.path}: graph output shape {logits_shape} does not match {len(card.labels)} labels"
            )

    def run(self, images: np.ndarray, *, embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model on a batch of images.

        Args:
            images (np.ndarray): ``(batch, n_mels, n_frames)`` or ``(batch, 1, n_mels, n_frames)`` float32.
            embeddings (bool): also return the embeddings output. (Default: ``False``)

        Returns:
            tuple: probabilities ``(batch, n_labels)`` and embeddings ``(batch, dim)`` or None.
        """
        if images.ndim == 3:
            images = images[:, None]
        if len(images) == 0:
            dim = self.card.embedding_output.shape[-1] if embeddings and self.card.embedding_output else 0
            return np.zeros((0, len(self.card.labels)), np.float32), (
                np.zeros((0, dim or 0), np.float32) if embeddings else None)
        names = [self.logits_name]
        if embeddings:
            if self.embedding_name is None:
                raise EngineError(f"{self.card.name} v{self.card.version} has no embeddings output")
            names.append(self.embedding_name)
        outs = self.session.run(names, {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})
        logits = outs[0]
        probs = sigmoid(logits) if self.card.output_activation == "sigmoid" else logits.astype(np.float32)
        return probs, (outs[1].astype(np.float32) if embeddings else None)

    def windows(self, audio: Audio, hop_s: float | None = None) -> Windows:
        """Windows of decoded audio by the card's policy."""
        return self.frontend.windows(audio, hop_s)

    def pipeline(self, hop_s: float | None = None, chunk_windows: int = 64) -> WindowPipeline:
        """The window pipeline of one recording through this model (see :mod:`soundscape.pipeline`)."""
        return WindowPipeline(self.card, self.frontend, hop_s=hop_s, chunk_windows=chunk_windows)

    def predict(self, audio: Audio | AudioStream, *, hop_s: float | None = None, embeddings: bool = False,
                batch_size: int = 64, postprocess: bool = True) -> Prediction:
        """Per-window probabilities for one recording at the card's sample rate: decoded, or streamed.

        With ``postprocess`` (the default) the card's smoothing is applied as the service and batch
        analysis apply it (the same pipeline); ``postprocess=False`` gives the model's raw probabilities.
        """
        return self.pipeline(hop_s, batch_size).run(audio, lambda x: self.run(x, embeddings=embeddings),
                                                     postprocess=postprocess)

    def warmup(self, batch_sizes: tuple[int, ...] = (1, 12)) -> float:
        """Run the model once per batch size on silence; returns the seconds it took."""
        t0 = time.perf_counter()
        fe = self.card.frontend
        for n in batch_sizes:
            self.run(self.frontend(np.zeros((n, fe.window_samples), np.float32)))
        took = time.perf_counter() - t0
        log.info("warmed up %s v%d in %.0f ms", self.card.name, self.card.version, took * 1000)
        return took
