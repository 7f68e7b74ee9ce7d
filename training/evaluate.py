"""Score an ONNX model the way the service runs it, on labelled soundscapes.

The same function scores the production model (champion) and a candidate (challenger, or an int8 copy):
windows come from :func:`training.soundscapes.load_soundscapes` (the service's windowing), images from the
model card's numpy front end and probabilities from :class:`soundscape.inference.Engine`, i.e. the
serving path, then :func:`training.metrics.score_all` gives the BirdCLEF metrics per window.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model_store import ModelCard, VerifiedModel
from soundscape import available_cpus
from soundscape.audio import FrontendConfig
from soundscape.inference import Engine

__all__ = ["Evaluation", "ValidationData", "evaluate_model", "load_validation", "unregistered_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationData:
    """Labelled soundscape windows, in the label space of the codes they were built for.

    Attributes:
        windows (np.ndarray): ``(n_windows, window_samples)`` float32 audio.
        targets (np.ndarray): ``(n_windows, n_codes)`` float32 truth.
        codes (list[str]): column order of ``targets``.
        frontend (FrontendConfig): the front end the windows were cut with.
        n_soundscapes (int): recordings the windows come from (0 for sets not cut from recordings).
        problems (dict[str, int]): count per kind of skipped input (unknown codes, missing files...).
        kind (str): which validation set: ``soundscapes``, ``pseudo_soundscapes`` or ``clips``.
        detail (str): how it was made, in words (recorded in the model card).
        blocks (int): metrics are averaged over this many equal runs of windows
            (:func:`training.metrics.score_blocks`).
    """

    windows: np.ndarray
    targets: np.ndarray
    codes: list[str]
    frontend: FrontendConfig
    n_soundscapes: int
    problems: dict[str, int] = field(default_factory=dict)
    kind: str = "soundscapes"
    detail: str = ""
    blocks: int = 1


@dataclass(frozen=True)
class Evaluation:
    """Scores of one model on one :class:`ValidationData`.

    Attributes:
        metrics (dict[str, float]): ``macro_roc_auc`` and ``padded_cmap``.
        per_species_ap (dict[str, float]): AP of every species with a positive window.
        n_windows (int): windows scored.
        probabilities (np.ndarray): ``(n_windows, n_labels)`` in the model's label order.
    """

    metrics: dict[str, float]
    per_species_ap: dict[str, float]
    n_windows: int
    probabilities: np.ndarray


def load_validation(labels_csv: str | os.PathLike, soundscapes_dir: str | os.PathLike, codes: Sequence[str],
                    frontend: FrontendConfig, *, cache_dir: str | os.PathLike) -> ValidationData:
    """Windows and targets of labelled soundscapes for given label codes and front end.

    Args:
        labels_csv (path): ``soundscape_labels.csv``.
        soundscapes_dir (path): folder of ``<soundscape_id>.<ext>`` recordings.
        codes (Sequence[str]): target columns (the challenger's labels); other codes are reported.
        frontend (FrontendConfig): sample rate and windowing of the model to score.
        cache_dir (path): decoded-audio cache.

    Raises:
        ValueError: the CSV is malformed or no labelled window is usable (the message names the file).
    """
    from training.data import AudioCache, ProblemReport
    from training.soundscapes import load_soundscapes

    problems = ProblemReport()
    cache = AudioCache(cache_dir, frontend.sample_rate)
    data = load_soundscapes(labels_csv, soundscapes_dir, list(codes), frontend, cache, problems)
    problems.log_summary()
    return ValidationData(windows=data.windows, targets=data.targets, codes=list(codes), frontend=frontend,
                          n_soundscapes=data.n_soundscapes, problems=problems.counts(), kind="soundscapes",
                          detail=f"{len(data.windows)} labelled windows of {data.n_soundscapes} soundscapes")


def unregistered_model(card: ModelCard, onnx_path: str | os.PathLike) -> VerifiedModel:
    """Wrap an ONNX file that is not in a store yet (a fresh export) so :class:`Engine` can load it."""
    path = Path(onnx_path)
    return VerifiedModel(card=card, onnx_bytes=path.read_bytes(), path=path)


def evaluate_model(model: VerifiedModel, data: ValidationData, *, batch_size: int = 16,
                   threads: int | None = None, desc: str | None = None) -> Evaluation:
    """Score a model through the serving path on labelled windows.

    The model's labels may differ from ``data.codes`` (a champion trained on other species): metrics are
    computed on the codes both share, in ``data.codes`` order; codes the model lacks score 0.

    Args:
        model (VerifiedModel): from ``ModelStore.load`` or :func:`unregistered_model`.
        data (ValidationData): from :func:`load_validation`.
        batch_size (int): windows per ONNX Runtime call (without ONNX Runtime's arena, so the process keeps no
            run's buffers: this scores once, often in a process that has just trained). (Default: ``16``)
        threads (int, optional): ONNX Runtime intra-op threads. (Default: the CPUs this process may use)
        desc (str, optional): progress-bar label.

    Returns:
        Evaluation: metrics, per-species AP and the ``(n_windows, n_labels)`` probabilities.
    """
    from training.metrics import score_blocks

    fe, want = model.card.frontend, data.frontend
    if (fe.sample_rate, fe.window_s) != (want.sample_rate, want.window_s):
        raise ValueError(f"{model.card.name} v{model.card.version} expects {fe.window_s:g} s windows at "
                         f"{fe.sample_rate} Hz; the validation windows are {want.window_s:g} s at "
                         f"{want.sample_rate} Hz (load them with this model's front end)")
    engine = Engine(model, intra_op_threads=threads or available_cpus(), memory_arena=False)
    probs = []
    n = len(data.windows)
    for a in tqdm(range(0, n, batch_size), desc=desc or f"scoring {model.card.name} v{model.card.version}",
                  unit="batch", leave=False):
        p, _ = engine.run(engine.frontend(data.windows[a : a + batch_size]))
        probs.append(p)
    probabilities = np.concatenate(probs) if probs else np.zeros((0, len(engine.card.labels)), np.float32)
    index = {c: i for i, c in enumerate(engine.card.codes)}
    shared = [c for c in data.codes if c in index]
    if not shared:
        raise ValueError(f"{model.card.name} v{model.card.version} shares no label with the validation data")
    scores = np.zeros((n, len(data.codes)), np.float32)
    for j, code in enumerate(data.codes):
        if code in index:
            scores[:, j] = probabilities[:, index[code]]
    result = score_blocks(data.targets, scores, list(data.codes), data.blocks)
    metrics = {k: float(result[k]) for k in ("macro_roc_auc", "padded_cmap")}
    log.info("%s v%d on %d windows: %s", model.card.name, model.card.version, n,
             ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return Evaluation(metrics=metrics, per_species_ap={k: float(v) for k, v in result["per_species_ap"].items()},
                      n_windows=n, probabilities=probabilities)
