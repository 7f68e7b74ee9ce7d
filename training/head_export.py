"""A trained embedding head + its frozen backbone -> one served pipeline, checked, in the store.

:func:`publish_head` (``soundscape export <run>/best.pt`` on a head checkpoint):

1. reads the backbone version the head was trained on (verified, and refused when its sha256 is no longer the
   one trained on) and writes the head as ``head.onnx`` (:func:`training.embedding_head.head_onnx`);
2. builds the card of the pipeline (:func:`head_card`): the backbone's front end, runtime, input and embedding
   output, the head's labels and logits, ``head`` (kind, input, the backbone's name, version and sha256), and the
   backbone's ``license`` and ``source`` (BirdNET: CC BY-NC-SA 4.0; its file is copied into the user's store,
   never bundled);
3. checks parity (:func:`check_head_parity`): the pipeline, run by :class:`soundscape.inference.Engine` exactly as
   served, against the PyTorch head on the same embeddings, on real audio windows: probabilities within
   ``export.prob_atol`` (1e-4);
4. registers the backbone's model file and ``head.onnx`` as one version (the store checks both sha256), with the
   run's ``metrics.csv`` and ``curves.png``.

The card's metrics are the checkpoint's (its selecting validation set, computed by the PyTorch head on the
backbone's embeddings, which the parity check shows the served pipeline reproduces). Nothing is registered when
a step fails.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import (
    HeadSpec,
    ModelCard,
    ModelSource,
    ModelStore,
    StoreError,
    TensorSpec,
    ValidationInfo,
    VerifiedModel,
    load_folder,
)
from model_store.card import Postprocess
from soundscape.inference import Engine, EngineError

from .config import training_audio
from .embedding_head import HEAD_INPUT, HEAD_OUTPUT, EmbeddingHead, HeadCheckpoint, head_onnx
from .export import ExportError, real_windows
from .register import RUN_FILES, PublishConfig

__all__ = ["HeadPublishResult", "check_head_parity", "head_card", "publish_head"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadPublishResult:
    """What :func:`publish_head` registered: the card and the parity numbers."""

    card: ModelCard
    max_abs_diff_probabilities: float
    parity_windows: int


def check_head_parity(pipeline: Engine, head: EmbeddingHead, windows: np.ndarray, *, atol: float = 1e-4) -> float:
    """The served pipeline's probabilities vs the PyTorch head's on the same embeddings (max over model windows).

    Args:
        pipeline (Engine): the backbone-and-head model as served.
        head (EmbeddingHead): the trained head.
        windows (np.ndarray): real report windows ``(n, window_samples)`` at the front end's rate.
        atol (float): largest allowed absolute difference of a probability. (Default: ``1e-4``)

    Returns:
        float: the largest absolute difference.

    Raises:
        ExportError: a difference above ``atol`` (or a non-finite probability).
    """
    images = pipeline.frontend(windows)
    served, _ = pipeline.run(images)
    embeddings = pipeline.model_window_embeddings(images)
    with torch.no_grad():
        ref = torch.sigmoid(head.eval().pooled(torch.from_numpy(embeddings))).numpy()
    diff = np.abs(served.astype(np.float64) - ref)
    worst = float(diff.max()) if np.isfinite(diff).all() else float("nan")
    if not worst <= atol:
        w, c = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf))), diff.shape)
        raise ExportError(f"the exported pipeline differs from the PyTorch head: window {w}, label "
                          f"{pipeline.card.codes[c]}: {served[w, c]:.6g} vs {ref[w, c]:.6g} (|diff| {worst:.3g} > "
                          f"{atol:g}) on {len(windows)} real windows")
    return worst


def head_card(ckpt: HeadCheckpoint, backbone: ModelCard, cfg: PublishConfig,
              extra_training: dict[str, Any] | None = None) -> ModelCard:
    """The card of backbone + head (sha256s and version are filled in by the store)."""
    emb = backbone.embedding_output
    source = backbone.source if backbone.source.origin else ModelSource(
        origin=f"{backbone.name} v{backbone.version} ({backbone.architecture})", file=backbone.model_file,
        sha256=backbone.sha256)
    info = ckpt.validation
    notes = (f"A {ckpt.head} head trained on the frozen embeddings ({emb.name}, {ckpt.dim}) of {backbone.name} "
             f"v{backbone.version} ({backbone.architecture}); a window's probabilities are the max over its model "
             "windows'." + (f" Backbone: {backbone.notes}" if backbone.notes else "")
             + (f" {cfg.notes}" if cfg.notes else ""))
    return ModelCard(
        name=cfg.name, labels=ckpt.labels, frontend=backbone.frontend,
        architecture=f"{backbone.architecture}+{ckpt.head}-head", runtime=backbone.runtime, inputs=backbone.inputs,
        outputs=[TensorSpec(name=HEAD_OUTPUT, shape=[None, len(ckpt.labels)]), emb], output_activation="sigmoid",
        precision=backbone.precision,
        head=HeadSpec(kind=ckpt.head, input=TensorSpec(name=HEAD_INPUT, shape=[None, ckpt.dim]),
                      backbone=ckpt.backbone),
        data=ckpt.data, metrics=ckpt.metrics, per_species_ap=ckpt.per_species_ap,
        validation=ValidationInfo(selected_by=info.selected_by, monitor=info.monitor, metrics_from=info.selected_by,
                                  sets=dict(info.sets)),
        postprocess=Postprocess.model_validate(ckpt.train_config.get("postprocess") or {}),
        training={"train_config": ckpt.train_config, "epoch": ckpt.epoch,
                  "head": {"kind": ckpt.head, "dim": ckpt.dim, "hidden": ckpt.hidden if ckpt.head == "mlp" else None,
                           "pool": "max over model windows"}, **(extra_training or {})},
        parent_version=cfg.parent_version, license=backbone.license, source=source, notes=notes)


def _backbone(ckpt: HeadCheckpoint) -> VerifiedModel:
    """The backbone version the head was trained on, verified and unchanged since."""
    try:
        model = load_folder(ckpt.backbone_folder)
    except StoreError as exc:
        raise ValueError(f"the head's backbone is gone or broken: {exc.message}") from None
    if model.card.sha256 != ckpt.backbone.sha256:
        raise ValueError(f"{ckpt.backbone_folder}: its model file (sha256 {model.card.sha256[:12]}...) is not the one "
                         f"the head was trained on ({ckpt.backbone.sha256[:12]}...)")
    return model


def _parity_windows(ckpt: HeadCheckpoint, model: ModelCard, cfg: PublishConfig) -> np.ndarray:
    sources = [str(p) for p in cfg.audio or []]
    root = training_audio(ckpt.train_config)
    if not sources and root and Path(root).is_dir():
        sources = [root]
    if not sources:
        raise ValueError("no real audio for the parity check (the training data is gone); pass audio files or "
                         "folders (--audio)")
    return real_windows(model.frontend, sources, cfg.export.parity_windows)


def publish_head(checkpoint: str | os.PathLike, store: ModelStore,
                 cfg: PublishConfig | None = None) -> HeadPublishResult:
    """Compose a head checkpoint and its backbone into one model, check parity, register it (module docstring).

    Raises:
        ValueError: bad input (not a head checkpoint, backbone gone or changed, no audio, int8 asked).
        ExportError: the pipeline cannot be loaded or does not match the PyTorch head; nothing registered.
    """
    cfg = cfg or PublishConfig()
    if cfg.quantize:
        raise ValueError("int8 is not offered for embedding heads (the head is a few thousand weights; the backbone "
                         "is served as imported)")
    path = Path(checkpoint)
    ckpt = HeadCheckpoint.load(path)
    backbone = _backbone(ckpt)
    head = ckpt.model()
    with tempfile.TemporaryDirectory(prefix="soundscape-head-") as tmp:
        head_path = Path(tmp) / "head.onnx"
        head_path.write_bytes(head_onnx(head))
        card = head_card(ckpt, backbone.card, cfg, {"checkpoint": str(path)})
        try:
            pipeline = Engine(VerifiedModel(card=card, onnx_bytes=backbone.onnx_bytes, path=backbone.path,
                                            head_bytes=head_path.read_bytes()))
        except EngineError as exc:
            raise ExportError(f"the composed model does not load: {exc}") from None
        windows = _parity_windows(ckpt, card, cfg)
        diff = check_head_parity(pipeline, head, windows, atol=cfg.export.prob_atol)
        parity = {"max_abs_diff_probabilities": diff, "parity_windows": len(windows), "prob_atol": cfg.export.prob_atol,
                  "reference": "PyTorch head on the backbone's embeddings of the same windows"}
        card = card.model_copy(update={"training": {**card.training, "export": parity}})
        run_files = {f: path.parent / f for f in RUN_FILES if (path.parent / f).is_file()}
        registered = store.register(card, backbone.path, head_path=head_path, promote=cfg.promote,
                                    extra_files=run_files)
    log.info("registered %s v%d: %s on %s v%d (parity %.2g on %d windows)%s", registered.name, registered.version,
             ckpt.head, ckpt.backbone.name, ckpt.backbone.version, diff, len(windows),
             " and promoted it" if cfg.promote else "")
    return HeadPublishResult(card=registered, max_abs_diff_probabilities=diff, parity_windows=len(windows))
