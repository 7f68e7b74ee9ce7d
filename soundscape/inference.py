"""The inference engine: a verified ONNX model plus the front end its card describes.

Used by the HTTP service and by batch analysis; no torch. One :class:`Engine` holds one ONNX Runtime
session; ``run`` is thread-safe (ONNX Runtime allows concurrent ``run`` calls on one session).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from model_store import ModelCard, VerifiedModel
from soundscape.audio import Audio, Frontend, Windows
from soundscape.postprocess import PostprocessReport, apply_postprocess

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


def row_id(stem: str, end_s: float) -> str:
    """BirdCLEF row id of a window: ``<file stem>_<int(end_s)>``.

    A hair of slack keeps 15.0 at 15 when the end time comes from float sums (e.g. ``0.1 * 150``).
    """
    return f"{stem}_{int(end_s + 1e-6)}"


@dataclass(frozen=True)
class Prediction:
    """Per-window results for one recording.

    Attributes:
        starts_s (np.ndarray): ``(n_windows,)`` window starts in seconds.
        ends_s (np.ndarray): ``(n_windows,)`` window ends (``start + window_s``).
        probabilities (np.ndarray): ``(n_windows, n_labels)`` float32 in [0, 1], after the card's
            postprocessing (:mod:`soundscape.postprocess`) unless ``predict`` was told not to.
        embeddings (np.ndarray | None): ``(n_windows, dim)`` float32 when requested.
        postprocess (PostprocessReport | None): what was done to ``probabilities`` after the model.
    """

    starts_s: np.ndarray
    ends_s: np.ndarray
    probabilities: np.ndarray
    embeddings: np.ndarray | None = None
    postprocess: PostprocessReport | None = None


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

    def predict(self, audio: Audio, *, hop_s: float | None = None, embeddings: bool = False,
                batch_size: int = 64, postprocess: bool = True) -> Prediction:
        """Per-window probabilities for one decoded recording (at the card's sample rate).

        With ``postprocess`` (the default) the card's smoothing is applied as the service and batch
        analysis apply it; ``postprocess=False`` gives the model's raw probabilities.
        """
        wins = self.windows(audio, hop_s)
        probs, embs = [], []
        for a in range(0, len(wins), batch_size):
            images = self.frontend(wins.samples[a : a + batch_size])
            p, e = self.run(images, embeddings=embeddings)
            probs.append(p)
            if e is not None:
                embs.append(e)
        n_labels = len(self.card.labels)
        probabilities = np.concatenate(probs) if probs else np.zeros((0, n_labels), np.float32)
        report = None
        if postprocess:
            probabilities, report = apply_postprocess(probabilities, self.card, hop_s)
        return Prediction(
            starts_s=wins.starts_s,
            ends_s=wins.ends_s,
            probabilities=probabilities,
            embeddings=np.concatenate(embs) if embs else None,
            postprocess=report,
        )

    def warmup(self, batch_sizes: tuple[int, ...] = (1, 12)) -> float:
        """Run the model once per batch size on silence; returns the seconds it took."""
        t0 = time.perf_counter()
        fe = self.card.frontend
        for n in batch_sizes:
            self.run(self.frontend(np.zeros((n, fe.window_samples), np.float32)))
        took = time.perf_counter() - t0
        log.info("warmed up %s v%d in %.0f ms", self.card.name, self.card.version, took * 1000)
        return took
