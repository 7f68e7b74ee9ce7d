"""Analysing one file: stream it, cut windows exactly as for the decoded file, run the model in batches.

Memory bound per file: one decoded block (``block_s`` seconds at the model rate, float32) plus the tail
that the next window still needs (< ``window_s``), one batch of windows and its images, and the results
(``n_windows x (n_labels + embedding dim)`` float32, about 4 KB per 5-second window with 1280-d
embeddings). With the defaults (60 s blocks at 32 kHz, batch 32) the audio side stays under ~60 MB
whatever the file length; a 3-hour file's results are ~9 MB with embeddings, ~20 KB per label without.

The card's temporal smoothing (:mod:`soundscape.postprocess`) runs once a file is read, on its whole
sequence of window probabilities, so the result does not depend on ``block_s`` and equals the service's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store import CARD_FILE, MODEL_FILE, ModelCard, ModelStore, StoreError, StoreErrorCode, VerifiedModel
from soundscape.audio import probe, stream
from soundscape.audio.functional import stream_windows
from soundscape.inference import Engine
from soundscape.postprocess import PostprocessReport, apply_postprocess

from .settings import AnalyzeSettings

__all__ = ["Detection", "FileAnalysis", "analyze_file", "detections", "load_model", "stream_windows"]


def load_model(settings: AnalyzeSettings) -> VerifiedModel:
    """The sha256-verified model the settings name: ``model_dir`` or the store's ``name``/``version``.

    Raises:
        StoreError: the model is missing, its card is invalid, or its bytes do not match the card.
    """
    if settings.model_dir is None:
        return ModelStore(settings.store).load(settings.name, settings.version)
    folder = Path(settings.model_dir)
    try:
        card = ModelCard.load(folder / CARD_FILE)
        data = (folder / MODEL_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise StoreError(StoreErrorCode.NOT_FOUND, f"{folder}: not a model folder ({exc})") from None
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise StoreError(StoreErrorCode.BAD_CARD, f"{folder / CARD_FILE}: invalid model card ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.sha256:
        raise StoreError(StoreErrorCode.CHECKSUM,
                         f"{folder / MODEL_FILE}: sha256 {digest[:12]}... does not match the card's "
                         f"{card.sha256[:12] or '(none)'}...")
    return VerifiedModel(card=card, onnx_bytes=data, path=folder / MODEL_FILE)


@dataclass(frozen=True)
class FileAnalysis:
    """Per-window results of one file.

    Attributes:
        starts_s (np.ndarray): ``(n_windows,)`` window starts in seconds.
        ends_s (np.ndarray): ``(n_windows,)`` window ends (``start + window_s``).
        probabilities (np.ndarray): ``(n_windows, n_labels)`` float32, after the card's postprocessing.
        embeddings (np.ndarray | None): ``(n_windows, dim)`` float32 when requested.
        duration_s (float): audio length at the model's rate.
        sample_rate (int): the file's own rate.
        channels (int): the file's channel count.
        postprocess (PostprocessReport): what was done to ``probabilities`` after the model.
    """

    starts_s: np.ndarray
    ends_s: np.ndarray
    probabilities: np.ndarray
    embeddings: np.ndarray | None
    duration_s: float
    sample_rate: int
    channels: int
    postprocess: PostprocessReport


def analyze_file(engine: Engine, path: str | Path, settings: AnalyzeSettings) -> FileAnalysis:
    """Stream one file through the engine, in bounded memory (see the module docstring).

    Raises:
        AudioError: the file is not usable audio (the code says why).
    """
    fe = engine.card.frontend
    hop = settings.hop_s or fe.hop_s
    info = probe(path)
    blocks = stream(path, sample_rate=fe.sample_rate, block_s=settings.block_s)
    starts, probs, embs, batch = [], [], [], []
    total_samples = 0

    def counted(it: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal total_samples
        for b in it:
            total_samples += len(b)
            yield b

    def flush() -> None:
        p, e = engine.run(engine.frontend(np.stack(batch)), embeddings=settings.embeddings)
        probs.append(p)
        if e is not None:
            embs.append(e)
        batch.clear()

    for start, window in stream_windows(counted(blocks), fe.sample_rate, fe.window_s, hop, fe.min_partial_s):
        starts.append(start)
        batch.append(window)
        if len(batch) == settings.batch_size:
            flush()
    if batch:
        flush()
    starts_s = np.asarray(starts, dtype=np.float64)
    n_labels = len(engine.card.labels)
    probabilities = np.concatenate(probs) if probs else np.zeros((0, n_labels), np.float32)
    # The whole file's windows are known only now: smooth them as the service does (same call).
    probabilities, report = apply_postprocess(probabilities, engine.card, hop)
    return FileAnalysis(
        starts_s=starts_s,
        ends_s=starts_s + fe.window_s,
        probabilities=probabilities,
        embeddings=np.concatenate(embs) if embs else None,
        duration_s=total_samples / fe.sample_rate,
        sample_rate=info.sample_rate,
        channels=info.channels,
        postprocess=report,
    )


@dataclass(frozen=True)
class Detection:
    """One (window, label) pair that passed the filters."""

    window: int
    start_s: float
    end_s: float
    code: str
    confidence: float


def detections(result: FileAnalysis, codes: list[str], settings: AnalyzeSettings) -> list[Detection]:
    """Detections of a file: ``species`` filter, then ``min_conf``, then ``top_k`` per window.

    Ordered by window, then by falling confidence (ties by label order).
    """
    keep = np.ones(len(codes), bool)
    if settings.species:
        keep = np.isin(codes, settings.species)
    out = []
    for w, row in enumerate(result.probabilities):
        idx = [j for j in np.argsort(-row, kind="stable") if keep[j] and row[j] >= settings.min_conf]
        if settings.top_k is not None:
            idx = idx[: settings.top_k]
        out.extend(Detection(w, float(result.starts_s[w]), float(result.ends_s[w]), codes[j], float(row[j]))
                   for j in idx)
    return out
