"""Embedding heads: a multi-label head trained on a frozen backbone's embeddings (``soundscape train --backbone``).

With one to three clips of a species an ImageNet-initialised CNN learns little, while a bird-pretrained model's
embeddings (BirdNET v2.4's 1024 numbers per 3-s window) already tell many sounds apart: a linear or small MLP
head learns from a few examples. :func:`train_head`:

1. loads the backbone (:func:`training.embeddings.load_backbone`) and reads the data as fine-tuning does
   (:func:`training.loop.prepare_data`), at the backbone's front end: the same metadata checks, held-out split,
   beds (backgrounds and the site's unlabelled recordings) and validation sets (pseudo-soundscapes select by
   default; held-out clips and labelled soundscapes are only logged);
2. embeds augmented crops of the training clips and every validation window once, per model window
   (cached: :mod:`training.embeddings`);
3. trains the head in torch on the cached rows: AdamW with warm-up then cosine (:func:`training.loop.lr_scheduler`),
   rows drawn with weights ``count(primary) ** -sampling_alpha`` (a clip's weight shared by its crops), the run's
   loss (BCE or focal) on the **max over each window's model windows** of the logits, the card's pool rule
   (max of the sigmoids = sigmoid of the max); inputs standardised by the training rows' mean and std, which are
   part of the head and exported with it;
4. validates every epoch on every set, selects and stops early on ``cfg.monitor`` of ``cfg.validation``, and writes
   ``best.pt``/``last.pt`` (:class:`HeadCheckpoint`), ``metrics.csv``, ``curves.png``, ``problems.csv`` and
   ``embeddings.json`` (each cache file, and whether it was read or computed).

``soundscape export <run>/best.pt`` makes backbone and head one served pipeline (:mod:`training.head_export`).
Not done for heads: self-training rounds (unlabelled recordings give beds only), resuming (a run takes seconds
once the embeddings are cached), distributed training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_store import BackboneRef, DataSummary, Label, VerifiedModel
from soundscape.inference import Engine

from .checkpoint import SelectionInfo
from .config import TrainConfig
from .curves import plot_curves, write_metrics_csv
from .data import WeightedRankSampler
from .embeddings import Embedded, load_backbone, training_embeddings, validation_embeddings
from .loop import Progress, TrainData, lr_scheduler, prepare_data, score_validation, validation_info
from .losses import make_loss
from .result import TrainResult

__all__ = ["HEAD_CHECKPOINT_KIND", "EmbeddingHead", "HeadCheckpoint", "head_onnx", "is_head_checkpoint",
           "train_head"]

log = logging.getLogger(__name__)

HEAD_CHECKPOINT_KIND = "embedding_head"
HEAD_INPUT, HEAD_OUTPUT = "embedding", "logits"


class EmbeddingHead(nn.Module):
    """Standardisation, then one linear layer (``linear``) or linear-ReLU-dropout-linear (``mlp``).

    ``forward``: embeddings ``(..., dim)`` -> logits ``(..., n_classes)``; :meth:`pooled`: ``(batch, k, dim)``
    -> the max over the ``k`` model windows of the logits ``(batch, n_classes)``.
    """

    def __init__(self, dim: int, n_classes: int, kind: str = "linear", *, hidden: int = 512,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        if kind == "linear":
            self.layers = nn.Sequential(nn.Linear(dim, n_classes))
        elif kind == "mlp":
            self.layers = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, n_classes))
        else:
            raise ValueError(f"unknown head {kind!r}; expected linear or mlp")

    def standardise(self, x: np.ndarray) -> None:
        """Set the input mean and scale from training embeddings ``(..., dim)`` (flat dimensions kept, not blown up)."""
        flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
        std = flat.std(axis=0)
        self.mean.copy_(torch.from_numpy(flat.mean(axis=0)).float())
        self.scale.copy_(torch.from_numpy(1.0 / np.maximum(std, 1e-2 * std.mean() + 1e-8)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) * self.scale)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).amax(dim=1)


def head_onnx(head: EmbeddingHead) -> bytes:
    """The head as an ONNX graph (opset 17): ``embedding (batch, dim)`` -> ``logits (batch, n_classes)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    linears = [m for m in head.layers if isinstance(m, nn.Linear)]
    consts = {"mean": head.mean, "scale": head.scale}
    nodes = [helper.make_node("Sub", [HEAD_INPUT, "mean"], ["centred"]),
             helper.make_node("Mul", ["centred", "scale"], ["h0"])]
    for i, layer in enumerate(linears):
        consts.update({f"w{i}": layer.weight, f"b{i}": layer.bias})
        last = i == len(linears) - 1
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [HEAD_OUTPUT if last else f"z{i}"],
                                      transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i + 1}"]))
    dim, n_classes = linears[0].in_features, linears[-1].out_features
    graph = helper.make_graph(
        nodes, "embedding-head",
        [helper.make_tensor_value_info(HEAD_INPUT, TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["batch", n_classes])],
        initializer=[numpy_helper.from_array(t.detach().cpu().numpy().astype(np.float32), name)
                     for name, t in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="soundscape")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass(frozen=True, eq=False)  # tensors have no single truth value
class HeadCheckpoint:
    """A trained head and what it was trained on, saved as one ``torch.save`` dict (``kind: embedding_head``,
    plain containers and tensors only: ``torch.load(weights_only=True)`` reads it back).

    Attributes:
        head (str): ``linear`` or ``mlp``.
        state_dict (dict[str, Tensor]): the head's weights (standardisation included).
        dim (int): embedding size. hidden (int), dropout (float): the mlp's settings.
        labels (list[Label]): output classes, in output order.
        backbone (BackboneRef): the backbone's store version; ``backbone_folder`` is where it was read.
        epoch (int), metrics, per_species_ap, data, validation, history, train_config: as in
            :class:`training.checkpoint.Checkpoint`.
    """

    head: str
    state_dict: dict[str, Any]
    dim: int
    labels: list[Label]
    backbone: BackboneRef
    backbone_folder: str
    train_config: dict[str, Any]
    epoch: int
    hidden: int = 512
    dropout: float = 0.2
    metrics: dict[str, float] = field(default_factory=dict)
    per_species_ap: dict[str, float] = field(default_factory=dict)
    data: DataSummary = field(default_factory=DataSummary)
    validation: SelectionInfo = field(default_factory=SelectionInfo)
    history: list[dict] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [label.code for label in self.labels]

    def model(self) -> EmbeddingHead:
        """The head in eval mode."""
        head = EmbeddingHead(self.dim, len(self.labels), self.head, hidden=self.hidden, dropout=self.dropout)
        head.load_state_dict(self.state_dict)
        return head.eval()

    def save(self, path: str | os.PathLike) -> None:
        raw = {"kind": HEAD_CHECKPOINT_KIND, "format": 1, **{k: getattr(self, k) for k in (
            "head", "state_dict", "dim", "backbone_folder", "train_config", "epoch", "hidden", "dropout", "metrics",
            "per_species_ap", "history")}, "labels": [lab.model_dump() for lab in self.labels],
            "backbone": self.backbone.model_dump(), "data": self.data.model_dump(),
            "validation": {"selected_by": self.validation.selected_by, "monitor": self.validation.monitor,
                           "sets": dict(self.validation.sets)}}
        tmp = Path(path).with_name(f".{Path(path).name}.tmp")
        torch.save(raw, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HeadCheckpoint:
        """Raises: ValueError: not a head checkpoint."""
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or raw.get("kind") != HEAD_CHECKPOINT_KIND:
            raise ValueError(f"{path}: not an embedding-head checkpoint")
        return cls(head=raw["head"], state_dict=raw["state_dict"], dim=int(raw["dim"]),
                   labels=[Label.model_validate(x) for x in raw["labels"]],
                   backbone=BackboneRef.model_validate(raw["backbone"]), backbone_folder=raw["backbone_folder"],
                   train_config=raw["train_config"], epoch=int(raw["epoch"]), hidden=int(raw["hidden"]),
                   dropout=float(raw["dropout"]), metrics=dict(raw["metrics"]),
                   per_species_ap=dict(raw["per_species_ap"]),
                   data=DataSummary.model_validate(raw["data"]), validation=SelectionInfo(**raw["validation"]),
                   history=list(raw["history"]))


def is_head_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a :class:`HeadCheckpoint` (a fine-tuning checkpoint is not)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return isinstance(raw, dict) and raw.get("kind") == HEAD_CHECKPOINT_KIND


# -- training ---------------------------------------------------------------------------------------
@dataclass
class _Fit:
    """What the epochs of a head run work with."""

    cfg: TrainConfig
    head: EmbeddingHead
    x: torch.Tensor  # (rows, k, dim)
    y: torch.Tensor  # (rows, n_classes)
    sampler: WeightedRankSampler
    steps: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    val: dict[str, Embedded]


def train_head(cfg: TrainConfig, *, on_epoch_end: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``cfg.head`` on ``cfg.backbone``'s embeddings of the clips of ``cfg.metadata`` (module docstring).

    Raises:
        FileNotFoundError: a configured file or folder is missing.
        ValueError: unusable data, backbone or settings (one line naming it).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("embedding heads train in one process (they take seconds): run without torchrun")
    backbone = load_backbone(cfg.backbone, cfg.backbone_store)
    cfg = cfg.model_copy(update={"frontend": backbone.card.frontend})  # the data at the backbone's rate and windows
    for what, on in (("self-training", cfg.self_trains), ("resume", cfg.resume)):
        if on:
            log.warning("%s is not done for embedding heads: ignored", what)
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg)
    data.problems.save(run_dir / "problems.csv")
    engine = Engine(backbone, intra_op_threads=cfg.head_training.backbone_threads)
    train_rows = training_embeddings(cfg, engine, data)
    val = {kind: validation_embeddings(cfg, engine, vd) for kind, vd in data.val_sets.items()}
    (run_dir / "embeddings.json").write_text(json.dumps(
        {"backbone": _backbone_ref(backbone).model_dump(), "pool": "max over model windows",
         "train": train_rows.summary(), "validation": {k: v.summary() for k, v in val.items()}}, indent=2) + "\n")
    fit = _setup(cfg, data, train_rows, val)
    progress = _epochs(fit, data, backbone, run_dir, on_epoch_end)
    plot_curves(progress.history, run_dir / "curves.png")
    return TrainResult(run_dir=run_dir, best_checkpoint=run_dir / "best.pt", last_checkpoint=run_dir / "last.pt",
                       metrics=progress.best_metrics, history=progress.history)


def _backbone_ref(backbone: VerifiedModel) -> BackboneRef:
    card = backbone.card
    return BackboneRef(name=card.name, version=card.version, architecture=card.architecture, sha256=card.sha256,
                       labels=len(card.labels))


def _setup(cfg: TrainConfig, data: TrainData, rows: Embedded, val: dict[str, Embedded]) -> _Fit:
    """The head (standardised on the training rows), sampler, optimiser, schedule and loss."""
    torch.manual_seed(cfg.seed)
    h = cfg.head_training
    head = EmbeddingHead(rows.embeddings.shape[-1], len(data.labels), cfg.head, hidden=h.hidden, dropout=h.dropout)
    head.standardise(rows.embeddings)
    weights = data.train_weights[rows.rows]  # each clip's weight, shared by its crops
    sampler = WeightedRankSampler(weights / weights.sum(), cfg.epoch_samples or len(weights), seed=cfg.seed)
    steps = math.ceil(len(sampler) / cfg.batch_size)
    steps = steps if cfg.max_steps_per_epoch is None else min(steps, cfg.max_steps_per_epoch)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _Fit(cfg=cfg, head=head, x=torch.from_numpy(rows.embeddings), y=torch.from_numpy(rows.targets),
                sampler=sampler, steps=steps, optimizer=optimizer, scheduler=lr_scheduler(optimizer, cfg, steps),
                loss_fn=make_loss(cfg.loss, focal_gamma=cfg.focal_gamma), val=val)


def _epochs(fit: _Fit, data: TrainData, backbone: VerifiedModel, run_dir: Path,
            on_epoch_end: Callable[[dict], None] | None) -> Progress:
    cfg, progress = fit.cfg, Progress()
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        row = _train_epoch(fit, epoch)
        val_metrics, per_species = _validate(fit, data)
        row.update({"val_loss": math.nan, "macro_roc_auc": math.nan, "padded_cmap": math.nan}, **val_metrics)
        row["epoch_s"] = time.perf_counter() - started
        improved = progress.record(row, val_metrics, cfg.monitor)
        log.info("epoch %d/%d: train_loss %.4f %s%s", epoch, cfg.epochs, row["train_loss"],
                 " ".join(f"{k} {v:.4f}" for k, v in val_metrics.items()), " (best)" if improved else "")
        ckpt = _checkpoint(fit, data, backbone, epoch, row, val_metrics, per_species, progress)
        ckpt.save(run_dir / "last.pt")
        if improved:
            ckpt.save(run_dir / "best.pt")
        write_metrics_csv(progress.history, run_dir / "metrics.csv")
        if on_epoch_end is not None:
            on_epoch_end(row)
        if progress.stopped(cfg):
            log.info("early stopping: no %s improvement in %d epochs", cfg.monitor, progress.bad_epochs)
            break
    return progress


def _train_epoch(fit: _Fit, epoch: int) -> dict:
    fit.sampler.set_epoch(epoch)
    fit.head.train()
    draws = torch.as_tensor(list(fit.sampler))
    t0, seen, loss_sum = time.perf_counter(), 0, 0.0
    for step in range(fit.steps):
        idx = draws[step * fit.cfg.batch_size : (step + 1) * fit.cfg.batch_size]
        if not len(idx):
            break
        loss = fit.loss_fn(fit.head.pooled(fit.x[idx]), fit.y[idx])
        fit.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if fit.cfg.grad_clip:
            nn.utils.clip_grad_norm_(fit.head.parameters(), fit.cfg.grad_clip)
        fit.optimizer.step()
        fit.scheduler.step()
        seen += len(idx)
        loss_sum += loss.item() * len(idx)
    elapsed = time.perf_counter() - t0
    return {"epoch": epoch, "train_loss": loss_sum / max(1, seen), "lr": fit.scheduler.get_last_lr()[0],
            "samples": seen, "samples_per_s": seen / elapsed if elapsed else 0.0}


@torch.no_grad()
def _validate(fit: _Fit, data: TrainData) -> tuple[dict[str, float], dict[str, float]]:
    """Every validation set scored as fine-tuning scores it (:func:`training.loop.score_validation`)."""
    fit.head.eval()
    metrics: dict[str, float] = {}
    per_species: dict[str, float] = {}
    for kind, vd in data.val_sets.items():
        emb = fit.val[kind]
        probs = torch.sigmoid(fit.head.pooled(torch.from_numpy(emb.embeddings))).numpy()
        scores, species = score_validation(fit.cfg, kind, vd, probs, emb.targets)
        metrics.update(scores)
        per_species = species or per_species
    return metrics, per_species


def _checkpoint(fit: _Fit, data: TrainData, backbone: VerifiedModel, epoch: int, row: dict,
                val_metrics: dict[str, float], per_species: dict[str, float], progress: Progress) -> HeadCheckpoint:
    cfg = fit.cfg
    finite = {k: float(v) for k, v in {**val_metrics, "train_loss": row["train_loss"]}.items() if math.isfinite(v)}
    return HeadCheckpoint(
        head=cfg.head, state_dict={k: v.detach().clone() for k, v in fit.head.state_dict().items()},
        dim=int(fit.x.shape[-1]), labels=data.labels, backbone=_backbone_ref(backbone),
        backbone_folder=str(backbone.path.parent.resolve()), train_config=cfg.model_dump(mode="json"), epoch=epoch,
        hidden=cfg.head_training.hidden, dropout=cfg.head_training.dropout, metrics=finite,
        per_species_ap={k: float(v) for k, v in per_species.items() if math.isfinite(v)}, data=data.summary,
        validation=validation_info(cfg, data.val_sets), history=list(progress.history))
