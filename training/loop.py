"""The training loop behind :func:`training.train`.

Data check and cache, augmentation, AdamW + warm-up/cosine, validation, checkpoints.

``run_training(cfg)`` runs the same way in one process and under ``torchrun --nproc_per_node=N`` (DDP: gloo on
CPU, nccl on GPUs). Under torchrun every rank trains on its own share of each epoch's weighted draw; rank 0
alone validates and writes files (checkpoints, ``metrics.csv``, ``curves.png``, ``problems.csv``), and
broadcasts the validation metric so all ranks stop early together.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from model_store import DataSummary, Label
from soundscape.allocator import limit_malloc_arenas, release_free_memory
from soundscape.audio.transforms import LogMelSpectrogram

from .augment import Augmenter, load_beds
from .checkpoint import Checkpoint, SelectionInfo
from .config import TrainConfig
from .curves import plot_curves, write_metrics_csv
from .data import (
    AudioCache,
    CachedStretch,
    ClipDataset,
    ProblemReport,
    TrainingSet,
    WeightedRankSampler,
    WindowDataset,
    build_labels,
    holdout_split,
    make_targets,
    read_taxonomy,
    sampling_weights,
)
from .evaluate import ValidationData
from .inputs import load_clips

if TYPE_CHECKING:
    from .self_training import PseudoLabels
from .losses import make_loss
from .metrics import score_blocks
from .models import create_model
from .precision import autocast_dtype
from .result import TrainResult
from .validation import ValidationImages, validation_sets

__all__ = ["Progress", "TrainData", "lr_scheduler", "predict", "prepare_data", "run_training", "score_validation",
           "validation_info"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _init_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return _Dist(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


@dataclass
class TrainData:
    """A run's data: labels, training set and weights, validation sets, beds, summary and problems."""

    labels: list[Label]
    train: TrainingSet
    val_sets: dict[str, ValidationData]  # the selecting set first; empty on ranks > 0 (a run moves them to images)
    train_weights: np.ndarray
    summary: DataSummary
    backgrounds: list[np.ndarray | CachedStretch]  # the beds
    bed_targets: np.ndarray | None  # soft targets of the beds (pseudo-labelled windows), else None
    problems: ProblemReport


def _pseudo_windows(pseudo: PseudoLabels, codes: list[str], cfg: TrainConfig, cache: AudioCache) -> WindowDataset:
    """The pseudo-labelled windows as a dataset, with soft targets by the confidence policy."""
    if pseudo.codes != codes:
        raise ValueError("the pseudo-labels were made for other classes than this run's")
    targets = cfg.self_training.targets(pseudo.probs)
    log.info("pseudo-labelled windows: %d (%d with a species, %d negatives)", len(targets),
             int((targets.max(axis=1) > 0).sum()), int((targets.max(axis=1) == 0).sum()))
    return WindowDataset(pseudo.files, pseudo.starts_s, targets, cache, cfg.frontend.window_samples)


def prepare_data(cfg: TrainConfig, ctx: _Dist | None = None, pseudo: PseudoLabels | None = None) -> TrainData:
    """Read and check the data, fill the decode cache (rank 0 first), hold out, build the datasets (at
    ``cfg.frontend``'s rate and window; ``ctx``: this process's place in a distributed run, default alone)."""
    ctx = ctx or _Dist()
    problems = ProblemReport()
    cache = AudioCache(cfg.resolved_cache_dir, cfg.frontend.sample_rate)
    workers = max(1, cfg.num_workers)
    if not ctx.main:
        ctx.barrier()  # wait for rank 0 to decode; then every file is a cache hit
    clips, names = load_clips(cfg, cache, problems, workers=workers)
    backgrounds = load_beds(cfg, cache, problems, workers=workers)  # beds: backgrounds_dir + unlabelled_dir
    if ctx.main:
        ctx.barrier()
    if not clips:
        raise ValueError(f"{cfg.source}: no usable clip ({len(problems)} problems, e.g. "
                         f"{[p.file for p in problems.problems[:3]]})")
    labels = [Label.model_validate(label) for label in
              build_labels(clips, read_taxonomy(cfg.taxonomy) if cfg.taxonomy else None, names)]
    codes = [label.code for label in labels]
    train_clips, held_out = (holdout_split(clips, cfg.val_fraction, cfg.seed, cache) if cfg.holds_out
                             else (clips, []))
    val_sets = validation_sets(cfg, held_out, codes, cache, problems) if ctx.main else {}  # rank 0 validates
    if ctx.main:
        problems.log_summary()
    clips_ds = ClipDataset(train_clips, make_targets(train_clips, codes, cfg.secondary_weight), cache,
                           cfg.frontend.window_samples, random_crop=cfg.train_crop == "random", seed=cfg.seed,
                           call_crop_p=cfg.call_crop_p)
    weights = sampling_weights(train_clips, cfg.sampling_alpha)
    windows, bed_targets = None, None
    if pseudo is not None and len(pseudo.files):
        windows = _pseudo_windows(pseudo, codes, cfg, cache)
        if cfg.augment.background_p > 0:  # clips are mixed into the pseudo-labelled windows too, labels unioned
            bed_targets = np.concatenate([np.zeros((len(backgrounds), len(codes)), np.float32), windows.targets])
            backgrounds = backgrounds + [windows.bed(i) for i in range(len(windows))]
        share = cfg.self_training.window_share
        weights = np.concatenate([weights * (1 - share), np.full(len(windows), share / len(windows))])
    scapes = val_sets.get("soundscapes")
    summary = DataSummary(
        train_clips=len(train_clips), val_clips=len(held_out), val_soundscapes=scapes.n_soundscapes if scapes else 0,
        clips_per_label={c: sum(1 for clip in train_clips if clip.primary == c) for c in codes},
        source=str(cfg.source), skipped_files=len(problems.files() - {p.file for p in problems.problems
                                                                        if p.kind == "bad_row"}),
    )
    if ctx.main:
        log.info("data: %d classes, %d training clips, %d held out; validation sets: %s (selects: %s)", len(codes),
                 len(train_clips), len(held_out), "; ".join(f"{k}: {v.detail}" for k, v in val_sets.items()),
                 cfg.validation)
    return TrainData(labels=labels, train=TrainingSet(clips_ds, windows), val_sets=val_sets, train_weights=weights,
                 summary=summary, backgrounds=backgrounds, bed_targets=bed_targets, problems=problems)


def _validation_images(data: TrainData, batch_size: int) -> dict[str, ValidationImages]:
    """The validation sets as images (:class:`ValidationImages`), in their order; each set's waveforms are let go
    once it is converted (``data.val_sets`` is left empty)."""
    return {kind: ValidationImages.of(data.val_sets.pop(kind), batch_size) for kind in list(data.val_sets)}


@torch.no_grad()
def predict(model: nn.Module, batches: DataLoader, device: torch.device, *,
            amp: bool = False, desc: str = "validating") -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of ``model`` over ``(images, targets)`` batches.

    Args:
        model (nn.Module): image model, ``(batch, 1, n_mels, frames)`` -> logits ``(batch, n_classes)``.
        batches (DataLoader): ``(images (batch, n_mels, frames), targets (batch, n_classes))``.
        device (torch.device): where to run.
        amp (bool): float16 autocast (CUDA only). (Default: ``False``)

    Returns:
        tuple: probabilities and targets, both ``(n, n_classes)`` float32 numpy arrays.
    """
    was_training = model.training
    model.eval()
    probs, targets = [], []
    for images, y in tqdm(batches, desc=desc, leave=False, unit="batch"):
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = model(images.to(device, non_blocking=True)[:, None])
        probs.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(y.numpy())
    model.train(was_training)
    return np.concatenate(probs), np.concatenate(targets)


def score_validation(cfg: TrainConfig, kind: str, vd: ValidationData | ValidationImages, probs: np.ndarray,
                     targets: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """One validation set's metrics as a run logs them: ``<set>_padded_cmap`` and ``<set>_macro_roc_auc``, and
    for the selecting set (``cfg.validation``) also ``val_loss``, ``padded_cmap``, ``macro_roc_auc`` and the
    per-species AP (empty for the other sets)."""
    scores = score_blocks(targets, probs, vd.codes, vd.blocks)
    metrics = {f"{kind}_padded_cmap": scores["padded_cmap"], f"{kind}_macro_roc_auc": scores["macro_roc_auc"]}
    if kind != cfg.validation:
        return metrics, {}
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    metrics["val_loss"] = float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    metrics["padded_cmap"], metrics["macro_roc_auc"] = scores["padded_cmap"], scores["macro_roc_auc"]
    return metrics, scores["per_species_ap"]


ORT_MIN_WINDOWS = 256
"""On a CPU, validation sets of at least this many windows (all together) are scored by ONNX Runtime on the
current weights exported each epoch (:func:`_ort_scorer`): measured on 2 CPUs, 640 windows of
``tf_efficientnet_lite0`` (128x313) took 37 s eager (float32, channels-last; 56 s contiguous) and 15 s with
ONNX (8 s export and parity check, 6.5 s inference); a few dozen windows are quicker eager."""


def _ort_scorer(model: nn.Module, cfg: TrainConfig, model_kwargs: dict[str, Any],
                sets: Mapping[str, ValidationImages]) -> Callable[[np.ndarray], np.ndarray] | None:
    """``images -> probabilities`` of the current weights exported to ONNX in memory, run by ONNX Runtime
    (every CPU); None (validate eagerly) when the export fails."""
    from soundscape import available_cpus
    from soundscape.inference import sigmoid
    from soundscape.runtimes import OnnxRuntime

    from .export import INPUT_NAME, OUTPUT_NAMES, ExportConfig, ExportError, export_onnx_bytes, exportable_model
    from .register import spread_indices

    with torch.random.fork_rng(devices=[]):  # building the copy draws initial weights: keep the run's RNG
        copy = exportable_model(cfg.arch, model_kwargs, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    first = next(iter(sets.values())).images
    try:
        onnx, _ = export_onnx_bytes(copy, first[spread_indices(len(first), ExportConfig().parity_windows)][:, None])
    except ExportError as exc:
        log.warning("validating in eager PyTorch: %s", exc)
        return None
    # Without ONNX Runtime's arena each run's activations go back to malloc, for the next training step to reuse:
    # with it, validation held ~50 MB more than the steps (the process's peak).
    session = OnnxRuntime(onnx, threads=available_cpus(), memory_arena=False)
    size = cfg.val_batch_size

    def score(images: np.ndarray) -> np.ndarray:
        logits = [session.run([OUTPUT_NAMES[0]], {INPUT_NAME: images[a : a + size][:, None]})[0]
                  for a in range(0, len(images), size)]
        return sigmoid(np.concatenate(logits)).astype(np.float32)

    return score


def _validate(model: nn.Module, sets: Mapping[str, ValidationImages], cfg: TrainConfig, ctx: _Dist,
              model_kwargs: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Score every validation set (:func:`score_validation`): in eager PyTorch, or with ONNX Runtime on a CPU
    when the sets hold at least :data:`ORT_MIN_WINDOWS` windows and ``model_kwargs`` (to rebuild the model for
    export) is given."""
    n = sum(len(vd) for vd in sets.values())
    ort_score = (_ort_scorer(model, cfg, model_kwargs, sets) if model_kwargs is not None and ctx.device.type == "cpu"
                 and n >= ORT_MIN_WINDOWS else None)
    metrics: dict[str, float] = {}
    per_species: dict[str, float] = {}
    for kind, vd in sets.items():
        if ort_score is not None:
            probs, targets = ort_score(vd.images), vd.targets
        else:
            loader = DataLoader(TensorDataset(torch.from_numpy(vd.images), torch.from_numpy(vd.targets)),
                                batch_size=cfg.val_batch_size, shuffle=False)
            probs, targets = predict(model, loader, ctx.device, amp=cfg.amp, desc=f"validating {kind}")
        scores, species = score_validation(cfg, kind, vd, probs, targets)
        metrics.update(scores)
        per_species = species or per_species
    return metrics, per_species


def validation_info(cfg: TrainConfig, sets: Mapping[str, ValidationData | ValidationImages]) -> SelectionInfo:
    """Which validation selects checkpoints, and how each set was made (for the model card)."""
    return SelectionInfo(selected_by=cfg.validation if sets else "none", monitor=cfg.monitor,
                         sets={kind: vd.detail for kind, vd in sets.items()})


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up over ``cfg.warmup_epochs``, then cosine down to ``cfg.min_lr_ratio * cfg.lr``."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup),
                                                        eta_min=cfg.lr * cfg.min_lr_ratio)
    if warmup <= 0:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def _gather(obj: Any, ctx: _Dist) -> list[Any]:
    if ctx.world == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any, ctx: _Dist) -> Any:
    if ctx.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def run_training(cfg: TrainConfig, *, on_epoch_end: Callable[[dict], None] | None = None,
                 pseudo_labels: PseudoLabels | None = None) -> TrainResult:
    """Fine-tune ``cfg.arch`` on the clips of ``cfg.metadata`` (see :func:`training.train`).

    Writes to ``cfg.out_dir``: ``last.pt`` every epoch, ``best.pt`` when the monitored validation metric
    improves (every epoch when there is no validation set), ``metrics.csv``, ``problems.csv`` and, at the
    end, ``curves.png``. With ``cfg.resume`` it continues from ``last.pt`` (model, optimiser, scheduler,
    random states, early-stopping counters), giving the same weights as an uninterrupted run.

    Args:
        cfg (TrainConfig): the run's settings.
        on_epoch_end (callable, optional): called with each epoch's metrics row after its checkpoint is
            written (on every rank).
        pseudo_labels (PseudoLabels, optional): a self-training round's pseudo-labelled windows, trained on
            beside the clips (see :mod:`training.self_training`).

    Returns:
        TrainResult: paths of the checkpoints, the best metrics and the history.

    Raises:
        FileNotFoundError: a configured file or folder is missing.
        ValueError: unusable data or settings (the message names the file or value).
    """
    limit_malloc_arenas(cfg.malloc_arena_max)  # before the prefetch thread and torch's pool allocate
    release_free_memory()  # what an earlier round (and its teacher's scoring) freed, before this round's data
    ctx = _init_distributed()
    try:
        return _train(cfg, ctx, on_epoch_end, pseudo_labels)
    finally:
        if ctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """What the epochs of a run work with (built by :func:`_setup`)."""

    cfg: TrainConfig
    ctx: _Dist
    data: TrainData
    val: dict[str, ValidationImages]  # the validation sets as images, the selecting one first (rank 0's)
    run_dir: Path
    model: nn.Module  # the bare model: validated and saved
    net: nn.Module  # what trains: the model, or its DistributedDataParallel wrapper
    model_kwargs: dict[str, Any]
    frontend: nn.Module
    sampler: WeightedRankSampler
    loader: DataLoader
    steps: int  # optimiser steps per epoch
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # autocast dtype of the training steps (None: float32)
    micro_batch: int | None  # windows per forward/backward pass (None: whole batches)
    prefetch: bool  # the next batch prepared in a background thread
    augmenter: Augmenter
    loss_fn: nn.Module

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"


@dataclass
class Progress:
    """Where a run stands: the next epoch, the history and the early-stopping state (what a resume restores)."""

    start_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    best: float = -math.inf
    bad_epochs: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)

    def stopped(self, cfg: TrainConfig) -> bool:
        return cfg.early_stopping_patience is not None and self.bad_epochs >= cfg.early_stopping_patience

    def record(self, row: dict, val_metrics: dict[str, float], monitor: str) -> bool:
        """Add an epoch's row; True when ``monitor`` improved (every epoch when there is no validation)."""
        self.history.append(row)
        value = val_metrics.get(monitor, math.nan) if val_metrics else math.inf
        improved = value > self.best if math.isfinite(value) or value == math.inf else False
        if improved:
            self.best, self.bad_epochs = value, 0
            self.best_metrics = _finite({**val_metrics, "train_loss": row["train_loss"]})
        else:
            self.bad_epochs += 1
        return improved


def _train(cfg: TrainConfig, ctx: _Dist, on_epoch_end: Callable[[dict], None] | None,
           pseudo_labels: PseudoLabels | None = None) -> TrainResult:
    """The run: set up, resume when asked, then epochs of training, validation and checkpoints."""
    run_dir = Path(cfg.out_dir)
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = _resume_checkpoint(cfg, run_dir / "last.pt")
    torch.manual_seed(cfg.seed + ctx.rank)
    data = prepare_data(cfg, ctx, pseudo_labels)
    if ctx.main:
        data.problems.save(run_dir / "problems.csv")
    if resume_from is not None and resume_from.codes != [label.code for label in data.labels]:
        raise ValueError(f"cannot resume from {run_dir / 'last.pt'}: its classes differ from the data's")
    run = _setup(cfg, ctx, data, _validation_images(data, cfg.val_batch_size), run_dir, fresh=resume_from is None)
    progress = Progress() if resume_from is None else _resume(run, resume_from)
    if ctx.world > 1:
        run.net = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    for epoch in range(progress.start_epoch, cfg.epochs + 1):
        if progress.stopped(cfg):
            break  # a resumed run that had already stopped early
        started = time.perf_counter()
        row = _train_epoch(run, epoch, started)
        val_metrics, per_species = _validate_epoch(run, row)
        row["epoch_s"] = time.perf_counter() - started
        improved = progress.record(row, val_metrics, cfg.monitor)
        _log_epoch(run, row, val_metrics, improved)
        _checkpoint(run, progress, row, val_metrics, per_species, improved)
        ctx.barrier()
        if on_epoch_end is not None:
            on_epoch_end(row)
        if progress.stopped(cfg):
            log.info("early stopping: no %s improvement in %d epochs", cfg.monitor, progress.bad_epochs)
            break
    if ctx.main:
        plot_curves(progress.history, run_dir / "curves.png")
    ctx.barrier()
    return TrainResult(run_dir=run_dir, best_checkpoint=run.best_path, last_checkpoint=run.last_path,
                       metrics=progress.best_metrics, history=progress.history)


def _resume_checkpoint(cfg: TrainConfig, last_path: Path) -> Checkpoint | None:
    """``last.pt`` when ``cfg.resume``, else None."""
    if not cfg.resume:
        return None
    if not last_path.is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint {last_path}")
    ckpt = Checkpoint.load(last_path)
    if ckpt.optimizer is None or ckpt.scheduler is None:
        raise ValueError(f"cannot resume from {last_path}: it holds no optimiser and scheduler state")
    return ckpt


def _setup(cfg: TrainConfig, ctx: _Dist, data: TrainData, val: dict[str, ValidationImages], run_dir: Path, *,
           fresh: bool) -> _Run:
    """Model, front end, sampler and loader, optimiser and schedule, AMP scaler, augmenter and loss.
    A ``fresh`` run starts from the pretrained or given weights; a resumed one loads its own next."""
    model_kwargs = {"num_classes": len(data.labels), "in_chans": 1, "drop_rate": cfg.drop_rate,
                    "drop_path_rate": cfg.drop_path_rate}
    model = create_model(cfg.arch, pretrained=cfg.pretrained and fresh, checkpoint=cfg.checkpoint if fresh else None,
                         **model_kwargs)
    model.to(ctx.device)
    frontend = LogMelSpectrogram(cfg.frontend).to(ctx.device)
    sampler = WeightedRankSampler(data.train_weights, cfg.epoch_samples or len(data.train), seed=cfg.seed,
                                  rank=ctx.rank, world_size=ctx.world)
    loader = DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=len(sampler) > cfg.batch_size, pin_memory=ctx.device.type == "cuda",
                        persistent_workers=cfg.num_workers > 0)
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lr_scheduler(optimizer, cfg, steps)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(ctx.device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    micro_batch, prefetch = cfg.micro_batch_on(ctx.device.type), cfg.prefetch_on(ctx.device.type)
    log.info("training precision: %s, %s memory format, %s, %s", amp_dtype or torch.float32,
             "channels-last" if cfg.channels_last else "contiguous",
             f"passes of {micro_batch} windows" if micro_batch else "whole batches",
             "batches prepared ahead" if prefetch else "batches prepared in turn")
    _warn_small_mmap_threshold(ctx.device)
    augmenter = Augmenter(cfg.augment, cfg.frontend.sample_rate, data.backgrounds, data.bed_targets,
                          seed=cfg.seed * 1009 + ctx.rank)
    return _Run(cfg=cfg, ctx=ctx, data=data, val=val, run_dir=run_dir, model=model, net=model,
                model_kwargs=model_kwargs, frontend=frontend, sampler=sampler, loader=loader, steps=steps,
                optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp_dtype=amp_dtype, micro_batch=micro_batch,
                prefetch=prefetch, augmenter=augmenter, loss_fn=make_loss(cfg.loss, focal_gamma=cfg.focal_gamma))


SLOW_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic threshold


def _warn_small_mmap_threshold(device: torch.device) -> None:
    """Warn when ``MALLOC_MMAP_THRESHOLD_`` makes glibc map (and the kernel zero) every activation afresh: on
    this project's 2-core CPU a lite0 step took 1.42 s with 65536 against 0.74 s with glibc's default."""
    value = os.environ.get("MALLOC_MMAP_THRESHOLD_", "")
    if device.type == "cpu" and value.isdigit() and int(value) < SLOW_MMAP_THRESHOLD:
        log.warning("MALLOC_MMAP_THRESHOLD_=%s: CPU training steps run about 2x slower than with glibc's default "
                    "(unset it)", value)


def _resume(run: _Run, ckpt: Checkpoint) -> Progress:
    """Load the weights, optimiser, schedule, scaler and random states of ``last.pt``; its progress."""
    run.model.load_state_dict(ckpt.state_dict)
    run.optimizer.load_state_dict(ckpt.optimizer)
    run.scheduler.load_state_dict(ckpt.scheduler)
    run.scaler.load_state_dict(ckpt.scaler or {})
    ranks = (ckpt.rng or {}).get("ranks", [])
    if len(ranks) == run.ctx.world:
        run.augmenter.load_state_dict(ranks[run.ctx.rank]["augment"])
        torch.set_rng_state(ranks[run.ctx.rank]["torch"])
    else:
        log.warning("checkpoint random states are for %d processes, not %d: reseeding", len(ranks), run.ctx.world)
    log.info("resuming from %s at epoch %d", run.last_path, ckpt.epoch + 1)
    return Progress(start_epoch=ckpt.epoch + 1, history=list(ckpt.history), best=ckpt.best_metric,
                     bad_epochs=ckpt.bad_epochs, best_metrics=dict(ckpt.best_metrics))


def _train_epoch(run: _Run, epoch: int, started: float) -> dict:
    """One epoch of optimiser steps on this process's share; the metrics row (train loss over all ranks,
    samples/s since ``started``, a ``time.perf_counter()``)."""
    cfg, ctx = run.cfg, run.ctx
    run.sampler.set_epoch(epoch)
    run.data.train.set_epoch(epoch)
    run.net.train()
    seen, loss_sum = 0, 0.0
    bar = tqdm(total=run.steps, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not ctx.main, leave=False)
    for images, targets in _batches(run):
        loss, n = _train_step(run, images, targets)
        seen += n
        loss_sum += loss * n
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    bar.close()
    elapsed = time.perf_counter() - started
    totals = _gather((seen, loss_sum), ctx)
    seen_all = sum(s for s, _ in totals)
    return {"epoch": epoch, "train_loss": sum(v for _, v in totals) / max(1, seen_all),
            "lr": run.scheduler.get_last_lr()[0], "samples": seen_all,
            "samples_per_s": seen_all / elapsed if elapsed else 0.0}


def _batches(run: _Run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's ``run.steps`` batches as model inputs: augmented waveforms -> log-mel -> SpecAugment.

    With ``run.prefetch`` (``cfg.prefetch`` resolved: on GPUs by default) one background thread prepares batch k + 1
    while the model steps on batch k (numpy, scipy and torch release the GIL in their heavy calls, and a step leaves
    part of the cores idle). Only that thread draws from the augmenter and the loader, in the same order as without
    it, so a seed gives the same batches either way; the steps alone use torch's global generator (dropout).
    """
    batches = itertools.islice(run.loader, run.steps)
    if not run.prefetch:
        for waves, targets in batches:
            yield _prepare(run, waves, targets)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="augment") as pool:
        job = pool.submit(_prepare_next, run, batches)
        while (item := job.result()) is not None:
            job = pool.submit(_prepare_next, run, batches)
            yield item


def _prepare_next(run: _Run, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
    batch = next(batches, None)
    return None if batch is None else _prepare(run, *batch)


def _prepare(run: _Run, waves: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's model inputs and targets, on the run's device: waveform augmentation, front end, SpecAugment,
    mixup, cutmix; channels-last when the model is."""
    device = run.ctx.device
    waves = waves.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    with torch.no_grad():
        waves, targets = run.augmenter.waveform(waves, targets)
        images = run.frontend(waves)
        images, targets = run.augmenter.spectrogram(images, targets)
    if run.cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets


def _train_step(run: _Run, images: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """Forward, backward and step on one prepared batch; its loss and size."""
    cfg = run.cfg
    run.optimizer.zero_grad(set_to_none=True)
    loss = _backward_passes(run, images, targets)
    if cfg.grad_clip:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss, len(images)


def _backward_passes(run: _Run, images: torch.Tensor, targets: torch.Tensor) -> float:
    """Forward and backward of a batch in passes of ``run.micro_batch`` windows (one pass: whole batches); the batch
    loss.

    Each pass's loss is weighted by its share of the batch, so the summed gradient is the batch mean's (BatchNorm
    aside: it normalises each pass on its own); under DDP the gradients are reduced on the last pass only."""
    size = run.micro_batch or len(images)
    starts = range(0, len(images), size)
    total = 0.0
    for a in starts:
        sync = run.net.no_sync() if a != starts[-1] and hasattr(run.net, "no_sync") else contextlib.nullcontext()
        with sync:
            with torch.autocast(run.ctx.device.type, dtype=run.amp_dtype or torch.float32,
                                enabled=run.amp_dtype is not None):
                logits = run.net(images[a : a + size])
            loss = run.loss_fn(logits.float(), targets[a : a + size])
            if size < len(images):
                loss = loss * (len(logits) / len(images))
            run.scaler.scale(loss).backward()
        total += loss.item()
    return total


def _validate_epoch(run: _Run, row: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Rank 0 scores the validation sets and every rank gets the metrics (to stop early together); they go into
    ``row``. Returns the metrics and the per-species AP (rank 0's)."""
    val_metrics, per_species = (_validate(run.model, run.val, run.cfg, run.ctx, run.model_kwargs)
                                if run.ctx.main else ({}, {}))
    val_metrics = _broadcast(val_metrics, run.ctx)
    row.update({"val_loss": math.nan, "macro_roc_auc": math.nan, "padded_cmap": math.nan}, **val_metrics)
    return val_metrics, per_species


def _log_epoch(run: _Run, row: dict, val_metrics: dict[str, float], improved: bool) -> None:
    if not run.ctx.main:
        return
    cfg = run.cfg
    others = ", ".join(f"{k} {v:.4f}" for k, v in val_metrics.items() if k.endswith("_padded_cmap"))
    log.info("epoch %d/%d: train_loss %.4f val_loss %.4f macro_roc_auc %.4f padded_cmap %.4f (%s: %s) "
             "lr %.2e %.1f samples/s%s", row["epoch"], cfg.epochs, row["train_loss"], row["val_loss"],
             row["macro_roc_auc"], row["padded_cmap"], cfg.validation, others or "no validation",
             row["lr"], row["samples_per_s"], " (best)" if improved else "")


def _checkpoint(run: _Run, progress: Progress, row: dict, val_metrics: dict[str, float],
                per_species: dict[str, float], improved: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``improved``) and ``metrics.csv``, written by rank 0 with every rank's
    random states."""
    rng_states = _gather({"augment": run.augmenter.state_dict(), "torch": torch.get_rng_state()}, run.ctx)
    if not run.ctx.main:
        return
    cfg = run.cfg
    ckpt = Checkpoint(
        arch=cfg.arch, model_kwargs=run.model_kwargs, state_dict=run.model.state_dict(), labels=run.data.labels,
        frontend=cfg.frontend, epoch=row["epoch"], metrics=_finite({**val_metrics, "train_loss": row["train_loss"]}),
        per_species_ap=_finite(per_species), data=run.data.summary, train_config=cfg.model_dump(mode="json"),
        validation=validation_info(cfg, run.val), optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(), rng={"ranks": rng_states},
        history=progress.history, best_metric=progress.best, bad_epochs=progress.bad_epochs,
        best_metrics=progress.best_metrics,
    )
    ckpt.save(run.last_path)
    if improved:
        ckpt.save(run.best_path)
    write_metrics_csv(progress.history, run.run_dir / "metrics.csv")
